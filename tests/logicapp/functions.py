"""The workflow expression functions the interpreter knows, each with the service's semantics as
documented in the functions reference (workflow-definition-language-functions-reference.md).
Anything not here is an error, on purpose: add a function with a test, not silently."""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from .expressions import ExpressionError, to_text


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"{name}() expects booleans; got {value!r}")
    return value


def _number(value: Any, name: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpressionError(f"{name}() expects numbers; got {value!r}")
    return value


def _equals(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _compare(name: str, test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if isinstance(a, str) and isinstance(b, str):
            return test(a, b)
        return test(_number(a, name), _number(b, name))
    return compare


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    raise ExpressionError(f"empty() expects a string, array or object; got {value!r}")


def _length(value: Any) -> int:
    if isinstance(value, (str, list, dict)):
        return len(value)
    raise ExpressionError(f"length() expects a string or an array; got {value!r}")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ExpressionError(f"int() cannot convert {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ExpressionError(f"int() cannot convert {value!r}")


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as err:
        raise ExpressionError(f"json(): not valid JSON: {value[:80]!r}") from err


def _split(text: Any, separator: Any) -> list[str]:
    if not isinstance(text, str) or not isinstance(separator, str) or not separator:
        raise ExpressionError("split() expects a string and a non-empty separator")
    return text.split(separator)


def _first_last(name: str, index: int) -> Callable[[Any], Any]:
    def pick(value: Any) -> Any:
        if isinstance(value, (str, list)):
            return value[index] if value else None
        raise ExpressionError(f"{name}() expects a string or an array; got {value!r}")
    return pick


def _substring(text: Any, start: Any, length: Any = None) -> str:
    if not isinstance(text, str):
        raise ExpressionError(f"substring() expects a string; got {text!r}")
    start = _int(start)
    end = len(text) if length is None else start + _int(length)
    if start < 0 or end > len(text) or end < start:
        raise ExpressionError(f"substring({text!r}, {start}, {length}): out of range")
    return text[start:end]


def _take(value: Any, count: Any) -> Any:
    if not isinstance(value, (str, list)):
        raise ExpressionError(f"take() expects a string or an array; got {value!r}")
    return value[:max(0, _int(count))]


def _union(*values: Any) -> Any:
    if all(isinstance(v, dict) for v in values):
        merged: dict[str, Any] = {}
        for value in values:
            merged.update(value)
        return merged
    if all(isinstance(v, list) for v in values):
        out: list[Any] = []
        for value in values:
            out.extend(item for item in value if item not in out)
        return out
    raise ExpressionError("union() expects all objects or all arrays")


def _div(a: Any, b: Any) -> int | float:
    a, b = _number(a, "div"), _number(b, "div")
    if b == 0:
        raise ExpressionError("div(): division by zero")
    if isinstance(a, int) and isinstance(b, int):
        return int(a / b)  # integer division truncates toward zero, as in .NET
    return a / b


# .NET custom date and time format specifiers (the service formats dates the .NET way).
_DOTNET = re.compile(r"yyyy|MM|dd|HH|mm|ss|fffffff|fff|'[^']*'|[-:T .Z/]|.")


def format_datetime(moment: datetime, fmt: str = "o") -> str:
    moment = moment.astimezone(UTC)
    if fmt in ("o", "O"):
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"
    if fmt == "s":
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    out = []
    for token in _DOTNET.findall(fmt):
        table = {"yyyy": f"{moment.year:04d}", "MM": f"{moment.month:02d}",
                 "dd": f"{moment.day:02d}", "HH": f"{moment.hour:02d}",
                 "mm": f"{moment.minute:02d}", "ss": f"{moment.second:02d}",
                 "fff": f"{moment.microsecond // 1000:03d}",
                 "fffffff": f"{moment.microsecond:06d}0"}
        if token in table:
            out.append(table[token])
        elif token.startswith("'"):
            out.append(token[1:-1])
        elif token in "-:T .Z/":
            out.append(token)
        else:
            raise ExpressionError(f"format specifier {token!r} in {fmt!r} is not supported here")
    return "".join(out)


def parse_timestamp(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ExpressionError(f"expected a timestamp string; got {text!r}")
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError as err:
        raise ExpressionError(f"not an ISO 8601 timestamp: {text!r}") from err
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _guid(fmt: str = "D") -> str:
    value = uuid.uuid4()
    formats = {"N": value.hex, "D": str(value), "B": f"{{{value}}}", "P": f"({value})"}
    if fmt.upper() not in formats:
        raise ExpressionError(f"guid(): format must be N, D, B or P; got {fmt!r}")
    return formats[fmt.upper()]


def pure_functions(now: Callable[[], datetime]) -> dict[str, Callable[..., Any]]:
    """Functions that depend only on their arguments (and the clock)."""
    return {
        "equals": _equals,
        "not": lambda a: not _bool(a, "not"),
        "and": lambda *a: all(_bool(x, "and") for x in a),
        "or": lambda *a: any([_bool(x, "or") for x in a]),
        "if": lambda cond, a, b: a if _bool(cond, "if") else b,
        "greater": _compare("greater", lambda a, b: a > b),
        "less": _compare("less", lambda a, b: a < b),
        "greaterorequals": _compare("greaterOrEquals", lambda a, b: a >= b),
        "lessorequals": _compare("lessOrEquals", lambda a, b: a <= b),
        "empty": _empty,
        "coalesce": lambda *a: next((x for x in a if x is not None), None),
        "concat": lambda *a: "".join(to_text(x) for x in a),
        "string": to_text,
        "int": _int,
        "json": _json,
        "createarray": lambda *a: list(a),
        "union": _union,
        "length": _length,
        "first": _first_last("first", 0),
        "last": _first_last("last", -1),
        "take": _take,
        "split": _split,
        "trim": lambda s: s.strip(),
        "tolower": lambda s: s.lower(),
        "toupper": lambda s: s.upper(),
        "substring": _substring,
        "replace": lambda s, old, new: s.replace(old, new),
        "startswith": lambda s, p: s.lower().startswith(p.lower()),
        "endswith": lambda s, p: s.lower().endswith(p.lower()),
        "contains": lambda coll, item: item in coll,
        "add": lambda a, b: _number(a, "add") + _number(b, "add"),
        "sub": lambda a, b: _number(a, "sub") - _number(b, "sub"),
        "mul": lambda a, b: _number(a, "mul") * _number(b, "mul"),
        "div": _div,
        "encodeuricomponent": lambda s: urllib.parse.quote(to_text(s), safe=""),
        "decodeuricomponent": lambda s: urllib.parse.unquote(s),
        "guid": _guid,
        "utcnow": lambda fmt="o": format_datetime(now(), fmt),
        "formatdatetime": lambda ts, fmt="o": format_datetime(parse_timestamp(ts), fmt),
        "addseconds": lambda ts, n, fmt="o": format_datetime(
            parse_timestamp(ts) + timedelta(seconds=_number(n, "addSeconds")), fmt),
    }
