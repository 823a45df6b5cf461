"""The pacer: the one event loop that owns every connection, from accept to close.

Job: accept connections, read what clients send, run each response's plan (an iterator of
``steps.Wait`` / ``steps.Write`` / ``steps.Close``) over non-blocking sockets, and fire timers,
for thousands of connections from one thread with ``selectors`` and timers kept in buckets
of ``slack`` seconds (a heap orders the buckets, not the timers, so a stream's next frame costs
a list append, not a heap operation among thousands). No
thread ever blocks on a client. It knows nothing of HTTP, SSE or Langbase: what the bytes mean
is the business of the *protocol* object attached to each connection (``http_handler``).

Protocol interface (methods the loop calls on a connection's protocol, on the loop thread):
``data_received(data: bytes)``, ``eof_received()`` (the client half-closed: no more bytes will
come, but it may still read), ``plan_done()`` (the plan given to ``Connection.run_plan`` is
exhausted and every byte of it was taken by the socket) and ``connection_lost(outcome: str)``.

Behaviour:
- fairness: a turn of the loop runs the timers that are due (streams first), then reads and
  answers requests, running newly due timers again every ``read_budget`` seconds of that work;
  timers set while timers run wait for a later round, and a plan advances by at most
  ``send_size`` bytes or ``max_steps`` steps per round, so no stream, not even a zero-delay
  one, can hold the loop;
- consecutive ``Write`` steps with no ``Wait`` between them go out in one ``send`` (zero-delay
  output is coalesced); any ``Wait``, even ``Wait(0)``, ends a send;
- back-pressure: while bytes a client has not read are pending, its plan does not advance, and
  a client that takes nothing for ``write_timeout`` seconds is dropped;
- the number of open connections is capped (``max_connections``): beyond it a new connection
  is answered with ``refusal`` bytes and closed, logged once per burst; running out of file
  descriptors pauses accepting for a moment instead of spinning;
- ``stop()`` stops accepting, closes connections that are not answering anything, runs open
  plans to their end with waits skipped, for at most ``timeout`` seconds, then closes the rest.
"""

from __future__ import annotations

import collections
import errno
import heapq
import logging
import selectors
import socket
import struct
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional

from steps import Close, Write

__all__ = ["Pacer", "Connection", "Timer"]

log = logging.getLogger(__name__)

_LINGER_RESET = struct.pack("ii", 1, 0)  # close() then sends a TCP reset
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_BATCH = 1024
"""Most connections accepted per turn of the loop, so a burst cannot starve running streams."""
RECV_SIZE = 65536


class Timer:
    """A callback the loop runs at ``when`` (monotonic seconds); ``cancel()`` before then
    stops it. Created by ``Pacer.call_at``."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (harmless after it ran). The callback is dropped at once, so
        a closed connection is freed now, not when its cancelled timer's bucket runs."""
        self.cancelled = True
        self.callback = _nothing


