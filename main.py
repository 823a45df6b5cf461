#!/usr/bin/env python3
"""A local mock of the Langbase API that streams chat replies as Server-Sent Events.

Job: configuration and process life. ``parse_args`` turns the command line (with environment
fallbacks, read only here) into a frozen ``Settings``; ``make_server`` binds a ``Server``
without serving, so tests can use port 0; ``main`` prints the banner, serves until Ctrl-C or
SIGTERM, and shuts down within about a second, finishing open streams.

Standard library only (Python 3.9+). Run ``python3 main.py --help`` for the options.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "http.client" not in sys.modules and "ssl" not in sys.modules:
    # The server program (the installed command does the same in __main__.py): import
    # http.client, which http.server needs, while `import ssl` fails, as on a Python built
    # without ssl. OpenSSL then stays unloaded, about 4 MB less memory; an https --upstream
    # imports ssl when the server starts and has its own connection class (upstream.py).
    # For the life of this process, http.client then has no HTTPSConnection (so urllib.request
    # cannot open https:// URLs); nothing in the server uses them.
    sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        __import__("http.client")
    finally:
        del sys.modules["ssl"]

import argparse
import concurrent.futures
import gc
import ipaddress
import json
import logging
import os
import signal
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping, Optional, Sequence, Tuple

try:
    import resource
except ImportError:  # not on Windows: descriptor limits are then left alone
    resource = None  # type: ignore[assignment]

import fixtures
import formats
import journal
import pipes
import upstream
from api import SERVICE, VERSION, App
from http_handler import HttpConnection, Limits, refusal
from memory import MemoryStore
from pacer import Connection, Pacer
import scenario
import stores
from threads import InvalidRequest, ThreadStore, new_uuid4

__all__ = ["Settings", "Server", "parse_args", "make_server", "exposure_warning", "release_memory", "main"]

log = logging.getLogger("langbase-mock")

FIXTURE_POLL_SECONDS = 1.0
"""How often the fixture files are checked for changes (``--fixtures``)."""
IDLE_CHECK_SECONDS = 1.0
"""How often the server looks whether it has gone idle (no connection open) after serving
some, to give freed memory back (``release_memory``)."""
DESCRIPTOR_RESERVE = 64
"""File descriptors kept free beyond ``--max-connections`` (listening socket, log files, the
loop's own wake-up pair, a refusal's brief socket)."""


@dataclass(frozen=True)
class Settings:
    """Server configuration; built by ``parse_args`` and never changed afterwards.

    Fields: ``host`` (str), ``port`` (int, 0 = pick a free port), ``delay`` (seconds between
    stream chunks, float >= 0), ``seed`` (int, drives every reply choice), ``replies`` (tuple
    of reply texts), ``model`` (str, reported in chunks), ``strict_threads`` (bool: an unknown
    ``threadId`` in a run is a 404 instead of creating the thread), ``api_key`` (str or None:
    require ``Authorization: Bearer <api_key>`` on ``/v1``), ``cors_origins`` (tuple of
    origins, or ``("*",)``), ``max_body_bytes`` (int), the deadlines in seconds
    ``head_timeout`` (a request's whole head), ``body_timeout`` (its whole body),
    ``keep_alive_timeout`` (an idle connection between requests) and ``write_timeout`` (a
    client that stops reading its response), ``max_connections`` (open connections; more are
    answered 503), ``max_reply_chars`` (a reply's length after its variables are filled in),
    ``max_run_log_bytes`` (the ground truth of recent runs, estimated bytes), ``max_threads``,
    ``max_messages`` and ``max_thread_bytes`` (thread store bounds: threads, messages per
    thread, bytes of messages and metadata over all threads), ``allowed_hosts`` (tuple of
    extra ``Host`` names a loopback-bound server answers, ``("*",)`` for any: see
    ``routes.hosts``), ``db`` (path of the SQLite file that keeps threads and messages, or None:
    in memory), ``max_pipes`` and ``max_pipe_bytes`` (the pipe store's bounds: pipes, estimated
    bytes of memory of their configurations), ``memory_processing_seconds`` (how long an
    uploaded memory document takes to go from ``queued`` to ``completed``), ``max_memories``,
    ``max_documents`` and ``max_memory_bytes`` (memory store bounds: memories, documents over
    all memories, estimated bytes of memory held), ``fixtures`` (a fixture file or directory,
    or None; see ``fixtures``), ``strict_fixtures`` (bool: a run no fixture matches is a 404),
    ``upstream`` (an OpenAI-compatible base URL serving runs no fixture answers, or None),
    ``upstream_key`` (its bearer key, from ``LB_MOCK_UPSTREAM_KEY`` only; never shown in
    ``repr``), ``upstream_timeout`` (seconds for a whole upstream exchange), ``record`` (a
    directory for one fixture file per upstream exchange, or None), ``token_wait`` (seconds a
    token-stream subscriber that came before its generation waits for one before the mock
    generates the reply itself, 0 to 600), ``log_level`` (logging level name),
    ``mock`` (validated scenario settings from ``--mock``, as ``(name, value)`` pairs: the
    server-wide layer between the built-in defaults and a request's ``X-Mock-*`` headers).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    delay: float = 0.05
    seed: int = 0
    replies: Tuple[str, ...] = pipes.SAMPLE_REPLIES
    model: str = pipes.DEFAULT_MODEL
    strict_threads: bool = False
    api_key: Optional[str] = None
    cors_origins: Tuple[str, ...] = ("*",)
    max_body_bytes: int = 1024 * 1024
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    write_timeout: float = 30.0
    max_connections: int = 10_000
    max_reply_chars: int = 200_000
    max_run_log_bytes: int = 64 * 1024 * 1024
    max_threads: int = 100_000
    max_messages: int = 10_000
    max_thread_bytes: int = 256 * 1024 * 1024
    allowed_hosts: Tuple[str, ...] = ()
    db: Optional[str] = None
    max_pipes: int = 1000
    max_pipe_bytes: int = 16 * 1024 * 1024
    memory_processing_seconds: float = 1.5
    max_memories: int = 100
    max_documents: int = 1000
    max_memory_bytes: int = 64 * 1024 * 1024
    token_wait: float = 1.0
    fixtures: Optional[str] = None
    strict_fixtures: bool = False
    upstream: Optional[str] = None
    upstream_key: Optional[str] = field(default=None, repr=False)
    upstream_timeout: float = 60.0
    record: Optional[str] = None
    log_level: str = "info"
    mock: Tuple[Tuple[str, object], ...] = ()


def _number(text: str, kind: Callable[[str], object], what: str) -> object:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not %s" % (text, what)) from None


def _non_negative_float(text: str) -> float:
    value = _number(text, float, "a number of seconds >= 0")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("%r is not a number of seconds >= 0" % text)
    return value


def _token_wait(text: str) -> float:
    value = _non_negative_float(text)
    if value > 600:
        raise argparse.ArgumentTypeError("%r is not a number of seconds from 0 to 600" % text)
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float, "a number of seconds > 0")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("%r is not a number of seconds > 0" % text)
    return value


def _port(text: str) -> int:
    value = _number(text, int, "a port number 0-65535")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("%r is not a port number 0-65535 (0 picks a free port)" % text)
    return value


def _positive_int(text: str) -> int:
    value = _number(text, int, "a whole number >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError("%r is not a whole number >= 1" % text)
    return value


def _whole_number(text: str) -> int:
    return _number(text, int, "a whole number")


def _log_level(text: str) -> str:
    if text not in LOG_LEVELS:
        raise argparse.ArgumentTypeError("%r is not one of %s" % (text, ", ".join(LOG_LEVELS)))
    return text


def _yes_no(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("1", "true", "yes", "0", "false", "no", ""):
        raise argparse.ArgumentTypeError("%r is not 1/true/yes or 0/false/no" % text)
    return value in ("1", "true", "yes")


LOG_LEVELS = ("debug", "info", "warning", "error")

def descriptor_limit() -> int:
    """The most file descriptors this process may open: ``RLIMIT_NOFILE``'s hard limit, to
    which ``main`` raises the soft one (at most 1,048,576; 1,024 where there is no such limit
    to read)."""
    if resource is None:
        return 1024
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY or hard > 1 << 20 else hard


def default_max_connections() -> int:
    """``--max-connections`` when not given: the descriptor limit less ``DESCRIPTOR_RESERVE``."""
    return max(1, descriptor_limit() - DESCRIPTOR_RESERVE)


def _raise_descriptor_limit(wanted: int) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``wanted`` (never above the hard limit).
    Returns the soft limit now in force."""
    if resource is None:
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def exposure_warning(settings: "Settings") -> Optional[str]:
    """The warning to print when ``settings.host`` is reachable from other machines (anything
    but 127.0.0.0/8, ``::1`` or ``localhost``) and no ``--api-key`` guards it; else None."""
    if settings.api_key is not None or settings.host == "localhost":
        return None
    try:
        if ipaddress.ip_address(settings.host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: it may resolve to anything
    return ("listening on %s without --api-key: anyone who can reach this address can use the "
            "mock; add --api-key KEY (it guards the /v1 routes; /api and /mock stay open) or bind "
            "127.0.0.1" % settings.host)


def _load_replies(path: str) -> Tuple[str, ...]:
    try:
        with open(path, encoding="utf-8") as f:
            return pipes.parse_replies(json.load(f))
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError("cannot use replies file %r: %s" % (path, exc)) from None


def _build_parser(prog: str = "main.py") -> argparse.ArgumentParser:
    """The command line. Each option's environment variable is read by ``parse_args`` (not
    given to argparse as a default), so that a bad value's error names the variable."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Mock Langbase API server: POST /v1/pipes/run streams replies as Server-Sent Events "
            "(OpenAI chat.completion.chunk frames, lb-thread-id header, data: [DONE]); the "
            "Threads API keeps threads in memory. No API key, no network, reproducible."
        ),
        epilog=(
            "Every option has an environment fallback, shown in brackets; the command line "
            "wins. Example: %s --port 0 --delay 1.0" % prog
        ),
    )
    parser.env_options = {}  # dest -> (environment variable, fallback text, type or None)

    def a(flag: str, env_name: str, fallback: Optional[str], type=None, **kwargs) -> None:
        action = parser.add_argument(flag, type=type, default=None, **kwargs)
        parser.env_options[action.dest] = (env_name, fallback, type)

    a("--host", "HOST", "127.0.0.1",
      help="address to bind [HOST] (default 127.0.0.1; 0.0.0.0 exposes the mock to your network)")
    a("--port", "PORT", "8000", _port,
      help="TCP port [PORT] (default 8000; 0 picks a free port and prints it)")
    a("--delay", "LB_MOCK_DELAY", "0.05", _non_negative_float,
      help="seconds between stream chunks [LB_MOCK_DELAY] (default 0.05; 1.0 for the old "
           "slow mode, 0 for as fast as possible)")
    a("--seed", "LB_MOCK_SEED", "0", _whole_number,
      help="seed for every reply choice [LB_MOCK_SEED] (default 0): the same request and seed "
           "give the same reply")
    a("--replies", "LB_MOCK_REPLIES", None, _load_replies,
      help="JSON file holding an array of reply strings to use instead of the built-in ones "
           "[LB_MOCK_REPLIES]; {{name}} placeholders are filled from the run's variables")
    a("--model", "LB_MOCK_MODEL", pipes.DEFAULT_MODEL,
      help="model name reported in chunks [LB_MOCK_MODEL] (default %s)" % pipes.DEFAULT_MODEL)
    parser.add_argument(
        "--strict-threads", action="store_true", default=None,
        help="answer 404 NOT_FOUND for a run whose threadId is unknown, instead of creating that "
             "thread [LB_MOCK_STRICT_THREADS=1]")
    parser.env_options["strict_threads"] = ("LB_MOCK_STRICT_THREADS", "", _yes_no)
    a("--api-key", "LB_MOCK_API_KEY", None,
      help="require 'Authorization: Bearer KEY' on every /v1 request [LB_MOCK_API_KEY]; "
           "without it any well-formed key (or none) is accepted")
    a("--cors-origins", "LB_MOCK_CORS_ORIGINS", "*",
      help="comma-separated origins allowed by CORS, or * (default) [LB_MOCK_CORS_ORIGINS]")
    a("--max-body-bytes", "LB_MOCK_MAX_BODY_BYTES", str(1024 * 1024), _positive_int,
      help="largest request body accepted, in bytes (default 1048576) [LB_MOCK_MAX_BODY_BYTES]")
    a("--head-timeout", "LB_MOCK_HEAD_TIMEOUT", "10", _positive_float,
      help="seconds a client has to send a whole request head, from connecting or from the "
           "first byte of a later request (default 10) [LB_MOCK_HEAD_TIMEOUT]")
    a("--body-timeout", "LB_MOCK_BODY_TIMEOUT", "30", _positive_float,
      help="seconds a client has to send a whole request body after its head (default 30) "
           "[LB_MOCK_BODY_TIMEOUT]")
    a("--keep-alive-timeout", "LB_MOCK_KEEP_ALIVE_TIMEOUT", "5", _positive_float,
      help="seconds an idle connection is kept open between requests (default 5) "
           "[LB_MOCK_KEEP_ALIVE_TIMEOUT]")
    a("--write-timeout", "LB_MOCK_WRITE_TIMEOUT", "30", _positive_float,
      help="seconds a client may leave its response unread before it is dropped (default 30) "
           "[LB_MOCK_WRITE_TIMEOUT]")
    a("--max-connections", "LB_MOCK_MAX_CONNECTIONS", str(default_max_connections()), _positive_int,
      help="most open connections; beyond it new ones get 503 with Retry-After (default: the "
           "process's descriptor limit less %d, now %d) [LB_MOCK_MAX_CONNECTIONS]"
           % (DESCRIPTOR_RESERVE, default_max_connections()))
    a("--max-reply-chars", "LB_MOCK_MAX_REPLY_CHARS", "200000", _positive_int,
      help="longest reply, in characters, after {{name}} variables are filled in; longer is a 400 "
           "(default 200000) [LB_MOCK_MAX_REPLY_CHARS]")
    a("--max-run-log-bytes", "LB_MOCK_MAX_RUN_LOG_BYTES", str(64 << 20), _positive_int,
      help="memory, in bytes, kept for the ground truth of recent runs (GET /mock/runs); the oldest "
           "go first (default 67108864) [LB_MOCK_MAX_RUN_LOG_BYTES]")
    a("--max-threads", "LB_MOCK_MAX_THREADS", "100000", _positive_int,
      help="most threads kept in memory (default 100000) [LB_MOCK_MAX_THREADS]")
    a("--max-messages", "LB_MOCK_MAX_MESSAGES", "10000", _positive_int,
      help="most messages per thread (default 10000) [LB_MOCK_MAX_MESSAGES]")
    a("--max-thread-bytes", "LB_MOCK_MAX_THREAD_BYTES", str(256 << 20), _positive_int,
      help="most bytes of thread messages and metadata kept, all threads together (as compact UTF-8 "
           "JSON); a write past it is 403 USAGE_EXCEEDED and stores nothing (default 268435456) "
           "[LB_MOCK_MAX_THREAD_BYTES]")
    a("--db", "LB_MOCK_DB", None, metavar="FILE",
      help="keep threads and messages in this SQLite file (created if missing; WAL mode), so they "
           "survive restarts and several servers can share them; default: in memory [LB_MOCK_DB]")
    a("--allowed-hosts", "LB_MOCK_ALLOWED_HOSTS", "", metavar="NAMES",
      help="comma-separated Host names (without port) a server bound to a loopback address also "
           "answers; others get 403, which stops DNS rebinding. Default: only localhost, 127.0.0.1 "
           "and [::1]; '*' turns the check off [LB_MOCK_ALLOWED_HOSTS]")
    a("--max-pipes", "LB_MOCK_MAX_PIPES", "1000", _positive_int,
      help="most pipes kept in memory (POST /v1/pipes); more is 403 USAGE_EXCEEDED (default 1000) "
           "[LB_MOCK_MAX_PIPES]")
    a("--max-pipe-bytes", "LB_MOCK_MAX_PIPE_BYTES", str(16 << 20), _positive_int,
      help="most bytes of memory pipe configurations may occupy (estimated from their JSON), all "
           "pipes together; more is 403 USAGE_EXCEEDED (default 16777216) [LB_MOCK_MAX_PIPE_BYTES]")
    a("--memory-processing-seconds", "LB_MOCK_MEMORY_PROCESSING_SECONDS", "1.5", _non_negative_float,
      help="seconds an uploaded memory document takes to go from queued (first third) through "
           "in_progress to completed or failed (default 1.5; 0: at once) [LB_MOCK_MEMORY_PROCESSING_SECONDS]")
    a("--max-memories", "LB_MOCK_MAX_MEMORIES", "100", _positive_int,
      help="most memories kept (default 100) [LB_MOCK_MAX_MEMORIES]")
    a("--max-documents", "LB_MOCK_MAX_DOCUMENTS", "1000", _positive_int,
      help="most memory documents kept over all memories, pending uploads included (default 1000) "
           "[LB_MOCK_MAX_DOCUMENTS]")
    a("--max-memory-bytes", "LB_MOCK_MAX_MEMORY_BYTES", str(64 << 20), _positive_int,
      help="most bytes of memory the memory documents may occupy, estimated: their text and word "
           "index (default 67108864); one upload is also bounded by --max-body-bytes "
           "[LB_MOCK_MAX_MEMORY_BYTES]")
    a("--token-wait", "LB_MOCK_TOKEN_WAIT", "1", _token_wait,
      help="seconds a token-stream subscriber (GET /api/stream/{sessionId}/{chatMessageId}) that "
           "comes before POST /api/generate waits for it; then the mock generates the reply itself "
           "(default 1, at most 600) [LB_MOCK_TOKEN_WAIT]")
    parser.add_argument(
        "--mock", action="append", metavar="SETTING=VALUE",
        help="a scenario setting for every stream, e.g. --mock line_ending=crlf --mock "
             "fault=disconnect (repeatable; GET /mock/settings lists them) [LB_MOCK_SCENARIO, "
             "comma-separated]; request headers and the body's mock object override it")
    a("--fixtures", "LB_MOCK_FIXTURES", None, metavar="PATH",
      help="a JSON fixture file, or a directory of them, scripting replies by match rules; "
           "reloaded when it changes (docs/fixtures.md) [LB_MOCK_FIXTURES]")
    parser.add_argument(
        "--strict", action="store_true", default=None,
        help="answer 404 for a run that no fixture matches, instead of a built-in reply [LB_MOCK_STRICT=1]")
    parser.env_options["strict"] = ("LB_MOCK_STRICT", "", _yes_no)
    a("--upstream", "LB_MOCK_UPSTREAM", None, metavar="URL",
      help="serve runs that no fixture answers from this OpenAI-compatible endpoint, e.g. "
           "https://api.openai.com/v1 or http://127.0.0.1:11434/v1; its key comes from the "
           "LB_MOCK_UPSTREAM_KEY environment variable [LB_MOCK_UPSTREAM]")
    a("--upstream-timeout", "LB_MOCK_UPSTREAM_TIMEOUT", "60", _positive_float,
      help="seconds an upstream has for a whole reply; then 504 (default 60) [LB_MOCK_UPSTREAM_TIMEOUT]")
    a("--record", "LB_MOCK_RECORD", None, metavar="DIR",
      help="with --upstream, write one fixture file per exchange into DIR (chunk texts, boundaries, "
           "timing; no headers or keys); replay with --fixtures DIR [LB_MOCK_RECORD]")
    a("--log-level", "LOG_LEVEL", "info", _log_level, metavar="{%s}" % ",".join(LOG_LEVELS),
      help="log verbosity [LOG_LEVEL] (default info: one line per request)")
    parser.add_argument("--version", action="version", version="%s %s" % (SERVICE, VERSION),
                        help="print the version and exit")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None, env: Optional[Mapping[str, str]] = None,
               prog: str = "main.py") -> Settings:
    """Build ``Settings`` from ``argv`` (default ``sys.argv[1:]``) and ``env`` (default
    ``os.environ``); ``prog`` is the command's name in usage and error messages. Exits with
    status 2 and a usage message on a bad value, as argparse does; the message names the flag
    (``argument --delay: 'abc' is not a number of seconds >= 0``) or the environment variable
    (``LB_MOCK_DELAY='abc': ...``) the value came from."""
    env = os.environ if env is None else env
    parser = _build_parser(prog)
    ns = parser.parse_args(argv)
    for dest, (env_name, fallback, kind) in parser.env_options.items():
        if getattr(ns, dest) is not None:
            continue  # given on the command line
        text = env.get(env_name)
        if text is None:
            setattr(ns, dest, kind(fallback) if kind is not None and fallback is not None else fallback)
            continue
        try:
            setattr(ns, dest, kind(text) if kind is not None else text)
        except argparse.ArgumentTypeError as exc:
            parser.error("environment variable %s: %s" % (env_name, exc))
    too_long = [i for i, text in enumerate(ns.replies or ()) if len(text) > ns.max_reply_chars]
    if too_long:
        parser.error("reply %d of --replies is %d characters, over --max-reply-chars %d"
                     % (too_long[0], len(ns.replies[too_long[0]]), ns.max_reply_chars))
    origins = tuple(o.strip() for o in ns.cors_origins.split(",") if o.strip())
    mock = {}
    try:
        for source, items in (
            ("environment variable LB_MOCK_SCENARIO",
             [p for p in env.get("LB_MOCK_SCENARIO", "").split(",") if p.strip()]),
            ("--mock", ns.mock or []),  # the command line wins, setting by setting
        ):
            pairs = {}
            for item in items:
                name, sep, value = item.partition("=")
                if not sep:
                    parser.error("%s takes SETTING=VALUE, got %r" % (source, item))
                pairs[name.strip()] = value
            mock.update(scenario.parse_layer(pairs, source, from_text=True))
        scenario.build(0, 0.0, mock)
    except InvalidRequest as exc:
        parser.error(exc.message)
    if ns.record and not ns.upstream:
        parser.error("--record needs --upstream: it records what the upstream answers")
    if ns.upstream:
        try:
            upstream.parse_url(ns.upstream)
        except ValueError as exc:
            parser.error("--upstream: %s" % exc)
    if ns.fixtures:
        try:
            fixtures.load_path(ns.fixtures)
        except fixtures.FixtureError as exc:
            parser.error("--fixtures: %s" % exc)
    return Settings(
        host=ns.host,
        port=int(ns.port),
        delay=float(ns.delay),
        seed=int(ns.seed),
        replies=ns.replies or pipes.SAMPLE_REPLIES,
        model=ns.model,
        strict_threads=bool(ns.strict_threads),
        api_key=ns.api_key or None,
        cors_origins=("*",) if "*" in origins or not origins else origins,
        max_body_bytes=int(ns.max_body_bytes),
        head_timeout=float(ns.head_timeout),
        body_timeout=float(ns.body_timeout),
        keep_alive_timeout=float(ns.keep_alive_timeout),
        write_timeout=float(ns.write_timeout),
        max_connections=int(ns.max_connections),
        max_reply_chars=int(ns.max_reply_chars),
        max_run_log_bytes=int(ns.max_run_log_bytes),
        max_threads=int(ns.max_threads),
        max_messages=int(ns.max_messages),
        max_thread_bytes=int(ns.max_thread_bytes),
        db=ns.db,
        allowed_hosts=tuple(h.strip().lower() for h in ns.allowed_hosts.split(",") if h.strip()),
        max_pipes=int(ns.max_pipes),
        max_pipe_bytes=int(ns.max_pipe_bytes),
        memory_processing_seconds=float(ns.memory_processing_seconds),
        max_memories=int(ns.max_memories),
        max_documents=int(ns.max_documents),
        max_memory_bytes=int(ns.max_memory_bytes),
        token_wait=float(ns.token_wait),
        fixtures=ns.fixtures or None,
        strict_fixtures=bool(ns.strict),
        upstream=ns.upstream or None,
        upstream_key=env.get("LB_MOCK_UPSTREAM_KEY") or None,
        upstream_timeout=float(ns.upstream_timeout),
        record=ns.record or None,
        log_level=ns.log_level,
        mock=tuple(mock.items()),
    )


