"""Pipe runs: from a validated request to a reply, its chat events, and a plan of timed writes.

Job (sans-I/O): choose the assistant's reply for a ``POST /v1/pipes/run`` request, turn it into
chat events (start, text delta, tool-call delta, finish with usage), encode those events as
Langbase/OpenAI ``chat.completion.chunk`` SSE frames, and lay the frames out as a *plan*: an
iterator of ``steps.Wait`` and ``steps.Write`` steps that the pacer executes. Nothing here
sleeps, touches a socket or reads the clock: ids, timestamps and the seed come in as arguments,
so every output is reproducible byte for byte. Shaping a stream (pacing, framing, faults) is
``scenario``'s job.

Must not import ``http.server``, ``socket`` or ``http_handler``. Formats follow the Langbase
API's ``POST /v1/pipes/run`` (request body, non-stream ``{completion, raw}`` body, stream of
OpenAI chat-completion chunks ending in ``data: [DONE]``).

Note: this module's name shadows the deprecated stdlib ``pipes`` module (removed in Python
3.13) when the server runs from this folder; nothing here or in the stdlib modules we use
imports that module.
"""

from __future__ import annotations

import collections
import json
import random
import re
import threading
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from json.encoder import encode_basestring  # what dumps_compact does for a str, minus 3 calls

from digests import sha256
from sse import DONE, dumps_compact, encode_event
from threads import ROLES, InvalidRequest, check_thread_id, parse_messages

__all__ = [
    "DEFAULT_MODEL",
    "SAMPLE_REPLIES",
    "RunRequest",
    "Reply",
    "ToolCall",
    "Usage",
    "Start",
    "TextDelta",
    "ToolCallDelta",
    "Finish",
    "Failed",
    "seeded_random",
    "LazyRandom",
    "request_digest",
    "parse_run_request",
    "parse_replies",
    "tokenize",
    "choose_reply",
    "scripted_reply",
    "message_text",
    "reply_events",
    "ChunkEncoder",
    "completion_body",
    "error_envelope",
    "RunLog",
    "reply_message",
]

DEFAULT_MODEL = "gpt-4o-mini"

SAMPLE_REPLIES: Tuple[str, ...] = (
    "Hello! How can I help you today?",
    "Sure. Here is a short answer: streaming sends the reply in small pieces, so the first "
    "words appear while the rest is still being written.",
    "Server-Sent Events are plain text over HTTP. Each event is one or more `data:` lines "
    "followed by a blank line, and the stream ends with `data: [DONE]`.",
    "Here's a quick example in Python:\n\n```python\nfor chunk in stream:\n"
    "    print(chunk, end=\"\")\n```\n\nEach chunk carries a small delta of the text.",
    "Good question! Three things matter:\n\n1. Keep the connection open.\n"
    "2. Flush every event as soon as it is written.\n3. Handle a client that leaves early.",
    "Voilà — a reply with accents (café, naïve, Zürich), CJK (你好，世界) and an emoji 🚀, "
    "so your parser must decode UTF-8 across chunk boundaries.",
    "I can't check the weather from here, but I can explain how to call a tool: describe it "
    "in `tools`, and the model answers with a tool call instead of text.",
    "Quotes \"inside\" a reply, a backslash \\ and a tab\tcharacter must survive JSON "
    "escaping on the way to your UI.",
)
"""The embedded default replies; one is picked per request from the seed and the request."""

_TOKEN_RE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


_TOKEN_CACHE_CHARS = 1 << 20
"""Most characters of text whose pieces ``tokenize`` keeps for reuse (oldest dropped first)."""
_token_cache: "collections.OrderedDict[str, Tuple[str, ...]]" = collections.OrderedDict()
_token_cache_chars = 0
_token_lock = threading.Lock()


