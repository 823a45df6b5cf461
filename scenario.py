"""Stream shaping and fault injection: scenario settings and the plan transformations they apply.

Job: one ``Scenario`` (pacing, chunking, byte framing, SSE extras, endings, faults) built from
layers with one precedence — built-in defaults < server flags (``--mock``) < ``X-Mock-*`` request
headers < the ``mock`` object of the JSON body — and validated in one place; then the sans-I/O
steps that turn a stream's events into a shaped plan of ``Wait``/``Write``/``Close`` steps.
Every fault lives here, as a plan transformation; the handler and the pacer never learn what a
fault is. It has its own room because it is the one place that knows every setting.

All randomness comes from a ``random.Random`` the caller seeds (see ``pipes.seeded_random``), so
the same request with the same seed gives the same bytes and the same write boundaries.

Must not import ``http.server``, ``socket`` or ``http_handler``. SSE framing follows WHATWG HTML
9.2.5; the in-band error frame and ``[DONE]`` follow the Langbase/OpenAI stream format.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import unquote

from pipes import Failed, TextDelta, tokenize
from steps import Close, Step, Wait, Write
from threads import InvalidRequest

__all__ = [
    "SETTINGS",
    "Scenario",
    "MAX_STREAM_SECONDS",
    "parse_layer",
    "header_layer",
    "body_layer",
    "planned_seconds",
    "build",
    "replies_for",
    "splitter",
    "fault_fires",
    "shape",
    "reframe",
    "ERROR_CODES",
]

MAX_STREAM_SECONDS = 900.0
"""Longest a shaped stream may be planned to last (seconds); a longer one is a 400."""

ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    412: "PRECONDITION_FAILED",
    429: "RATE_LIMITED",
    500: "INTERNAL_SERVER_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}
"""Langbase error code for each status a fault may answer with (``fault_code`` overrides)."""


class Setting(NamedTuple):
    """One scenario setting: ``name``, ``kind`` (``float``/``int``/``bool``/``enum``/``str``),
    ``default``, ``help``, inclusive bounds ``low``/``high`` (numbers; for ``str`` the most
    characters), ``least`` (numbers whose 0 means "off": the smallest value above 0, so a
    tiny one cannot make a flood), ``choices`` (enums), ``nullable`` (``null``/``"none"``
    allowed), and for ``str`` a ``pattern`` the whole value must match, described by ``shape``."""

    name: str
    kind: str
    default: Any
    help: str
    low: float = 0
    high: float = 0
    choices: Tuple[str, ...] = ()
    nullable: bool = False
    pattern: str = r"(?s).*"
    shape: str = "a string"
    least: float = 0

    def allowed(self) -> str:
        """Human text of the allowed values, used in error messages and ``GET /mock/settings``."""
        if self.kind == "enum":
            text = "one of " + ", ".join(self.choices)
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "%s (at most %d characters)" % (self.shape, self.high)
        else:
            text = "%s from %s to %s" % ("a whole number" if self.kind == "int" else "a number",
                                         _num(self.least or self.low), _num(self.high))
            if self.least:
                text = "0 (off) or " + text
        return text + (", or null" if self.nullable else "")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_S = Setting
SETTINGS: Dict[str, Setting] = {s.name: s for s in [
    # reproducibility
    _S("seed", "int", None, "seed for the reply and every random choice below (default: the server's --seed)",
       0, 2 ** 63 - 1, nullable=True),
    # pacing
    _S("delay", "float", None, "seconds between chunks (default: the server's --delay)", 0, 60, nullable=True),
    _S("ttft", "float", 0.0, "seconds before the first chunk (time to first token)", 0, 120),
    _S("jitter", "float", 0.0, "each wait varies by a seeded random amount up to this many seconds either way", 0, 60),
    _S("tokens_per_second", "float", None, "pace as chunks per second instead of delay", 0.01, 100000, nullable=True),
    # chunking
    _S("chunking", "enum", "word", "how the text is cut into chunks", choices=("word", "char", "fixed", "random", "whole")),
    _S("chunk_size", "int", 4, "characters per chunk for chunking=fixed; the most for chunking=random", 1, 10000),
    # byte framing
    _S("framing", "enum", "event", "how the SSE bytes are cut into writes",
       choices=("event", "split", "random", "coalesce", "byte")),
    _S("split_bytes", "int", 16, "bytes per write for framing=split", 1, 65536),
    _S("coalesce", "int", 4, "events per write for framing=coalesce", 2, 10000),
    _S("body", "enum", "chunked", "HTTP body framing: chunked, close-delimited, or buffered to the end",
       choices=("chunked", "close", "buffered")),
    # SSE extras
    _S("line_ending", "enum", "lf", "SSE line endings", choices=("lf", "crlf", "cr", "mixed")),
    _S("keepalive", "float", 0.0, "send a ': ping' comment every this many seconds of waiting (0 = never)", 0, 600,
       least=0.001),
    _S("keepalive_between", "bool", False, "send a ': ping' comment after every event"),
    _S("event_ids", "bool", False, "give every event an 'id:' field (1, 2, 3, ...)"),
    _S("retry", "int", None, "send a 'retry:' field (milliseconds) with the first event", 0, 3600000, nullable=True),
    _S("bom", "bool", False, "start the stream with a UTF-8 byte order mark"),
    _S("event_name", "str", None, "add an 'event:' line with this name to every event", 0, 64,
       nullable=True, pattern=r"[A-Za-z0-9_.:-]+", shape="letters, digits and _ . : -"),
    _S("data_spacing", "enum", "one", "spaces after 'data:' (the spec strips exactly one)",
       choices=("one", "none", "two")),
    _S("multiline_data", "bool", False, "spread each JSON payload over several 'data:' lines"),
    _S("content_type", "enum", "text/event-stream; charset=utf-8", "the stream's Content-Type header",
       choices=("text/event-stream; charset=utf-8", "text/event-stream", "text/plain",
                "application/json", "application/octet-stream")),
    # the reply
    _S("reply", "int", None, "which reply of the server's set to use, from 0 (default: picked by the seed)",
       0, 100000, nullable=True),
    _S("reply_text", "str", None, "use this text as the reply", 0, 20000, nullable=True),
    _S("reply_mode", "enum", "sample", "built-in replies: sample texts, echo (the last user message back) "
       "or lorem (lorem_words words of lorem ipsum)", choices=("sample", "echo", "lorem")),
    _S("lorem_words", "int", 50, "words in a reply_mode=lorem reply", 1, 10000),
    _S("fixture_timing", "enum", "recorded", "a fixture's delays pace its chunks (recorded), or the "
       "settings above do (scenario)", choices=("recorded", "scenario")),
    # endings
    _S("ending", "enum", "normal", "how the stream ends",
       choices=("normal", "no_done", "done_no_space", "data_after_done", "no_final_blank_line", "no_terminator")),
    # faults
    _S("fault", "enum", "none", "what goes wrong",
       choices=("none", "http_error", "error_frame", "disconnect", "stall", "corrupt")),
    _S("fault_probability", "float", 1.0, "chance that the fault happens on a request (seeded)", 0, 1),
    _S("fault_status", "int", 500, "HTTP status for fault=http_error (and in an error frame)", 400, 599),
    _S("fault_code", "str", None, "Langbase error code for the fault (default: from fault_status)", 0, 64,
       nullable=True, pattern=r"[A-Z][A-Z0-9_]*", shape="an upper-case code such as RATE_LIMITED"),
    _S("retry_after", "int", 1, "seconds in Retry-After for fault=http_error with status 429 or 503", 0, 86400),
    _S("fault_after", "int", 3, "the fault happens after this many events were sent", 0, 100000),
    _S("fault_after_seconds", "float", None, "fault=disconnect: drop the connection this many seconds into the stream instead",
       0, MAX_STREAM_SECONDS, nullable=True),
    _S("disconnect", "enum", "fin", "fault=disconnect: close cleanly (fin) or with a TCP reset", choices=("fin", "reset")),
    _S("stall", "float", 5.0, "fault=stall: seconds the stream stops before going on", 0, 600),
]}
"""Every scenario setting by name; the README table and ``GET /mock/settings`` follow it."""

_SHAPING = tuple(name for name in SETTINGS if name not in (
    "seed", "delay", "ttft", "jitter", "tokens_per_second", "reply", "reply_text", "reply_mode", "lorem_words", "fixture_timing"))
"""Settings that change a stream's bytes beyond pacing and the reply."""

