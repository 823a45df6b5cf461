"""The request journal: the last requests the server answered, secrets masked, bounded.

Job (sans-I/O): keep, for ``GET /mock/requests``, what each request asked for and how it was
answered (method, path, query, headers, body, status, run id, the fixture that answered), so
a test can assert on what its client really sent. It has its own room because masking
secrets and bounding what is kept are rules of their own, and the journal must be filtered
and cleared without knowing any route.

Secrets are masked before an entry is kept, never after: the values of ``Authorization``,
``Cookie``, ``LB-LLM-Key`` and every header whose name ends in ``-key`` or ``-token``
become ``***`` (``Authorization`` keeps its scheme: ``Bearer ***``), and in a JSON body every
member named like ``apiKey``, ``api_key``, ``llmKey`` or ``LB-LLM-Key`` (any case, ``-`` and
``_`` ignored) has its value replaced by ``"***"``. A body that is not JSON is kept as text
with ``"apiKey": "…"``-like members masked by pattern.
"""

from __future__ import annotations

import collections
import json
import re
import threading
from typing import Any, Dict, Iterable, List, Optional, Tuple

__all__ = ["Journal", "mask_headers", "mask_body", "MASK", "MAX_BODY_CHARS", "FILTERS"]

MASK = "***"
MAX_BODY_CHARS = 16 * 1024
"""Most characters of a request body kept in an entry (JSON bodies longer than this are kept
as their masked text, cut here, with ``body_truncated: true``)."""
ENTRY_OVERHEAD_BYTES = 512
"""What an entry costs besides its headers and body text (the dict, ids, status)."""

