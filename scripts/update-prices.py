#!/usr/bin/env python3
"""Regenerate serverless_score/pricing/aci_prices.toml from the Azure Retail Prices API.

    python scripts/update-prices.py                 # every region, from the live API (no sign-in)
    python scripts/update-prices.py --items F.json  # from a saved API answer ({"Items": [...]})

The API's URL is SERVERLESS_SCORE_RETAIL_PRICES_URL when set (tests serve a local copy). The
table's [estimate] section is kept. Run it, review the diff, commit it with the day it was read.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from serverless_score.pricing import SHIPPED, retail, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=Path, help="a saved API answer instead of the live API")
    parser.add_argument("--read-on", help="the day the saved answer was read (YYYY-MM-DD)")
    parser.add_argument("--source", help="where the saved answer came from, for the header")
    parser.add_argument("--missing", default="", help="what the table lacks, for the header")
    parser.add_argument("--out", type=Path, default=SHIPPED)
    args = parser.parse_args(argv)
    if args.items:
        items = json.loads(args.items.read_text(encoding="utf-8"))["Items"]
        read_on = args.read_on or datetime.now(UTC).strftime("%Y-%m-%d")
        source = args.source or str(args.items)
    else:
        base = retail.endpoint() or retail.RETAIL_URL
        url = retail.query_url(base, None, "USD")
        try:
            items = list(retail.fetch_items(url, timeout=60))
        except retail.RetailError as err:
            print(f"update-prices: the Retail Prices API could not be read: {err}", file=sys.stderr)
            return 1
        read_on, source = datetime.now(UTC).strftime("%Y-%m-%d"), url
    current = args.out.read_text(encoding="utf-8") if args.out.exists() else SHIPPED.read_text()
    text = table.render(items, read_on=read_on, source=source, missing=args.missing,
                        estimate=table.estimate_section(current))
    args.out.write_text(text, encoding="utf-8")
    print(f"update-prices: {len(retail.regions_in(items))} region(s) written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