def tokenize(text: str) -> Tuple[str, ...]:
    """Split ``text`` into word and punctuation pieces, the way a model's tokenizer would.

    Each piece is a run of leading whitespace plus one word (letters, digits, ``_``) or one
    other character; trailing whitespace is its own piece. ``"".join(tokenize(t)) == t``
    always holds, so the joined stream deltas equal the reply exactly.

    Replies and prompts repeat, so the pieces of recent texts (up to ``_TOKEN_CACHE_CHARS``
    characters in all) are kept and the same tuple is returned again: runs that send the
    same reply share its pieces instead of each holding a copy.
    """
    global _token_cache_chars
    with _token_lock:
        pieces = _token_cache.get(text)
        if pieces is not None:
            _token_cache.move_to_end(text)
            return pieces
    pieces = tuple(_TOKEN_RE.findall(text))
    if len(text) <= _TOKEN_CACHE_CHARS // 16:
        with _token_lock:
            if text not in _token_cache:
                _token_cache[text] = pieces
                _token_cache_chars += len(text)
                while _token_cache_chars > _TOKEN_CACHE_CHARS:
                    _token_cache_chars -= len(_token_cache.popitem(last=False)[0])
    return pieces


class Usage(NamedTuple):
    """Token counts (OpenAI ``usage``): ``prompt_tokens``, ``completion_tokens`` (ints)."""

    prompt_tokens: int
    completion_tokens: int

    def as_dict(self) -> dict:
        """``{"prompt_tokens", "completion_tokens", "total_tokens"}``."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class ToolCall(NamedTuple):
    """One function call of a reply: ``id`` (``call_…``), ``name``, ``arguments`` (JSON text)."""

    id: str
    name: str
    arguments: str


class Reply(NamedTuple):
    """The assistant's answer to one run.

    Exactly one of ``text`` (a string) or ``tool_calls`` (a non-empty tuple of ``ToolCall``;
    one unless a fixture scripts more) is set; ``pieces`` is how it streams: the text's
    pieces, or the calls' arguments' pieces, call after call (each call's pieces join to its
    arguments; ``reply_events`` walks them by length); ``finish_reason`` is ``"stop"`` for text and
    ``"tool_calls"`` for a tool call; ``usage`` counts prompt tokens from the request and one
    completion token per piece; ``id`` is the completion id (``chatcmpl-`` and 32 hex digits,
    from the seed, so a replay is byte-identical).
    """

    text: Optional[str]
    tool_calls: Tuple[ToolCall, ...]
    pieces: Tuple[str, ...]
    finish_reason: str
    usage: Usage
    id: str


class RunRequest(NamedTuple):
    """A validated ``POST /v1/pipes/run`` body.

    Fields: ``messages`` (list of message dicts from ``threads.parse_messages``),
    ``variables`` (``{name: value}``, both str), ``thread_id`` (str or None, from ``threadId``
    or ``thread_id``), ``stream`` (bool), ``tools`` (list of OpenAI function tool dicts),
    ``tool_choice`` (``"auto"``, ``"required"``, ``"none"``, a function name, or None).
    """

    messages: List[dict]
    variables: Dict[str, str]
    thread_id: Optional[str]
    stream: bool
    tools: List[dict]
    tool_choice: Optional[str]


# --- events (one model for every wire format) -------------------------------------------


class Start(NamedTuple):
    """The reply begins: the assistant role. ``content`` is ``""`` for text, None for tools."""

    content: Optional[str]


class TextDelta(NamedTuple):
    """A piece of reply text (OpenAI ``delta.content``)."""

    content: str


class ToolCallDelta(NamedTuple):
    """A piece of a tool call (OpenAI ``delta.tool_calls[i]``).

    ``index`` is always set; ``id`` and ``name`` only on a call's first piece (else None);
    ``arguments`` is a fragment of the JSON arguments text, concatenated by clients.
    """

    index: int
    id: Optional[str]
    name: Optional[str]
    arguments: str


class Finish(NamedTuple):
    """The reply ends: ``finish_reason`` (``"stop"``/``"tool_calls"``) and ``usage``."""

    finish_reason: str
    usage: Usage


class Failed(NamedTuple):
    """A reply that was streaming broke off (a live upstream failed mid-stream): ``status``
    (int), ``code`` and ``message`` for the format's in-band error event, which ends the
    stream (``scenario.shape`` sends it; encoders never see this event)."""

    status: int
    code: str
    message: str


Event = Union[Start, TextDelta, ToolCallDelta, Finish, Failed]


# --- request parsing ----------------------------------------------------------------------


def _parse_variables(value: Any) -> Dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        pairs = list(value.items())
        label = "variables.%s"
    elif isinstance(value, list):
        pairs = []
        for i, item in enumerate(value):
            where = "variables[%d]" % i
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidRequest(
                    "%s must be an object {\"name\": string, \"value\": string}" % where, where
                )
            pairs.append((item["name"], item.get("value")))
        label = "variables[name=%s].value"
    else:
        raise InvalidRequest(
            "variables must be an array of {name, value} objects or an object of strings",
            "variables",
        )
    out = {}
    for name, item in pairs:
        if not isinstance(item, str):
            raise InvalidRequest("%s must be a string" % (label % name), "variables")
        out[name] = item
    return out


def _parse_tools(value: Any) -> List[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("tools must be an array of function tools", "tools")
    for i, tool in enumerate(value):
        where = "tools[%d]" % i
        fn = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or not fn["name"]
        ):
            raise InvalidRequest(
                "%s must be {\"type\": \"function\", \"function\": {\"name\": string, ...}}"
                % where,
                where,
            )
        if fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
            raise InvalidRequest("%s.function.parameters must be an object" % where, where)
    return json.loads(json.dumps(value))


def _parse_tool_choice(value: Any, tools: List[dict]) -> Optional[str]:
    if value is None or value in ("auto", "required", "none"):
        return value
    if isinstance(value, dict):
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and any(t["function"]["name"] == name for t in tools):
            return name
    raise InvalidRequest(
        "tool_choice must be \"auto\", \"required\", \"none\" or "
        "{\"type\": \"function\", \"function\": {\"name\": <a name in tools>}}",
        "tool_choice",
    )


def parse_run_request(body: Any, roles: Tuple[str, ...] = ROLES) -> RunRequest:
    """Validate a ``POST /v1/pipes/run`` JSON body and return a ``RunRequest``.

    ``messages`` is required unless ``variables`` is given (an empty array is allowed, as the
    Python SDK sends by default). ``threadId`` and ``thread_id`` are both accepted (the Python
    SDK sends the latter); ``stream`` must be a boolean when present; unknown keys are ignored.
    ``roles`` are the message roles allowed (Langbase's by default).

    Raises:
        InvalidRequest: naming the first bad field.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    if "messages" not in body and "variables" not in body:
        raise InvalidRequest("messages is required (an array of message objects)", "messages")
    messages = parse_messages(body.get("messages", []), roles=roles)
    variables = _parse_variables(body.get("variables"))
    thread_id = None
    for key in ("threadId", "thread_id"):
        if body.get(key) is not None:
            thread_id = check_thread_id(body[key], key)
            break
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", "stream")
    tools = _parse_tools(body.get("tools"))
    tool_choice = _parse_tool_choice(body.get("tool_choice"), tools)
    return RunRequest(messages, variables, thread_id, stream, tools, tool_choice)


def parse_replies(value: Any) -> Tuple[str, ...]:
    """Validate a replies file's content: a non-empty JSON array of non-empty strings.

    Raises:
        ValueError: with a sentence saying what is wrong.
    """
    if not isinstance(value, list) or not value:
        raise ValueError("a replies file must hold a non-empty JSON array of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ValueError("reply %d must be a non-empty string" % i)
    return tuple(value)


# --- choosing the reply -------------------------------------------------------------------


def message_text(content: Any) -> str:
    """The text of a message's ``content``: the string itself, or the ``text`` of its parts
    joined by spaces (OpenAI content parts); ``""`` for anything else (None, a tool call)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p.get("text"), str))
    return ""


def _sample_value(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    if not isinstance(schema, dict) or depth > 4:
        return "example"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(1, 100), 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return [_sample_value(schema.get("items"), rng, depth + 1)]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {k: _sample_value(v, rng, depth + 1) for k, v in props.items()}
    return "example"


def request_digest(request: RunRequest) -> str:
    """A hex SHA-256 of what decides a reply: the messages, variables, tools and tool_choice."""
    material = dumps_compact(
        [request.messages, request.variables, request.tools, request.tool_choice]
    ).encode("utf-8")
    return sha256(material).hexdigest()


def seeded_random(seed: int, digest: str, purpose: str, lazy: bool = False) -> random.Random:
    """A ``random.Random`` fixed by ``seed``, a request's ``digest`` (``request_digest``) and
    ``purpose``, so the reply and, say, the scenario's draws are independent but each
    reproducible. With ``lazy``, a ``LazyRandom``: the same numbers, seeded on first use."""
    return (LazyRandom if lazy else random.Random)("%d:%s:%s" % (seed, digest, purpose))


class LazyRandom(random.Random):
    """A ``random.Random`` that seeds itself when first drawn from, and then gives exactly the
    numbers ``random.Random(seed)`` gives. Seeding from a string costs microseconds, and most
    runs never draw from their scenario's generator (no faults, jitter or random chunking)."""

    _pending: Any = None
    _started = False

    def seed(self, a: Any = None, version: int = 2) -> None:
        if self._started:
            super().seed(a, version)
        else:
            self._pending = a  # random.Random.__init__ lands here: remember, don't seed yet

    def _start(self) -> None:
        self._started = True
        super().seed(self._pending)

    def random(self) -> float:
        if not self._started:
            self._start()
        return super().random()

    def getrandbits(self, k: int) -> int:
        if not self._started:
            self._start()
        return super().getrandbits(k)


def completion_id(seed: int, digest: str) -> str:
    """The completion id (``chatcmpl-`` and 32 hex digits) that ``choose_reply`` and
    ``scripted_reply`` give a request with this ``digest`` under ``seed``: a reply still
    arriving (``upstream.LiveReply``) names its chunks with it before its text is known."""
    return "chatcmpl-%032x" % seeded_random(seed, digest, "reply").getrandbits(128)


def prompt_token_count(request: RunRequest) -> int:
    """``usage.prompt_tokens`` of a run: ``tokenize`` pieces in every message's text."""
    return sum(len(tokenize(message_text(m["content"]))) for m in request.messages)


def choose_reply(
    request: RunRequest,
    replies: Sequence[str],
    seed: int,
    split: Callable[[str], List[str]] = tokenize,
    digest: Optional[str] = None,
    max_chars: int = 200_000,
    max_pieces: int = 100_000,
) -> Reply:
    """Pick the reply for ``request``, deterministically from ``seed`` and the request.

    Text: one of ``replies``, with ``{{name}}`` placeholders replaced by ``request.variables``
    (unknown names are left as written). Tool call instead of text when the request has
    ``tools``, ``tool_choice`` is not ``"none"`` and the last message is not a ``tool`` result:
    the tool named by ``tool_choice``, else one picked by the seed, with arguments built from
    its JSON-schema ``parameters`` (enum → first value, string → ``"example"``, numbers and
    booleans → sample values).

    ``digest`` is ``request_digest(request)`` when the caller has it already.
    ``max_chars`` bounds the reply text after substitution, ``max_pieces`` the pieces it is
    cut into: past either, ``InvalidRequest`` (raised before the text is built, so a small
    request cannot make a huge reply).
    ``split`` cuts the text (or the arguments) into the pieces that stream (default
    ``tokenize``). Usage: ``prompt_tokens`` = ``tokenize`` pieces in every message's text;
    ``completion_tokens`` = the reply's pieces.
    """
    rng = seeded_random(seed, digest or request_digest(request), "reply")
    completion_id = "chatcmpl-%032x" % rng.getrandbits(128)
    prompt_tokens = prompt_token_count(request)
    last_role = request.messages[-1]["role"] if request.messages else None
    if request.tools and request.tool_choice != "none" and last_role != "tool":
        if request.tool_choice not in (None, "auto", "required"):
            tool = next(t for t in request.tools if t["function"]["name"] == request.tool_choice)
        else:
            tool = rng.choice(request.tools)
        fn = tool["function"]
        arguments = dumps_compact(_sample_value(fn.get("parameters") or {}, rng))
        if len(arguments) > max_chars:
            raise InvalidRequest("The tool call's arguments would be %d characters; the limit is %d (see "
                                 "--max-reply-chars)." % (len(arguments), max_chars), "tools")
        call = ToolCall("call_%024x" % rng.getrandbits(96), fn["name"], arguments)
        pieces = tuple(split(arguments))
        if len(pieces) > max_pieces:
            raise InvalidRequest("The tool call's arguments would stream in %d chunks; the limit is %d. "
                                 "Use a coarser chunking or a smaller schema." % (len(pieces), max_pieces), "tools")
        usage = Usage(prompt_tokens, len(pieces))
        return Reply(None, (call,), pieces, "tool_calls", usage, completion_id)
    text = rng.choice(list(replies))
    if request.variables:
        text = _substitute(text, request.variables, max_chars)
    if len(text) > max_chars:
        raise InvalidRequest("The reply would be %d characters; the limit is %d (see --max-reply-chars)."
                             % (len(text), max_chars), "variables" if request.variables else "mock")
    pieces = tuple(split(text))
    if len(pieces) > max_pieces:
        raise InvalidRequest("The reply would stream in %d chunks; the limit is %d. Use a coarser "
                             "chunking or a shorter reply." % (len(pieces), max_pieces), "mock")
    return Reply(text, (), pieces, "stop", Usage(prompt_tokens, len(pieces)), completion_id)


def scripted_reply(
    request: RunRequest,
    seed: int,
    digest: str,
    split: Callable[[str], List[str]] = tokenize,
    text: Optional[str] = None,
    chunks: Optional[Sequence[str]] = None,
    calls: Sequence[Tuple[Optional[str], str, str]] = (),
    max_chars: int = 200_000,
) -> Reply:
    """A reply a script gives (a ``fixtures`` response) instead of one ``choose_reply`` picks.

    Exactly one of: ``text`` (``{{name}}`` placeholders filled from ``request.variables``, then
    cut by ``split``), ``chunks`` (the exact pieces to stream, joined as the text) or ``calls``
    (``(id or None, name, arguments JSON text)`` per tool call; a None id becomes a seeded
    ``call_…``; each call's arguments are cut by ``split``). The completion id, usage and
    finish reason follow ``choose_reply``'s rules, so a fixture's reply is byte-identical on
    every replay. Raises ``InvalidRequest`` past ``max_chars`` characters."""
    rng = seeded_random(seed, digest, "reply")
    completion_id = "chatcmpl-%032x" % rng.getrandbits(128)
    prompt_tokens = prompt_token_count(request)
    if calls:
        tool_calls = tuple(ToolCall(id or "call_%024x" % rng.getrandbits(96), name, arguments)
                           for id, name, arguments in calls)
        size = sum(len(c.arguments) for c in tool_calls)
        if size > max_chars:
            raise InvalidRequest("The tool calls' arguments are %d characters; the limit is %d (see "
                                 "--max-reply-chars)." % (size, max_chars), "tools")
        pieces = tuple(p for c in tool_calls for p in split(c.arguments) if p)
        return Reply(None, tool_calls, pieces, "tool_calls", Usage(prompt_tokens, len(pieces)), completion_id)
    if chunks is not None:
        pieces = tuple(chunks)
        text = "".join(pieces)
    else:
        text = _substitute(text or "", request.variables, max_chars) if request.variables else text or ""
        pieces = tuple(split(text))
    if len(text) > max_chars:
        raise InvalidRequest("The reply would be %d characters; the limit is %d (see --max-reply-chars)."
                             % (len(text), max_chars), "mock")
    return Reply(text, (), pieces, "stop", Usage(prompt_tokens, len(pieces)), completion_id)


def _substitute(text: str, variables: Dict[str, str], max_chars: int) -> str:
    """``text`` with ``{{name}}`` placeholders replaced from ``variables`` (unknown names left
    as written). Raises ``InvalidRequest`` as soon as the result would pass ``max_chars``."""
    parts, size, last = [], 0, 0
    for match in _PLACEHOLDER_RE.finditer(text):
        value = variables.get(match.group(1), match.group(0))
        size += match.start() - last + len(value)
        if size > max_chars:
            raise InvalidRequest("The reply with its variables filled in would pass %d characters, the "
                                 "limit (see --max-reply-chars)." % max_chars, "variables")
        parts += (text[last:match.start()], value)
        last = match.end()
    parts.append(text[last:])
    return "".join(parts)


def reply_message(reply: Reply) -> dict:
    """The reply as an assistant message dict in ``threads.parse_messages`` output shape."""
    return {
        "role": "assistant",
        "content": reply.text,
        "name": None,
        "tool_call_id": None,
        "tool_calls": [_tool_call_object(c) for c in reply.tool_calls],
        "attachments": [],
        "metadata": {},
    }


def _tool_call_object(call: ToolCall) -> dict:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


_DELTAS_MAX_BYTES = 8 * 1024 * 1024
"""Most memory, estimated, that ``text_deltas`` keeps for recent replies."""
_deltas_cache: "collections.OrderedDict[Tuple[str, ...], Tuple[Tuple[TextDelta, ...], int]]" = collections.OrderedDict()
_deltas_bytes = 0
_deltas_lock = threading.Lock()


def _deltas_size(pieces: Tuple[str, ...]) -> int:
    """An upper estimate, in bytes, of what keeping ``pieces`` and their events holds: per
    piece a ``TextDelta`` and slots (about 80 bytes) and the text at 4 bytes a character."""
    return 80 * len(pieces) + 4 * sum(map(len, pieces))


def text_deltas(pieces: Tuple[str, ...]) -> Tuple[TextDelta, ...]:
    """One ``TextDelta`` per piece. Replies repeat, so the events of recent ``pieces`` (up to
    ``_DELTAS_MAX_BYTES`` by ``_deltas_size``, each reply at most a quarter of it) are kept
    and the same tuple is handed out again: a stream of a reply sent before makes no new
    event objects."""
    global _deltas_bytes
    with _deltas_lock:
        entry = _deltas_cache.get(pieces)
        if entry is not None:
            _deltas_cache.move_to_end(pieces)
            return entry[0]
    deltas = tuple(map(TextDelta, pieces))
    size = _deltas_size(pieces)
    if size <= _DELTAS_MAX_BYTES // 4:
        with _deltas_lock:
            if pieces not in _deltas_cache:
                _deltas_cache[pieces] = (deltas, size)
                _deltas_bytes += size
                while _deltas_bytes > _DELTAS_MAX_BYTES:
                    _deltas_bytes -= _deltas_cache.popitem(last=False)[1][1]
    return deltas


def reply_events(reply: Any) -> Iterator[Event]:
    """Yield the reply's chat events, lazily: ``Start``, then one ``TextDelta`` per piece (or,
    for each tool call in turn, a ``ToolCallDelta`` naming the call with its ``index`` and one
    per arguments piece), then
    ``Finish`` with the reply's usage.

    ``reply`` is a ``Reply``, or a reply still arriving (``upstream.LiveReply``, anything that
    is not a ``Reply`` but has ``events()``): its events come as they arrive, with a
    ``steps.Wait`` whenever the next one is not in yet, and may end in ``Failed``."""
    if type(reply) is not Reply:
        yield from reply.events()
        return
    if reply.text is not None:
        yield Start("")
        yield from text_deltas(reply.pieces)
    else:
        yield Start(None)
        pieces = iter(reply.pieces)
        for index, call in enumerate(reply.tool_calls):
            yield ToolCallDelta(index, call.id, call.name, "")
            left = len(call.arguments)
            while left > 0:
                piece = next(pieces)
                left -= len(piece)
                yield ToolCallDelta(index, None, None, piece)
    yield Finish(reply.finish_reason, reply.usage)


# --- encoding -----------------------------------------------------------------------------

ERROR_DOCS = "https://langbase.com/docs/api-reference/errors/"


def error_envelope(status: int, code: str, message: str) -> dict:
    """The Langbase error body: ``{"error": {"code", "status", "message", "docs"}}``, where
    ``docs`` is the error's page under Langbase's API reference (Langbase API, "Error
    responses")."""
    return {"error": {"code": code, "status": status, "message": message,
                      "docs": ERROR_DOCS + code.lower()}}



_JSON_STRINGS_LIMIT = 16_384
_json_strings: Dict[str, bytes] = {}
"""Recent text pieces of up to 32 characters as JSON string bytes (``ChunkEncoder.encode``):
replies repeat their words, so most pieces are encoded once. Emptied when it reaches
``_JSON_STRINGS_LIMIT`` entries (at most about 8 MB: a 32-character piece of 4-byte
characters and its escaped bytes take under 500 bytes)."""


class ChunkEncoder:
    """Encode chat events as Langbase ``POST /v1/pipes/run`` SSE frames.

    Each frame is one ``data: <chat.completion.chunk JSON>\\n\\n`` event with the same ``id``,
    ``created`` (int, Unix seconds) and ``model`` on every chunk; ``Start`` gives
    ``delta: {"role": "assistant", "content": ""}``; ``Finish`` gives ``delta: {}`` with the
    ``finish_reason`` and ``usage`` beside ``choices`` (where the Python SDK's typed runner
    reads it). The constant parts of a text chunk are encoded once, so a ``TextDelta`` costs
    one JSON string encode; the bytes equal a full ``dumps_compact`` of the chunk. ``done`` is
    the ``data: [DONE]`` event; ``error`` gives the in-band error event.
    """

    done = DONE

    _templates: Dict[tuple, Tuple[bytes, bytes, bytes]] = {}  # (class, created, model, extra) → parts

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        self._head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        # A text chunk is 'data: {"id":' + <id> + <rest of the head and delta> + <text> + <tail>,
        # the opening chunk 'data: {"id":' + <id> + <the rest>. Only the id differs between
        # streams, so the rest is built once per model and kept.
        key = (type(self), created, model, self._template_key())
        parts = self._templates.get(key)
        id_length = len('{"id":') + len(dumps_compact(completion_id))
        if parts is None:
            text = dumps_compact(self._chunk({"content": ""}, None))
            prefix, suffix = text.split('""', 1)
            start = dumps_compact(self._chunk({"role": "assistant", "content": ""}, None))
            parts = (prefix[id_length:].encode("utf-8"), (suffix + "\n\n").encode("utf-8"),
                     (start[id_length:] + "\n\n").encode("utf-8"))
            if len(self._templates) < 64:
                self._templates[key] = parts
        opening = b'data: {"id":' + dumps_compact(completion_id).encode("utf-8")
        self._text_prefix = opening + parts[0]
        self._text_suffix = parts[1]
        self._start = opening + parts[2]

    @staticmethod
    def events(reply: Reply) -> Iterator[Event]:
        """The events of ``reply`` this format sends: all of them (``reply_events``)."""
        return reply_events(reply)

    def _template_key(self) -> Any:
        """What else, besides the class, created and model, shapes a text chunk's template."""
        return None

    def _chunk(self, delta: dict, finish_reason: Optional[str]) -> dict:
        chunk = dict(self._head)
        chunk["choices"] = [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
        return chunk

    def encode(self, event: Event) -> bytes:
        """Return the SSE frame (bytes) for one event."""
        if type(event) is TextDelta:
            content = event.content
            encoded = _json_strings.get(content)
            if encoded is None:
                encoded = encode_basestring(content).encode("utf-8")
                if len(content) <= 32:
                    if len(_json_strings) >= _JSON_STRINGS_LIMIT:
                        _json_strings.clear()
                    _json_strings[content] = encoded
            return self._text_prefix + encoded + self._text_suffix
        if type(event) is Start:
            if event.content == "":
                return self._start
            chunk = self._chunk({"role": "assistant", "content": event.content}, None)
        elif type(event) is ToolCallDelta:
            call: Dict[str, Any] = {"index": event.index}
            if event.id is not None:
                call["id"] = event.id
                call["type"] = "function"
                call["function"] = {"name": event.name, "arguments": event.arguments}
            else:
                call["function"] = {"arguments": event.arguments}
            chunk = self._chunk({"tool_calls": [call]}, None)
        elif type(event) is Finish:
            chunk = self._chunk({}, event.finish_reason)
            chunk["usage"] = event.usage.as_dict()
        else:
            raise TypeError("not a chat event: %r" % (event,))
        return encode_event(dumps_compact(chunk))

    def error(self, status: int, code: str, message: str) -> bytes:
        """The in-band error event after the headers are out: ``data: {"error": {...}}`` in
        the Langbase envelope (the OpenAI SDKs raise ``APIError`` on it; the Langbase JS SDK
        throws; the Langbase Python SDK skips it)."""
        return encode_event(dumps_compact(error_envelope(status, code, message)))

    def completion(self, reply: Reply) -> dict:
        """The OpenAI ``chat.completion`` object for a whole reply (non-stream ``raw``)."""
        message: Dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [_tool_call_object(c) for c in reply.tool_calls]
        out = dict(self._head)
        out["object"] = "chat.completion"
        out["choices"] = [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
        ]
        out["usage"] = reply.usage.as_dict()
        return out


def completion_body(reply: Reply, encoder: ChunkEncoder) -> dict:
    """The non-stream ``POST /v1/pipes/run`` body: ``{"completion": str, "raw": chat.completion}``.

    ``completion`` is the reply text, or ``""`` for a tool-call reply (as Langbase sends).
    """
    return {"completion": reply.text or "", "raw": encoder.completion(reply)}


RECORD_OVERHEAD_BYTES = 2048
"""What a run record costs besides its text and pieces (the dict, ids, usage, scenario)."""


def record_bytes(record: dict) -> int:
    """An estimate, in bytes, of the memory a run record holds: its text, each of its
    ``deltas`` pieces as a string object (about 64 bytes each plus the characters), its
    scenario's ``reply_text`` and its tool calls' arguments. Pieces shared with ``tokenize``'s
    cache are counted too, so the estimate errs high."""
    deltas = record.get("deltas") or ()
    scenario = record.get("scenario")
    calls = record.get("tool_calls") or ()
    return (RECORD_OVERHEAD_BYTES + 2 * len(record.get("text") or "")
            + 64 * len(deltas) + sum(map(len, deltas))
            + 2 * len(getattr(scenario, "reply_text", None) or "")
            + sum(2 * len(c.get("function", {}).get("arguments") or "") for c in calls))


class RunLog:
    """The ground truth of recent runs: what each stream encoded, by run id, bounded.

    A record is a JSON-ready dict (see ``routes.mock`` route ``mock_run`` for its fields).
    Keeps the newest ``limit`` records whose estimated size (``record_bytes``) adds up to at
    most ``max_bytes``; older ones are dropped first. Thread-safe: each method takes one lock.
    """

    def __init__(self, limit: int = 1000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0  # the estimated size of the records kept
        self._records: "collections.OrderedDict[str, Tuple[dict, int]]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, run_id: str, record: dict) -> None:
        """Store ``record`` under ``run_id``, dropping the oldest records while over a bound."""
        size = record_bytes(record)
        with self._lock:
            self._records[run_id] = (record, size)
            self.bytes += size
            while len(self._records) > self.limit or (self.bytes > self.max_bytes and len(self._records) > 1):
                self.bytes -= self._records.popitem(last=False)[1][1]

    def get(self, run_id: str) -> Optional[dict]:
        """The record, or None when unknown or already dropped. The dict is shared: don't
        change it."""
        with self._lock:
            entry = self._records.get(run_id)
            return entry[0] if entry is not None else None

    def recent(self) -> List[str]:
        """Run ids, newest first."""
        with self._lock:
            return list(reversed(self._records))

    def clear(self) -> int:
        """Forget every record (``POST /mock/reset``); returns how many were dropped."""
        with self._lock:
            count = len(self._records)
            self._records.clear()
            self.bytes = 0
            return count
