#!/usr/bin/env python3
"""A local mock of the Langbase API that streams chat replies as Server-Sent Events.

Job: configuration and process life. ``parse_args`` turns the command line (with environment
fallbacks, read only here) into a frozen ``Settings``; ``make_server`` binds a ``Server``
without serving, so tests can use port 0; ``main`` prints the banner, serves until Ctrl-C or
SIGTERM, and shuts down within about a second, finishing open streams.

Standard library only (Python 3.9+). Run ``python3 main.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping, Optional, Sequence, Tuple

try:
    import resource
except ImportError:  # not on Windows: descriptor limits are then left alone
    resource = None  # type: ignore[assignment]

import formats
import pipes
from api import SERVICE, VERSION, App
from http_handler import HttpConnection, Limits, refusal
from memory import MemoryStore
from pacer import Connection, Pacer
import scenario
import stores
from threads import InvalidRequest, ThreadStore, new_uuid4

__all__ = ["Settings", "Server", "parse_args", "make_server", "exposure_warning", "main"]

log = logging.getLogger("langbase-mock")

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
    ``max_run_log_bytes`` (the ground truth of recent runs, estimated bytes), ``max_threads`` and
    ``max_messages`` (store bounds), ``max_pipes`` and ``max_pipe_bytes`` (the pipe store's
    bounds: pipes, estimated bytes of memory of their configurations), ``memory_processing_seconds`` (how
    long an uploaded memory document takes to go from ``queued`` to ``completed``),
    ``max_memories``, ``max_documents`` and ``max_memory_bytes`` (memory store bounds:
    memories, documents over all memories, estimated bytes of memory held), ``token_wait`` (seconds a
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
    max_pipes: int = 1000
    max_pipe_bytes: int = 16 * 1024 * 1024
    memory_processing_seconds: float = 1.5
    max_memories: int = 100
    max_documents: int = 1000
    max_memory_bytes: int = 64 * 1024 * 1024
    token_wait: float = 1.0
    log_level: str = "info"
    mock: Tuple[Tuple[str, object], ...] = ()


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds >= 0")
    return value


def _token_wait(text: str) -> float:
    value = _non_negative_float(text)
    if value > 600:
        raise argparse.ArgumentTypeError("must be at most 600 seconds")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds > 0")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 0-65535 (0 picks a free port)")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number >= 1")
    return value


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


def _build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def default(name: str, fallback: str) -> str:
        return env.get(name, fallback)

    parser = argparse.ArgumentParser(
        prog="main.py",
        description=(
            "Mock Langbase API server: POST /v1/pipes/run streams replies as Server-Sent Events "
            "(OpenAI chat.completion.chunk frames, lb-thread-id header, data: [DONE]); the "
            "Threads API keeps threads in memory. No API key, no network, reproducible."
        ),
        epilog=(
            "Every option has an environment fallback, shown in brackets; the command line "
            "wins. Example: python3 main.py --port 0 --delay 1.0"
        ),
    )
    a = parser.add_argument
    a("--host", default=default("HOST", "127.0.0.1"),
      help="address to bind [HOST] (default 127.0.0.1; 0.0.0.0 exposes the mock to your network)")
    a("--port", type=_port, default=default("PORT", "8000"),
      help="TCP port [PORT] (default 8000; 0 picks a free port and prints it)")
    a("--delay", type=_non_negative_float, default=default("LB_MOCK_DELAY", "0.05"),
      help="seconds between stream chunks [LB_MOCK_DELAY] (default 0.05; 1.0 for the old "
           "slow mode, 0 for as fast as possible)")
    a("--seed", type=int, default=default("LB_MOCK_SEED", "0"),
      help="seed for every reply choice [LB_MOCK_SEED] (default 0): the same request and seed "
           "give the same reply")
    a("--replies", type=_load_replies, default=env.get("LB_MOCK_REPLIES"),
      help="JSON file holding an array of reply strings to use instead of the built-in ones "
           "[LB_MOCK_REPLIES]; {{name}} placeholders are filled from the run's variables")
    a("--model", default=default("LB_MOCK_MODEL", pipes.DEFAULT_MODEL),
      help="model name reported in chunks [LB_MOCK_MODEL] (default %s)" % pipes.DEFAULT_MODEL)
    a("--strict-threads", action="store_true",
      default=default("LB_MOCK_STRICT_THREADS", "") in ("1", "true", "yes"),
      help="answer 404 NOT_FOUND for a run whose threadId is unknown, instead of creating that "
           "thread [LB_MOCK_STRICT_THREADS=1]")
    a("--api-key", default=env.get("LB_MOCK_API_KEY"),
      help="require 'Authorization: Bearer KEY' on every /v1 request [LB_MOCK_API_KEY]; "
           "without it any well-formed key (or none) is accepted")
    a("--cors-origins", default=default("LB_MOCK_CORS_ORIGINS", "*"),
      help="comma-separated origins allowed by CORS, or * (default) [LB_MOCK_CORS_ORIGINS]")
    a("--max-body-bytes", type=_positive_int, default=default("LB_MOCK_MAX_BODY_BYTES", str(1024 * 1024)),
      help="largest request body accepted, in bytes (default 1048576) [LB_MOCK_MAX_BODY_BYTES]")
    a("--head-timeout", type=_positive_float, default=default("LB_MOCK_HEAD_TIMEOUT", "10"),
      help="seconds a client has to send a whole request head, from connecting or from the "
           "first byte of a later request (default 10) [LB_MOCK_HEAD_TIMEOUT]")
    a("--body-timeout", type=_positive_float, default=default("LB_MOCK_BODY_TIMEOUT", "30"),
      help="seconds a client has to send a whole request body after its head (default 30) "
           "[LB_MOCK_BODY_TIMEOUT]")
    a("--keep-alive-timeout", type=_positive_float, default=default("LB_MOCK_KEEP_ALIVE_TIMEOUT", "5"),
      help="seconds an idle connection is kept open between requests (default 5) "
           "[LB_MOCK_KEEP_ALIVE_TIMEOUT]")
    a("--write-timeout", type=_positive_float, default=default("LB_MOCK_WRITE_TIMEOUT", "30"),
      help="seconds a client may leave its response unread before it is dropped (default 30) "
           "[LB_MOCK_WRITE_TIMEOUT]")
    a("--max-connections", type=_positive_int,
      default=default("LB_MOCK_MAX_CONNECTIONS", str(default_max_connections())),
      help="most open connections; beyond it new ones get 503 with Retry-After (default: the "
           "process's descriptor limit less %d, now %d) [LB_MOCK_MAX_CONNECTIONS]"
           % (DESCRIPTOR_RESERVE, default_max_connections()))
    a("--max-reply-chars", type=_positive_int, default=default("LB_MOCK_MAX_REPLY_CHARS", "200000"),
      help="longest reply, in characters, after {{name}} variables are filled in; longer is a 400 "
           "(default 200000) [LB_MOCK_MAX_REPLY_CHARS]")
    a("--max-run-log-bytes", type=_positive_int, default=default("LB_MOCK_MAX_RUN_LOG_BYTES", str(64 << 20)),
      help="memory, in bytes, kept for the ground truth of recent runs (GET /mock/runs); the oldest "
           "go first (default 67108864) [LB_MOCK_MAX_RUN_LOG_BYTES]")
    a("--max-threads", type=_positive_int, default=default("LB_MOCK_MAX_THREADS", "100000"),
      help="most threads kept in memory (default 100000) [LB_MOCK_MAX_THREADS]")
    a("--max-messages", type=_positive_int, default=default("LB_MOCK_MAX_MESSAGES", "10000"),
      help="most messages per thread (default 10000) [LB_MOCK_MAX_MESSAGES]")
    a("--max-pipes", type=_positive_int, default=default("LB_MOCK_MAX_PIPES", "1000"),
      help="most pipes kept in memory (POST /v1/pipes); more is 403 USAGE_EXCEEDED (default 1000) "
           "[LB_MOCK_MAX_PIPES]")
    a("--max-pipe-bytes", type=_positive_int, default=default("LB_MOCK_MAX_PIPE_BYTES", str(16 << 20)),
      help="most bytes of memory pipe configurations may occupy (estimated from their JSON), all "
           "pipes together; more is 403 USAGE_EXCEEDED (default 16777216) [LB_MOCK_MAX_PIPE_BYTES]")
    a("--memory-processing-seconds", type=_non_negative_float,
      default=default("LB_MOCK_MEMORY_PROCESSING_SECONDS", "1.5"),
      help="seconds an uploaded memory document takes to go from queued (first third) through "
           "in_progress to completed or failed (default 1.5; 0: at once) [LB_MOCK_MEMORY_PROCESSING_SECONDS]")
    a("--max-memories", type=_positive_int, default=default("LB_MOCK_MAX_MEMORIES", "100"),
      help="most memories kept (default 100) [LB_MOCK_MAX_MEMORIES]")
    a("--max-documents", type=_positive_int, default=default("LB_MOCK_MAX_DOCUMENTS", "1000"),
      help="most memory documents kept over all memories, pending uploads included (default 1000) "
           "[LB_MOCK_MAX_DOCUMENTS]")
    a("--max-memory-bytes", type=_positive_int, default=default("LB_MOCK_MAX_MEMORY_BYTES", str(64 << 20)),
      help="most bytes of memory the memory documents may occupy, estimated: their text and word "
           "index (default 67108864); one upload is also bounded by --max-body-bytes "
           "[LB_MOCK_MAX_MEMORY_BYTES]")
    a("--token-wait", type=_token_wait, default=default("LB_MOCK_TOKEN_WAIT", "1"),
      help="seconds a token-stream subscriber (GET /api/stream/{sessionId}/{chatMessageId}) that "
           "comes before POST /api/generate waits for it; then the mock generates the reply itself "
           "(default 1, at most 600) [LB_MOCK_TOKEN_WAIT]")
    a("--mock", action="append", metavar="SETTING=VALUE",
      default=[p for p in default("LB_MOCK_SCENARIO", "").split(",") if p.strip()],
      help="a scenario setting for every stream, e.g. --mock line_ending=crlf --mock "
           "fault=disconnect (repeatable; GET /mock/settings lists them) [LB_MOCK_SCENARIO, "
           "comma-separated]; request headers and the body's mock object override it")
    a("--log-level", default=default("LOG_LEVEL", "info"),
      choices=["debug", "info", "warning", "error"],
      help="log verbosity [LOG_LEVEL] (default info: one line per request)")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None, env: Optional[Mapping[str, str]] = None) -> Settings:
    """Build ``Settings`` from ``argv`` (default ``sys.argv[1:]``) and ``env`` (default
    ``os.environ``). Exits with status 2 and a usage message on a bad value, as argparse does."""
    env = os.environ if env is None else env
    parser = _build_parser(env)
    ns = parser.parse_args(argv)
    if isinstance(ns.replies, str):  # came from the environment, not yet loaded
        try:
            ns.replies = _load_replies(ns.replies)
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
    too_long = [i for i, text in enumerate(ns.replies or ()) if len(text) > ns.max_reply_chars]
    if too_long:
        parser.error("reply %d of --replies is %d characters, over --max-reply-chars %d"
                     % (too_long[0], len(ns.replies[too_long[0]]), ns.max_reply_chars))
    origins = tuple(o.strip() for o in ns.cors_origins.split(",") if o.strip())
    pairs = {}
    for item in ns.mock:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error("--mock takes SETTING=VALUE, got %r" % item)
        pairs[name.strip()] = value
    try:
        mock = scenario.parse_layer(pairs, "--mock", from_text=True)
        scenario.build(0, 0.0, mock)
    except InvalidRequest as exc:
        parser.error(exc.message)
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
        max_pipes=int(ns.max_pipes),
        max_pipe_bytes=int(ns.max_pipe_bytes),
        memory_processing_seconds=float(ns.memory_processing_seconds),
        max_memories=int(ns.max_memories),
        max_documents=int(ns.max_documents),
        max_memory_bytes=int(ns.max_memory_bytes),
        token_wait=float(ns.token_wait),
        log_level=ns.log_level,
        mock=tuple(mock.items()),
    )


class Server(ThreadingHTTPServer):
    """The HTTP server: binds the listening socket and owns the settings, the application state
    (``app``: thread store, run log, token buffer, ``app.memory``: the ``memory.MemoryStore``)
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
            store or ThreadStore(clock=clock, new_id=new_id,
                                 max_threads=settings.max_threads, max_messages=settings.max_messages),
            pipes.RunLog(max_bytes=settings.max_run_log_bytes), formats.TokenBroker(time.monotonic), clock, new_id, time.monotonic(),
            lambda: {"open_streams": self.pacer.open_streams, "connections": self.pacer.connections},
        )
        self.app.pipes = stores.PipeStore(lambda: "pipe_" + new_id().replace("-", ""),
                                          settings.max_pipes, settings.max_pipe_bytes)
        self.app.traces = stores.TraceLog()
        # The memory store rides on the App like the thread store (routes read ``app.memory``).
        self.app.memory = MemoryStore(clock, settings.memory_processing_seconds, settings.max_memories,
                                      settings.max_documents, settings.max_memory_bytes)
        self.store = self.app.store
        self.limits = Limits(settings.head_timeout, settings.body_timeout, settings.keep_alive_timeout,
                             settings.max_body_bytes)
        self._serving = False
        self._stopped = False
        self._life = threading.Lock()  # orders serve_forever and stop, whichever comes first
        super().__init__((settings.host, settings.port), BaseHTTPRequestHandler, bind_and_activate=True)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def _protocol(self, conn: Connection) -> HttpConnection:
        return HttpConnection(conn, self.app, self.limits, self.settings.cors_origins)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Run the event loop on this thread until ``stop()`` (``poll_interval`` is unused:
        the loop wakes on events, not by polling)."""
        with self._life:
            if self._stopped:
                return
            self._serving = True
        self.pacer.listen(self.socket, self._protocol, lambda: refusal(self.settings.max_connections))
        self.pacer.run()

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
        if serving:
            self.pacer.stop(drain_seconds)
        self.server_close()


def make_server(settings: Settings, **kwargs) -> Server:
    """Create and bind a ``Server`` (not yet serving); ``kwargs`` go to ``Server``
    (``store``, ``clock``, ``new_id``) for tests."""
    return Server(settings, **kwargs)


def banner(server: Server) -> str:
    """The startup text: URL, settings that matter, and a ready-to-paste ``curl -N`` line."""
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
           "strict" if s.strict_threads else "created on first use"),
        "  up to %d connections; deadlines: head %gs, body %gs, keep-alive %gs, unread reply %gs"
        % (s.max_connections, s.head_timeout, s.body_timeout, s.keep_alive_timeout, s.write_timeout),
    ]
    if s.mock:
        lines.append("  scenario for every stream: %s" % ", ".join("%s=%s" % kv for kv in s.mock))
    lines += [
        "  try:  curl -N %s/v1/pipes/run -H 'Content-Type: application/json' "
        "-H 'Authorization: %s' -d '%s'" % (url, auth, body),
        "  stop with Ctrl-C",
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the server until Ctrl-C or SIGTERM. Returns the process exit status."""
    settings = parse_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        server = make_server(settings)
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
