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
import json
import logging
import os
import queue
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import formats
import pipes
from http_handler import SERVICE, VERSION, Handler
from pacer import Pacer
import scenario
from threads import InvalidRequest, ThreadStore, new_uuid4

__all__ = ["Settings", "Server", "parse_args", "make_server", "main"]

log = logging.getLogger("langbase-mock")

ACCEPT_QUEUE = 4096
"""Most accepted connections waiting for a handler thread; beyond it, the kernel's queue."""


@dataclass(frozen=True)
class Settings:
    """Server configuration; built by ``parse_args`` and never changed afterwards.

    Fields: ``host`` (str), ``port`` (int, 0 = pick a free port), ``delay`` (seconds between
    stream chunks, float >= 0), ``seed`` (int, drives every reply choice), ``replies`` (tuple
    of reply texts), ``model`` (str, reported in chunks), ``strict_threads`` (bool: an unknown
    ``threadId`` in a run is a 404 instead of creating the thread), ``api_key`` (str or None:
    require ``Authorization: Bearer <api_key>`` on ``/v1``), ``cors_origins`` (tuple of
    origins, or ``("*",)``), ``max_body_bytes`` (int), ``request_timeout`` (seconds a
    connection may idle or stall while a request is read), ``workers`` (handler threads),
    ``max_threads`` and ``max_messages`` (store bounds), ``log_level`` (logging level name),
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
    request_timeout: float = 5.0
    workers: int = 4
    max_threads: int = 100_000
    max_messages: int = 10_000
    log_level: str = "info"
    mock: Tuple[Tuple[str, object], ...] = ()


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds >= 0")
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
    a("--request-timeout", type=_positive_float, default=default("LB_MOCK_REQUEST_TIMEOUT", "5"),
      help="seconds a connection may idle or stall while a request is read (default 5) "
           "[LB_MOCK_REQUEST_TIMEOUT]")
    a("--workers", type=_positive_int, default=default("LB_MOCK_WORKERS", "4"),
      help="request handler threads (default 4); neither streams nor idle keep-alive "
           "connections hold one [LB_MOCK_WORKERS]")
    a("--max-threads", type=_positive_int, default=default("LB_MOCK_MAX_THREADS", "100000"),
      help="most threads kept in memory (default 100000) [LB_MOCK_MAX_THREADS]")
    a("--max-messages", type=_positive_int, default=default("LB_MOCK_MAX_MESSAGES", "10000"),
      help="most messages per thread (default 10000) [LB_MOCK_MAX_MESSAGES]")
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
        request_timeout=float(ns.request_timeout),
        workers=int(ns.workers),
        max_threads=int(ns.max_threads),
        max_messages=int(ns.max_messages),
        log_level=ns.log_level,
        mock=tuple(mock.items()),
    )


class Server(ThreadingHTTPServer):
    """The HTTP server: accepts connections, answers them on a fixed pool of handler threads,
    and owns the settings, the thread store and the pacer.

    Accepted connections wait in a bounded queue (then in the kernel's accept queue, backlog
    as large as the kernel allows) while every handler thread is busy, so a burst of thousands
    of clients costs no threads. A stream's socket is handed to the pacer once the request is
    validated, and an idle keep-alive connection is parked with the pacer, so a handler thread
    is only ever busy with a request that is arriving or being answered.
    """

    daemon_threads = True
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
        self.clock = clock
        self.new_id = new_id
        self.store = store or ThreadStore(
            clock=clock, new_id=new_id,
            max_threads=settings.max_threads, max_messages=settings.max_messages,
        )
        self.pacer = Pacer()
        self.runs = pipes.RunLog()
        self.tokens = formats.TokenBroker(time.monotonic)
        self.started = time.monotonic()
        self.created = int(clock())  # every chunk's "created": replays stay byte-identical
        # Accepted connections wait here (bounded) rather than in the kernel's accept queue,
        # whose overflow drops SYNs and costs clients seconds of retransmit timers.
        self._jobs: "queue.Queue[Optional[Tuple[socket.socket, tuple]]]" = queue.Queue(ACCEPT_QUEUE)

        self._stopping = threading.Event()
        self._workers: List[threading.Thread] = []
        self._serving = False
        super().__init__((settings.host, settings.port), Handler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._serving = True
        super().serve_forever(poll_interval)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def server_activate(self) -> None:
        super().server_activate()
        self.pacer.start()
        for i in range(self.settings.workers):
            worker = threading.Thread(target=self._work, name="handler-%d" % i, daemon=True)
            worker.start()
            self._workers.append(worker)

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        # Blocks the accept loop while every handler is busy; new clients wait in the backlog.
        while not self._stopping.is_set():
            try:
                self._jobs.put((request, client_address), timeout=0.1)
                return
            except queue.Full:
                continue
        self.shutdown_request(request)

    def park(self, request: socket.socket, client_address: tuple) -> None:
        """Hold an idle keep-alive connection in the pacer's selector (no thread waits on it)
        until its next request arrives, or close it after ``request_timeout`` seconds idle."""

        def ready(sock: socket.socket) -> None:
            try:
                self._jobs.put_nowait((sock, client_address))
            except queue.Full:
                self.shutdown_request(sock)

        self.pacer.park(request, self.settings.request_timeout, ready)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            request, client_address = job
            detached = False
            try:
                handler = self.RequestHandlerClass(request, client_address, self)
                detached = handler.detached
            except Exception:
                self.handle_error(request, client_address)
            if not detached:
                self.shutdown_request(request)

    def handle_error(self, request: socket.socket, client_address: tuple) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("%s:%s connection ended: %r", client_address[0], client_address[1], exc)
        else:
            log.exception("error while answering %s:%s", client_address[0], client_address[1])

    def stop(self, drain_seconds: float = 1.0) -> None:
        """Stop accepting, finish open streams (at most ``drain_seconds``), release everything.

        Call from a thread other than the one in ``serve_forever`` (or after it returned)."""
        self._stopping.set()
        if self._serving:
            self.shutdown()
        self.pacer.stop(drain_seconds)
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join(0.5)
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

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    print(banner(server), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        log.info("shutting down: finishing %d open stream(s)", server.pacer.open_streams)
        stopper = threading.Thread(target=server.stop, name="stop")
        stopper.start()
        stopper.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
