#!/usr/bin/env python3
"""Load generator: N concurrent SSE streams against a loopback server, one JSON report.

Job: open ``--streams`` concurrent ``POST /v1/pipes/run`` streaming requests from one asyncio
event loop, decode each HTTP/1.1 response with a minimal incremental parser (chunked,
Content-Length or close-delimited bodies), count SSE frames, time them, and report completion,
errors, time to first byte, chunk-interval error, throughput, and the server's memory, threads and
CPU read from ``/proc/PID``.

I/O modes (``--io``), cheapest first: ``epoll`` (default: non-blocking sockets in one
``select.epoll`` whose fd is a single asyncio reader), ``raw`` (``loop.add_reader`` per socket),
``protocol`` (``loop.create_connection``) and ``streams`` (``asyncio.open_connection``). All share
the same parser; they differ only in per-read overhead, which decides whether the load generator
or the server saturates first.

Standard library only (no uvloop), Linux only (/proc, epoll). Loopback targets only. Every loop is
bounded: the parser by the bytes it was given, the streams and the sampler by the ``--timeout``
deadline, stream slots by ``--rounds``.

Must not import anything from the server under test: it measures any server that speaks the
protocol, including the Node peer.
"""
from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import ipaddress
import json
import os
import resource
import select
import shlex
import socket
import sys
import time
from array import array

__all__ = ["Stream", "LoadGen", "main"]

# Parser states.
# The three body states come first so that `state <= CLOSE` means "inside a body range".
CHUNK_DATA, LENGTH, CLOSE, CHUNK_SIZE, CHUNK_CRLF, TRAILERS, HEAD, END = range(8)
# Stream phases, for classifying time-outs.
PH_QUEUED, PH_CONNECT, PH_HEADERS, PH_BODY, PH_FINISHED = range(5)
PHASE_NAMES = ("not_started", "connect", "headers", "body", "finished")

MAX_HEAD = 64 * 1024
MAX_LINE = 4096
DONE_MARK = b"data: [DONE]"
TAIL = 16  # body bytes kept to recognise a final [DONE] frame
READ_SIZE = 256 * 1024
RAW_IO = ("epoll", "raw")

_monotonic = time.monotonic


class ProtocolError(Exception):
    """The response does not parse as HTTP/1.1."""


