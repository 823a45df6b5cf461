"""Server-Sent Events field encoding (WHATWG HTML, section 9.2.5 "Parsing an event stream").

This module has one job: turn an event's fields into the exact bytes of one SSE event. It has
its own room because every wire format the server speaks is built on it and it is tested alone,
byte for byte. It imports nothing from the server and does no I/O.

Rules followed (WHATWG HTML 9.2.5 / 9.2.6):
- every line is ``name: value`` with exactly one space after the colon;
- ``data`` containing CR, LF or CRLF becomes several ``data:`` lines (the parser joins them with LF);
- ``event`` and ``id`` may not contain line breaks, and ``id`` may not contain U+0000
  (a parser ignores such an ``id``), so they are rejected rather than silently changed;
- ``retry`` is a non-negative integer of milliseconds;
- every event ends with a blank line; line endings are LF;
- the output is UTF-8 with no byte order mark.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

__all__ = ["encode_event", "dumps_compact", "DONE"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# One encoder for every call: json.dumps with keyword arguments builds a new one each time,
# which costs about 1 µs more per frame.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

DONE = b"data: [DONE]\n\n"
"""The OpenAI end-of-stream sentinel event, as the Langbase and OpenAI SDKs expect it."""


def dumps_compact(obj: Any) -> str:
    """Serialise ``obj`` as one line of compact JSON.

    Shape: any JSON-serialisable value; returns ``str`` with no spaces after separators,
    non-ASCII characters kept as they are (UTF-8 on the wire), and no line break (JSON escapes
    CR and LF inside strings).

    Raises:
        ValueError: for NaN or infinite floats, which ``JSON.parse`` in browsers rejects.
        TypeError: for values JSON cannot represent.
    """
    return _ENCODE(obj)


def encode_event(
    data: Optional[str] = None,
    *,
    event: Optional[str] = None,
    id: Optional[str] = None,
    retry: Optional[int] = None,
) -> bytes:
    """Encode one SSE event as UTF-8 bytes ending in a blank line.

    Args:
        data: the event's data; split on CR, LF and CRLF into one ``data:`` line per line.
            ``None`` writes no ``data`` field (a parser then dispatches nothing).
        event: the event type (``event:`` field), or ``None``.
        id: the last-event-ID (``id:`` field), or ``None``.
        retry: the reconnection time in milliseconds (``retry:`` field), or ``None``.

    Fields are written in the order ``id``, ``event``, ``retry``, ``data`` (as Lobe Chat writes
    them; the order means nothing to a parser).

    Raises:
        ValueError: if ``event`` or ``id`` contains CR or LF, ``id`` contains U+0000, ``retry``
            is negative or not an ``int``, or no field at all is given.
    """
    lines = []
    if id is not None:
        if _LINE_BREAK.search(id) or "\0" in id:
            raise ValueError("SSE id must not contain CR, LF or NUL")
        lines.append("id: " + id)
    if event is not None:
        if _LINE_BREAK.search(event):
            raise ValueError("SSE event name must not contain CR or LF")
        lines.append("event: " + event)
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError("SSE retry must be a non-negative int of milliseconds")
        lines.append("retry: %d" % retry)
    if data is not None:
        lines.extend("data: " + line for line in _LINE_BREAK.split(data))
    if not lines:
        raise ValueError("an SSE event needs at least one field")
    return ("\n".join(lines) + "\n\n").encode("utf-8")

