"""Blob URIs, parsed without the SDK (the spec validates them before anything is installed or
contacted).

Accepted forms::

    az://CONTAINER/PATH                                   account from [azure] storage_account,
                                                          AZURE_STORAGE_ACCOUNT or the connection string
    https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH  any cloud: ACCOUNT.blob.<suffix>
    http://127.0.0.1:10000/ACCOUNT/CONTAINER/PATH         path style, for emulators (Azurite)

A full URL may carry a SAS (``?sv=...&sig=...``): :func:`split_sas` takes it off, so the URI that
travels through plans, logs and manifests never holds the token.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

BLOB_SCHEMES = ("az", "https", "http")
_CONTAINER = re.compile(r"^(\$root|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_GLOB_CHARS = set("*?[")


class BlobUriError(ValueError):
    """Not a blob URI we understand; the message says which form to use."""


@dataclass(frozen=True)
class BlobPath:
    """Where one blob (or prefix) lives. ``account`` is None for ``az://`` until the store
    resolves it from the configuration; ``endpoint`` is None when it is the account's default."""

    uri: str
    container: str
    name: str  # the blob name or prefix inside the container ("" for the whole container)
    account: str | None = None
    endpoint: str | None = None  # e.g. https://acct.blob.core.windows.net, http://127.0.0.1:10000/acct

    @property
    def container_uri(self) -> str:
        """The URI of the container, in the same form as ``uri`` (used to match SAS tokens)."""
        if self.endpoint is None:
            return f"az://{self.container}/"
        return f"{self.endpoint}/{self.container}/"


def is_blob_uri(uri: str) -> bool:
    return uri.split("://", 1)[0].lower() in BLOB_SCHEMES if "://" in uri else False


def split_sas(uri: str) -> tuple[str, str | None]:
    """``("https://a.blob.core.windows.net/c/x.csv", "sv=...&sig=...")``; the token is None when
    the URI has no query. Only http(s) URLs carry a SAS."""
    if not uri.lower().startswith(("https://", "http://")) or "?" not in uri:
        return uri, None
    base, _, query = uri.partition("?")
    return base, (query or None)


def _is_ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_blob_uri(uri: str) -> BlobPath:
    """Parse (no I/O). Raises BlobUriError naming the URI and the forms that work."""
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in BLOB_SCHEMES:
        raise BlobUriError(f"{uri!r} is not a blob URI; use az://CONTAINER/PATH or "
                           "https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH")
    if "?" in rest:
        raise BlobUriError(f"{uri.split('?', 1)[0]!r}: a query string (SAS) must be split off "
                           "before parsing")
    if scheme == "az":
        container, _, name = rest.partition("/")
        return _checked(BlobPath(uri, container, name))
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    path = unquote(parts.path).lstrip("/")
    if _is_ip_or_localhost(host):  # emulator: the account is the first path segment
        account, _, path = path.partition("/")
        endpoint = f"{scheme}://{parts.netloc}/{account}"
    else:
        account, dot, suffix = host.partition(".")
        if not dot or not suffix.startswith("blob."):
            raise BlobUriError(f"{uri!r}: expected a blob endpoint like "
                               "https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH")
        if scheme != "https":
            raise BlobUriError(f"{uri!r}: Azure Storage needs https://")
        endpoint = f"https://{parts.netloc}"
    container, _, name = path.partition("/")
    if not _ACCOUNT.fullmatch(account):
        raise BlobUriError(f"{uri!r}: {account!r} is not a storage account name "
                           "(3-24 lowercase letters and digits)")
    return _checked(BlobPath(uri, container, name, account, endpoint))


def _checked(path: BlobPath) -> BlobPath:
    if not _CONTAINER.fullmatch(path.container):
        raise BlobUriError(
            f"{path.uri!r}: {path.container!r} is not a container name (3-63 lowercase letters, "
            "digits and single '-', starting and ending with a letter or digit)")
    return path


def has_glob(name: str) -> bool:
    return any(c in name for c in _GLOB_CHARS)


def glob_prefix(name: str) -> str:
    """The part of a blob-name glob before its first wildcard, cut at a '/': what to list."""
    first = min((name.index(c) for c in _GLOB_CHARS if c in name), default=len(name))
    return name[: name.rfind("/", 0, first) + 1]


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Shell-style matching of blob names, like ``glob.glob(recursive=True)`` on files:
    ``*`` and ``?`` stay within one path segment, ``**`` crosses segments, ``[abc]`` is a set.

    >>> bool(glob_to_regex("data/*.csv").fullmatch("data/a.csv"))
    True
    >>> bool(glob_to_regex("data/*.csv").fullmatch("data/x/a.csv"))
    False
    >>> bool(glob_to_regex("data/**/*.csv").fullmatch("data/x/y/a.csv"))
    True
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (close := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : close]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
            i = close + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out))
