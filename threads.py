"""The thread and message store, and the validation of message objects.

Job: keep Langbase threads and their messages (in memory here; in a file with
``sqlite_store``), safely for many handler threads at
once, with the object shapes of the Langbase Threads API (thread object and message object,
timestamps in Unix seconds). It knows nothing about HTTP: it raises the domain errors below and
the HTTP layer maps them to statuses. It must not import ``http.server`` or any other module of
this project.
"""

from __future__ import annotations

import json
import re
import os
import threading
import time
from typing import Any, Callable, ContextManager, Dict, List, Optional, Tuple

__all__ = [
    "ROLES",
    "InvalidRequest",
    "ThreadNotFound",
    "ThreadExists",
    "StoreFull",
    "StoreBusy",
    "ThreadStore",
    "parse_messages",
    "parse_metadata",
    "check_thread_id",
    "new_uuid4",
]

ROLES = ("system", "user", "assistant", "tool")
"""Message roles the Langbase API accepts."""

THREAD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""Allowed thread ids: 1-128 characters of letters, digits and ``_ . : -``.

Covers UUIDs and ``thread_…`` ids; excludes anything that could break a header line, since the
id is echoed in the ``lb-thread-id`` response header."""


class InvalidRequest(ValueError):
    """A request field has the wrong type or value.

    Attributes:
        message: a sentence naming the field (``param``) and what is allowed.
        param: the field's path in the request body, e.g. ``"messages[1].role"``.
    """

    def __init__(self, message: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ThreadNotFound(LookupError):
    """No thread has this id. ``thread_id`` holds the id asked for."""

    def __init__(self, thread_id: str) -> None:
        super().__init__("thread %r not found" % thread_id)
        self.thread_id = thread_id


class ThreadExists(ValueError):
    """A thread with this id already exists (create with a duplicate ``threadId``)."""

    def __init__(self, thread_id: str) -> None:
        super().__init__("thread %r already exists" % thread_id)
        self.thread_id = thread_id


class StoreFull(RuntimeError):
    """A store bound (threads, or messages per thread) would be exceeded; nothing was written."""


class StoreBusy(RuntimeError):
    """The store's file stayed locked by another process for longer than its busy timeout;
    nothing was written (``sqlite_store``)."""


_RANDOM_BATCH = 16 * 256
"""Bytes ``new_uuid4`` takes from ``os.urandom`` at once: one system call per 256 ids."""
_random_pool = [b"", 0]  # [bytes from os.urandom, how many of them are handed out]
_random_lock = threading.Lock()


def _forget_random_pool() -> None:
    """In a forked child: draw fresh bytes, never the parent's (and a lock no thread holds)."""
    global _random_lock
    _random_pool[:] = [b"", 0]
    _random_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_random_pool)


def new_uuid4() -> str:
    """A random (version 4) UUID string from ``os.urandom``, like ``str(uuid.uuid4())``.
    A run makes several, and a system call each was about 6% of the server's CPU under a
    burst of new streams (py-spy), so the random bytes are drawn 256 ids at a time and
    handed out once each under a lock. Thread-safe."""
    with _random_lock:
        pool, used = _random_pool
        if used == len(pool):
            pool, used = os.urandom(_RANDOM_BATCH), 0
            _random_pool[0] = pool
        _random_pool[1] = used + 16
    b = bytearray(pool[used:used + 16])
    b[6] = b[6] & 0x0F | 0x40  # version 4
    b[8] = b[8] & 0x3F | 0x80  # RFC 4122 variant
    h = b.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def check_thread_id(value: Any, param: str = "threadId") -> str:
    """Return ``value`` if it is an acceptable thread id (see ``THREAD_ID_RE``).

    Raises:
        InvalidRequest: if it is not a string or does not match.
    """
    if not isinstance(value, str):
        raise InvalidRequest("%s must be a string" % param, param)
    if not THREAD_ID_RE.fullmatch(value):
        raise InvalidRequest(
            "%s must be 1-128 characters of letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit" % param,
            param,
        )
    return value


def parse_metadata(value: Any, param: str = "metadata") -> Dict[str, str]:
    """Validate a metadata map: an object whose values are strings (Langbase ``metadata``).

    Returns a new ``dict``. Raises ``InvalidRequest`` naming ``param`` otherwise.
    """
    if not isinstance(value, dict):
        raise InvalidRequest("%s must be an object of string values" % param, param)
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidRequest("%s.%s must be a string" % (param, key), "%s.%s" % (param, key))
    return dict(value)


