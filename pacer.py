"""The pacer: one thread that runs every open stream's plan over non-blocking sockets.

Job: execute plans (iterators of ``Wait(seconds)`` / ``Write(bytes)`` steps, see ``pipes``)
for thousands of sockets at once from a heap of deadlines and a ``selectors`` loop, so that a
paced stream costs a heap entry and a file descriptor instead of a sleeping thread. It has its
own room because it is the only part of the server that waits, and it knows nothing of HTTP,
SSE or Langbase: it writes the bytes a plan gives it, when the plan says.

Behaviour:
- consecutive ``Write`` steps with no ``Wait`` between them go out in one ``send`` of at most
  ``send_size`` bytes (zero-delay streams are coalesced); any ``Wait``, even ``Wait(0)``, ends a
  send, so a plan marks its write boundaries with waits;
- a ``Close`` step ends the connection after the bytes before it (``reset`` true: a TCP reset);
- each connection has a bounded output buffer: while bytes a client has not read are pending,
  its plan does not advance (back-pressure), and a client that reads nothing for
  ``write_timeout`` seconds is dropped;
- a client hang-up (EOF or error on read, ``EPIPE``/``ECONNRESET`` on send) ends only that stream,
  quietly (logged at DEBUG);
- idle keep-alive connections can be parked here (``park``) so that no thread waits on them;
- ``stop()`` finishes every open stream at full speed (waits skipped) within a bound, then closes
  what is left.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import selectors
import socket
import struct
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterator, List, Set, Tuple

from pipes import Close, Write

__all__ = ["Pacer"]

log = logging.getLogger(__name__)

_LINGER_RESET = struct.pack("ii", 1, 0)  # close() then sends a TCP reset
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class _Stream:
    __slots__ = ("sock", "plan", "out", "mask", "closed", "exhausted", "reset", "due", "blocked_since",
                 "started")

    def __init__(self, sock: socket.socket, plan: Iterator, now: float) -> None:
        self.sock = sock
        self.plan = plan
        self.out = b""  # bytes sent to the socket but not yet accepted by it
        self.mask = _READ
        self.closed = False
        self.exhausted = False  # the plan has no more steps
        self.reset = False  # end with a TCP reset instead of a clean close
        self.due = now  # deadline of the stream's one valid timer entry, or None
        self.blocked_since = 0.0
        self.started = now


class _Parked:
    """An idle keep-alive connection waiting for its next request."""

    __slots__ = ("sock", "ready", "closed")

    def __init__(self, sock: socket.socket, ready: Callable[[socket.socket], None]) -> None:
        self.sock = sock
        self.ready = ready
        self.closed = False


class Pacer:
    """Run stream plans on non-blocking sockets from one thread.

    Args:
        send_size: most bytes gathered into one ``send`` from consecutive due writes.
        write_timeout: seconds a client may leave pending output unread before it is dropped.
        slack: seconds early a step may run: each wake-up also runs what falls due within
            this much, so thousands of streams cost far fewer wake-ups (timer slack).
        clock: monotonic time in seconds.

    Thread safety: ``submit``, ``open_streams`` and ``stop`` may be called from any thread;
    everything else runs on the pacer's own thread.
    """

    def __init__(
        self,
        *,
        send_size: int = 64 * 1024,
        write_timeout: float = 30.0,
        slack: float = 0.001,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send_size = send_size
        self._slack = slack
        self._write_timeout = write_timeout
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, _READ, None)
        self._incoming: Deque[Tuple[socket.socket, Iterator]] = collections.deque()
        self._incoming_parked: Deque[Tuple[_Parked, float]] = collections.deque()
        self._wake_pending = False
        self._streams: Dict[int, _Stream] = {}
        self._parked: Set[_Parked] = set()
        self._heap: List[Tuple[float, int, Any, bool]] = []  # (due, seq, _Stream or _Parked, is_timeout)
        self._seq = itertools.count()
        self._stopping = False
        self._drain_until = 0.0
        self.busy = False  # the pacer is sending frames that are due (see yield_to_streams)
        self._thread = threading.Thread(target=self._run, name="pacer", daemon=True)

    def yield_to_streams(self, limit: float = 0.02) -> None:
        """Let due frames go first: called by a handler thread before it starts on a request,
        this waits (sleeping, so the pacer can have the interpreter) while the pacer is sending
        due frames, for at most ``limit`` seconds so that new requests are never starved.

        Without it a burst of requests takes the interpreter lock from the pacer each time it
        sends, and frames of streams already running arrive late."""
        if not self.busy:
            return
        deadline = time.monotonic() + limit
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.0005)

    @property
    def open_streams(self) -> int:
        """Number of streams submitted and not yet closed."""
        return len(self._streams) + len(self._incoming)

    def start(self) -> None:
        """Start the pacer thread."""
        self._thread.start()

    def submit(self, sock: socket.socket, plan: Iterator) -> None:
        """Hand a connected socket and its plan to the pacer; the pacer now owns the socket.

        ``plan`` yields ``pipes.Write`` and ``pipes.Wait`` steps; when it is exhausted and all
        bytes are sent, the socket is closed. After ``stop()`` the socket is closed at once.
        """
        if self._stopping:
            _close(sock)
            return
        self._incoming.append((sock, plan))
        self._wake()

    def park(self, sock: socket.socket, idle_timeout: float, ready: Callable[[socket.socket], None]) -> None:
        """Watch an idle connection: when it becomes readable (a request, or the client
        closing), call ``ready(sock)`` from the pacer thread, which must not block; after
        ``idle_timeout`` seconds with nothing, close it. Thread-safe; the pacer owns the socket
        until ``ready`` is called."""
        if self._stopping:
            _close(sock)
            return
        self._incoming_parked.append((_Parked(sock, ready), idle_timeout))
        self._wake()

    def stop(self, timeout: float = 1.0) -> None:
        """Finish open streams with waits skipped, for at most ``timeout`` seconds; then close
        the rest, stop the thread and release its resources."""
        self._drain_until = self._clock() + timeout
        self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout + 1.0)
        if not self._thread.is_alive():
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake_w.send(b"\0")
            except (BlockingIOError, OSError):
                pass

    # --- the pacer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # pragma: no cover - a bug here must be loud, not silent
            log.exception("pacer stopped by an unexpected error")
        finally:
            for stream in list(self._streams.values()):
                self._close(stream, "shutdown")
            for parked in list(self._parked):
                self._unpark(parked)
                _close(parked.sock)
            while self._incoming:
                _close(self._incoming.popleft()[0])
            while self._incoming_parked:
                _close(self._incoming_parked.popleft()[0].sock)

    def _loop(self) -> None:
        heap = self._heap
        clock = self._clock
        draining = False
        while True:
            self._take_incoming()
            if self._stopping:
                now = clock()
                if not draining:
                    draining = True
                    for stream in self._streams.values():
                        if not stream.out:
                            self._schedule(stream, now)
                if not self._streams or now >= self._drain_until:
                    return
            if heap:
                timeout = max(0.0, heap[0][0] - self._slack - clock())
            else:
                timeout = None
            if self._stopping:
                timeout = min(timeout if timeout is not None else 0.05, 0.05)
            for key, mask in self._selector.select(timeout):
                stream = key.data
                if stream is None:
                    # Drain first, then clear the flag; incoming streams are taken after that
                    # (top of the loop), so a submit racing with this always gets picked up.
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    self._wake_pending = False
                    continue
                if type(stream) is _Parked:
                    self._unpark(stream)
                    stream.ready(stream.sock)
                    continue
                if mask & _READ:
                    self._on_readable(stream)
                if mask & _WRITE and not stream.closed:
                    self._flush(stream)
            now = clock()
            horizon = now + self._slack  # due this soon counts as due now: fewer wake-ups
            self.busy = bool(heap) and heap[0][0] <= horizon
            while heap and heap[0][0] <= horizon:
                due, _, stream, is_timeout = heapq.heappop(heap)
                if stream.closed:
                    continue
                if type(stream) is _Parked:
                    self._unpark(stream)
                    _close(stream.sock)  # idle for too long
                    continue
                if is_timeout:
                    # The newest such entry belongs to the current block; with slack it may pop
                    # up to ``slack`` early, so compare against the same horizon.
                    if stream.out and stream.blocked_since + self._write_timeout <= horizon:
                        self._close(stream, "client stopped reading")
                    continue
                if stream.due != due or stream.out:
                    continue  # a stale timer
                try:
                    self._advance(stream, now)
                except Exception:  # a bad step ends its own stream, never the pacer
                    log.exception("a stream failed; closing it")
                    self._close(stream, "error")
            self.busy = False

    def _unpark(self, parked: _Parked) -> None:
        parked.closed = True
        self._parked.discard(parked)
        try:
            self._selector.unregister(parked.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _take_incoming(self) -> None:
        now = self._clock()
        incoming = self._incoming
        parked_in = self._incoming_parked
        while parked_in:
            parked, idle_timeout = parked_in.popleft()
            try:
                parked.sock.setblocking(False)
                self._selector.register(parked.sock, _READ, parked)
            except (OSError, ValueError):
                _close(parked.sock)
                continue
            self._parked.add(parked)
            heapq.heappush(self._heap, (now + idle_timeout, next(self._seq), parked, True))
        while incoming:
            sock, plan = incoming.popleft()
            try:
                sock.setblocking(False)
                stream = _Stream(sock, plan, now)
                self._selector.register(sock, _READ, stream)
            except (OSError, ValueError):
                _close(sock)
                continue
            self._streams[sock.fileno()] = stream
            self._schedule(stream, now)

    def _schedule(self, stream: _Stream, due: float) -> None:
        stream.due = due
        heapq.heappush(self._heap, (due, next(self._seq), stream, False))

    def _advance(self, stream: _Stream, now: float) -> None:
        """Send every write that is due now (up to ``send_size`` bytes) and set the next timer."""
        pieces = []
        size = 0
        wait = 0.0
        plan = stream.plan
        skip_waits = self._stopping
        stream.due = None
        while size < self._send_size:
            try:
                step = next(plan, None)
            except Exception:
                # Send what was already due, then end the stream without its remaining steps.
                log.exception("a stream's plan failed; ending that stream")
                stream.exhausted = True
                break
            if step is None:
                stream.exhausted = True
                break
            kind = type(step)
            if kind is Write:
                pieces.append(step.data)
                size += len(step.data)
            elif kind is Close:
                stream.exhausted = True
                stream.reset = step.reset
                break
            elif not skip_waits:
                wait = step.seconds  # any Wait, even Wait(0), ends this send
                break
        if pieces:
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if not self._send(stream, data, now):
                return
        if stream.out:
            # Back-pressure: resume when the socket has taken the pending bytes.
            stream.due = now + wait if not stream.exhausted else None
            return
        if stream.exhausted:
            self._close(stream, "complete")
        else:
            self._schedule(stream, now + wait)

    def _send(self, stream: _Stream, data: bytes, now: float) -> bool:
        try:
            sent = stream.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._close(stream, "client hung up (%s)" % exc.__class__.__name__)
            return False
        if sent < len(data):
            stream.out = data[sent:]
            stream.blocked_since = now
            self._set_mask(stream, _READ | _WRITE)
            heapq.heappush(
                self._heap, (now + self._write_timeout, next(self._seq), stream, True)
            )
        return True

    def _flush(self, stream: _Stream) -> None:
        now = self._clock()
        data = stream.out
        stream.out = b""
        if not self._send(stream, data, now):
            return
        if stream.out:
            return
        self._set_mask(stream, _READ)
        if stream.exhausted:
            self._close(stream, "complete")
        else:
            due = stream.due if stream.due is not None else now
            self._schedule(stream, now if self._stopping else max(due, now))

    def _on_readable(self, stream: _Stream) -> None:
        try:
            data = stream.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._close(stream, "client hung up (%s)" % exc.__class__.__name__)
            return
        if not data:
            self._close(stream, "client hung up")
        # Bytes a client sends mid-stream (a pipelined request) are read and dropped.

    def _set_mask(self, stream: _Stream, mask: int) -> None:
        if stream.mask != mask:
            stream.mask = mask
            self._selector.modify(stream.sock, mask, stream)

    def _close(self, stream: _Stream, outcome: str) -> None:
        if stream.closed:
            return
        stream.closed = True
        sock = stream.sock
        if stream.reset:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        self._streams.pop(sock.fileno(), None)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass
        _close(sock)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("stream closed after %.3f s: %s", self._clock() - stream.started, outcome)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
