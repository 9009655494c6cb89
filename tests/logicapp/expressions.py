"""The expression language shared by Logic Apps workflow definitions (``@...``, ``@{...}``) and ARM
templates (``[...]``): function calls, '' string literals, numbers, true/false/null, and property
access with ``['x']``, ``[0]``, ``.x`` and their null-safe forms ``?['x']``, ``?.x``.

Parsing is separate from evaluation so a whole definition can be checked before it runs: an unknown
function is an error at check time, which keeps templates from using features nobody tested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ExpressionError(Exception):
    """A malformed expression, an unknown function, or a failed evaluation (the service's
    'InvalidTemplate' errors)."""


# -- syntax tree -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Call:
    name: str  # lower-case: the service matches function names case-insensitively
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Access:
    target: Node
    key: Node
    safe: bool  # '?' before the accessor: a missing property or a null target gives null


Node = Literal | Call | Access

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>\?\.|\?\[|[(),.\[\]])
""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExpressionError(f"unexpected character {text[pos]!r} at {pos} in {text!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "ws":
            out.append((kind, match.group()))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            want = repr(value) if value else "more"
            raise ExpressionError(f"expected {want} in {self.text!r}, found "
                                  f"{token[1] if token else 'the end'!r}")
        self.pos += 1
        return token

    def parse(self) -> Node:
        node = self.expression()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return node

    def expression(self) -> Node:
        node = self.primary()
        while (token := self.peek()) is not None and token[1] in ("[", "?[", ".", "?."):
            self.pos += 1
            safe = token[1].startswith("?")
            if token[1].endswith("["):
                key = self.expression()
                self.take("]")
            else:
                kind, name = self.take()
                if kind != "name":
                    raise ExpressionError(f"expected a property name after '.' in {self.text!r}")
                key = Literal(name)
            node = Access(node, key, safe)
        return node

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "string":
            return Literal(value[1:-1].replace("''", "'"))
        if kind == "number":
            return Literal(float(value) if "." in value else int(value))
        if kind == "name":
            if self.peek() == ("punct", "("):
                self.take("(")
                args: list[Node] = []
                if self.peek() != ("punct", ")"):
                    args.append(self.expression())
                    while self.peek() == ("punct", ","):
                        self.take(",")
                        args.append(self.expression())
                self.take(")")
                return Call(value.lower(), tuple(args))
            if value in ("true", "false", "null"):
                return Literal({"true": True, "false": False, "null": None}[value])
        raise ExpressionError(f"unexpected {value!r} in {self.text!r}")


def parse(text: str) -> Node:
    return _Parser(text).parse()


def calls(node: Node) -> list[Call]:
    """Every function call in a tree (for static checks)."""
    if isinstance(node, Call):
        return [node, *(c for arg in node.args for c in calls(arg))]
    if isinstance(node, Access):
        return calls(node.target) + calls(node.key)
    return []


# -- evaluation ------------------------------------------------------------------------------
Function = Callable[..., Any]


def evaluate(node: Node, functions: Mapping[str, Function]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Call):
        function = functions.get(node.name)
        if function is None:
            raise ExpressionError(f"unknown function {node.name!r}")
        args = [evaluate(arg, functions) for arg in node.args]
        try:
            return function(*args)
        except ExpressionError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
            raise ExpressionError(f"{node.name}(): {err}") from err
    return _access(evaluate(node.target, functions), evaluate(node.key, functions), node.safe)


def _access(target: Any, key: Any, safe: bool) -> Any:
    if target is None:
        if safe:
            return None
        raise ExpressionError(f"cannot select {key!r} from null (use ?[...] where it may be missing)")
    if isinstance(target, dict):
        # Property names are matched case-insensitively by the service.
        if key in target:
            return target[key]
        for name, value in target.items():
            if isinstance(key, str) and name.lower() == key.lower():
                return value
        if safe:
            return None
        raise ExpressionError(f"property {key!r} doesn't exist; available: {', '.join(target)}")
    if isinstance(target, list) and isinstance(key, int) and not isinstance(key, bool):
        if 0 <= key < len(target):
            return target[key]
        if safe:
            return None
        raise ExpressionError(f"index {key} is out of range (length {len(target)})")
    raise ExpressionError(f"cannot select {key!r} from a {type(target).__name__}")


def to_text(value: Any) -> str:
    """How a value appears inside a string: @{...} interpolation and string()."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# -- strings in a workflow definition --------------------------------------------------------
@dataclass(frozen=True)
class Template:
    """A JSON string of a definition: a literal, a whole expression (``@f()``: any type), or
    text with ``@{...}`` parts (always a string)."""

    parts: tuple[str | Node, ...]
    whole: bool

    def evaluate(self, functions: Mapping[str, Function]) -> Any:
        if self.whole:
            node = self.parts[0]
            assert not isinstance(node, str)
            return evaluate(node, functions)
        if len(self.parts) == 1 and isinstance(self.parts[0], str):
            return self.parts[0]
        return "".join(part if isinstance(part, str) else to_text(evaluate(part, functions))
                       for part in self.parts)

    def nodes(self) -> list[Node]:
        return [p for p in self.parts if not isinstance(p, str)]


def _closing_brace(text: str, start: int) -> int:
    """Index of the '}' closing an @{ that opened before ``start`` (quotes respected)."""
    depth, pos, quoted = 0, start, False
    while pos < len(text):
        char = text[pos]
        if quoted:
            if char == "'":
                if text.startswith("''", pos):
                    pos += 1
                else:
                    quoted = False
        elif char == "'":
            quoted = True
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return pos
            depth -= 1
        pos += 1
    raise ExpressionError(f"unclosed @{{ in {text!r}")


def parse_string(text: str) -> Template:
    if text.startswith("@@"):
        return Template((text[1:],), whole=False)
    if text.startswith("@") and not text.startswith("@{"):
        return Template((parse(text[1:]),), whole=True)
    parts: list[str | Node] = []
    pos, literal = 0, ""
    while pos < len(text):
        if text.startswith("@{", pos):
            end = _closing_brace(text, pos + 2)
            if literal:
                parts.append(literal)
                literal = ""
            parts.append(parse(text[pos + 2:end]))
            pos = end + 1
        else:
            literal += text[pos]
            pos += 1
    if literal or not parts:
        parts.append(literal)
    return Template(tuple(parts), whole=False)


def resolve(value: Any, functions: Mapping[str, Function]) -> Any:
    """Evaluate every expression inside a JSON value (action inputs, bodies, ...)."""
    if isinstance(value, str):
        return parse_string(value).evaluate(functions)
    if isinstance(value, list):
        return [resolve(item, functions) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, functions) for key, item in value.items()}
    return value


def strings(value: Any) -> list[str]:
    """Every string inside a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    return []