class Connection:
    """One accepted socket, owned by the loop. Methods are for the loop thread only.

    Attributes: ``address`` (the peer's ``(host, port)``), ``protocol`` (set by the factory
    given to ``Pacer.listen``), ``closed`` (bool), ``streaming`` (bool: the current plan is a
    stream, counted in ``Pacer.open_streams``).
    """

    __slots__ = ("loop", "sock", "address", "protocol", "closed", "plan", "streaming", "out",
                 "mask", "reading", "exhausted", "close_after", "reset", "timer", "resume_at",
                 "write_timer", "progress_at", "started", "head", "frame", "trailer")

    def __init__(self, loop: "Pacer", sock: socket.socket, address: Any) -> None:
        self.loop = loop
        self.sock = sock
        self.address = address
        self.protocol: Any = None
        self.closed = False
        self.plan: Optional[Iterator] = None
        self.streaming = False
        self.out = b""  # bytes handed to send() that the socket has not taken yet
        self.mask = 0
        self.reading = True
        self.exhausted = False  # the plan has no more steps
        self.close_after = False  # a Close step: close once the plan's bytes are out
        self.reset = False  # end with a TCP reset instead of a clean close
        self.timer: Optional[Timer] = None  # the plan's next step
        self.resume_at = 0.0  # when the plan may continue once pending bytes are out
        self.write_timer: Optional[Timer] = None
        self.progress_at = 0.0  # last time the socket took bytes while output was pending
        self.started = loop.clock()
        self.head = b""  # bytes that go out, unframed, before the plan's first bytes
        self.frame: Optional[Callable[[bytes], bytes]] = None
        self.trailer = b""

    # -- reading -------------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading from the client (its bytes wait in the kernel: back-pressure)."""
        if self.reading:
            self.reading = False
            self._update_mask()

    def resume_reading(self) -> None:
        """Read from the client again."""
        if not self.reading and not self.closed:
            self.reading = True
            self._update_mask()

    # -- writing -------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send ``data`` now, outside any plan (an interim ``100 Continue``), after any bytes
        still pending."""
        if not self.closed:
            self._send(data, self.loop.clock())

    def input_waiting(self) -> bool:
        """True if the client has sent bytes the loop has not read yet (never blocks)."""
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except OSError:  # BlockingIOError included: nothing waiting
            return False

    def shutdown_write(self) -> None:
        """Tell the client no more bytes will come (a FIN) while still reading what it sends,
        so that closing later does not reset a response it has not read yet."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def run_plan(self, plan: Iterator, streaming: bool = False, head: bytes = b"",
                 frame: Optional[Callable[[bytes], bytes]] = None, trailer: bytes = b"") -> None:
        """Execute ``plan`` (``Write``/``Wait``/``Close`` steps) on this connection, starting
        now: ``head`` goes out first as it is; the bytes of each send are passed through
        ``frame`` (bytes -> bytes, e.g. a transfer coding) when given; ``trailer`` follows the
        last step. When all of it is sent, call ``protocol.plan_done()``. A ``Close`` step (or a
        plan that raises) closes the connection instead, without the trailer. One plan at a
        time; ``streaming`` counts it in ``Pacer.open_streams``."""
        if self.closed:
            return
        self.plan = plan
        self.streaming = streaming
        self.exhausted = False
        self.head = head
        self.frame = frame
        self.trailer = trailer
        if streaming:
            self.loop.open_streams += 1
        self._advance()

    def close(self, outcome: str = "closed") -> None:
        """Close the socket now (a TCP reset if a ``Close(reset=True)`` step asked for one)
        and tell the protocol ``connection_lost(outcome)``."""
        if self.closed:
            return
        self.closed = True
        loop = self.loop
        if self.timer is not None:
            self.timer.cancel()
        if self.write_timer is not None:
            self.write_timer.cancel()
        if self.streaming:
            self.streaming = False
            loop.open_streams -= 1
        self.plan = None
        sock = self.sock
        if self.reset:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        if self.mask:
            try:
                loop._selector.unregister(sock)
            except (KeyError, ValueError, OSError):
                pass
        loop._connections.pop(id(self), None)
        _close(sock)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s:%s closed after %.3f s: %s", self.address[0], self.address[1],
                      loop.clock() - self.started, outcome)
        if self.protocol is not None:
            self.protocol.connection_lost(outcome)
            self.protocol = None

    def _advance(self) -> None:
        """Send what is due now, within this turn's share, and set the next timer."""
        fired = self.timer  # the timer that called this, if any: its bucket has run
        self.timer = None
        plan = self.plan
        if plan is None:
            return
        loop = self.loop
        data = b""
        pieces = None
        size = 0
        steps = 0
        wait = 0.0
        send_size = loop.send_size
        max_steps = loop.max_steps
        skip_waits = loop.stopping
        while size < send_size and steps < max_steps:
            steps += 1
            try:
                step = next(plan, None)
            except Exception:
                # Send what was already due, then end the connection: the body is cut short.
                log.exception("a plan failed; ending that response")
                self.exhausted = self.close_after = True
                break
            kind = type(step)
            if kind is Write:
                piece = step.data
                if type(piece) is not bytes:
                    log.error("a plan wrote %r, not bytes; ending that response", type(piece))
                    self.exhausted = self.close_after = True
                    break
                if not data:
                    data = piece
                elif pieces is None:
                    pieces = [data, piece]
                else:
                    pieces.append(piece)
                size += len(piece)
            elif step is None:
                self.exhausted = True
                break
            elif kind is Close:
                self.exhausted = self.close_after = True
                self.reset = step.reset
                break
            elif not skip_waits:
                wait = step.seconds  # any Wait, even Wait(0), ends this send
                break
        if pieces is not None:
            data = b"".join(pieces)
        if data and self.frame is not None:
            data = self.frame(data)
        if self.head:
            data = self.head + data
            self.head = b""
        if self.exhausted and not self.close_after:
            data += self.trailer
        now = loop.clock()
        if data and not self._send(data, now):
            return
        if self.out:
            self.resume_at = now + wait  # back-pressure: _on_writable continues
            return
        if self.exhausted:
            self._finish()
        elif fired is not None:
            # Due now (share used up) or after the wait: either way on a later turn. The timer
            # that fired is reused: one object per stream, not one per frame.
            fired.when = now + wait
            loop._schedule(fired)
            self.timer = fired
        else:
            self.timer = loop.call_at(now + wait, self._advance)

    def _finish(self) -> None:
        self.plan = None
        if self.streaming:
            self.streaming = False
            self.loop.open_streams -= 1
        if self.close_after:
            self.close("complete")
        else:
            self.protocol.plan_done()

    def _send(self, data: bytes, now: float) -> bool:
        """Send ``data`` after any bytes still pending; keep what the socket did not take.
        False if the connection died."""
        if self.out:
            self.out += data  # order is kept; _on_writable sends it
            return True
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.close("client hung up (%s)" % exc.__class__.__name__)
            return False
        if sent < len(data):
            self.out = data[sent:]
            self.progress_at = now  # the client has been slow since now
            if self.write_timer is None:  # one at a time: it re-arms itself from progress_at
                self.write_timer = self.loop.call_at(now + self.loop.write_timeout, self._write_timed_out)
            self._update_mask()
        return True

    def _on_writable(self) -> None:
        now = self.loop.clock()
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close("client hung up (%s)" % exc.__class__.__name__)
            return
        if sent:
            self.progress_at = now
            self.out = self.out[sent:]
        if self.out:
            return
        self._update_mask()
        if self.plan is None:
            return
        if self.exhausted:
            self._finish()
        else:
            self.timer = self.loop.call_at(now if self.loop.stopping else max(self.resume_at, now),
                                           self._advance)

    def _write_timed_out(self) -> None:
        self.write_timer = None
        if not self.out or self.closed:
            return  # drained meanwhile: the next stall starts a new timer
        deadline = self.progress_at + self.loop.write_timeout
        if self.loop.clock() < deadline:
            self.write_timer = self.loop.call_at(deadline, self._write_timed_out)
        else:
            self.close("client stopped reading for %g s" % self.loop.write_timeout)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close("client hung up (%s)" % exc.__class__.__name__)
            return
        if data:
            self.protocol.data_received(data)
        else:
            self.reading = False  # the client half-closed; EOF stays readable forever
            self._update_mask()
            self.protocol.eof_received()

    def _update_mask(self) -> None:
        if self.closed:
            return
        mask = (_READ if self.reading else 0) | (_WRITE if self.out else 0)
        if mask == self.mask:
            return
        selector = self.loop._selector
        try:
            if not self.mask:
                selector.register(self.sock, mask, self)
            elif not mask:
                selector.unregister(self.sock)
            else:
                selector.modify(self.sock, mask, self)
        except (KeyError, ValueError, OSError) as exc:
            self.close("socket failed (%s)" % exc.__class__.__name__)
            return
        self.mask = mask


