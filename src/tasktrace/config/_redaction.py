"""Secrets kept out of messages and ``show-config``: URL and header redaction."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Dict

_REDACTED = "***"
# Query parameters whose values are credentials in practice (api_key, token, X-Signature,
# password, ...). Over-redacting an innocent parameter is harmless; leaking one is not.
# Patterns are compiled on first use (``re`` caches them): compiling at import time would
# cost every process the bootstrap starts, most of which never need them.
_SECRET_PARAM = r"(?i)token|key|secret|pass|pwd|auth|sig|credential|session"


def redact_url(url: str) -> str:
    """``url`` as it may be shown: its userinfo and credential-like query values hidden.

    The one redaction of URLs in tasktrace: config errors, ``show-config``, ``repr()`` of
    the settings and the OTLP reporter's messages all use it. ``https://user:pw@host/x?
    api_key=1&a=2`` becomes ``https://***@host/x?api_key=***&a=2``: the whole userinfo goes
    (a user name is often a token itself), so do the values of query parameters whose names
    look like credentials (see ``_SECRET_PARAM``). A port that is not a number is hidden too
    (``https://user:secret/v1`` lacks its ``@host``: the "port" is a password). Text that
    is not a parsable URL is returned as ``"<unparsable URL>"`` rather than risk echoing a
    secret.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if not isinstance(url, str):
        return "<not a URL>"
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{_REDACTED}@{netloc.rpartition('@')[2]}"
        try:
            _ = parts.port
        except ValueError:
            host, colon, port = netloc.rpartition(":")
            if colon and "]" not in port:
                netloc = f"{host}:{_REDACTED}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(re.search(_SECRET_PARAM, name) for name, _ in pairs):
                query = urlencode(
                    [(n, _REDACTED if re.search(_SECRET_PARAM, n) else v) for n, v in pairs],
                    safe="*",
                )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"


def redacted_headers(headers: Mapping[str, str]) -> Dict[str, str]:
    """A copy of ``headers`` with every value replaced by ``***`` (names are kept)."""
    return {str(name): _REDACTED for name in headers}


class _Headers(Mapping[str, str]):
    """A read-only header mapping whose ``repr()`` never shows the values."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(redacted_headers(self._data))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._data) == dict(other)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))
