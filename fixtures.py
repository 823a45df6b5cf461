"""Fixtures: scripted replies, each chosen by match rules over the request.

Job (sans-I/O apart from reading fixture files when asked): parse and validate fixture files
(JSON, so no dependency), report a bad one with its file, line and column, keep the current
set (files plus fixtures pushed over HTTP) and decide which fixture answers a run. It has its
own room because the format and its matching rules are a contract with users' test suites,
shared by every route and wire format: ``runs.prepare`` asks ``FixtureSet.match`` before any
reply is chosen, so a fixture answers ``/v1/pipes/run``, ``/v1/agent/run``,
``/v1/chat/completions`` and every frontend route alike.

File format: a JSON array of fixtures, or an object ``{"fixtures": [...]}``. A fixture is
``{"name": str?, "match": {...}?, "response": {...}}``; every rule in ``match`` must hold
(none: it matches every run), and the first fixture that matches wins, pushed fixtures first
(in push order), then files in order (a directory's ``*.json`` files by name).

Match rules: ``user`` / ``user_contains`` / ``user_regex`` (the last ``user`` message's text:
equals / contains / ``re.search``), ``system`` / ``system_contains`` / ``system_regex`` (the
``system`` messages' texts joined by newlines), ``wire`` (a name or list of ``WIRES``),
``route`` (the request path, or a list), ``pipe`` (the pipe ``name`` a run names), ``model``
(the run's model: an agent's ``model``, a pipe's, an OpenAI request's), ``variables``
(``{name: value}``, each must equal), ``tools`` (bool: tools were offered), ``tool_result``
(bool: the last message is a ``tool`` result), ``turn`` (int: this is the n-th ``user``
message of the conversation, the stored thread's included) and ``nth`` (int: the n-th run,
since the set was loaded or reset, for which every other rule of this fixture held; for
sequences).

Response: at most one of ``text`` (``{{name}}`` filled from the variables), ``chunks`` (the
exact pieces to stream, optionally with ``delays``: seconds before each, which then pace the
stream instead of the scenario's ``ttft``/``delay``), ``tool_calls`` (``[{"name", "arguments": object or JSON text,
"id"?}]``) or ``error`` (``{"status": 400-599, "code"?, "message"?}``), plus ``mock`` (scenario
settings, as the body's ``mock`` object: ``{"line_ending": "crlf", "fault": "disconnect"}``).
A response with only ``mock`` shapes the built-in reply (``{"mock": {"reply_mode": "echo"}}``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import pipes
import scenario
from threads import InvalidRequest

__all__ = [
    "WIRES", "MAX_PUSHED", "FixtureError", "Facts", "Fixture", "FixtureSet", "parse_text",
    "load_path", "locate", "last_user_text", "lorem",
]

log = logging.getLogger(__name__)

WIRES = ("langbase", "agent", "openai", "lobe", "lifecycle", "eventsource", "tokens")
"""The wire formats a ``wire`` rule names: ``/v1/pipes/run``, ``/v1/agent/run``,
``/v1/chat/completions``, ``/api/chat``, ``/api/stream``, the ``EventSource`` routes and the
token-stream routes."""

MAX_PUSHED = 1000
"""Most fixtures pushed over HTTP kept at once."""
MAX_PUSHED_BYTES = 16 * 1024 * 1024
"""Most bytes of pushed fixture documents kept at once."""
MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest fixture file read."""

_MATCH_KEYS = ("user", "user_contains", "user_regex", "system", "system_contains", "system_regex",
               "wire", "route", "pipe", "model", "variables", "tools", "tool_result", "turn", "nth")
_RESPONSE_KEYS = ("text", "chunks", "delays", "tool_calls", "error", "mock")
MAX_DELAY_SECONDS = 60.0
"""Longest wait ``delays`` may give before one chunk."""
_CODE_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_WS_RE = re.compile(r"[ \t\n\r]*")
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|(NaN|-?Infinity|-?[0-9][0-9.eE+-]*)')
_INT_RE = re.compile(r"-?[0-9]+")

LOREM_WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco "
    "laboris nisi ut aliquip ex ea commodo consequat").split()


class FixtureError(ValueError):
    """A fixture file (or pushed body) that cannot be used: ``source`` (file name or
    ``"request body"``), ``line`` and ``column`` (1-based, where the problem is), ``where``
    (the JSON path, such as ``fixtures[1].match.user_regex``, or ``""``) and ``reason``.
    ``str()`` is ``source:line:column: where: reason``."""

    def __init__(self, source: str, line: int, column: int, where: str, reason: str) -> None:
        self.source, self.line, self.column, self.where, self.reason = source, line, column, where, reason
        super().__init__("%s:%d:%d: %s%s" % (source, line, column, where + ": " if where else "", reason))


