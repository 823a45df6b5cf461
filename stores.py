"""Bounded in-memory stores for what the Langbase API keeps besides threads: pipes and
workflow traces.

Job: hold pipe configurations by name (``PipeStore``: ``POST /v1/pipes``, ``GET /v1/pipes``,
``POST /v1/pipes/{name}``, and the pipe a ``POST /v1/pipes/run`` names) and the last workflow
traces the JS SDK posts (``TraceLog``: ``POST /v1/traces``, read back at ``GET /mock/traces``).
It has its own room because ``pipes`` is the sans-I/O run engine (it turns one request into one
reply and keeps nothing) and ``threads`` holds conversations; a pipe's configuration outlives
its runs, and its validation (the SDK's ``PipeCreateOptions`` fields) is a rule of its own.
``main.Server`` attaches one of each to its ``api.App`` as ``app.pipes`` and ``app.traces``.

Shapes follow the official SDKs' types (npm ``langbase`` 1.2.4 ``PipeCreateOptions``,
``PipeCreateResponse``, ``PipeListResponse``; PyPI ``langbase`` 0.0.5 ``types.py``) and the
defaults of Langbase's "Pipe: Create" API reference. Standard library only; no I/O.
"""

from __future__ import annotations

import collections
import json
import re
import sys
import threading
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import pipes
from sse import dumps_compact
from threads import InvalidRequest, StoreFull

__all__ = ["Pipe", "PipeExists", "PipeNotFound", "PipeStore", "check_model", "check_pipe_name", "parse_pipe_fields",
           "TraceLog"]

OWNER_LOGIN = "mock-user"
"""The ``owner_login`` of every pipe: the mock has one user."""

PIPE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RESERVED_NAMES = ("run",)
"""Pipe names that a path would not reach: ``POST /v1/pipes/run`` runs a pipe."""

PIPE_DEFAULTS: Dict[str, Any] = {
    "description": "", "status": "public", "model": "openai:gpt-4o-mini", "stream": True,
    "json": False, "store": True, "moderate": False, "top_p": 1, "max_tokens": 1000,
    "temperature": 0.7, "presence_penalty": 0, "frequency_penalty": 0, "stop": [],
    "tool_choice": "auto", "parallel_tool_calls": True, "messages": [], "variables": [],
    "tools": [], "memory": [],
}
"""Every configuration field of a pipe (``PipeListResponse`` order) with the value a create
without it gets (Langbase "Pipe: Create" defaults)."""

_BOOLEANS = ("stream", "json", "store", "moderate", "parallel_tool_calls")
_NUMBERS = ("top_p", "temperature", "presence_penalty", "frequency_penalty")


class PipeExists(ValueError):
    """A create without ``upsert`` named a pipe that exists (409). ``name`` is that name."""

    def __init__(self, name: str) -> None:
        super().__init__("A pipe named %r already exists; send \"upsert\": true to update it." % name)
        self.name = name


class PipeNotFound(LookupError):
    """No pipe has that name (404). ``name`` is the name asked for."""

    def __init__(self, name: str) -> None:
        super().__init__("No pipe named %r; create it with POST /v1/pipes." % name)
        self.name = name


class Pipe(NamedTuple):
    """A stored pipe: ``config`` (dict: ``name`` and every ``PIPE_DEFAULTS`` field, JSON-ready,
    as ``GET /v1/pipes`` lists it; ``response_format`` too when one was set), ``api_key``
    (``pipe_`` and 32 hex digits, issued by the mock), ``listing_text`` (``listing()`` as
    compact JSON, kept so that ``GET /v1/pipes`` joins texts instead of encoding every pipe) and
    ``size`` (``held_estimate`` of the config plus the listing text: what the store's byte
    bound counts)."""

    config: dict
    api_key: str
    listing_text: str
    size: int

    def summary(self) -> dict:
        """The create/update answer (``PipeCreateResponse``): ``{name, description, status,
        owner_login, url, type, api_key}``; ``type`` is always ``"chat"``."""
        c = self.config
        return {"name": c["name"], "description": c["description"], "status": c["status"],
                "owner_login": OWNER_LOGIN, "url": pipe_url(c["name"]), "type": "chat",
                "api_key": self.api_key}

    def prompt(self) -> Tuple[List[dict], Dict[str, str]]:
        """The pipe's ``messages`` (as ``threads.parse_messages`` returns them) and its
        ``variables`` (``{name: value}``), parsed as a run's are."""
        run = pipes.parse_run_request({"messages": self.config["messages"], "variables": self.config["variables"]})
        return run.messages, run.variables

    def listing(self) -> dict:
        """The ``GET /v1/pipes`` item (``PipeListResponse``): ``name``, ``description``,
        ``status``, ``owner_login``, ``url``, then the configuration fields."""
        c = self.config
        out = {"name": c["name"], "description": c["description"], "status": c["status"],
               "owner_login": OWNER_LOGIN, "url": pipe_url(c["name"])}
        out.update((k, c[k]) for k in PIPE_DEFAULTS if k not in out)
        if "response_format" in c:
            out["response_format"] = c["response_format"]
        return out


