"""Secrets that must never be printed or stored: SAS tokens, SAS URLs, account keys.

A :class:`Secret` hides its value from ``repr``/``str`` (so a dataclass, a log line or a rich
traceback shows ``Secret('***')``); code that needs the value calls ``reveal()`` at the last
moment. :func:`redact` scrubs the usual credential shapes out of text that came from elsewhere
(SDK error messages, URLs a user pasted) before it reaches a message, a log or a manifest.
"""

from __future__ import annotations

import re

_SIG_PARAM = re.compile(r"(?i)([?&](?:sig|se|sv|sp|sr|st|spr|skoid|sktid|skt|ske|sks|skv|srt|ss)=)[^&\s'\"<>]*")
_KEY_FIELD = re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|SharedAccessKey)=[^;\s'\"<>]*")


class Secret:
    """A value that never shows itself: ``repr(Secret("x")) == "Secret('***')"``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would copy the value somewhere we cannot see: refuse rather than leak.
        raise TypeError("a Secret cannot be pickled")


def redact(text: str) -> str:
    """``text`` with SAS query parameters and account keys replaced by ``***``."""
    text = _SIG_PARAM.sub(r"\1***", text)
    return _KEY_FIELD.sub(r"\1=***", text)