class Stream:
    """One request/response: an asyncio protocol and an incremental HTTP/SSE parser in one object.

    ``feed(data, t)`` consumes bytes that arrived at monotonic time ``t`` and returns True once the
    response is complete (body terminator seen). Body bytes are never copied out of the received
    buffer: SSE frame ends (``b"\\n\\n"``) are counted in place with ``bytes.count(sub, start,
    end)``. All frames found in one read share that read's arrival time.

    Interval errors go to the shared ``errs`` array. The gap of each frame is held back until the
    next frame arrives, so the gap of the last frame (``data: [DONE]``, written together with the
    final chunk) is dropped when the stream ends with it.
    """

    __slots__ = (
        "t0", "phase", "state", "buf", "remaining", "status", "nbytes", "body_bytes", "reads",
        "frames", "ttfb", "nl", "tail", "last_t", "pending", "finished", "error", "detail",
        "done", "transport", "fut", "lg", "sock", "loop", "reg", "conn", "next",
    )

    def __init__(self, lg: "LoadGen") -> None:
        self.lg = lg
        self.t0 = 0.0
        self.phase = PH_QUEUED
        self.state = HEAD
        self.buf = b""
        self.remaining = 0
        self.status = 0
        self.nbytes = 0
        self.reads = 0
        self.body_bytes = 0
        self.frames = 0
        self.ttfb = -1.0
        self.nl = False          # body so far ends with an unpaired b"\n"
        self.tail = b""          # last bytes of the body, to recognise the [DONE] frame at the end
        self.last_t = -1.0       # arrival time of the previous frame
        self.pending = -1.0      # interval error of the most recent frame, not yet committed
        self.finished = False
        self.error = ""
        self.detail = ""
        self.done = False
        self.transport = None
        self.fut = None
        self.sock = None
        self.loop = None
        self.reg = 0  # raw/epoll modes: 1 waiting to be writable (connecting), 2 readable
        self.conn = False  # raw/epoll modes: connected and counted in lg.active
        self.next = None   # the stream this slot opens when this one ends (--rounds)

    # --- raw mode: non-blocking socket + loop.add_writer/add_reader callbacks (the cheapest) ---
    def start_raw(self, loop) -> None:
        self.loop = loop
        self.t0 = _monotonic()
        self.phase = PH_CONNECT
        lg = self.lg
        try:
            sock = socket.socket(lg.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        except OSError as exc:
            self.finish(*classify_oserror(exc, PH_CONNECT))
            return
        self.sock = sock
        err = sock.connect_ex(lg.addr)
        if err == 0:
            self._connected()
        elif err == errno.EINPROGRESS:
            # On loopback the handshake has usually completed by now unless the listen queue is
            # full: try the request at once and only fall back to waiting for writability.
            try:
                sent = sock.send(lg.request)
            except (BlockingIOError, InterruptedError):
                lg.watch(self, sock.fileno(), 1)
                return
            except OSError as exc:  # e.g. ConnectionRefusedError: loopback refuses at once
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                self._fail_raw(exc if not err else ConnectionRefusedError(err, os.strerror(err))
                               if err == errno.ECONNREFUSED else OSError(err, os.strerror(err)))
                return
            self._connected(sent)
        else:
            self._fail_raw(OSError(err, os.strerror(err)) if err != errno.ECONNREFUSED
                           else ConnectionRefusedError(err, os.strerror(err)))

    def _on_connect(self) -> None:
        sock = self.sock
        self.lg.unwatch(self, sock.fileno())
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail_raw(ConnectionRefusedError(err, os.strerror(err)) if err == errno.ECONNREFUSED
                           else OSError(err, os.strerror(err)))
            return
        self._connected()

    def _count_open(self) -> None:
        """The connection is up: headers are next, and one more stream is open."""
        self.phase = PH_HEADERS
        lg = self.lg
        lg.active += 1
        if lg.active > lg.peak_active:
            lg.peak_active = lg.active

    def _connected(self, sent: int = -1) -> None:
        self.conn = True
        self._count_open()
        lg = self.lg
        if sent < 0:
            try:
                sent = self.sock.send(lg.request)
            except OSError as exc:
                self._fail_raw(exc)
                return
        if sent != len(lg.request):  # never for a request this small on a fresh socket
            self._fail_raw(OSError(errno.EAGAIN, "short send of the request"))
            return
        lg.watch(self, self.sock.fileno(), 2)

    def _on_read(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail_raw(exc)
            return
        if not data:
            self.at_eof()
            self.abort()
            return
        try:
            if self.feed(data, _monotonic()):
                self.finish()
                self.abort()
        except ProtocolError as exc:
            self.finish("protocol_error", str(exc))
            self.abort()

    def _fail_raw(self, exc: OSError) -> None:
        self.finish(*classify_oserror(exc, self.phase))
        self.abort()

    def abort(self) -> None:
        """Close the connection now, whichever I/O mode opened it (idempotent)."""
        sock = self.sock
        if sock is not None:
            self.sock = None
            if self.reg:
                self.lg.unwatch(self, sock.fileno())
            if self.conn:
                self.conn = False
                self.lg.active -= 1
            sock.close()
        elif self.transport is not None:
            self.transport.abort()

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self._count_open()
        transport.write(self.lg.request)

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        try:
            if self.feed(data, _monotonic()):
                self.finish()
                self.transport.close()
        except ProtocolError as exc:
            self.finish("protocol_error", str(exc))
            self.transport.abort()

    def eof_received(self):
        self.at_eof()
        return False  # let the transport close itself

    def connection_lost(self, exc) -> None:
        if exc is not None and not self.finished:
            self.finish(*classify_oserror(exc, self.phase))
        self.at_eof()
        if self.transport is not None:
            self.lg.active -= 1
            self.transport = None
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def pause_writing(self) -> None:  # request is tiny; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # --- parser ------------------------------------------------------------------------------
    def feed(self, data: bytes, t: float) -> bool:
        """Consume one read. Per-read work is constant plus one find/int/count per HTTP chunk."""
        self.nbytes += len(data)
        self.reads += 1
        if self.buf:
            data = self.buf + data
            self.buf = b""
        n = len(data)
        pos = 0
        st = self.state
        rem = self.remaining
        nl = self.nl
        cnt = 0          # SSE frame ends seen in this read
        nb = 0           # body bytes in this read
        tail_end = -1    # end of the last body range >= TAIL bytes (tail sliced lazily)
        finished = False
        while pos < n:  # every branch advances pos, or breaks/returns
            if st <= CLOSE:  # CHUNK_DATA, LENGTH or CLOSE: a body range [pos, e)
                e = pos + rem
                if e > n:
                    e = n
                if nl and data[pos] == 10:  # b"\n" + b"\n" across a read/chunk boundary
                    start = pos + 1
                    cnt += 1 + data.count(b"\n\n", start, e)
                else:
                    start = pos
                    cnt += data.count(b"\n\n", pos, e)
                # Trailing unpaired b"\n"? (Runs of 3+ newlines are not frames here; not tracked.)
                nl = e > start and data[e - 1] == 10 and not (e - 2 >= start and data[e - 2] == 10)
                if e - pos >= TAIL:
                    tail_end = e
                else:
                    if tail_end >= 0:
                        self.tail = data[tail_end - TAIL:tail_end]
                        tail_end = -1
                    self.tail = (self.tail + data[pos:e])[-TAIL:]
                nb += e - pos
                rem -= e - pos
                pos = e
                if rem:
                    break
                if st == CHUNK_DATA:
                    if n - pos >= 2:
                        if data[pos] != 13 or data[pos + 1] != 10:
                            raise ProtocolError("missing CRLF after chunk data")
                        pos += 2
                        st = CHUNK_SIZE
                    else:
                        st = CHUNK_CRLF
                else:  # LENGTH satisfied (CLOSE never gets here: rem is huge)
                    st = END
                    finished = True
                    break
            elif st == CHUNK_SIZE:
                i = data.find(b"\r\n", pos)
                if i < 0:
                    if n - pos > MAX_LINE:
                        raise ProtocolError("chunk size line too long")
                    break
                try:
                    size = int(data[pos:i].split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {data[pos:i][:40]!r}") from None
                if size < 0:
                    raise ProtocolError("negative chunk size")
                pos = i + 2
                if size:
                    rem = size
                    st = CHUNK_DATA
                else:
                    st = TRAILERS
            elif st == CHUNK_CRLF:
                if n - pos < 2:
                    break
                if data[pos] != 13 or data[pos + 1] != 10:
                    raise ProtocolError("missing CRLF after chunk data")
                pos += 2
                st = CHUNK_SIZE
            elif st == TRAILERS:
                i = data.find(b"\r\n", pos)
                if i < 0:
                    if n - pos > MAX_HEAD:
                        raise ProtocolError("trailers too long")
                    break
                if i == pos:
                    st = END
                    finished = True
                    break
                pos = i + 2
            elif st == HEAD:
                i = data.find(b"\r\n\r\n", pos)
                if i < 0:
                    if n - pos > MAX_HEAD:
                        raise ProtocolError("response head too long")
                    break
                st, rem = self.head(data[pos:i])
                pos = i + 4
                if st == END:
                    finished = True
                    break
            else:  # END: ignore anything after the response
                finished = True
                break
        if pos < n and not finished and st > CLOSE:
            self.buf = data[pos:]  # a partial head, chunk-size line, CRLF or trailer
        self.state = st
        self.remaining = rem
        self.nl = nl
        if tail_end >= 0:
            self.tail = data[tail_end - TAIL:tail_end]
        if nb:
            if self.ttfb < 0:
                self.ttfb = t - self.t0
            self.body_bytes += nb
            if cnt:
                self.add_frames(cnt, t)
        return finished

    def head(self, head: bytes) -> tuple:
        """Parse a response head; returns the next (state, remaining)."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0][:60]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise ProtocolError(f"bad status line {lines[0][:60]!r}") from None
        if 100 <= status < 200:  # interim response: the real head follows
            return HEAD, 0
        self.status = status
        chunked = False
        length = -1
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"transfer-encoding":
                chunked = b"chunked" in v.lower()
            elif k == b"content-length":
                try:
                    length = int(v.strip())
                except ValueError:
                    raise ProtocolError("bad Content-Length") from None
        self.phase = PH_BODY
        if chunked:
            return CHUNK_SIZE, 0
        if length > 0:
            return LENGTH, length
        if length == 0:
            return END, 0
        return CLOSE, 1 << 62

    def add_frames(self, cnt: int, t: float) -> None:
        """cnt frames ended in a read at time t: record their gaps, holding back the newest."""
        self.frames += cnt
        errs = self.lg.errs
        delay = self.lg.delay
        if self.pending >= 0:
            errs.append(self.pending)
        if self.last_t < 0:      # first frame of the stream: no gap
            first = -1.0
        else:
            first = abs(t - self.last_t - delay)
        self.last_t = t
        if cnt == 1:
            self.pending = first
            return
        # The first frame has gap t - last_t, the others arrived with it (gap 0, error = delay).
        if first >= 0:
            errs.append(first)
        if cnt > 2:
            errs.extend(self.lg.delay_run(cnt - 2))
        self.pending = delay

    def at_eof(self) -> None:
        """The peer closed (or the connection is gone): settle the outcome once."""
        if self.finished:
            return
        if self.state == CLOSE:
            self.state = END
            self.finish()
        elif self.state == HEAD:
            self.finish("incomplete", "eof_before_headers" if not self.nbytes else "eof_in_headers")
        else:
            self.finish("incomplete", "eof_in_body")

    def finish(self, error: str = "", detail: str = "") -> None:
        if self.finished:
            return
        self.finished = True
        self.phase = PH_FINISHED
        lg = self.lg
        lg.n_finished += 1
        lg.t_last_end = _monotonic()
        self.done = self.tail.rstrip(b"\r\n").endswith(DONE_MARK)
        if self.pending >= 0:
            if not self.done:  # the held-back gap belongs to a data frame: keep it
                lg.errs.append(self.pending)
            self.pending = -1.0
        if not error:
            if self.state != END:
                error, detail = "incomplete", "eof_in_body"
            elif self.status != 200:
                error, detail = "bad_status", str(self.status)
            elif not self.done:
                error, detail = "incomplete", "no_done_frame"
        self.error = error
        self.detail = detail
        if lg.n_finished >= lg.n and lg.all_done is not None:
            lg.all_done.set()
        nxt = self.next
        if nxt is not None and not lg.stopping and lg.loop is not None and lg.args.io in RAW_IO:
            lg.loop.call_soon(nxt.start_raw, lg.loop)


def classify_oserror(exc: BaseException, phase: int) -> tuple:
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused", ""
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset", PHASE_NAMES[phase]
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timeout", PHASE_NAMES[phase]
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        kind = "connect_error" if phase <= PH_CONNECT else "os_error"
        return kind, name
    return "other", type(exc).__name__


# --- /proc readers -----------------------------------------------------------------------------
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_proc(pid: int):
    """(VmRSS kB, VmHWM kB, threads, utime+stime seconds) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    rss = hwm = threads = 0
    for line in status.split(b"\n"):
        if line.startswith(b"VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith(b"VmHWM:"):
            hwm = int(line.split()[1])
        elif line.startswith(b"Threads:"):
            threads = int(line.split()[1])
    fields = stat[stat.rindex(b")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15 of stat)
    return rss, hwm, threads, cpu


def listen_counters() -> dict:
    """TcpExt ListenOverflows/ListenDrops of this network namespace (SYNs dropped because an
    accept queue was full), or {} if unreadable. Host-wide, so read them on a quiet machine."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as f:
            lines = [line.split() for line in f if line.startswith("TcpExt:")]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    row = dict(zip(lines[0][1:], lines[1][1:]))
    return {k: int(row[k]) for k in ("ListenOverflows", "ListenDrops") if k in row}


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def pct(sorted_vals, q: float):
    """Nearest-rank percentile of an ascending list, or None if empty."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-q * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def ms_summary(vals) -> dict:
    s = sorted(vals)
    r = lambda v: None if v is None else round(v * 1000.0, 3)  # noqa: E731
    return {"n": len(s), "p50": r(pct(s, 50)), "p90": r(pct(s, 90)), "p99": r(pct(s, 99)),
            "max": r(s[-1] if s else None)}


# --- the run -----------------------------------------------------------------------------------
class LoadGen:
    def __init__(self, args: argparse.Namespace, request: bytes) -> None:
        self.args = args
        self.host = args.host
        self.port = args.port
        self.delay = float(args.delay)
        self.request = request
        self.errs = array("d")
        self._delay_runs: dict = {}
        self.active = 0
        self.peak_active = 0
        self.n_finished = 0
        self.t_last_end = 0.0
        self.all_done = None
        self.slots = args.streams
        self.rounds = args.rounds
        self.n = self.slots * self.rounds
        self.stopping = False
        self.streams = [Stream(self) for _ in range(self.n)]
        # Slot i runs streams[i], streams[i + slots], ... back to back.
        for i in range(self.n - self.slots):
            self.streams[i].next = self.streams[i + self.slots]
        ip = ipaddress.ip_address(self.host)
        self.family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        self.addr = (self.host, self.port)
        self.samples: list = []
        self.listen: dict = {}
        self.loop = None
        self.ep = None
        self.by_fd: dict = {}

    # --- readiness for the raw and epoll modes ---------------------------------------------
    def setup_io(self, loop) -> None:
        self.loop = loop
        if self.args.io == "epoll":
            self.ep = select.epoll()
            self.by_fd = {}
            loop.add_reader(self.ep.fileno(), self.drain)

    def close_io(self) -> None:
        if self.ep is not None:
            self.loop.remove_reader(self.ep.fileno())
            self.ep.close()
            self.ep = None

    def watch(self, st: "Stream", fd: int, kind: int) -> None:
        """Call st._on_connect (kind 1: writable) or st._on_read (kind 2: readable) on events."""
        st.reg = kind
        if self.ep is not None:
            self.by_fd[fd] = st
            self.ep.register(fd, select.EPOLLOUT if kind == 1 else select.EPOLLIN)
        elif kind == 1:
            self.loop.add_writer(fd, st._on_connect)
        else:
            self.loop.add_reader(fd, st._on_read)

    def unwatch(self, st: "Stream", fd: int) -> None:
        kind, st.reg = st.reg, 0
        if self.ep is not None:
            self.ep.unregister(fd)
            del self.by_fd[fd]
        elif kind == 1:
            self.loop.remove_writer(fd)
        elif kind == 2:
            self.loop.remove_reader(fd)

    def drain(self) -> None:
        """epoll mode: one asyncio callback dispatches a bounded batch of socket events."""
        by_fd = self.by_fd
        for fd, _ in self.ep.poll(0, 4096):
            st = by_fd.get(fd)
            if st is None:
                continue
            if st.reg == 1:
                st._on_connect()
            else:
                st._on_read()

    def delay_run(self, k: int) -> array:
        a = self._delay_runs.get(k)
        if a is None:
            a = self._delay_runs[k] = array("d", [self.delay]) * k
        return a

    async def one_protocol(self, st: Stream, loop) -> None:
        st.t0 = _monotonic()
        st.phase = PH_CONNECT
        st.fut = loop.create_future()
        try:
            await loop.create_connection(lambda: st, self.host, self.port)
        except OSError as exc:
            st.finish(*classify_oserror(exc, PH_CONNECT))
            return
        await st.fut

    async def one_streams(self, st: Stream, loop) -> None:
        st.t0 = _monotonic()
        st.phase = PH_CONNECT
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=READ_SIZE)
        except OSError as exc:
            st.finish(*classify_oserror(exc, PH_CONNECT))
            return
        st.phase = PH_HEADERS
        self.active += 1
        if self.active > self.peak_active:
            self.peak_active = self.active
        st.transport = writer.transport
        try:
            writer.write(self.request)
            read = reader.read
            while not st.finished:  # bounded by the run deadline (this task is cancelled)
                data = await read(READ_SIZE)
                if not data:
                    st.at_eof()
                    break
                if st.feed(data, _monotonic()):
                    st.finish()
                    break
        except ProtocolError as exc:
            st.finish("protocol_error", str(exc))
        except OSError as exc:
            st.finish(*classify_oserror(exc, st.phase))
        finally:
            self.active -= 1
            st.transport = None
            writer.transport.abort() if st.error else writer.close()

    def sample(self, pid) -> None:
        rec = {"t": _monotonic(), "active": self.active, "client_cpu": own_cpu(),
               "finished": self.n_finished}
        if pid:
            p = read_proc(pid)
            if p is not None:
                rec.update(rss_kb=p[0], hwm_kb=p[1], threads=p[2], cpu_s=p[3])
        self.samples.append(rec)

    async def sampler(self, pid, interval: float, deadline: float) -> None:
        while _monotonic() < deadline:  # bounded by the deadline; also cancelled at the end
            self.sample(pid)
            await asyncio.sleep(interval)

    async def slot(self, one, st: Stream, loop) -> None:
        while st is not None and not self.stopping:  # bounded by --rounds
            await one(st, loop)
            st = st.next

    async def launch(self, loop, deadline: float) -> list:
        io = self.args.io
        one = self.one_streams if io == "streams" else self.one_protocol
        ramp = self.args.ramp
        tasks = []
        t_start = _monotonic()
        for i, st in enumerate(self.streams[:self.slots]):  # bounded by --streams
            if ramp > 0:
                due = t_start + i / ramp
                now = _monotonic()
                if due > now + 0.001:
                    if due >= deadline:
                        break
                    await asyncio.sleep(due - now)
            if io in RAW_IO:
                st.start_raw(loop)  # later rounds are started by finish()
            else:
                tasks.append(loop.create_task(self.slot(one, st, loop)))
            if not ramp and i % 500 == 499:
                await asyncio.sleep(0)  # let early connections progress during a big burst
        return tasks

    async def run(self) -> dict:
        loop = asyncio.get_running_loop()
        args = self.args
        self.all_done = asyncio.Event()
        self.setup_io(loop)
        if self.n == 0:
            self.all_done.set()
        t_begin = _monotonic()
        deadline = t_begin + args.timeout
        cpu0 = own_cpu()
        net0 = listen_counters()
        p0 = read_proc(args.server_pid) if args.server_pid else None
        self.sample(args.server_pid)
        sampler = loop.create_task(self.sampler(args.server_pid, args.sample_interval, deadline))
        launcher = loop.create_task(self.launch(loop, deadline))
        try:
            await asyncio.wait_for(self.all_done.wait(), max(0.0, deadline - _monotonic()))
        except asyncio.TimeoutError:
            pass
        t_end = self.t_last_end if self.n_finished >= self.n and self.t_last_end else _monotonic()
        cpu1 = own_cpu()
        p1 = read_proc(args.server_pid) if args.server_pid else None
        net1 = listen_counters()
        self.listen = {name: net1[k] - net0[k] for k, name in
                       (("ListenOverflows", "listen_overflows"), ("ListenDrops", "listen_drops"))
                       if k in net0 and k in net1}
        self.sample(args.server_pid)
        # Settle everything still running as a time-out, then tear down (bounded).
        self.stopping = True
        if not launcher.done():
            launcher.cancel()
        try:
            tasks = await launcher
        except asyncio.CancelledError:
            tasks = []
        for st in self.streams:
            if not st.finished:
                st.finish("timeout", PHASE_NAMES[st.phase])
                st.abort()
        for t in tasks:
            if not t.done():
                t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        sampler.cancel()
        try:
            await sampler
        except asyncio.CancelledError:
            pass
        self.close_io()
        return self.report(t_begin, t_end, cpu0, cpu1, p0, p1)

    def timeline(self, t_begin: float) -> list:
        """One row per sample interval: [t s, open streams, client CPU util, server CPU util,
        server RSS MB, server threads, streams finished] (server fields None without a pid)."""
        rows = []
        for a, b in zip(self.samples, self.samples[1:]):
            dt = b["t"] - a["t"]
            if dt <= 0:
                continue
            srv = (round((b["cpu_s"] - a["cpu_s"]) / dt, 2)
                   if "cpu_s" in a and "cpu_s" in b else None)
            rows.append([round(b["t"] - t_begin, 3), b["active"],
                         round((b["client_cpu"] - a["client_cpu"]) / dt, 2), srv,
                         round(b["rss_kb"] / 1024, 1) if "rss_kb" in b else None,
                         b.get("threads"), b["finished"]])
        return rows

    def report(self, t_begin, t_end, cpu0, cpu1, p0, p1) -> dict:
        args = self.args
        streams = self.streams
        errors: dict = {}
        details: dict = {}
        completed = 0
        ttfb = []
        frames = data_frames = nbytes = body_bytes = reads = 0
        per_stream_min = per_stream_max = None
        mismatch = 0
        for st in streams:
            nbytes += st.nbytes
            reads += st.reads
            body_bytes += st.body_bytes
            frames += st.frames
            data_frames += st.frames - (1 if st.done else 0)
            if st.ttfb >= 0:
                ttfb.append(st.ttfb)
            if st.error:
                errors[st.error] = errors.get(st.error, 0) + 1
                key = f"{st.error}:{st.detail}" if st.detail else st.error
                details[key] = details.get(key, 0) + 1
            else:
                completed += 1
                f = st.frames
                per_stream_min = f if per_stream_min is None else min(per_stream_min, f)
                per_stream_max = f if per_stream_max is None else max(per_stream_max, f)
                if args.expect_frames and f != args.expect_frames:
                    mismatch += 1
        # Wall time: first connect to the end of the last stream, or to the deadline.
        wall = max(1e-9, t_end - t_begin)
        cpu = cpu1 - cpu0
        util = cpu / wall
        peak_win = 0.0
        for a, b in zip(self.samples, self.samples[1:]):
            dt = b["t"] - a["t"]
            if dt >= 0.05:
                peak_win = max(peak_win, (b["client_cpu"] - a["client_cpu"]) / dt)
        server = None
        if args.server_pid:
            with_mem = [s for s in self.samples if "rss_kb" in s]
            server = {"pid": args.server_pid, "alive_at_end": p1 is not None,
                      "samples": len(with_mem)}
            if with_mem:
                peak = max(with_mem, key=lambda s: (s["active"], s["rss_kb"]))
                server.update(
                    rss_max_mb=round(max(s["rss_kb"] for s in with_mem) / 1024, 1),
                    hwm_mb=round(max(s["hwm_kb"] for s in with_mem) / 1024, 1),
                    threads_max=max(s["threads"] for s in with_mem),
                    rss_at_peak_mb=round(peak["rss_kb"] / 1024, 1),
                    threads_at_peak=peak["threads"],
                    active_at_peak=peak["active"],
                )
            if p0 is not None:
                server["rss_start_mb"] = round(p0[0] / 1024, 1)
                cpu_end = p1[3] if p1 is not None else with_mem[-1]["cpu_s"]
                server["cpu_s"] = round(cpu_end - p0[3], 3)
                server["cpu_util"] = round((cpu_end - p0[3]) / wall, 3)
        return {
            "tool": "bench/loadgen.py",
            "command": self.command,
            "target": {"host": self.host, "port": self.port, "path": args.path},
            "config": {"streams": self.slots, "rounds": self.rounds, "delay_s": self.delay, "timeout_s": args.timeout,
                       "ramp_per_s": args.ramp, "io": args.io, "expect_frames": args.expect_frames,
                       "sample_interval_s": args.sample_interval},
            "streams_requested": self.n,
            "streams_completed": completed,
            "errors": errors,
            "error_details": details,
            "frames_per_completed_stream": {"min": per_stream_min, "max": per_stream_max},
            "frame_count_mismatch": mismatch if args.expect_frames else None,
            "ttfb_ms": ms_summary(ttfb),
            "interval_error_ms": ms_summary(self.errs),
            "frames_total": frames,
            "data_frames_total": data_frames,
            "bytes_total": nbytes,
            "reads_total": reads,
            "frames_per_read": round(frames / reads, 3) if reads else None,
            "body_bytes_total": body_bytes,
            "wall_s": round(wall, 4),
            "frames_per_s": round(frames / wall, 1),
            "bytes_per_s": round(nbytes / wall, 1),
            "peak_concurrent_streams": self.peak_active,
            "kernel": self.listen,
            "server": server,
            "client": {
                "pid": os.getpid(),
                "cpu_s": round(cpu, 3),
                "cpu_util": round(util, 3),
                "cpu_util_peak_window": round(peak_win, 3),
                "client_bound": util >= args.client_bound_at,
                "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "nofile_limit": self.nofile,
                "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                "python": sys.version.split()[0],
            },
            "timeline_columns": ["t_s", "open_streams", "client_cpu_util", "server_cpu_util",
                                 "server_rss_mb", "server_threads", "finished"]
            if args.timeline else None,
            "timeline": self.timeline(t_begin) if args.timeline else None,
        }


def summary_line(r: dict) -> str:
    t, e = r["ttfb_ms"], r["interval_error_ms"]
    s = r.get("server") or {}
    c = r["client"]
    f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    parts = [
        f"{r['streams_completed']}/{r['streams_requested']} complete",
        "errors=" + (",".join(f"{k}:{v}" for k, v in sorted(r["error_details"].items())) or "none"),
        f"ttfb p50/p99 {f(t['p50'])}/{f(t['p99'])} ms",
        f"interval err p50/p99 {f(e['p50'])}/{f(e['p99'])} ms",
        f"{r['frames_per_s']:.0f} frames/s",
        f"{r['bytes_per_s'] / 1e6:.2f} MB/s",
        f"wall {r['wall_s']:.2f} s",
    ]
    drops = (r.get("kernel") or {}).get("listen_drops")
    if drops:
        parts.append(f"{drops} SYNs dropped by a full accept queue")
    if s.get("rss_max_mb") is not None:
        parts.append(f"server rss max {s['rss_max_mb']} MB hwm {s['hwm_mb']} MB "
                     f"threads max {s['threads_max']} cpu {s.get('cpu_s', '-')} s")
    parts.append(f"client cpu {c['cpu_s']} s ({c['cpu_util'] * 100:.0f}% of a core, "
                 f"client_bound={str(c['client_bound']).lower()})")
    return "loadgen: " + ", ".join(parts)


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Content-Type: application/json\r\n"
            "Authorization: Bearer bench\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n")
    return head.encode("ascii") + body


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="loopback IP address only")
    p.add_argument("--port", type=int, required=True, help="server port")
    p.add_argument("--path", default="/v1/pipes/run", help="request path")
    p.add_argument("--body", default=None,
                   help='request body JSON; None: {"messages":[{"role":"user","content":"Hello"}],'
                        '"stream":true}')
    p.add_argument("--streams", type=int, default=100, help="concurrent streams to open")
    p.add_argument("--rounds", type=int, default=1,
                   help="streams each of the --streams slots opens back to back (closed loop); "
                        "streams requested = streams x rounds")
    p.add_argument("--delay", type=float, default=0.05,
                   help="seconds between frames configured on the server (for interval error)")
    p.add_argument("--timeout", type=float, default=120.0, help="overall deadline of the run, s")
    p.add_argument("--ramp", type=float, default=0.0,
                   help="connections opened per second (0: all at once)")
    p.add_argument("--io", choices=("epoll", "raw", "protocol", "streams"), default="epoll",
                   help="epoll: non-blocking sockets in one select.epoll drained by one asyncio "
                        "reader callback (cheapest); raw: loop.add_reader per socket; protocol: "
                        "loop.create_connection + Protocol; streams: asyncio.open_connection")
    p.add_argument("--expect-frames", type=int, default=0,
                   help="SSE frames (incl. [DONE]) each stream should carry; 0: don't check")
    p.add_argument("--server-pid", type=int, default=0, help="read RSS/threads/CPU of this pid")
    p.add_argument("--sample-interval", type=float, default=0.2, help="seconds between /proc samples")
    p.add_argument("--client-bound-at", type=float, default=0.9,
                   help="flag client_bound when own CPU / wall time reaches this fraction of a core")
    p.add_argument("--timeline", action="store_true",
                   help="include per-sample rows (open streams, CPU, RSS) in the JSON")
    p.add_argument("--json", default=None,
                   help="write the JSON report to this file; None: to stdout (the summary line "
                        "and the command then go to stderr)")
    a = p.parse_args(argv)
    try:
        ip = ipaddress.ip_address(a.host)
    except ValueError:
        p.error(f"--host must be a loopback IP address (e.g. 127.0.0.1), not {a.host!r}")
    if not ip.is_loopback:
        p.error(f"refusing non-loopback host {a.host}: this tool only loads 127.0.0.0/8 or ::1")
    if not (0 < a.port < 65536):
        p.error("--port must be 1..65535")
    if a.streams < 0 or a.rounds < 1 or a.timeout <= 0 or a.sample_interval <= 0 or a.ramp < 0 or a.delay < 0:
        p.error("--streams, --rounds, --timeout, --sample-interval, --ramp and --delay must be "
                "positive")
    if not a.path.startswith("/"):
        p.error("--path must start with /")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.executable] + (sys.argv if argv is None else [sys.argv[0]] + list(argv)))
    if args.body is None:
        body = json.dumps({"messages": [{"role": "user", "content": "Hello"}], "stream": True},
                          separators=(",", ":")).encode()
    else:
        try:
            json.loads(args.body)
        except ValueError as exc:
            print(f"loadgen: --body is not JSON: {exc}", file=sys.stderr)
            return 2
        body = args.body.encode("utf-8")
    nofile = raise_nofile()
    if args.streams + 64 > nofile:
        print(f"loadgen: warning: {args.streams} streams but RLIMIT_NOFILE is {nofile}",
              file=sys.stderr)
    lg = LoadGen(args, build_request(args.host, args.port, args.path, body))
    lg.command = command
    lg.nofile = nofile
    gc.collect()
    gc.disable()  # bounded garbage (N streams); avoids collector pauses in the measurement
    try:
        report = asyncio.run(lg.run())
    finally:
        gc.enable()
    out = sys.stdout
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    else:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        out = sys.stderr
    print(summary_line(report), file=out)
    print("command: " + command, file=out)
    out.flush()
    return 0 if report["streams_completed"] == report["streams_requested"] else 1


if __name__ == "__main__":
    sys.exit(main())