def _parse_content(value: Any, param: str) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        for i, part in enumerate(value):
            where = "%s[%d]" % (param, i)
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise InvalidRequest(
                    "%s must be a content part object with a string 'type'" % where, where
                )
            if "text" in part and not isinstance(part["text"], str):
                raise InvalidRequest("%s.text must be a string" % where, where + ".text")
        return _copy_json(value)
    raise InvalidRequest(
        "%s must be a string, an array of content parts, or null" % param, param
    )


def parse_messages(
    value: Any, param: str = "messages", thread: bool = False, roles: Tuple[str, ...] = ROLES
) -> List[dict]:
    """Validate a list of Langbase message objects (``langbase-api`` Message / ThreadMessage).

    Each message: ``role`` (one of ``roles``, by default ``ROLES``; required), ``content`` (string, content-part
    array or null; required unless the message has ``tool_calls``), optional ``name`` and
    ``tool_call_id`` (strings), ``tool_calls`` (array of objects); with ``thread=True`` also
    ``attachments`` (array) and ``metadata`` (string map). Unknown keys are ignored.

    Returns new dicts holding only the known keys, with absent optional keys filled:
    ``{"role", "content", "name", "tool_call_id", "tool_calls", "attachments", "metadata"}``.

    Raises:
        InvalidRequest: naming the first bad field, e.g. ``messages[2].role``.
    """
    if not isinstance(value, list):
        raise InvalidRequest("%s must be an array of message objects" % param, param)
    out = []
    for i, msg in enumerate(value):
        where = "%s[%d]" % (param, i)
        if not isinstance(msg, dict):
            raise InvalidRequest("%s must be an object" % where, where)
        role = msg.get("role")
        if role not in roles:
            raise InvalidRequest(
                "%s.role must be one of %s" % (where, ", ".join(roles)), where + ".role"
            )
        tool_calls = msg.get("tool_calls")
        if tool_calls is not None and (
            not isinstance(tool_calls, list) or not all(isinstance(t, dict) for t in tool_calls)
        ):
            raise InvalidRequest("%s.tool_calls must be an array of objects" % where, where + ".tool_calls")
        if "content" not in msg and not tool_calls:
            raise InvalidRequest("%s.content is required" % where, where + ".content")
        content = _parse_content(msg.get("content"), where + ".content")
        for key in ("name", "tool_call_id"):
            if msg.get(key) is not None and not isinstance(msg[key], str):
                raise InvalidRequest("%s.%s must be a string" % (where, key), "%s.%s" % (where, key))
        attachments: list = []
        metadata: Dict[str, str] = {}
        if thread:
            if msg.get("attachments") is not None:
                if not isinstance(msg["attachments"], list):
                    raise InvalidRequest(
                        "%s.attachments must be an array" % where, where + ".attachments"
                    )
                attachments = _copy_json(msg["attachments"])
            if msg.get("metadata") is not None:
                metadata = parse_metadata(msg["metadata"], where + ".metadata")
        out.append(
            {
                "role": role,
                "content": content,
                "name": msg.get("name"),
                "tool_call_id": msg.get("tool_call_id"),
                "tool_calls": _copy_json(tool_calls) if tool_calls else [],
                "attachments": attachments,
                "metadata": metadata,
            }
        )
    return out


def stored_bytes(value: Any) -> int:
    """The size, in bytes, that ``value`` (JSON-shaped: a message or a metadata map) counts
    against ``--max-thread-bytes``: its compact JSON encoding in UTF-8, which is what the
    in-memory store keeps (``_Thread.log``). The bound is on what clients sent, which they can
    reason about."""
    if type(value) is dict and not value:
        return 2  # "{}": a new thread's metadata, nearly always
    return len(_encode(value))


def _encode(value: Any) -> bytes:
    """``value``'s compact JSON encoding in UTF-8 (what ``stored_bytes`` counts)."""
    return _SIZE_ENCODER.encode(value).encode("utf-8", "surrogatepass")


