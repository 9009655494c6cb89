"""A local stand-in for the Azure Retail Prices API (https://prices.azure.com/api/retail/prices),
answering as the real one does: ``{"BillingCurrency", "CustomerEntityId", "CustomerEntityType",
"Items", "NextPageLink", "Count"}``, ``$filter`` on ``serviceName``, ``armRegionName`` and
``priceType``, ``currencyCode='EUR'``, pages of ``page_size`` items linked by ``NextPageLink``
(``$skip``), null on the last page.

Items are shaped like the API's (every field it returns). The East US figures are the ones read
from the real API on 2026-10-09 (see tests/data/retail_prices_aci.json); the other regions'
figures are test values, not prices.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).with_name("data") / "retail_prices_aci.json"
_EQ = re.compile(r"(\w+) eq '([^']*)'")


def recorded_items() -> list[dict[str, Any]]:
    return list(json.loads(RECORDED.read_text(encoding="utf-8"))["Items"])


@dataclass
class RetailApi:
    items: list[dict[str, Any]]
    page_size: int = 3
    rates: dict[str, float] = field(default_factory=lambda: {"USD": 1.0})  # currency -> x USD
    fail_status: int | None = None  # every request answers this status (500, 503...)
    requests: list[str] = field(default_factory=list)
    url: str = ""

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        self.requests.append(path)
        if self.fail_status is not None:
            return self.fail_status, {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        wanted = dict(_EQ.findall(query.get("$filter", [""])[0]))
        currency = query.get("currencyCode", ["'USD'"])[0].strip("'").upper()
        if currency not in self.rates:
            return 400, {"Error": {"Code": "InvalidCurrency", "Message": currency}}
        skip = int(query.get("$skip", ["0"])[0])
        field_of = {"serviceName": "serviceName", "armRegionName": "armRegionName",
                    "priceType": "type"}
        rows = [dict(i) for i in self.items
                if all(str(i.get(field_of.get(k, k))) == v for k, v in wanted.items())]
        for row in rows:
            row["currencyCode"] = currency
            for key in ("retailPrice", "unitPrice"):
                row[key] = round(row[key] * self.rates[currency], 6)
        page = rows[skip:skip + self.page_size]
        more = skip + self.page_size < len(rows)
        next_query = dict((k, v[0]) for k, v in query.items())
        next_query["$skip"] = str(skip + self.page_size)
        encoded = urllib.parse.urlencode(next_query, safe="$'", quote_via=urllib.parse.quote)
        next_link = f"{self.url}?{encoded}" if more else None
        return 200, {"BillingCurrency": currency, "CustomerEntityId": "Default",
                     "CustomerEntityType": "Retail", "Items": page, "NextPageLink": next_link,
                     "Count": len(page)}


@contextmanager
def serve(api: RetailApi) -> Iterator[RetailApi]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = api.answer(self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}/api/retail/prices"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
