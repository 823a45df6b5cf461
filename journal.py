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
    out = []
    for name, value in items:
        value = str(value)
        if _secret_header(name):
            scheme, sep, _ = value.partition(" ")
            value = scheme + " " + MASK if sep and scheme.isalpha() else MASK
        out.append([name, value])
    return out


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
    if not body:
        return None, False
    text = body.decode("utf-8", "replace")
    if len(text) <= MAX_BODY_CHARS:
        lowered = text.lower()
        if "\\u" not in lowered and not _SECRET_WORD_RE.search(lowered):
            # No member can be a secret and no escape can hide one or make a lone surrogate:
            # nothing to mask (most chat bodies). Non-finite numbers still make it text.
            try:
                return json.loads(text, parse_constant=_not_json, parse_float=_finite), False
            except (ValueError, RecursionError):
                return text, False
        try:
            value = _mask_value(json.loads(text))
            # A lone surrogate escape, or NaN/Infinity/1e999 (which json reads but no JSON
            # answer can carry): keep the text instead.
            json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
            return value, False
        except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
            pass
    masked = _SECRET_TEXT_RE.sub(lambda m: m.group(1) + '"' + MASK + '"', text[:MAX_BODY_CHARS])
    return masked, len(text) > MAX_BODY_CHARS


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
        self._entries: "collections.deque[Tuple[dict, int]]" = collections.deque()
        self._seq = 0
        self._lock = threading.Lock()

    def add(self, *, time: float, method: str, path: str, query: str, headers: Iterable[Tuple[str, str]],
            body: bytes, status: int, run_id: Optional[str], fixture: Optional[str], request_id: str) -> dict:
        """Mask and keep one request; returns the entry kept."""
        kept_headers = mask_headers(headers)
        kept_body, cut = mask_body(body)
        size = (ENTRY_OVERHEAD_BYTES + len(path) + len(query) + sum(len(n) + len(v) for n, v in kept_headers)
                + min(len(body), 2 * MAX_BODY_CHARS))
        entry = {"time": time, "method": method, "path": path, "query": query, "headers": kept_headers,
                 "body": kept_body, "body_truncated": cut, "status": status, "run_id": run_id,
                 "fixture": fixture, "request_id": request_id}
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._entries.append((entry, size))
            self.bytes += size
            while len(self._entries) > self.limit or (self.bytes > self.max_bytes and len(self._entries) > 1):
                self.bytes -= self._entries.popleft()[1]
        return entry

    def select(self, filters: Dict[str, str]) -> List[dict]:
        """Entries matching every filter, newest first (shared dicts: don't change them).

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
            entries = [entry for entry, _ in reversed(self._entries)]
        for entry in entries:
            if limit is not None and len(out) >= limit:
                break
            if ((method is None or entry["method"] == method)
                    and ("path" not in filters or entry["path"] == filters["path"])
                    and entry["path"].startswith(filters.get("path_prefix", ""))
                    and (status is None or entry["status"] == status)
                    and ("run_id" not in filters or entry["run_id"] == filters["run_id"])
                    and ("fixture" not in filters or entry["fixture"] == filters["fixture"])):
                out.append(entry)
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