def _find_malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim`` (Linux), or None where the C library has none (musl, macOS,
    Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _find_malloc_trim()


def release_memory() -> float:
    """Give memory the server no longer uses back to the operating system: collect cyclic
    garbage, then, with glibc, hand every free page of the C allocator back
    (``malloc_trim(0)``; elsewhere only the collection). Python's own small-object arenas go
    back by themselves once empty. Returns the seconds it took: 2-15 ms after two minutes of
    1,000 soak clients, about 30 ms once 300 MB were freed (docs/limits-and-security.md)."""
    started = time.perf_counter()
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    return time.perf_counter() - started


def _thread_store(settings: Settings, clock: Callable[[], float], new_id: Callable[[], str]) -> ThreadStore:
    """The thread store ``settings`` ask for: in memory, or in the SQLite file ``settings.db``
    (``sqlite_store``; raises ``ValueError`` if it cannot be opened). ``sqlite3`` is imported
    only then: it costs about 1 MB of memory."""
    bounds = dict(clock=clock, new_id=new_id, max_threads=settings.max_threads,
                  max_messages=settings.max_messages, max_bytes=settings.max_thread_bytes)
    if settings.db:
        import sqlite3
        from sqlite_store import SqliteThreadStore
        try:
            return SqliteThreadStore(settings.db, **bounds)
        except sqlite3.Error as exc:
            raise ValueError(str(exc)) from exc
    return ThreadStore(**bounds)


class Server(ThreadingHTTPServer):
    """The HTTP server: binds the listening socket and owns the settings, the application state
    (``app``: thread store, run log, token buffer, ``app.memory``: the ``memory.MemoryStore``,
    ``app.fixtures``: the ``fixtures.FixtureSet``, ``app.journal``: the ``journal.Journal``)
    and the event loop (``pacer``).

    ``serve_forever`` runs the loop on the calling thread: the loop accepts every connection,
    reads requests without blocking, answers them and paces every stream, so a silent, slow or
    half-sent client costs one file descriptor and no thread. ``stop`` (or ``shutdown``) ends it
    from any other thread.

    It stays a ``ThreadingHTTPServer`` for what that class does well here (binding, address
    reuse, the listen backlog, ``server_close``) and for code that expects one; its per-request
    handler class and threads are not used, since the loop answers every request itself.
    """

    allow_reuse_address = True
    request_queue_size = max(socket.SOMAXCONN, 65535)  # the kernel caps it at net.core.somaxconn

    def __init__(
        self,
        settings: Settings,
        *,
        store: Optional[ThreadStore] = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_uuid4,
    ) -> None:
        self.settings = settings
        self.pacer = Pacer(write_timeout=settings.write_timeout, max_connections=settings.max_connections)
        self.app = App(
            settings,
            store or _thread_store(settings, clock, new_id),
            pipes.RunLog(max_bytes=settings.max_run_log_bytes), formats.TokenBroker(time.monotonic), clock, new_id, time.monotonic(),
            lambda: {"open_streams": self.pacer.open_streams, "connections": self.pacer.connections},
        )
        self.app.pipes = stores.PipeStore(lambda: "pipe_" + new_id().replace("-", ""),
                                          settings.max_pipes, settings.max_pipe_bytes)
        self.app.traces = stores.TraceLog()
        # The memory store rides on the App like the thread store (routes read ``app.memory``).
        self.app.memory = MemoryStore(clock, settings.memory_processing_seconds, settings.max_memories,
                                      settings.max_documents, settings.max_memory_bytes)
        self.app.fixtures = fixtures.FixtureSet(settings.fixtures)
        self.app.journal = journal.Journal()
        # With --db, routes run on one worker thread (http_handler): disk work and waits for
        # another process's lock never hold up the loop that paces every stream.
        self.app.worker = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store")
                           if settings.db else None)
        self.app.upstream = (upstream.Upstream(settings.upstream, settings.upstream_key, settings.upstream_timeout,
                                               settings.record) if settings.upstream else None)
        self.store = self.app.store
        self.limits = Limits(settings.head_timeout, settings.body_timeout, settings.keep_alive_timeout,
                             settings.max_body_bytes)
        self._accepted = 0  # connections accepted so far
        self._released_at = 0  # ``_accepted`` when memory was last released
        self._serving = False
        self._stopped = False
        self._life = threading.Lock()  # orders serve_forever and stop, whichever comes first
        try:
            super().__init__((settings.host, settings.port), BaseHTTPRequestHandler, bind_and_activate=True)
        except BaseException:
            close = getattr(self.store, "close", None)
            if close is not None:
                close()
            raise

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def _protocol(self, conn: Connection) -> HttpConnection:
        self._accepted += 1
        return HttpConnection(conn, self.app, self.limits, self.settings.cors_origins)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Run the event loop on this thread until ``stop()`` (``poll_interval`` is unused:
        the loop wakes on events, not by polling)."""
        with self._life:
            if self._stopped:
                return
            self._serving = True
        self.pacer.listen(self.socket, self._protocol, lambda: refusal(self.settings.max_connections))
        if self.settings.fixtures:
            self._watch_fixtures()
        self._release_when_idle()
        self.pacer.run()

    def _watch_fixtures(self) -> None:
        """Reload changed fixture files, then look again in ``FIXTURE_POLL_SECONDS`` (a timer on
        the loop: a few ``stat`` calls a second, no thread, no busy polling)."""
        self.app.fixtures.poll()
        self.pacer.call_at(time.monotonic() + FIXTURE_POLL_SECONDS, self._watch_fixtures)

    def _release_when_idle(self) -> None:
        """Once no connection is open and some were accepted since the last time, give freed
        memory back (``release_memory``: its pause then holds up no client); look again in
        ``IDLE_CHECK_SECONDS``. A timer on the loop, like ``_watch_fixtures``."""
        if self.pacer.connections == 0 and self._accepted != self._released_at:
            self._released_at = self._accepted
            log.debug("idle: memory released in %.1f ms", 1000 * release_memory())
        self.pacer.call_at(time.monotonic() + IDLE_CHECK_SECONDS, self._release_when_idle)

    def shutdown(self) -> None:
        """Stop serving (see ``stop``)."""
        self.stop()

    def stop(self, drain_seconds: float = 1.0) -> None:
        """Stop accepting, finish open streams at full speed (at most ``drain_seconds``), close
        every connection and the listening socket. Call from a thread other than the one in
        ``serve_forever``; safe to call twice."""
        with self._life:
            if self._stopped:
                return
            self._stopped = True
            serving = self._serving
        if self.app.upstream is not None:
            self.app.upstream.stop()  # live replies end now, not when their model is done
        if serving:
            self.pacer.stop(drain_seconds)
        self.server_close()
        if self.app.worker is not None:
            self.app.worker.shutdown(wait=True)  # a route still running finishes its write
        close = getattr(self.store, "close", None)
        if close is not None:  # the SQLite store: checkpoint and close the file
            close()


def make_server(settings: Settings, **kwargs) -> Server:
    """Create and bind a ``Server`` (not yet serving); ``kwargs`` go to ``Server``
    (``store``, ``clock``, ``new_id``) for tests."""
    return Server(settings, **kwargs)


def banner(server: Server) -> str:
    """The startup text: URL, settings that matter (the server-wide scenario when any is set),
    a ready-to-paste ``curl -N`` line and where the endpoints and scenario settings are listed."""
    s = server.settings
    host, port = server.server_address[:2]
    url = "http://%s:%d" % (host if ":" not in host else "[%s]" % host, port)
    auth = "Bearer %s" % s.api_key if s.api_key else "Bearer any-key"
    body = '{"stream":true,"messages":[{"role":"user","content":"Hello!"}]}'
    lines = [
        "%s %s listening on %s" % (SERVICE, VERSION, url),
        "  delay %gs between chunks, seed %d, %d replies, model %s, auth %s, threads %s"
        % (s.delay, s.seed, len(s.replies), s.model,
           "required" if s.api_key else "optional",
           ("strict" if s.strict_threads else "created on first use")
           + (" and kept in %s" % s.db if s.db else "")),
        "  up to %d connections; deadlines: head %gs, body %gs, keep-alive %gs, unread reply %gs"
        % (s.max_connections, s.head_timeout, s.body_timeout, s.keep_alive_timeout, s.write_timeout),
    ]
    if s.mock:
        lines.append("  scenario for every stream (--mock, LB_MOCK_SCENARIO): %s" % ", ".join(
            "%s=%s" % (name, value if isinstance(value, str) else "none" if value is None else json.dumps(value))
            for name, value in s.mock))
    if s.upstream:
        lines.append("  runs no fixture answers go to %s%s" % (server.app.upstream, "; recorded in %s" % s.record
                                                               if s.record else ""))
    if s.fixtures:
        lines.append("  %d fixtures from %s (reloaded on change)%s" % (
            len(server.app.fixtures), s.fixtures, "; strict: unmatched runs are 404" if s.strict_fixtures else ""))
    lines += [
        "  try:  curl -N %s/v1/pipes/run -H 'Content-Type: application/json' "
        "-H 'Authorization: %s' -d '%s'" % (url, auth, body),
        "  playground: %s/playground (open it in a browser)" % url,
        "  endpoints: %s/   scenario settings: %s/mock/settings   ground truth: %s/mock/runs"
        % (url, url, url),
        "  stop with Ctrl-C",
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None, prog: str = "main.py") -> int:
    """Run the server until Ctrl-C or SIGTERM (``prog``: the command's name in ``--help``).
    Returns the process exit status."""
    settings = parse_args(argv, prog=prog)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        server = make_server(settings)
    except ValueError as exc:  # the --db file (_thread_store)
        print("error: cannot use --db %s: %s" % (settings.db, exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print("error: cannot listen on %s:%d: %s (try --port 0 for a free port)"
              % (settings.host, settings.port, exc.strerror or exc), file=sys.stderr)
        return 1

    warning = exposure_warning(settings)
    if warning:
        log.warning("%s", warning)
    soft = _raise_descriptor_limit(settings.max_connections + DESCRIPTOR_RESERVE)
    if settings.max_connections + DESCRIPTOR_RESERVE > soft:
        log.warning("--max-connections %d is above what the descriptor limit (%d) allows; past "
                    "it, accepting pauses instead of answering 503 (raise 'ulimit -n')",
                    settings.max_connections, soft)
    # The cyclic garbage collector's default pace (a collection every 700 allocations, a full
    # one every 70,000) makes thousands of open connections a pause of tens of milliseconds
    # every few seconds: every stream late at once. Collect less often, and leave the
    # start-up objects out of it (bench/loadgen.py, 10,000 streams: chunk-interval error p99
    # about 95 ms before, 20-50 ms after).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop_requested.is_set():
            # A second signal: the user wants out now; no traceback, no waiting.
            os.write(2, b"second signal: exiting at once\n")
            os._exit(1)
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    loop = threading.Thread(target=server.serve_forever, name="pacer", daemon=True)
    loop.start()
    print(banner(server), flush=True)
    while loop.is_alive() and not stop_requested.wait(0.5):
        pass
    log.info("shutting down: finishing %d open stream(s)", server.pacer.open_streams)
    server.stop(drain_seconds=1.0)
    loop.join(1.0)
    return 1 if server.pacer.crashed else 0


if __name__ == "__main__":
    sys.exit(main())