_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "lb-llm-key"}
_SECRET_KEYS = {"apikey", "llmkey", "lbllmkey", "authorization", "password", "secret", "token", "accesstoken"}
_SECRET_WORD_RE = re.compile("key|authorization|password|secret|token")
"""A word every name in ``_SECRET_KEYS`` holds (lower case, in a body's text)."""
_SECRET_TEXT_RE = re.compile(
    r'("(?:api[_-]?key|llm[_-]?key|lb[_-]?llm[_-]?key|authorization|password|secret|token|access[_-]?token)"'
    r'\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)

_DIGITS_RE = re.compile(r"[0-9]{1,9}")

FILTERS = ("method", "path", "path_prefix", "status", "run_id", "fixture", "limit")
"""Query parameters ``GET /mock/requests`` filters by (see ``Journal.select``)."""


def _secret_header(name: str) -> bool:
    name = name.lower()
    return name in _SECRET_HEADERS or name.endswith("-key") or name.endswith("-token")


def mask_headers(items: Iterable[Tuple[str, str]]) -> List[List[str]]:
    """``[[name, value], ...]`` in the order sent, secret values masked (see the module
    docstring); ``Authorization: Bearer sk-…`` becomes ``Bearer ***``."""
    return [[name, value] for name, value in _kept_headers(items)]


def _kept_headers(items: Iterable[Tuple[str, str]]) -> Tuple[Tuple[str, str], ...]:
    """``mask_headers`` as one tuple of ``(name, value)`` pairs: what an entry keeps."""
    out = []
    for name, value in items:
        if _secret_header(name):
            value = str(value)
            scheme, sep, _ = value.partition(" ")
            out.append((name, scheme + " " + MASK if sep and scheme.isalpha() else MASK))
        elif type(value) is str:
            out.append((name, value))
        else:
            out.append((name, str(value)))
    return tuple(out)


def _secret_key(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "") in _SECRET_KEYS


def _mask_value(value: Any) -> Any:
    """A copy of a JSON value with every secret member's value masked (no recursion limit
    problem: request bodies are at most ``api.MAX_JSON_DEPTH`` deep)."""
    if isinstance(value, dict):
        return {k: (MASK if _secret_key(k) and v is not None else _mask_value(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_value(v) for v in value]
    return value


def _not_json(name: str) -> Any:
    raise ValueError("%s is not JSON" % name)


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("%s is not a finite number" % text)
    return value


def mask_body(body: bytes) -> Tuple[Any, bool]:
    """The body to keep and whether it was cut: ``None`` when empty; the masked JSON value
    when it is JSON of at most ``MAX_BODY_CHARS`` characters; else its text (UTF-8, bad bytes
    replaced), secrets masked by pattern, cut to ``MAX_BODY_CHARS`` (also for JSON that no
    JSON answer could carry: a lone surrogate escape, ``NaN``, ``Infinity``, ``1e999``)."""
    kind, kept, cut = _kept_body(body)
    return _body_value(kind, kept), cut


_PLAIN_JSON = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)
"""Reads a body with nothing to mask; NaN, Infinity and 1e999 are not JSON to it."""
_JSON_LATER, _AS_IS = 1, 2  # how an entry keeps its body (see ``_kept_body``)


def _kept_body(body: bytes) -> Tuple[int, Any, bool]:
    """``(kind, kept, cut)``: what an entry keeps of ``body``, secrets already masked.
    ``_JSON_LATER``: ``kept`` is text with nothing to mask, read as JSON when the entry is
    read (``_body_value``: one string kept instead of a tree of objects per request);
    ``_AS_IS``: ``kept`` is the body as ``mask_body`` returns it."""
    if not body:
        return _AS_IS, None, False
    text = body.decode("utf-8", "replace")
    if len(text) <= MAX_BODY_CHARS:
        lowered = text.lower()
        if "\\u" not in lowered and not _SECRET_WORD_RE.search(lowered.replace("-", "").replace("_", "")):
            # No member can be a secret and no escape can hide one or make a lone surrogate:
            # nothing to mask (most chat bodies).
            return _JSON_LATER, text, False
        try:
            value = _mask_value(json.loads(text))
            # A lone surrogate escape, or NaN/Infinity/1e999 (which json reads but no JSON
            # answer can carry): keep the text instead.
            json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
            return _AS_IS, value, False
        except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
            pass
    masked = _SECRET_TEXT_RE.sub(lambda m: m.group(1) + '"' + MASK + '"', text[:MAX_BODY_CHARS])
    return _AS_IS, masked, len(text) > MAX_BODY_CHARS


def _body_value(kind: int, kept: Any) -> Any:
    """The body ``mask_body`` gives, from what ``_kept_body`` kept: JSON text becomes its
    value; text that is not JSON (or holds a non-finite number) stays text."""
    if kind == _JSON_LATER:
        try:
            return _PLAIN_JSON.decode(kept)
        except (ValueError, RecursionError):
            return kept
    return kept


class _Entry:
    """One kept request, compact: the masked headers as one tuple and the body as
    ``_kept_body`` keeps it (most often one string), so a request costs the journal a few
    objects instead of a tree of them; ``as_dict`` gives the entry's JSON shape. ``size`` is
    its estimated bytes."""

    __slots__ = ("seq", "time", "method", "path", "query", "headers", "body_kind", "body", "body_truncated",
                 "status", "run_id", "fixture", "request_id", "size")

    def __init__(self, seq: int, time: float, method: str, path: str, query: str,
                 headers: Tuple[Tuple[str, str], ...], body_kind: int, body: Any, body_truncated: bool,
                 status: int, run_id: Optional[str], fixture: Optional[str], request_id: str, size: int) -> None:
        self.seq = seq
        self.time = time
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body_kind = body_kind
        self.body = body
        self.body_truncated = body_truncated
        self.status = status
        self.run_id = run_id
        self.fixture = fixture
        self.request_id = request_id
        self.size = size

    def as_dict(self) -> dict:
        """The entry as ``Journal`` documents it (a new dict each call)."""
        return {"time": self.time, "method": self.method, "path": self.path, "query": self.query,
                "headers": [[name, value] for name, value in self.headers],
                "body": _body_value(self.body_kind, self.body), "body_truncated": self.body_truncated,
                "status": self.status, "run_id": self.run_id, "fixture": self.fixture,
                "request_id": self.request_id, "seq": self.seq}


class Journal:
    """The last requests, newest kept: at most ``limit`` entries whose estimated size adds up
    to at most ``max_bytes`` bytes; the oldest go first. Thread-safe (one lock per call).

    An entry is a dict: ``seq`` (int, counts up from 1 since start or ``clear``), ``time``
    (float Unix seconds), ``method``, ``path``, ``query`` (str, undecoded), ``headers``
    (``[[name, value], ...]``, masked), ``body`` (masked JSON value, text, or None),
    ``body_truncated`` (bool), ``status`` (int HTTP status; 200 for a stream), ``run_id`` and
    ``fixture`` (str or None), ``request_id`` (the ``lb-request-id`` sent back).
    """

    def __init__(self, limit: int = 500, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: "collections.deque[_Entry]" = collections.deque()
        self._seq = 0
        self._lock = threading.Lock()

    def add(self, *, time: float, method: str, path: str, query: str, headers: Iterable[Tuple[str, str]],
            body: bytes, status: int, run_id: Optional[str], fixture: Optional[str], request_id: str) -> None:
        """Mask and keep one request (``select`` reads it back)."""
        kept_headers = _kept_headers(headers)
        kind, kept_body, cut = _kept_body(body)
        size = ENTRY_OVERHEAD_BYTES + len(path) + len(query) + min(len(body), 2 * MAX_BODY_CHARS)
        for name, value in kept_headers:
            size += len(name) + len(value)
        entry = _Entry(0, time, method, path, query, kept_headers, kind, kept_body, cut, status, run_id,
                       fixture, request_id, size)
        with self._lock:
            self._seq += 1
            entry.seq = self._seq
            self._entries.append(entry)
            self.bytes += size
            while len(self._entries) > self.limit or (self.bytes > self.max_bytes and len(self._entries) > 1):
                self.bytes -= self._entries.popleft().size

    def select(self, filters: Dict[str, str]) -> List[dict]:
        """Entries matching every filter, newest first, each a new dict.

        Filters (all optional, each a string): ``method`` (exact, any case), ``path`` (exact),
        ``path_prefix``, ``status`` (exact number), ``run_id``, ``fixture`` (the name of the
        fixture that answered), ``limit`` (most entries returned). Raises ``ValueError`` for a
        ``status`` or ``limit`` that is not 1 to 9 ASCII digits."""
        for name in ("status", "limit"):
            if name in filters and not _DIGITS_RE.fullmatch(filters[name]):
                raise ValueError("%s must be a whole number from 0 in ASCII digits" % name)
        status = int(filters["status"]) if "status" in filters else None
        limit = int(filters["limit"]) if "limit" in filters else None
        method = filters.get("method", "").upper() or None
        out = []
        with self._lock:
            entries = list(reversed(self._entries))
        for entry in entries:
            if limit is not None and len(out) >= limit:
                break
            if ((method is None or entry.method == method)
                    and ("path" not in filters or entry.path == filters["path"])
                    and entry.path.startswith(filters.get("path_prefix", ""))
                    and (status is None or entry.status == status)
                    and ("run_id" not in filters or entry.run_id == filters["run_id"])
                    and ("fixture" not in filters or entry.fixture == filters["fixture"])):
                out.append(entry.as_dict())
        return out

    def clear(self) -> int:
        """Forget every entry and restart ``seq`` at 1; returns how many were dropped."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self.bytes = 0
            self._seq = 0
            return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