@dataclasses.dataclass(frozen=True)
class Scenario:
    """A resolved scenario: one attribute per entry of ``SETTINGS`` (same names, validated
    values; ``seed`` and ``delay`` filled from the server when not set)."""

    seed: int
    delay: float
    ttft: float
    jitter: float
    tokens_per_second: Optional[float]
    chunking: str
    chunk_size: int
    framing: str
    split_bytes: int
    coalesce: int
    body: str
    line_ending: str
    keepalive: float
    keepalive_between: bool
    event_ids: bool
    retry: Optional[int]
    bom: bool
    event_name: Optional[str]
    data_spacing: str
    multiline_data: bool
    content_type: str
    reply: Optional[int]
    reply_text: Optional[str]
    reply_mode: str
    lorem_words: int
    fixture_timing: str
    ending: str
    fault: str
    fault_probability: float
    fault_status: int
    fault_code: Optional[str]
    retry_after: int
    fault_after: int
    fault_after_seconds: Optional[float]
    disconnect: str
    stall: float
    _plain: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Asked for every stream; a Scenario is frozen (and ``build`` hands out the same one
        # for the same layers), so the answer is worked out once.
        plain = all(getattr(self, name) == SETTINGS[name].default for name in _SHAPING)
        object.__setattr__(self, "_plain", plain)

    @property
    def interval(self) -> float:
        """Seconds between chunks: ``1 / tokens_per_second`` when set, else ``delay``."""
        return 1.0 / self.tokens_per_second if self.tokens_per_second else self.delay

    @property
    def error_code(self) -> str:
        """The fault's Langbase error code."""
        return self.fault_code or ERROR_CODES.get(self.fault_status, "INTERNAL_SERVER_ERROR"
                                                   if self.fault_status >= 500 else "BAD_REQUEST")

    def as_dict(self) -> Dict[str, Any]:
        """Every setting and its value (JSON-ready; every value is a scalar)."""
        return {name: getattr(self, name) for name in SETTINGS}

    def is_plain(self) -> bool:
        """True when nothing but pacing and the reply differ from the defaults (the fast path)."""
        return self._plain


def _parse_value(setting: Setting, value: Any, from_text: bool, source: str) -> Any:
    def bad() -> InvalidRequest:
        shown = value if isinstance(value, str) else _json_text(value)
        return InvalidRequest(
            "%s: %s = %s is not allowed; use %s." % (source, setting.name, shown[:60], setting.allowed()),
            setting.name,
        )

    if value is None or (from_text and isinstance(value, str) and value.strip().lower() in ("null", "none")):
        if setting.nullable:
            return None
        if value is None or "none" not in setting.choices:
            raise bad()
        value = "none"  # the enum value none, as in fault=none
    if from_text:
        text = value.strip()
        if setting.kind in ("int", "float"):
            if not text.isascii() or "_" in text:  # int() and float() take "1_0" and other scripts' digits
                raise bad()
            try:
                value = int(text) if setting.kind == "int" else float(text)
            except ValueError:
                raise bad() from None
        elif setting.kind == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise bad()
            value = text.lower() in ("true", "1", "yes")
        else:
            value = text
    kind = setting.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        if not setting.low <= value <= setting.high or 0 < value < setting.least:  # before float(): a 400-digit int overflows it
            raise bad()
        if kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
            raise bad()
        if not math.isfinite(value):
            raise bad()
        return int(value) if kind == "int" else float(value)
    if not isinstance(value, str):
        raise bad()
    if kind == "enum" and value not in setting.choices:
        raise bad()
    if kind == "str" and (len(value) > setting.high or not re.fullmatch(setting.pattern, value)):
        raise bad()
    return value


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def parse_layer(values: Mapping[str, Any], source: str, from_text: bool = False) -> Dict[str, Any]:
    """Validate one layer of settings: ``{name: value}``.

    ``from_text`` true parses string values (command line, headers: ``"0.5"``, ``"true"``,
    ``"null"``; numbers in ASCII digits, without ``_``); otherwise JSON types must match (``mock`` body object). ``source`` names the
    layer in error messages (``"mock"``, ``"X-Mock-Delay header"``, ``"--mock"``).

    Raises:
        InvalidRequest: an unknown name (listing the known ones), or a value of the wrong type
            or out of range (naming the setting and its allowed values).
    """
    out = {}
    for name, value in values.items():
        setting = SETTINGS.get(name)
        if setting is None:
            raise InvalidRequest(
                "%s: unknown setting %r; known settings: %s." % (source, name, ", ".join(SETTINGS)),
                name,
            )
        out[name] = _parse_value(setting, value, from_text, source)
    return out


def body_layer(value: Any) -> Dict[str, Any]:
    """Validate the JSON body's ``mock`` object (absent or null: no settings).

    Raises ``InvalidRequest`` when it is not an object, or as ``parse_layer`` does."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("mock must be an object of scenario settings (see GET /mock/settings).", "mock")
    return parse_layer(value, "mock")


def header_layer(headers: Iterable[Tuple[str, str]]) -> Dict[str, Any]:
    """Read ``X-Mock-<Setting>`` headers (``X-Mock-Line-Ending: crlf``; case-insensitive, ``-``
    for ``_``) into a validated layer.

    Text beyond ASCII arrives one of two ways, both UTF-8: as raw UTF-8 bytes (``X-Mock-Reply-Text:
    Grüße`` as curl sends it), or, for clients that can only send ASCII (a browser's ``fetch``
    refuses other characters), as an RFC 8187 extended value: ``UTF-8''`` then the UTF-8 bytes
    percent-encoded (``X-Mock-Reply-Text: UTF-8''Gr%C3%BC%C3%9Fe``; the charset name is
    case-insensitive, an empty language tag between the quotes is allowed). Raises
    ``InvalidRequest`` as ``parse_layer`` does, and for bytes or escapes that are not UTF-8,
    saying how to send them."""
    out: Dict[str, Any] = {}
    for key, value in headers:
        lower = key.lower()
        if lower.startswith("x-mock-"):
            name = lower[len("x-mock-"):].replace("-", "_")
            try:
                match = _EXT_VALUE_RE.fullmatch(value)
                if match:
                    value = unquote(match.group(1), errors="strict")
                elif not value.isascii():  # http.server hands over the raw bytes as Latin-1 text
                    value = value.encode("latin-1").decode("utf-8")
            except UnicodeError:
                raise InvalidRequest("%s header: the value is not UTF-8; send UTF-8 bytes, or the RFC 8187 "
                                     "form UTF-8''<percent-encoded UTF-8>, or put the setting in the body's "
                                     "mock object." % key, name) from None
            out.update(parse_layer({name: value}, "%s header" % key, from_text=True))
    return out


_EXT_VALUE_RE = re.compile(r"(?i:utf-8)'[A-Za-z0-9-]{0,35}'((?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-Fa-f]{2})*)")
"""An RFC 8187 ``ext-value`` in UTF-8: ``UTF-8'<language>'<value-chars>``; group 1 is the
percent-encoded value."""

_BUILT: Dict[tuple, Scenario] = {}
_BUILT_LIMIT = 256


def build(seed: int, delay: float, *layers: Mapping[str, Any]) -> Scenario:
    """Resolve layers (lowest precedence first) over the defaults into a ``Scenario``.

    ``seed`` and ``delay`` are the server's values for those two settings when no layer sets
    them. Raises ``InvalidRequest`` when settings contradict each other.

    A ``Scenario`` is immutable and most runs resolve the same layers (often none), so the
    last ``_BUILT_LIMIT`` distinct resolutions are kept and handed out again.
    """
    try:
        key: Optional[tuple] = (seed, delay) + tuple(tuple(layer.items()) for layer in layers)
        scenario = _BUILT.get(key)
    except TypeError:  # an unhashable value: resolve it afresh
        key = scenario = None
    if scenario is None:
        scenario = _build(seed, delay, layers)
        if key is not None:
            if len(_BUILT) >= _BUILT_LIMIT:
                _BUILT.clear()
            _BUILT[key] = scenario
    return scenario


def _build(seed: int, delay: float, layers: Tuple[Mapping[str, Any], ...]) -> Scenario:
    values = {name: s.default for name, s in SETTINGS.items()}
    values["seed"], values["delay"] = seed, delay
    for layer in layers:
        for name, value in layer.items():
            if value is None and name in ("seed", "delay"):
                continue
            values[name] = value
    scenario = Scenario(**values)
    if scenario.fault_after_seconds is not None and scenario.fault != "disconnect":
        raise InvalidRequest("fault_after_seconds applies only to fault=disconnect.", "fault_after_seconds")
    if scenario.reply is not None and scenario.reply_text is not None:
        raise InvalidRequest("Set reply or reply_text, not both.", "reply")
    return scenario


def replies_for(scenario: Scenario, replies: Tuple[str, ...]) -> Tuple[str, ...]:
    """The reply set a run picks from: ``reply_text`` alone, the ``reply``-th of ``replies``,
    or all of ``replies``.

    Raises:
        InvalidRequest: ``reply`` is past the end of ``replies``.
    """
    if scenario.reply_text is not None:
        return (scenario.reply_text,)
    if scenario.reply is not None:
        if scenario.reply >= len(replies):
            raise InvalidRequest(
                "reply = %d is not allowed; this server has %d replies, so use 0 to %d."
                % (scenario.reply, len(replies), len(replies) - 1), "reply")
        return (replies[scenario.reply],)
    return replies


# --- chunking --------------------------------------------------------------------------------


def splitter(scenario: Scenario, rng: random.Random) -> Callable[[str], List[str]]:
    """The function that cuts a reply (or tool-call arguments) into chunks, per ``chunking``:
    ``word`` (``pipes.tokenize``), ``char`` (one character each), ``fixed`` (``chunk_size``
    characters), ``random`` (1 to ``chunk_size`` characters, seeded) or ``whole`` (one chunk).
    The pieces always join to the input."""
    mode, size = scenario.chunking, scenario.chunk_size
    if mode == "word":
        return tokenize
    if mode == "char":
        return list
    if mode == "whole":
        return lambda text: [text] if text else []
    if mode == "fixed":
        return lambda text: [text[i:i + size] for i in range(0, len(text), size)]

    def random_pieces(text: str) -> List[str]:
        pieces, i = [], 0
        while i < len(text):
            n = rng.randint(1, size)
            pieces.append(text[i:i + n])
            i += n
        return pieces

    return random_pieces


def fault_fires(scenario: Scenario, rng: random.Random) -> bool:
    """Whether this request's fault happens: always for probability 1, never for ``none``,
    else one seeded draw."""
    if scenario.fault == "none":
        return False
    return scenario.fault_probability >= 1.0 or rng.random() < scenario.fault_probability


def planned_seconds(scenario: Scenario, events: int) -> float:
    """The longest a stream of ``events`` events can be planned to last under ``scenario``."""
    total = scenario.ttft + max(events - 1, 0) * (scenario.interval + scenario.jitter)
    if scenario.fault == "stall":
        total += scenario.stall
    return total


# --- shaping: events → SSE frames with extras, endings, faults and pacing --------------------

_BATCH_BYTES = 16 * 1024
"""Zero-delay frames are joined into writes of about this many bytes (a write ends a frame)."""

_BOM = b"\xef\xbb\xbf"
_DATA_LINE = re.compile(rb"(?m)^data: ")


_ENDINGS = (b"\n", b"\r\n", b"\r")
_AFTER_CR = (b"\r\n", b"\r")


class _Lines:
    """Rewrites the LF line endings of encoded SSE events per ``line_ending``."""

    def __init__(self, mode: str, rng: random.Random) -> None:
        self.mode = mode
        self.rng = rng

    def __call__(self, frame: bytes) -> bytes:
        if self.mode == "lf":
            return frame
        if self.mode == "crlf":
            return frame.replace(b"\n", b"\r\n")
        if self.mode == "cr":
            return frame.replace(b"\n", b"\r")
        parts = frame.split(b"\n")
        out = [parts[0]]
        previous = b""
        for line, part in zip(parts, parts[1:]):
            # A CR ending followed at once by an LF ending would read as one CRLF and merge
            # two events, so after a CR the next ending of an empty line is never a lone LF.
            choices = _AFTER_CR if previous == b"\r" and not line else _ENDINGS
            previous = self.rng.choice(choices)
            out.append(previous)
            out.append(part)
        return b"".join(out)


def shape(
    events: Iterable[Any],
    encoder: Any,
    scenario: Scenario,
    rng: random.Random,
    fault: bool,
    waits: Optional[Iterator[float]] = None,
    live: bool = False,
) -> Iterator[Step]:
    """Turn chat events into the shaped plan of a stream body (before byte and HTTP framing).

    See ``_shaped`` for what each setting does. ``waits``, when given, yields the seconds to
    wait before each event instead of ``ttft``/``delay`` (a token-stream subscriber follows
    its generation's timeline). ``live`` says the events are still arriving
    (``upstream.LiveReply``): they may include ``Wait`` steps (nothing new yet) and end in
    ``pipes.Failed``. A scenario that changes nothing but pacing takes a lean path
    (``_plain``) with the same steps and less work per event; the tests hold the two to the
    same output.
    """
    if not live and not fault and not scenario.jitter and scenario.is_plain():
        return _plain(events, encoder, scenario.ttft, scenario.interval, waits)
    return _shaped(events, encoder, scenario, rng, fault, waits)


def _plain(
    events: Iterable[Any], encoder: Any, ttft: float, interval: float,
    waits: Optional[Iterator[float]] = None,
) -> Iterator[Step]:
    encode = encoder.encode
    paced = waits is not None or interval > 0 or ttft > 0
    # No wait before a first event due at once: it leaves with the response head, in one send.
    if waits is not None:
        first = True
        for event in events:
            seconds = next(waits, 0.0)
            if seconds or not first:
                yield Wait(seconds)
            first = False
            yield Write(encode(event))
    elif paced:
        pause = Wait(interval)  # steps are immutable: one object serves every event
        first = True
        for event in events:
            if first:
                if ttft:
                    yield Wait(ttft)
                first = False
            else:
                yield pause
            yield Write(encode(event))
    else:
        # Nothing to wait for: hand the loop a few kilobytes at a time, not one frame a step.
        batch: List[bytes] = []
        size = 0
        for event in events:
            frame = encode(event)
            batch.append(frame)
            size += len(frame)
            if size >= _BATCH_BYTES:
                yield Write(b"".join(batch))
                batch, size = [], 0
        if batch:
            yield Write(b"".join(batch))
    done = encoder.done  # read last: an encoder may number it (EventSource ids)
    if done is not None:
        if paced:
            yield Wait(0)
        yield Write(done)


def _shaped(
    events: Iterable[Any],
    encoder: Any,
    scenario: Scenario,
    rng: random.Random,
    fault: bool,
    waits: Optional[Iterator[float]] = None,
) -> Iterator[Step]:
    """The general path of ``shape``.

    ``encoder`` gives ``encode(event) -> bytes`` (one LF-framed SSE event), ``error(status,
    code, message) -> bytes`` (the format's in-band error event) and ``done`` (the end
    sentinel event, bytes); ``pipes.ChunkEncoder`` is one.

    Pacing: ``Wait(ttft)`` before the first event and ``Wait(interval ± jitter)`` before each
    later one; keep-alive comments split long waits. Each event is decorated: ``id:``,
    ``retry:`` on the first, a BOM before the first, line endings. Then comes the ending
    (``done`` unless ``ending`` says otherwise). When ``fault`` is true, the fault happens
    after ``fault_after`` events (before the ending if the stream is shorter):
    ``error_frame`` sends the error event and ends the body without ``[DONE]``;
    ``disconnect`` ends with ``Close`` (or at ``fault_after_seconds`` into the stream);
    ``stall`` waits ``stall`` seconds; ``corrupt`` cuts the next event's JSON in half.
    When the stream is paced, every write is followed by a ``Wait`` (``Wait(0)`` at least),
    so each event is its own write. A ``Wait`` among the events (a live reply waiting for its
    next piece) passes through as it is (it counts toward ``fault_after_seconds``, and a
    keep-alive comment goes out each ``keepalive`` seconds of such waiting); a
    ``pipes.Failed`` event sends the format's error event and ends the body without ``[DONE]``.
    """
    sc = scenario
    lines = _Lines(sc.line_ending, rng)
    comment = lines(b": ping\n\n")
    sequence = 0
    elapsed = 0.0
    kind = sc.fault if fault else "none"
    timed = kind == "disconnect" and sc.fault_after_seconds is not None
    paced = sc.interval > 0 or sc.ttft > 0 or sc.jitter > 0 or waits is not None

    def decorate(frame: bytes, last: bool = False) -> bytes:
        nonlocal sequence
        sequence += 1
        if last:
            frame = frame[:-1]  # no blank line after the final event (LF form, before endings)
        if sc.multiline_data:
            frame = _spread(frame)
        if sc.data_spacing != "one":
            frame = _DATA_LINE.sub(b"data:" if sc.data_spacing == "none" else b"data:  ", frame)
        head = b""
        if sc.event_name is not None:
            head += b"event: %s\n" % sc.event_name.encode("ascii")
        if sc.event_ids:
            head += b"id: %d\n" % sequence
        if sequence == 1 and sc.retry is not None:
            head += b"retry: %d\n" % sc.retry
        out = lines(head + frame)
        if sequence == 1 and sc.bom:
            out = _BOM + out
        return out

    def wait(seconds: float) -> Iterator[Step]:
        """A wait (with jitter), split by keep-alive comments; a timed disconnect cuts it."""
        nonlocal elapsed
        if sc.jitter:
            seconds = max(0.0, seconds + rng.uniform(-sc.jitter, sc.jitter))
        if timed and elapsed + seconds >= sc.fault_after_seconds:
            yield Wait(max(0.0, sc.fault_after_seconds - elapsed))
            yield Close(sc.disconnect == "reset")
            return
        elapsed += seconds
        if sc.keepalive > 0:
            while seconds > sc.keepalive:
                yield Wait(sc.keepalive)
                yield Write(comment)
                seconds -= sc.keepalive
        if seconds > 0 or paced:
            yield Wait(seconds)

    def fire(next_frame: Optional[bytes]) -> Iterator[Step]:
        """The fault at its point; a ``Close`` or an error frame ends the stream."""
        if kind == "error_frame":
            message = "Mock fault: in-band error after %d events (fault=error_frame)." % sent
            yield Write(decorate(encoder.error(sc.fault_status, sc.error_code, message)))
        elif kind == "disconnect":
            yield Close(sc.disconnect == "reset")
        elif kind == "stall":
            yield from wait(sc.stall)

    sent = 0
    fired = timed or kind == "none"
    first = True
    idle = 0.0  # seconds a live reply has kept the stream waiting since its last write
    for event in events:
        if type(event) is Wait:  # a live reply: its next event is not in yet
            if timed and elapsed + event.seconds >= sc.fault_after_seconds:
                yield Wait(max(0.0, sc.fault_after_seconds - elapsed))
                yield Close(sc.disconnect == "reset")
                return
            elapsed += event.seconds
            idle += event.seconds
            yield event
            if sc.keepalive > 0 and idle >= sc.keepalive:
                idle = 0.0
                yield Write(comment)  # as a long wait of a paced stream is split
            continue
        idle = 0.0
        if type(event) is Failed:  # a live reply broke off: the format's error event ends it
            yield Write(decorate(encoder.error(event.status, event.code, event.message)))
            return
        frame = encoder.encode(event)
        if not fired and sent == sc.fault_after:
            fired = True
            if kind == "corrupt":
                frame = _corrupt(frame)
            else:
                for step in fire(frame):
                    yield step
                if kind != "stall":
                    return  # an error frame or a disconnect ends the stream, with no [DONE]
        if waits is not None:
            before = next(waits, 0.0)
        else:
            before = sc.ttft if first else sc.interval
        if before or not first or sc.jitter or timed:  # else it leaves with the head, as in _plain
            for step in wait(before):
                yield step
                if type(step) is Close:
                    return
        first = False
        sent += 1
        yield Write(decorate(frame))
        if sc.keepalive_between:
            yield Write(comment)
    done = encoder.done
    if not fired:  # the fault point lies past the last event: it happens before the ending
        if kind == "corrupt":
            done = done and _corrupt(done)
        else:
            yield from fire(None)
            if kind != "stall":
                return
    if sc.ending == "no_done" or done is None:  # None: a format without an end sentinel
        return
    if paced:
        yield Wait(0)
    if sc.ending == "done_no_space":
        done = done.replace(b"data: ", b"data:", 1)
    yield Write(decorate(done, last=sc.ending == "no_final_blank_line"))
    if sc.ending == "data_after_done":
        yield Write(decorate(encoder.encode(TextDelta("[data after DONE]"))))
    if sc.ending == "no_terminator":
        yield Close(False)


def _spread(frame: bytes) -> bytes:
    """Spread the JSON payload of each ``data:`` line over several ``data:`` lines, breaking
    only between JSON tokens (``json.dumps`` with ``indent``), never inside a string: a parser
    joins the lines with LF, which is whitespace to JSON. Non-JSON data is left as it is."""
    out = []
    for line in frame.split(b"\n"):
        if line.startswith(b"data: "):
            try:
                value = json.loads(line[6:])
            except ValueError:
                out.append(line)
                continue
            pretty = json.dumps(value, indent=1, ensure_ascii=False, allow_nan=False)
            out.extend(b"data: " + part.encode("utf-8") for part in pretty.split("\n"))
        else:
            out.append(line)
    return b"\n".join(out)


def _corrupt(frame: bytes) -> bytes:
    """The frame's data cut in half (no longer JSON), still ending with a blank line."""
    return frame[: max(len(frame) // 2, 7)].rstrip(b"\r\n") + b"\n\n"


# --- byte framing: writes → writes -----------------------------------------------------------


def _random_cuts(data: bytes, rng: random.Random) -> List[int]:
    """Seeded cut points, favouring the places parsers get wrong: inside a multi-byte UTF-8
    character, between CR and LF, and inside the blank line that ends an event."""
    cuts = set()
    for i in range(1, len(data)):
        tricky = (
            0x80 <= data[i] < 0xC0  # a UTF-8 continuation byte: cutting here splits a character
            or (data[i - 1] == 0x0D and data[i] == 0x0A)  # between CR and LF
            or (data[i - 1] in (0x0A, 0x0D) and data[i] in (0x0A, 0x0D))  # inside the blank line
        )
        if rng.random() < (0.5 if tricky else 0.05):
            cuts.add(i)
    return sorted(cuts)


def reframe(plan: Iterable[Step], scenario: Scenario, rng: random.Random) -> Iterator[Step]:
    """Re-cut a plan's writes per ``framing`` (see ``_reframe``); ``event`` framing returns the
    plan itself, adding no work per step."""
    if scenario.framing == "event":
        return iter(plan)
    return _reframe(plan, scenario, rng)


def _reframe(plan: Iterable[Step], scenario: Scenario, rng: random.Random) -> Iterator[Step]:
    """Re-cut a plan's writes per ``framing``: ``event`` (as is), ``split`` (every
    ``split_bytes`` bytes), ``random`` (seeded cuts, see ``_random_cuts``), ``byte`` (one byte
    per write) or ``coalesce`` (``coalesce`` writes joined; their waits add up before the joined
    write). Pieces of one write are separated by ``Wait(0)`` so that each is its own send."""
    mode = scenario.framing
    if mode == "coalesce":
        held: List[bytes] = []
        waited = 0.0
        for step in plan:
            if type(step) is Write:
                held.append(step.data)
                if len(held) == scenario.coalesce:
                    yield Wait(waited)
                    yield Write(b"".join(held))
                    held, waited = [], 0.0
            elif type(step) is Wait:
                waited += step.seconds
            else:
                if held:
                    yield Wait(waited)
                    yield Write(b"".join(held))
                yield step
                return
        if held:
            yield Wait(waited)
            yield Write(b"".join(held))
        return
    for step in plan:
        if type(step) is not Write:
            yield step
            continue
        data = step.data
        if mode == "random":
            cuts = _random_cuts(data, rng)
        else:
            size = 1 if mode == "byte" else scenario.split_bytes
            cuts = list(range(size, len(data), size))
        start = 0
        for cut in cuts + [len(data)]:
            if start:
                yield Wait(0)
            yield Write(data[start:cut])
            start = cut