def held_estimate(text: str) -> int:
    """An estimate of the bytes of process memory the parsed form of the compact JSON ``text``
    occupies, computed from the text at C speed instead of walking the objects: the text's own
    size (``sys.getsizeof``: its strings and numbers) plus 64 bytes per value, key or container
    (counted as the ``,``, ``:``, ``[`` and ``{`` characters; those inside strings make it an
    overestimate). Measured: an array of 100,000 empty arrays (300 KB of JSON) occupies about
    6.4 MB and is estimated at 13 MB; configurations made mostly of text, about their size."""
    return sys.getsizeof(text) + 64 * (text.count(",") + text.count(":") + text.count("[") + text.count("{"))


def pipe_url(name: str) -> str:
    """The pipe's page in Langbase's format, ``https://langbase.com/<owner_login>/<name>``."""
    return "https://langbase.com/%s/%s" % (OWNER_LOGIN, name)


def check_pipe_name(value: Any, param: str = "name") -> str:
    """A pipe name: 1 to 128 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or
    digit, and not ``run``. Raises ``InvalidRequest`` otherwise."""
    if not isinstance(value, str) or not PIPE_NAME_RE.fullmatch(value):
        raise InvalidRequest("%s must be a pipe name: 1 to 128 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit" % param, param)
    if value in RESERVED_NAMES:
        raise InvalidRequest("%s %r is reserved: POST /v1/pipes/run runs a pipe" % (param, value), param)
    return value


MAX_MODEL_CHARS = 256
"""Longest ``model`` accepted: it is repeated in every chunk of a stream."""


def check_model(value: Any, param: str = "model") -> str:
    """A ``model`` (``"provider:model-id"``, as the SDKs send it; not checked further): a
    non-empty string of at most ``MAX_MODEL_CHARS`` characters. Raises ``InvalidRequest``."""
    if not isinstance(value, str) or not value or len(value) > MAX_MODEL_CHARS:
        raise InvalidRequest("%s must be a non-empty string \"provider:model-id\" of at most %d characters"
                             % (param, MAX_MODEL_CHARS), param)
    return value


def _message_out(message: dict) -> dict:
    """A parsed message as the SDK's ``Message``: ``role`` and ``content``, plus ``name``,
    ``tool_call_id`` and ``tool_calls`` when set."""
    out = {"role": message["role"], "content": message["content"]}
    for key in ("name", "tool_call_id", "tool_calls"):
        if message[key]:
            out[key] = message[key]
    return out