class _Listener:
    __slots__ = ("sock", "factory", "refusal", "registered", "refused", "backoff")

    def __init__(self, sock: socket.socket, factory: Callable[[Connection], Any],
                 refusal: Callable[[], bytes]) -> None:
        self.sock = sock
        self.factory = factory
        self.refusal = refusal
        self.registered = False
        self.refused = 0  # connections refused in the current burst over the cap
        self.backoff = 0.0  # seconds accepting is paused after running out of descriptors


class Pacer:
    """The event loop. Construct, ``listen`` (or hand it sockets with ``adopt``), then call
    ``run()`` on the thread that will own every connection (or ``start()`` for a thread of its
    own).

    Args:
        send_size: most bytes one connection sends per turn of the loop.
        max_steps: most plan steps one connection takes per turn.
        write_timeout: seconds a client may leave pending output unread before it is dropped.
        max_connections: most open connections; ``listen`` refuses new ones beyond it.
        read_budget: seconds of reading and answering requests after which the steps of
            streams that fell due meanwhile are run, before the next request.
        slack: seconds early a timer may run (> 0): timers are kept in buckets this wide and
            a bucket runs as a whole, its timers in the order they were set, once its start
            has passed, so thousands of streams cost far fewer wake-ups and heap operations
            (timer slack).
        clock: monotonic time in seconds.

    Thread safety: ``call_soon_threadsafe``, ``stop``, ``open_streams`` and ``connections``
    may be used from any thread; everything else belongs to the loop's thread.
    """

    def __init__(
        self,
        *,
        send_size: int = 64 * 1024,
        max_steps: int = 256,
        write_timeout: float = 30.0,
        max_connections: int = 10_000,
        read_budget: float = 0.002,
        slack: float = 0.001,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send_size = send_size
        self.max_steps = max_steps
        self.write_timeout = write_timeout
        self.max_connections = max_connections
        self.read_budget = read_budget
        if not slack > 0:
            raise ValueError("slack must be a positive number of seconds")
        self.slack = slack
        self._per_second = 1.0 / slack
        self.clock = clock
        self.stopping = False  # set on the loop thread once stop() is under way
        self.crashed = False  # the loop ended on an unexpected error
        self._stop_requested = False
        self.open_streams = 0  # connections running a plan marked as a stream
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, _READ, None)
        self._wake_pending = False
        self._callbacks: Deque[Callable[[], None]] = collections.deque()
        self._buckets: Dict[int, List[Timer]] = {}  # bucket number → its timers, in the order set
        self._bucket_heap: List[int] = []  # the buckets' numbers (int(when / slack)), a heap
        self._connections: Dict[int, Connection] = {}
        self._listeners: List[_Listener] = []
        self._drain_until = 0.0
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def connections(self) -> int:
        """Number of open connections."""
        return len(self._connections)

    # -- from any thread -------------------------------------------------------------------

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` on the loop thread at its next turn."""
        self._callbacks.append(callback)
        self._wake()

    def start(self) -> None:
        """Run the loop on a thread of its own, named ``pacer``."""
        self._thread = threading.Thread(target=self.run, name="pacer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting; close idle and half-read connections; let open plans finish with
        waits skipped for at most ``timeout`` seconds; then close everything and return (after
        the loop has ended, if it was running). Safe to call more than once."""
        if not self._stop_requested:
            self._stop_requested = True
            self._drain_until = self.clock() + timeout
            self.call_soon_threadsafe(self._begin_stop)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout + 1.0)
        elif self._thread is None:
            self._done.wait(timeout + 1.0)

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass

    # -- loop thread ---------------------------------------------------------------------

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback()`` at monotonic time ``when`` (on a later turn, even if ``when``
        has passed). Returns the ``Timer``, which ``cancel()`` stops."""
        timer = Timer(when, callback)
        self._schedule(timer)
        return timer

    def _schedule(self, timer: Timer) -> None:
        """Put ``timer`` in the bucket of its ``when``."""
        number = int(timer.when * self._per_second)
        bucket = self._buckets.get(number)
        if bucket is None:
            self._buckets[number] = [timer]
            heapq.heappush(self._bucket_heap, number)
        else:
            bucket.append(timer)

    def listen(self, sock: socket.socket, factory: Callable[[Connection], Any],
               refusal: Callable[[], bytes] = bytes) -> None:
        """Accept connections on the listening ``sock``; ``factory(connection)`` returns each
        one's protocol. Beyond ``max_connections``, ``refusal()`` (a whole response, bytes) is
        sent and the connection closed."""
        sock.setblocking(False)
        listener = _Listener(sock, factory, refusal)
        self._listeners.append(listener)
        self._register_listener(listener)

    def adopt(self, sock: socket.socket, address: Any, factory: Callable[[Connection], Any]) -> Connection:
        """Take ownership of a connected ``sock``: make it non-blocking, read from it, and
        attach ``factory(connection)`` as its protocol."""
        sock.setblocking(False)
        conn = Connection(self, sock, address)
        self._connections[id(conn)] = conn
        conn.protocol = factory(conn)
        conn._update_mask()
        return conn

    def run(self) -> None:
        """Run the loop on the calling thread until ``stop()``; then close every socket the
        loop owns."""
        try:
            self._loop()
        except Exception:  # a bug here must be loud, not silent
            self.crashed = True
            log.exception("the event loop stopped by an unexpected error")
        finally:
            for conn in list(self._connections.values()):
                conn.close("server stopped")
            for listener in self._listeners:
                _close(listener.sock)
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()
            self._done.set()

    def _loop(self) -> None:
        heap = self._bucket_heap
        clock = self.clock
        select = self._selector.select
        callbacks = self._callbacks
        while True:
            while callbacks:
                callback = callbacks.popleft()
                try:
                    callback()
                except Exception:
                    self._failed(callback)
            if self.stopping:
                if not self.open_streams or clock() >= self._drain_until:
                    return
            if callbacks:
                timeout: Optional[float] = 0.0
            elif heap:
                timeout = max(0.0, heap[0] * self.slack - clock())  # when that bucket starts
            else:
                timeout = None
            if self.stopping:
                timeout = min(timeout if timeout is not None else 0.05, 0.05)
            readable = []
            for key, mask in select(timeout):
                obj = key.data
                if obj is None:
                    # Drain first, then clear the flag: a call_soon racing with this is still seen.
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except OSError:
                        pass
                    self._wake_pending = False
                elif type(obj) is _Listener:
                    self._accept(obj)
                else:
                    if mask & _WRITE:
                        try:
                            obj._on_writable()
                        except Exception:
                            log.exception("error on a connection; closing it")
                            obj.close("error")
                    if mask & _READ:
                        readable.append(obj)
            if heap:
                self._run_due()
            if readable:
                # Then requests; every ``read_budget`` seconds of that, the streams' steps that
                # fell due meanwhile go first, so a burst of new clients does not make running
                # streams late.
                check_at = clock() + self.read_budget
                for obj in readable:
                    if not obj.closed:
                        try:
                            obj._on_readable()
                        except Exception:
                            log.exception("error on a connection; closing it")
                            obj.close("error")
                    if clock() > check_at:
                        if callbacks:
                            # A call from another thread (stop(), say) waits no longer than this;
                            # the connections not read yet are still readable at the next select.
                            break
                        # Also take new connections off the kernel's accept queue, whose overflow
                        # costs a client a SYN retransmit (a second or more).
                        for listener in self._listeners:
                            if listener.registered:
                                self._accept(listener)
                        self._run_due()
                        check_at = clock() + self.read_budget

    def _run_due(self) -> None:
        """Run the timers due now. Timers they set, even for now, wait for a later call, so
        one stream that is always due cannot keep the loop from everything else."""
        heap = self._bucket_heap
        buckets = self._buckets
        now, slack = self.clock(), self.slack
        due = []
        while heap and heap[0] * slack <= now:  # started: the same test as _loop's timeout
            due.append(buckets.pop(heapq.heappop(heap)))
        for bucket in due:
            for timer in bucket:
                if not timer.cancelled:
                    try:
                        timer.callback()
                    except Exception:
                        self._failed(timer.callback)

    @staticmethod
    def _failed(callback: Callable[[], None]) -> None:
        """Log the exception ``callback`` raised; close its connection if it had one."""
        log.exception("a callback of the event loop failed")
        owner = getattr(callback, "__self__", None)
        if type(owner) is Connection:
            owner.close("error")

    def _begin_stop(self) -> None:
        self.stopping = True
        for listener in self._listeners:
            if listener.registered:
                self._selector.unregister(listener.sock)
                listener.registered = False
            _close(listener.sock)  # the kernel resets connections still in the accept queue
        for conn in list(self._connections.values()):
            if conn.plan is None:
                conn.close("server stopping")
            elif conn.timer is not None and not conn.out:
                conn.timer.cancel()
                conn.timer = self.call_at(self.clock(), conn._advance)  # waits are skipped now

    def _register_listener(self, listener: _Listener) -> None:
        if self.stopping or listener.registered:
            return
        self._selector.register(listener.sock, _READ, listener)
        listener.registered = True

    def _accept(self, listener: _Listener) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _NO_DESCRIPTORS:
                    self._pause_accepting(listener, exc)
                    return
                log.debug("accept failed: %s", exc)  # e.g. ECONNABORTED: the client left first
                continue
            listener.backoff = 0.0
            if len(self._connections) >= self.max_connections:
                self._refuse(listener, sock)
                continue
            if listener.refused:
                log.warning("accepting connections again; refused %d while at the cap of %d",
                            listener.refused, self.max_connections)
                listener.refused = 0
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # not TCP (a test's socket pair), or already gone
            self.adopt(sock, address, listener.factory)

    def _refuse(self, listener: _Listener, sock: socket.socket) -> None:
        if not listener.refused:
            log.warning("at the cap of %d open connections (--max-connections): refusing new "
                        "ones with 503 until some close", self.max_connections)
        listener.refused += 1
        try:
            sock.setblocking(False)
            try:
                sock.recv(RECV_SIZE)  # unread request bytes would turn close() into a reset
            except OSError:
                pass
            sock.send(listener.refusal())
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        _close(sock)

    def _pause_accepting(self, listener: _Listener, exc: OSError) -> None:
        if not listener.backoff:
            log.warning("out of file descriptors (%s) with %d connections open: pausing accepts; "
                        "raise 'ulimit -n' or lower --max-connections", exc.strerror, len(self._connections))
        listener.backoff = min(1.0, listener.backoff * 2 or 0.05)
        if listener.registered:
            self._selector.unregister(listener.sock)
            listener.registered = False
        self.call_at(self.clock() + listener.backoff, lambda: self._register_listener(listener))


def _nothing() -> None:
    """The callback of a cancelled timer."""


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