_SIZE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class _Thread:
    """A stored thread: ``id``, ``created_at`` (int seconds), ``metadata`` (string map),
    ``log`` (only the in-memory store keeps messages here: each message's compact UTF-8 JSON,
    as ``stored_bytes`` counts it, oldest first, separated by commas), ``count`` (messages
    stored) and ``bytes`` (metadata and messages, as ``stored_bytes`` counts them).

    One buffer per thread instead of a dict, strings and lists per message takes less than
    half the memory, and a buffer past 512 bytes comes from the C allocator, which can give
    it back to the operating system once the thread is deleted (``main.release_memory``);
    Python's small-object arenas keep their peak size while any object in them lives."""

    __slots__ = ("id", "created_at", "metadata", "log", "count", "bytes")

    def __init__(self, thread_id: str, created_at: int, metadata: Dict[str, str], count: int = 0,
                 size: Optional[int] = None) -> None:
        self.id = thread_id
        self.created_at = created_at
        self.metadata = metadata
        self.log = bytearray()
        self.count = count
        self.bytes = stored_bytes(metadata) if size is None else size

    def as_object(self) -> dict:
        return {
            "id": self.id,
            "object": "thread",
            "created_at": self.created_at,
            "metadata": dict(self.metadata),
        }


class ThreadStore:
    """Langbase threads and messages, in memory; ``sqlite_store.SqliteThreadStore`` keeps them in
    a file with exactly this behaviour (this class holds the rules, a backend the few primitive
    reads and writes it overrides).

    Thread object (Langbase Threads API): ``{"id": str, "object": "thread",
    "created_at": int seconds, "metadata": {str: str}}``. Message object: ``{"id": "msg_…",
    "created_at": int seconds, "thread_id": str, "role": str, "content": str|list|None,
    "name": str|None, "tool_call_id": str|None, "tool_calls": list, "attachments": list,
    "metadata": dict}``.

    Thread safety: every public method is one transaction (``_transaction``), so each call is
    atomic (an append of several messages is never interleaved with another append to the same
    thread); values passed in and returned are copies, so callers can never change stored data
    by accident.

    Bounds: at most ``max_threads`` threads, ``max_messages`` messages per thread and
    ``max_bytes`` bytes of messages and metadata over all threads (as ``stored_bytes`` counts
    them: compact UTF-8 JSON of what the client sent); a call that would exceed any of them
    raises ``StoreFull`` and writes nothing. Deleting a thread gives its bytes back.

    Args:
        clock: returns the current time in seconds (float); stored as ``int`` seconds.
        new_id: returns a fresh UUID string, used for thread ids and (hex, ``msg_`` prefix)
            message ids.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_uuid4,
        max_threads: int = 100_000,
        max_messages: int = 10_000,
        max_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self._clock = clock
        self._new_id = new_id
        self._max_threads = max_threads
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._threads: Dict[str, _Thread] = {}
        self._bytes = 0

    # --- primitives: what a backend overrides (caller is inside ``_transaction``) -------------

    def _transaction(self, write: bool) -> ContextManager[Any]:
        """One atomic unit of reads (and, with ``write``, writes): a context manager. In
        memory, the store's lock itself (a generator-based one cost a microsecond a call)."""
        return self._lock

    def _find(self, thread_id: str) -> Optional[_Thread]:
        return self._threads.get(thread_id)

    def _thread_count(self) -> int:
        return len(self._threads)

    def _used_bytes(self) -> int:
        return self._bytes

    def _insert_thread(self, thread: _Thread) -> None:
        self._threads[thread.id] = thread
        self._bytes += thread.bytes

    def _set_metadata(self, thread: _Thread, metadata: Dict[str, str], grow: int) -> None:
        thread.metadata = metadata
        thread.bytes += grow
        self._bytes += grow

    def _remove_thread(self, thread: _Thread) -> None:
        del self._threads[thread.id]
        self._bytes -= thread.bytes

    def _remove_all(self) -> int:
        count = len(self._threads)
        self._threads.clear()
        self._bytes = 0
        return count

    def _insert_messages(self, thread: _Thread, stored: List[dict], encoded: List[bytes], size: int) -> None:
        if encoded:
            if thread.log:
                thread.log += b","
            thread.log += b",".join(encoded)
        thread.count += len(stored)
        thread.bytes += size
        self._bytes += size

    def _messages(self, thread: _Thread) -> List[dict]:
        """Copies of the thread's stored messages, oldest first."""
        return json.loads(b"[" + thread.log + b"]")

    def _message_ids(self, thread: _Thread) -> set:
        return {m["id"] for m in self._messages(thread)}

    # --- the rules --------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of threads stored."""
        with self._transaction(False):
            return self._thread_count()

    @property
    def bytes(self) -> int:
        """Bytes of messages and metadata stored, as ``stored_bytes`` counts them."""
        with self._transaction(False):
            return self._used_bytes()

    def clear(self) -> int:
        """Forget every thread (``POST /mock/reset``); returns how many were dropped."""
        with self._transaction(True):
            return self._remove_all()

    def _now(self) -> int:
        return int(self._clock())

    def _new_thread(self, thread_id: Optional[str], metadata: Dict[str, str]) -> _Thread:
        if self._thread_count() >= self._max_threads:
            raise StoreFull(
                "the thread store is full (%d threads); delete threads or restart the server "
                "with a larger --max-threads" % self._max_threads
            )
        thread = _Thread(thread_id or self._new_id(), self._now(), dict(metadata))
        self._check_bytes(thread.bytes)
        self._insert_thread(thread)
        return thread

    def _check_bytes(self, more: int) -> None:
        used = self._used_bytes()
        if used + more > self._max_bytes:
            raise StoreFull(
                "the thread store is full (%d of %d bytes of messages and metadata in use, %d more "
                "asked); delete threads or restart the server with a larger --max-thread-bytes"
                % (used, self._max_bytes, more)
            )

    def _stored(self, thread_id: str, messages: List[dict]) -> Tuple[List[dict], List[bytes], int]:
        # The stored form of ``messages`` in thread ``thread_id``, each one's compact JSON
        # (``_encode``) and their size as ``stored_bytes`` counts it; nothing is stored yet. A
        # message may bring its own ``id`` and ``created_at``; otherwise they are made here.
        now = self._now()
        stored_list, encoded, size = [], [], 0
        for msg in messages:
            stored = {
                "id": msg.get("id") or "msg_" + self._new_id().replace("-", ""),
                "created_at": now if msg.get("created_at") is None else msg["created_at"],
                "thread_id": thread_id,
            }
            for key in _MESSAGE_KEYS[3:]:
                stored[key] = msg[key]  # kept only as the JSON below: no copy needed
            stored_list.append(stored)
            encoded.append(_encode(stored))
            size += len(encoded[-1])
        return stored_list, encoded, size

    def _check_room(self, thread: Optional[_Thread], count: int, size: int) -> None:
        # ``count`` messages more must fit in ``thread`` (None: a new one), and ``size`` bytes
        # more in the byte bound.
        have = thread.count if thread else 0
        if have + count > self._max_messages:
            raise StoreFull(
                "thread would exceed %d messages; start a new thread or restart the server "
                "with a larger --max-messages" % self._max_messages
            )
        self._check_bytes(size)

    def create(
        self,
        thread_id: Optional[str] = None,
        metadata: Optional[Dict[str, str]] = None,
        messages: Optional[List[dict]] = None,
    ) -> dict:
        """Create a thread (``POST /v1/threads``) and store ``messages`` in it.

        ``messages`` are dicts as returned by ``parse_messages``. Returns the thread object.

        Raises:
            ThreadExists: ``thread_id`` is taken.
            StoreFull: a bound would be exceeded.
        """
        with self._transaction(True):
            if thread_id is not None and self._find(thread_id) is not None:
                raise ThreadExists(thread_id)
            thread_id = thread_id or self._new_id()
            stored, encoded, size = self._stored(thread_id, messages or [])
            self._check_room(None, len(stored), size + stored_bytes(metadata or {}))
            thread = self._new_thread(thread_id, metadata or {})
            self._insert_messages(thread, stored, encoded, size)
            return thread.as_object()

    def get(self, thread_id: str) -> dict:
        """Return the thread object. Raises ``ThreadNotFound``."""
        with self._transaction(False):
            return self._get(thread_id).as_object()

    def _get(self, thread_id: str) -> _Thread:
        thread = self._find(thread_id)
        if thread is None:
            raise ThreadNotFound(thread_id)
        return thread

    def update(self, thread_id: str, metadata: Dict[str, str]) -> dict:
        """Merge ``metadata`` into the thread's (keys added or overwritten, others kept).

        Returns the updated thread object. Raises ``ThreadNotFound``, or ``StoreFull`` (nothing
        changed) when the larger map would pass the byte bound.
        """
        with self._transaction(True):
            thread = self._get(thread_id)
            merged = dict(thread.metadata, **metadata)
            grow = stored_bytes(merged) - stored_bytes(thread.metadata)
            self._check_bytes(grow)
            self._set_metadata(thread, merged, grow)
            return thread.as_object()

    def delete(self, thread_id: str) -> None:
        """Delete the thread and its messages. Raises ``ThreadNotFound``."""
        with self._transaction(True):
            self._remove_thread(self._get(thread_id))

    def append(self, thread_id: str, messages: List[dict]) -> List[dict]:
        """Append ``messages`` (from ``parse_messages``) to an existing thread, in order.

        Returns the created message objects. Raises ``ThreadNotFound`` or ``StoreFull``.
        """
        with self._transaction(True):
            thread = self._get(thread_id)
            stored, encoded, size = self._stored(thread.id, messages)
            self._check_room(thread, len(stored), size)
            self._insert_messages(thread, stored, encoded, size)
            return _copy_json(stored)

    def list_messages(self, thread_id: str) -> List[dict]:
        """Return the thread's message objects, oldest first. Raises ``ThreadNotFound``."""
        with self._transaction(False):
            return self._messages(self._get(thread_id))

    def record_run(
        self, thread_id: Optional[str], messages: List[dict], create_missing: bool,
        reserve: int = 0, skip_known_ids: bool = False,
    ) -> str:
        """Store a pipe run's messages (request messages, then the reply) in one atomic step.

        ``thread_id`` ``None`` creates a new thread with a fresh id; an unknown id is created
        under that id when ``create_missing`` is true. ``reserve`` is how many more messages
        must still fit afterwards (a reply stored later). With ``skip_known_ids``, a message
        whose ``id`` the thread (or an earlier message of the call) already has is not stored
        again, so re-sent history is idempotent. Returns the thread id.

        Raises:
            ThreadNotFound: the id is unknown and ``create_missing`` is false.
            StoreFull: a bound would be exceeded; nothing is stored.
        """
        with self._transaction(True):
            thread = self._find(thread_id) if thread_id is not None else None
            if thread is None and thread_id is not None and not create_missing:
                raise ThreadNotFound(thread_id)
            if skip_known_ids:
                messages = self._unknown(thread, messages)
            new_id = thread.id if thread is not None else thread_id or self._new_id()
            stored, encoded, size = self._stored(new_id, messages)
            self._check_room(thread, len(stored) + reserve, size + (0 if thread else stored_bytes({})))
            if thread is None:
                thread = self._new_thread(new_id, {})
            self._insert_messages(thread, stored, encoded, size)
            return thread.id

    def append_new(self, thread_id: str, messages: List[dict]) -> int:
        """Append those of ``messages`` whose ``id`` the thread does not have yet (messages
        without an id always), in order. Returns how many were stored.

        Raises ``ThreadNotFound`` or ``StoreFull`` (nothing stored)."""
        with self._transaction(True):
            thread = self._get(thread_id)
            messages = self._unknown(thread, messages)
            stored, encoded, size = self._stored(thread.id, messages)
            self._check_room(thread, len(stored), size)
            self._insert_messages(thread, stored, encoded, size)
            return len(stored)

    def _unknown(self, thread: Optional[_Thread], messages: List[dict]) -> List[dict]:
        # The messages whose id is new to the thread and to the list.
        seen = self._message_ids(thread) if thread else set()
        out = []
        for msg in messages:
            if msg.get("id") is None or msg["id"] not in seen:
                out.append(msg)
                if msg.get("id") is not None:
                    seen.add(msg["id"])
        return out


_MESSAGE_KEYS = (
    "id",
    "created_at",
    "thread_id",
    "role",
    "content",
    "name",
    "tool_call_id",
    "tool_calls",
    "attachments",
    "metadata",
)


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars); several times faster than
    ``copy.deepcopy``, which the store would otherwise pay on every message."""
    if type(value) is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    if type(value) is list:
        return [_copy_json(v) for v in value]
    return value