def parse_pipe_fields(body: dict, current: Optional[dict] = None) -> Dict[str, Any]:
    """Validate the configuration fields present in a create or update body (any
    ``PIPE_DEFAULTS`` key, and ``response_format``); absent and null fields are left out, other
    keys ignored. Returns the fields as stored: ``messages`` as SDK ``Message`` objects,
    ``variables`` as ``[{name, value}]`` (an object of strings is accepted too). A
    ``tool_choice`` naming a function must name one of the ``tools``: the body's, else those of
    ``current`` (the pipe's configuration before this update, if any), whose ``tool_choice``
    is checked against new ``tools`` in the same way.

    Raises:
        InvalidRequest: naming the first bad field.
    """
    out: Dict[str, Any] = {}
    if body.get("description") is not None:
        if not isinstance(body["description"], str):
            raise InvalidRequest("description must be a string", "description")
        out["description"] = body["description"]
    if body.get("model") is not None:
        out["model"] = check_model(body["model"])
    if body.get("status") is not None:
        if body["status"] not in ("public", "private"):
            raise InvalidRequest("status must be \"public\" or \"private\"", "status")
        out["status"] = body["status"]
    for key in _BOOLEANS:
        if body.get(key) is not None:
            if not isinstance(body[key], bool):
                raise InvalidRequest("%s must be a boolean" % key, key)
            out[key] = body[key]
    for key in _NUMBERS + ("max_tokens",):
        value = body.get(key)
        if value is not None:
            integral = key == "max_tokens"
            if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
                raise InvalidRequest("%s must be %s" % (key, "an integer" if integral else "a number"), key)
            out[key] = value
    if body.get("stop") is not None:
        stop = body["stop"]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidRequest("stop must be an array of strings", "stop")
        out["stop"] = list(stop)
    if body.get("memory") is not None:
        memory = body["memory"]
        if not isinstance(memory, list) or not all(
                isinstance(m, dict) and isinstance(m.get("name"), str) for m in memory):
            raise InvalidRequest("memory must be an array of {\"name\": string} objects", "memory")
        out["memory"] = [{"name": m["name"]} for m in memory]
    if body.get("response_format") is not None:
        if not isinstance(body["response_format"], dict):
            raise InvalidRequest("response_format must be an object", "response_format")
        out["response_format"] = json.loads(json.dumps(body["response_format"]))
    # messages, variables, tools and tool_choice are validated as a run validates them.
    run = pipes.parse_run_request({
        "messages": [] if body.get("messages") is None else body["messages"],
        "variables": body.get("variables"),
        "tools": body["tools"] if body.get("tools") is not None else (current or {}).get("tools"),
        "tool_choice": body["tool_choice"] if body.get("tool_choice") is not None
        else (current or {}).get("tool_choice"),
    })
    if body.get("messages") is not None:
        out["messages"] = [_message_out(m) for m in run.messages]
    if body.get("variables") is not None:
        out["variables"] = [{"name": k, "value": v} for k, v in run.variables.items()]
    if body.get("tools") is not None:
        out["tools"] = run.tools
    if body.get("tool_choice") is not None:
        out["tool_choice"] = json.loads(json.dumps(body["tool_choice"]))
    return out