class _Invalid(Exception):
    def __init__(self, path: Tuple[Any, ...], reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = path, reason


class Facts(NamedTuple):
    """What a rule may look at besides the run request: ``wire`` (one of ``WIRES``), ``route``
    (the request path), ``model`` (str), ``pipe`` (the pipe name, or None) and ``turn`` (a
    callable returning the 1-based index of the last ``user`` message in the conversation,
    called only when a rule needs it)."""

    wire: str
    route: str
    model: str
    pipe: Optional[str]
    turn: Callable[[], int]


class Fixture(NamedTuple):
    """One validated fixture: ``name`` (str), ``source`` (``file:line:column`` of its object, or
    ``pushed``), ``match`` and ``response`` (the JSON objects as written), ``rules`` (compiled:
    ``[(rule, value)]``), ``nth`` (int or None), ``layer`` (its ``mock`` scenario layer, a
    dict), ``text``, ``chunks`` (tuple or None), ``calls`` (``((id or None, name, arguments
    JSON text), ...)``), ``error`` (``(status, code, message)`` or None) and ``delays``
    (seconds before each of ``chunks``, a tuple, or None)."""

    name: str
    source: str
    match: dict
    response: dict
    rules: Tuple[Tuple[str, Any], ...]
    nth: Optional[int]
    layer: Dict[str, Any]
    text: Optional[str]
    chunks: Optional[Tuple[str, ...]]
    calls: Tuple[Tuple[Optional[str], str, str], ...]
    error: Optional[Tuple[int, str, str]]
    delays: Optional[Tuple[float, ...]] = None

    def waits(self) -> Optional[Tuple[float, ...]]:
        """Seconds to wait before each chat event of the reply (``Start``, each chunk,
        ``Finish``) when the fixture gives ``delays``, else None (the scenario paces it)."""
        if self.delays is None:
            return None
        return (0.0,) + self.delays + (0.0,)

    @property
    def scripted(self) -> bool:
        """True when the fixture gives the reply itself (not only scenario settings)."""
        return self.text is not None or self.chunks is not None or bool(self.calls)

    def summary(self, matched: int) -> dict:
        """``{"name", "source", "matched", "match", "response"}`` for ``GET /mock/fixtures``."""
        return {"name": self.name, "source": self.source, "matched": matched,
                "match": self.match, "response": self.response}


# --- positions ------------------------------------------------------------------------------


def locate(text: str, path: Sequence[Any]) -> int:
    """The offset in JSON ``text`` of what ``path`` names (object keys and array indexes from
    the top): the key itself for an object member, the value for an array item. Stops at the
    deepest point it can reach. Uses ``json.JSONDecoder.raw_decode`` to step over values."""
    decoder = json.JSONDecoder()
    pos = _WS_RE.match(text, 0).end()
    for depth, step in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(step, str) and text.startswith("{", pos):
            pos = _WS_RE.match(text, pos + 1).end()
            while text.startswith('"', pos):
                key, end = decoder.raw_decode(text, pos)
                value_pos = _WS_RE.match(text, _WS_RE.match(text, end).end() + 1).end()
                if key == step:
                    if last:
                        return pos
                    pos = value_pos
                    break
                _, end = decoder.raw_decode(text, value_pos)
                pos = _WS_RE.match(text, end).end()
                if text.startswith(",", pos):
                    pos = _WS_RE.match(text, pos + 1).end()
            else:
                return pos
        elif isinstance(step, int) and text.startswith("[", pos):
            pos = _WS_RE.match(text, pos + 1).end()
            for _ in range(step):
                _, end = decoder.raw_decode(text, pos)
                pos = _WS_RE.match(text, end).end()
                if not text.startswith(",", pos):
                    return pos
                pos = _WS_RE.match(text, pos + 1).end()
        else:
            return pos
    return pos


def _not_json(token: str) -> Any:
    raise ValueError(token)


def _finite_float(token: str) -> float:
    value = float(token)
    if value in (float("inf"), float("-inf")):
        raise ValueError(token)
    return value


def _bad_number(text: str) -> Tuple[str, int]:
    """Why the first number token of JSON ``text`` that ``json`` reads but cannot use is
    refused (``NaN``, ``Infinity`` and floats that overflow, which no JSON answer can carry;
    an integer past ``int``'s digit limit), with its offset; ``("", 0)`` when there is none."""
    for found in _TOKEN_RE.finditer(text):
        token = found.group(1)
        if token is None:
            continue
        if token in ("NaN", "Infinity", "-Infinity"):
            return "%s is not JSON" % token, found.start(1)
        try:
            number = int(token) if _INT_RE.fullmatch(token) else float(token)
        except ValueError:
            return "an integer of %d digits is too long" % len(token.lstrip("-")), found.start(1)
        if number in (float("inf"), float("-inf")):
            return "%s is too large for a JSON number" % token[:40], found.start(1)
    return "", 0


def _line_column(text: str, offset: int) -> Tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


def _where(path: Sequence[Any]) -> str:
    out = ""
    for step in path:
        out += "[%d]" % step if isinstance(step, int) else ("." if out else "") + step
    return out


# --- validation -----------------------------------------------------------------------------


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _expect(value: Any, types: Any, path: Tuple[Any, ...], what: str) -> Any:
    if not isinstance(value, types) or (isinstance(value, bool) and types in (int, (int, float))):
        raise _Invalid(path, "must be %s, not %s" % (what, _kind(value)))
    return value


def _names(value: Any, path: Tuple[Any, ...], allowed: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        where = path + (i,) if isinstance(value, list) else path
        _expect(item, str, where, "a string or an array of strings")
        if allowed is not None and item not in allowed:
            raise _Invalid(where, "%r is not one of %s" % (item, ", ".join(allowed)))
    return tuple(items)


def _rules(match: dict, path: Tuple[Any, ...]) -> Tuple[Tuple[Tuple[str, Any], ...], Optional[int]]:
    rules: List[Tuple[str, Any]] = []
    nth = None
    for key, value in match.items():
        here = path + (key,)
        if key not in _MATCH_KEYS:
            raise _Invalid(here, "unknown match rule %r; rules: %s" % (key, ", ".join(_MATCH_KEYS)))
        if key in ("user", "user_contains", "system", "system_contains", "pipe", "model"):
            rules.append((key, _expect(value, str, here, "a string")))
        elif key in ("user_regex", "system_regex"):
            try:
                rules.append((key, re.compile(_expect(value, str, here, "a string (a regular expression)"))))
            except re.error as exc:
                raise _Invalid(here, "is not a valid regular expression: %s" % exc) from None
        elif key == "wire":
            rules.append((key, _names(value, here, WIRES)))
        elif key == "route":
            rules.append((key, _names(value, here)))
        elif key == "variables":
            _expect(value, dict, here, "an object of strings")
            for name, item in value.items():
                _expect(item, str, here + (name,), "a string")
            rules.append((key, dict(value)))
        elif key in ("tools", "tool_result"):
            rules.append((key, _expect(value, bool, here, "true or false")))
        else:  # turn, nth
            number = _expect(value, int, here, "a whole number from 1")
            if number < 1:
                raise _Invalid(here, "must be a whole number from 1, not %d" % number)
            if key == "nth":
                nth = number
            else:
                rules.append((key, number))
    return tuple(rules), nth


def _tool_calls(value: Any, path: Tuple[Any, ...]) -> Tuple[Tuple[Optional[str], str, str], ...]:
    _expect(value, list, path, "a non-empty array of {\"name\", \"arguments\"} objects")
    if not value:
        raise _Invalid(path, "must not be empty")
    calls = []
    for i, call in enumerate(value):
        here = path + (i,)
        _expect(call, dict, here, "an object {\"name\", \"arguments\", \"id\"?}")
        for key in call:
            if key not in ("name", "arguments", "id"):
                raise _Invalid(here + (key,), "unknown tool call field %r; fields: name, arguments, id" % key)
        if "name" not in call:
            raise _Invalid(here, "name is required")
        name = _expect(call["name"], str, here + ("name",), "a string")
        if not name:
            raise _Invalid(here + ("name",), "must not be empty")
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                json.loads(arguments)
            except ValueError as exc:
                raise _Invalid(here + ("arguments",), "is a string, so it must be JSON text: %s" % exc) from None
        else:
            arguments = pipes.dumps_compact(_expect(arguments, dict, here + ("arguments",),
                                                    "an object or its JSON text"))
        call_id = call.get("id")
        if call_id is not None:
            _expect(call_id, str, here + ("id",), "a string")
        calls.append((call_id, name, arguments))
    return tuple(calls)


def _error(value: Any, path: Tuple[Any, ...]) -> Tuple[int, str, str]:
    _expect(value, dict, path, "an object {\"status\", \"code\"?, \"message\"?}")
    for key in value:
        if key not in ("status", "code", "message"):
            raise _Invalid(path + (key,), "unknown error field %r; fields: status, code, message" % key)
    status = _expect(value.get("status"), int, path + ("status",), "a whole number from 400 to 599")
    if not 400 <= status <= 599:
        raise _Invalid(path + ("status",), "must be from 400 to 599, not %d" % status)
    code = value.get("code", scenario.ERROR_CODES.get(status, "INTERNAL_SERVER_ERROR" if status >= 500
                                                      else "BAD_REQUEST"))
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise _Invalid(path + ("code",), "must be an upper-case code such as RATE_LIMITED")
    message = _expect(value.get("message", "Fixture error: HTTP %d." % status), str, path + ("message",), "a string")
    return status, code, message


def _fixture(item: Any, path: Tuple[Any, ...], default_name: str, source: str) -> Fixture:
    _expect(item, dict, path, "an object {\"name\"?, \"match\"?, \"response\"}")
    for key in item:
        if key not in ("name", "match", "response"):
            raise _Invalid(path + (key,), "unknown fixture field %r; fields: name, match, response" % key)
    name = _expect(item.get("name", default_name), str, path + ("name",), "a string")
    match = _expect(item.get("match", {}), dict, path + ("match",), "an object of match rules")
    rules, nth = _rules(match, path + ("match",))
    if "response" not in item:
        raise _Invalid(path, "response is required")
    here = path + ("response",)
    response = _expect(item["response"], dict, here, "an object")
    for key in response:
        if key not in _RESPONSE_KEYS:
            raise _Invalid(here + (key,), "unknown response field %r; fields: %s" % (key, ", ".join(_RESPONSE_KEYS)))
    given = [key for key in ("text", "chunks", "tool_calls", "error") if key in response]
    if len(given) > 1:
        raise _Invalid(here + (given[1],), "a response has at most one of text, chunks, tool_calls, error")
    if not given and "mock" not in response:
        raise _Invalid(here, "a response needs text, chunks, tool_calls, error or mock")
    text = chunks = error = None
    calls: Tuple[Tuple[Optional[str], str, str], ...] = ()
    if "text" in response:
        text = _expect(response["text"], str, here + ("text",), "a string")
    if "chunks" in response:
        _expect(response["chunks"], list, here + ("chunks",), "an array of strings")
        for i, piece in enumerate(response["chunks"]):
            if not _expect(piece, str, here + ("chunks", i), "a non-empty string"):
                raise _Invalid(here + ("chunks", i), "must not be empty")
        chunks = tuple(response["chunks"])
    if "tool_calls" in response:
        calls = _tool_calls(response["tool_calls"], here + ("tool_calls",))
    if "error" in response:
        error = _error(response["error"], here + ("error",))
    delays = None
    if "delays" in response:
        where = here + ("delays",)
        if chunks is None:
            raise _Invalid(where, "delays go with chunks: one wait (seconds) before each chunk")
        _expect(response["delays"], list, where, "an array of numbers (seconds)")
        if len(response["delays"]) != len(chunks):
            raise _Invalid(where, "has %d waits for %d chunks; give one per chunk"
                           % (len(response["delays"]), len(chunks)))
        for i, wait in enumerate(response["delays"]):
            if not 0 <= _expect(wait, (int, float), where + (i,), "a number of seconds") <= MAX_DELAY_SECONDS:
                raise _Invalid(where + (i,), "must be from 0 to %g seconds" % MAX_DELAY_SECONDS)
        if sum(response["delays"]) > scenario.MAX_STREAM_SECONDS:
            raise _Invalid(where, "adds up to more than %g seconds" % scenario.MAX_STREAM_SECONDS)
        delays = tuple(float(d) for d in response["delays"])
    layer: Dict[str, Any] = {}
    if "mock" in response:
        _expect(response["mock"], dict, here + ("mock",), "an object of scenario settings")
        try:
            layer = scenario.parse_layer(response["mock"], "fixture mock")
            scenario.build(0, 0.0, layer)
        except InvalidRequest as exc:
            key = exc.param if exc.param in response["mock"] else None
            raise _Invalid(here + (("mock", key) if key else ("mock",)), exc.message) from None
    return Fixture(name, source, match, response, rules, nth, layer, text, chunks, calls, error, delays)


def parse_text(text: str, source: str) -> List[Fixture]:
    """Parse and validate one fixture document (a file's text, or a pushed body: a single
    fixture object is accepted there too when ``source`` is ``"request body"``).

    Raises ``FixtureError`` at the first problem, with its line and column: a JSON syntax
    error where ``json`` found it (``NaN``, ``Infinity``, a float that overflows and an
    integer past ``int``'s 4300 digits included), a bad value at its key."""
    try:
        value = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise FixtureError(source, exc.lineno, exc.colno, "", "not valid JSON: %s" % exc.msg) from None
    except RecursionError:
        raise FixtureError(source, 1, 1, "", "nested too deeply") from None
    except ValueError as exc:  # NaN, Infinity, 1e999 or an integer past int's 4300 digits
        reason, offset = _bad_number(text)
        line, column = _line_column(text, offset)
        raise FixtureError(source, line, column, "", reason or str(exc)) from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # "\ud800" alone: no reply could carry it as UTF-8
        found = _SURROGATE_ESCAPE_RE.search(text)
        line, column = _line_column(text, found.start() if found else 0)
        raise FixtureError(source, line, column, "", "a lone UTF-16 surrogate escape (such as \\ud800); "
                           "write whole characters or pairs") from None
    base: Tuple[Any, ...] = ()
    single = False
    try:
        if isinstance(value, dict) and "fixtures" in value:
            extra = [k for k in value if k != "fixtures"]
            if extra:
                raise _Invalid((extra[0],), "unknown top-level field %r; the file holds {\"fixtures\": [...]}" % extra[0])
            value, base = value["fixtures"], ("fixtures",)
        elif isinstance(value, dict) and source == "request body":
            value, single = [value], True
        if not isinstance(value, list):
            raise _Invalid(base, "a fixture file holds an array of fixtures or {\"fixtures\": [...]}, not %s"
                           % _kind(value))
        out = []
        label = os.path.basename(source)
        for i, item in enumerate(value):
            path = () if single else base + (i,)
            line, column = _line_column(text, locate(text, path))
            out.append(_fixture(item, path, "%s#%d" % (label, i + 1), "%s:%d:%d" % (source, line, column)))
        return out
    except _Invalid as exc:
        line, column = _line_column(text, locate(text, exc.path))
        raise FixtureError(source, line, column, _where(exc.path), exc.reason) from None


def _files(path: str) -> List[str]:
    if os.path.isdir(path):
        return sorted(os.path.join(path, name) for name in os.listdir(path)
                      if name.endswith(".json") and os.path.isfile(os.path.join(path, name)))
    return [path]


def load_path(path: str) -> List[Fixture]:
    """Every fixture of ``path``: one JSON file, or a directory's ``*.json`` files by name.

    Raises ``FixtureError`` (also for a file that cannot be read, at line 1 column 1)."""
    out: List[Fixture] = []
    for name in _files(path):
        try:
            with open(name, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise FixtureError(name, 1, 1, "", "larger than %d bytes" % MAX_FILE_BYTES)
            text = data.decode("utf-8")
        except OSError as exc:
            raise FixtureError(name, 1, 1, "", "cannot read it: %s" % (exc.strerror or exc)) from None
        except UnicodeDecodeError as exc:
            line, column = _line_column(data[:exc.start].decode("utf-8", "replace"), exc.start)
            raise FixtureError(name, line, column, "", "not UTF-8") from None
        out += parse_text(text, name)
    return out


# --- matching -------------------------------------------------------------------------------


def last_user_text(request: pipes.RunRequest) -> str:
    """The text of the last ``user`` message (``""`` when there is none)."""
    for message in reversed(request.messages):
        if message["role"] == "user":
            return pipes.message_text(message["content"])
    return ""


def lorem(words: int) -> str:
    """``words`` words of lorem ipsum (the same text every time), capitalised, ending in ``.``."""
    text = " ".join(LOREM_WORDS[i % len(LOREM_WORDS)] for i in range(words))
    return text[:1].upper() + text[1:] + "."


def _holds(rule: str, value: Any, request: pipes.RunRequest, facts: Facts, cache: dict) -> bool:
    if rule.startswith("user"):
        if "user" not in cache:
            cache["user"] = last_user_text(request)
        text = cache["user"]
    elif rule.startswith("system"):
        if "system" not in cache:
            cache["system"] = "\n".join(pipes.message_text(m["content"]) for m in request.messages
                                        if m["role"] == "system")
        text = cache["system"]
    if rule in ("user", "system"):
        return text == value
    if rule in ("user_contains", "system_contains"):
        return value in text
    if rule in ("user_regex", "system_regex"):
        return value.search(text) is not None
    if rule == "wire":
        return facts.wire in value
    if rule == "route":
        return facts.route in value
    if rule == "pipe":
        return facts.pipe == value
    if rule == "model":
        return facts.model == value
    if rule == "variables":
        return all(request.variables.get(k) == v for k, v in value.items())
    if rule == "tools":
        return bool(request.tools) == value
    if rule == "tool_result":
        return bool(request.messages and request.messages[-1]["role"] == "tool") == value
    if "turn" not in cache:
        cache["turn"] = facts.turn()
    return cache["turn"] == value


class FixtureSet:
    """The fixtures in force: those pushed over HTTP (first, in push order) and those of
    ``path`` (a file or directory, or None), with how many runs each one's rules held for.

    ``poll()`` reloads ``path`` when a file changed (size or modification time, or the
    directory's ``*.json`` names); a reload that fails keeps the previous set and logs why,
    once per change. Thread-safe: one lock per call.

    Raises ``FixtureError`` from the constructor when ``path`` is invalid.
    """

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pushed: List[Fixture] = []
        self._pushed_bytes = 0
        self._files: List[Fixture] = []
        self._counts: Dict[int, int] = {}  # id(fixture) -> runs whose rules held
        self._signature: Any = None
        if path is not None:
            self._signature = self._stat()
            self._files = load_path(path)

    def _stat(self) -> Any:
        try:
            return tuple((name, st.st_mtime_ns, st.st_size) for name, st in
                         ((name, os.stat(name)) for name in _files(self.path)))
        except OSError as exc:
            return ("unreadable", str(exc))

    def poll(self) -> bool:
        """Reload the files if they changed; returns True when a new set was loaded."""
        if self.path is None:
            return False
        signature = self._stat()
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            loaded = load_path(self.path)
        except FixtureError as exc:
            log.warning("fixtures not reloaded, the previous %d are kept: %s", len(self._files), exc)
            return False
        with self._lock:
            self._files = loaded
            self._counts = {k: v for k, v in self._counts.items() if any(id(f) == k for f in self._pushed)}
        log.info("fixtures reloaded from %s: %d fixtures", self.path, len(loaded))
        return True

    def push(self, fixtures: List[Fixture], size: int = 0) -> None:
        """Add pushed fixtures (``size``: the bytes of the document they came in). Raises
        ``OverflowError`` past ``MAX_PUSHED`` fixtures or ``MAX_PUSHED_BYTES``, adding none."""
        with self._lock:
            if len(self._pushed) + len(fixtures) > MAX_PUSHED:
                raise OverflowError("at most %d pushed fixtures are kept; %d are" % (MAX_PUSHED, len(self._pushed)))
            if self._pushed_bytes + size > MAX_PUSHED_BYTES:
                raise OverflowError("at most %d bytes of pushed fixtures are kept; %d are"
                                    % (MAX_PUSHED_BYTES, self._pushed_bytes))
            self._pushed += [f._replace(source="pushed") for f in fixtures]
            self._pushed_bytes += size

    def clear_pushed(self) -> int:
        """Drop the pushed fixtures and start every fixture's ``nth`` count again; returns how
        many were dropped."""
        with self._lock:
            count = len(self._pushed)
            self._pushed = []
            self._pushed_bytes = 0
            self._counts = {}
            return count

    def listing(self) -> List[dict]:
        """``Fixture.summary`` of each fixture, in matching order."""
        with self._lock:
            return [f.summary(self._counts.get(id(f), 0)) for f in self._pushed + self._files]

    def __len__(self) -> int:
        with self._lock:
            return len(self._pushed) + len(self._files)

    def match(self, request: pipes.RunRequest, facts: Facts) -> Optional[Fixture]:
        """The fixture that answers this run, or None. Every fixture whose rules (``nth``
        aside) hold has its count raised, so ``nth`` counts are the same whichever fixture
        wins; the first whose ``nth`` (if any) equals its count wins."""
        with self._lock:
            if not self._pushed and not self._files:
                return None
            cache: dict = {}
            found = None
            for fixture in self._pushed + self._files:
                if all(_holds(rule, value, request, facts, cache) for rule, value in fixture.rules):
                    count = self._counts.get(id(fixture), 0) + 1
                    self._counts[id(fixture)] = count
                    if found is None and (fixture.nth is None or fixture.nth == count):
                        found = fixture
            return found