class PipeStore:
    """Pipes by name, in memory, bounded: at most ``max_pipes`` pipes occupying at most
    ``max_bytes`` bytes of memory, estimated (each ``Pipe.size``: the parsed configuration by
    ``held_estimate`` and the kept listing text). Thread-safe: each method takes one lock.
    ``new_key()`` issues each new pipe's ``api_key``."""

    def __init__(self, new_key: Callable[[], str], max_pipes: int = 1000,
                 max_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_pipes = max_pipes
        self.max_bytes = max_bytes
        self.bytes = 0
        self._new_key = new_key
        self._pipes: Dict[str, Pipe] = {}
        self._by_key: Dict[str, str] = {}  # api_key -> name
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pipes)

    def clear(self) -> int:
        """Forget every pipe (``POST /mock/reset``); returns how many were dropped."""
        with self._lock:
            count = len(self._pipes)
            self._pipes.clear()
            self._by_key.clear()
            self.bytes = 0
            return count

    def _check_room(self, added_pipes: int, added_bytes: int) -> None:
        """Raise ``StoreFull`` if adding would pass a bound (call with the lock held)."""
        if len(self._pipes) + added_pipes > self.max_pipes:
            raise StoreFull("The pipe store is full: %d pipes, the limit (--max-pipes)." % self.max_pipes)
        if self.bytes + added_bytes > self.max_bytes:
            raise StoreFull("The pipe store is full: this pipe's estimated %d bytes of memory would pass "
                            "the limit of %d bytes (--max-pipe-bytes)." % (max(added_bytes, 0), self.max_bytes))

    def _put(self, old: Optional[Pipe], config: dict, api_key: str) -> Pipe:
        """Store ``config`` in place of ``old`` (None: a new pipe) after the bound checks
        (call with the lock held)."""
        listing_text = dumps_compact(Pipe(config, api_key, "", 0).listing())
        size = held_estimate(listing_text) + sys.getsizeof(listing_text)
        self._check_room(0 if old else 1, size - (old.size if old else 0))
        if old is not None:
            del self._pipes[old.config["name"]]
            self.bytes -= old.size
        pipe = Pipe(config, api_key, listing_text, size)
        self._pipes[config["name"]] = pipe
        self._by_key[api_key] = config["name"]
        self.bytes += size
        return pipe

    def create(self, name: str, fields: Dict[str, Any], upsert: bool = False) -> Pipe:
        """Create pipe ``name`` with ``fields`` (``parse_pipe_fields``) over ``PIPE_DEFAULTS``;
        with ``upsert`` an existing pipe is updated instead (its other fields and key kept).

        Raises ``PipeExists`` (exists, no ``upsert``) or ``StoreFull``, with nothing stored."""
        with self._lock:
            old = self._pipes.get(name)
            if old is not None:
                if not upsert:
                    raise PipeExists(name)
                return self._put(old, dict(old.config, **fields), old.api_key)
            config = dict({"name": name}, **json.loads(json.dumps(PIPE_DEFAULTS)))
            config.update(fields)
            return self._put(None, config, self._new_key())

    def update(self, name: str, fields: Dict[str, Any], new_name: Optional[str] = None) -> Pipe:
        """Set ``fields`` on pipe ``name``, renaming it to ``new_name`` when given and different.

        Raises ``PipeNotFound``, ``PipeExists`` (``new_name`` is taken) or ``StoreFull``, with
        nothing changed."""
        with self._lock:
            old = self._pipes.get(name)
            if old is None:
                raise PipeNotFound(name)
            config = dict(old.config, **fields)
            if new_name is not None and new_name != name:
                if new_name in self._pipes:
                    raise PipeExists(new_name)
                config["name"] = new_name
            return self._put(old, config, old.api_key)

    def get(self, name: str) -> Optional[Pipe]:
        """The pipe named ``name``, or None."""
        with self._lock:
            return self._pipes.get(name)

    def by_key(self, api_key: str) -> Optional[Pipe]:
        """The pipe whose ``api_key`` is ``api_key``, or None."""
        with self._lock:
            name = self._by_key.get(api_key)
            return self._pipes.get(name) if name is not None else None

    def list(self) -> List[Pipe]:
        """Every pipe, oldest first (a renamed or upserted pipe counts as new)."""
        with self._lock:
            return list(self._pipes.values())

    def listing_json(self) -> str:
        """``[pipe.listing(), ...]`` of ``list()`` as compact JSON text, joined from the kept
        listing texts (a few milliseconds for a full store)."""
        with self._lock:
            return "[%s]" % ",".join(pipe.listing_text for pipe in self._pipes.values())


class TraceLog:
    """The last workflow traces posted to ``POST /v1/traces``, newest kept: at most ``limit``
    traces occupying at most ``max_bytes`` bytes; older ones are dropped first. Each trace is
    kept as its compact JSON text, not as parsed objects (a parsed 1 MB trace of nested empty
    arrays occupies ~20 times its text), and ``bytes`` counts ``sys.getsizeof`` of those texts:
    the memory they occupy. Thread-safe. An entry is ``{"id": str, "received_at": int Unix
    seconds, "trace": the posted JSON object}``."""

    def __init__(self, limit: int = 100, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: "collections.deque[Tuple[str, int]]" = collections.deque()
        self._lock = threading.Lock()

    def add(self, entry: dict) -> None:
        """Keep ``entry`` as JSON text, dropping the oldest past a bound (a trace larger than
        ``max_bytes`` is still kept, alone)."""
        text = dumps_compact(entry)
        size = sys.getsizeof(text)
        with self._lock:
            self._entries.append((text, size))
            self.bytes += size
            while len(self._entries) > self.limit or (self.bytes > self.max_bytes and len(self._entries) > 1):
                self.bytes -= self._entries.popleft()[1]

    def recent_json(self) -> str:
        """``{"traces": [entry, ...]}`` as compact JSON text, newest first, joined from the kept
        texts without parsing them (milliseconds for 16 MiB)."""
        with self._lock:
            texts = [text for text, _ in reversed(self._entries)]
        return '{"traces":[%s]}' % ",".join(texts)

    def clear(self) -> int:
        """Forget every trace (``POST /mock/reset``); returns how many were dropped."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self.bytes = 0
            return count
