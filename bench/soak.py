#!/usr/bin/env python3
"""Soak: mixed traffic against one server for a bounded time, watching its memory, threads and
file descriptors.

Starts ``python3 main.py --port 0`` from ``--root`` (this checkout by default), then keeps
``--clients`` concurrent clients busy for ``--minutes``. Each client continues a thread of its
own (deleted, and a new one begun, every ``CONVERSATION_ACTIONS`` actions and when it stops)
and repeats a seeded random choice of: a paced stream, a zero-delay stream on every route and wire format, a hang-up
mid-stream with FIN or with RST, a slow reader, thread writes (create, append, read, delete), a
bad request, and a fault scenario. It samples the server's RSS, threads and open descriptors
(``/proc``) at the start, every ``--sample-seconds``, after the clients stop and the server
settles, and again after ``POST /mock/reset`` drops what the mock keeps on purpose, and prints the samples, the outcomes by action, and the command. ``--rounds`` repeats the
traffic and the reset on the same server, with new seeds: RSS that climbs from round to round
is a leak, RSS that stays is what the allocators keep. Loopback only; every wait is bounded;
the exit status is 1 if any response was a 5xx or unexpected.

    python3 bench/soak.py --minutes 1 --clients 200
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import shlex
import socket
import struct
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HI = [{"role": "user", "content": "Hello"}]
STEP_TIMEOUT = 30.0
CONVERSATION_ACTIONS = 50
"""Actions after which a client deletes its thread and continues a new one. With one thread
each for the whole soak, 1,000 clients fill the server's --max-thread-bytes (256 MiB: each
slow reader stores a 10,000-character reply) after about 8 minutes, and every write after
that is a 403."""


class Unexpected(Exception):
    """A response the server should not have given (a 5xx, a wrong status, a broken body)."""


def request(method: str, path: str, body: Optional[object] = None, headers: Optional[Dict[str, str]] = None,
            raw_body: Optional[bytes] = None) -> bytes:
    data = raw_body if raw_body is not None else (b"" if body is None else json.dumps(body).encode())
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1", "Connection: close"]
    if body is not None or raw_body is not None:
        lines += ["Content-Type: application/json", "Content-Length: %d" % len(data)]
    lines += ["%s: %s" % kv for kv in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def exchange(port: int, raw: bytes, read_limit: Optional[int] = None,
                   pause: float = 0.0, reset: bool = False) -> Tuple[int, bytes]:
    """Send ``raw`` on a new connection and read the answer until the server closes (or until
    ``read_limit`` bytes, then hang up: with a TCP reset if ``reset``). ``pause`` seconds
    between reads of 1 KB make a slow reader. Returns ``(status, bytes read)``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = b""
        while True:
            chunk = await reader.read(1024 if pause else 65536)
            if not chunk:
                break
            data += chunk
            if read_limit is not None and len(data) >= read_limit:
                break
            if pause:
                await asyncio.sleep(pause)
        match = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
        return (int(match.group(1)) if match else 0), data
    finally:
        if reset:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()


def expect(status: int, wanted: Tuple[int, ...], data: bytes, what: str) -> None:
    if status not in wanted:
        raise Unexpected("%s: status %s, wanted %s: %r" % (what, status, wanted, data[:200]))


def run_body(rng: random.Random, **extra: object) -> dict:
    """A streamed pipe run that continues the client's own thread (``rng.thread_id``), as a chat
    app does: the store holds one thread per client, not one per run."""
    return dict({"stream": True, "messages": HI, "threadId": rng.thread_id}, **extra)  # type: ignore[attr-defined]


async def paced_stream(port: int, rng: random.Random) -> None:
    status, data = await exchange(port, request("POST", "/v1/pipes/run", run_body(rng)))
    expect(status, (200,), data, "paced stream")
    if not data.endswith(b"0\r\n\r\n") or b"data: [DONE]" not in data:
        raise Unexpected("paced stream ended early: %r" % data[-100:])


async def zero_delay_any_route(port: int, rng: random.Random) -> None:
    route = rng.choice([("POST", "/v1/pipes/run", run_body(rng)),
                        ("POST", "/v1/chat/completions", {"model": "m", "stream": True, "messages": HI}),
                        ("POST", "/api/chat", {"messages": HI}),
                        ("POST", "/api/stream", {"model": "llama2", "messages": HI}),
                        ("GET", "/api/events?prompt=Hello&delay=0", None)])
    method, path, body = route
    status, data = await exchange(port, request(method, path, body, {"X-Mock-Delay": "0"}))
    expect(status, (200,), data, "zero-delay %s" % path)


async def hang_up(port: int, rng: random.Random, reset: bool) -> None:
    status, data = await exchange(port, request("POST", "/v1/pipes/run", run_body(rng)),
                                  read_limit=400, reset=reset)
    expect(status, (200,), data, "hang-up")


async def slow_reader(port: int, rng: random.Random) -> None:
    body = run_body(rng, mock={"reply_text": "slow " * 2000, "chunking": "char"})
    status, data = await exchange(port, request("POST", "/v1/pipes/run", body, {"X-Mock-Delay": "0"}),
                                  read_limit=60_000, pause=0.05)
    expect(status, (200,), data, "slow reader")


async def thread_writes(port: int, rng: random.Random) -> None:
    status, data = await exchange(port, request("POST", "/v1/threads", {"metadata": {"soak": "1"}, "messages": HI}))
    expect(status, (200,), data, "thread create")
    thread_id = json.loads(data.split(b"\r\n\r\n", 1)[1])["id"]
    status, data = await exchange(port, request("POST", "/v1/threads/%s/messages" % thread_id,
                                                [{"role": "assistant", "content": "Hi"}]))
    expect(status, (200,), data, "append")
    status, data = await exchange(port, request("GET", "/v1/threads/%s/messages" % thread_id))
    expect(status, (200,), data, "list messages")
    status, data = await exchange(port, request("DELETE", "/v1/threads/%s" % thread_id))
    expect(status, (200,), data, "delete")


async def bad_request(port: int, rng: random.Random) -> None:
    raw = rng.choice([request("POST", "/v1/pipes/run", raw_body=b"{not json"),
                      request("POST", "/v1/pipes/run", {"messages": [{"role": "wizard", "content": "x"}]}),
                      b"POST /v1/threads HTTP/1.1\r\nX-Note no colon\r\nContent-Length: 2\r\n\r\n{}",
                      request("POST", "/v1/pipes/run", {"messages": HI, "mock": {"delay": 1e300}})])
    status, data = await exchange(port, raw)
    expect(status, (400,), data, "bad request")


async def fault(port: int, rng: random.Random) -> None:
    kind = rng.choice(["http_error", "disconnect", "error_frame", "corrupt"])
    status, data = await exchange(port, request("POST", "/v1/pipes/run", run_body(rng),
                                                {"X-Mock-Fault": kind, "X-Mock-Fault-Status": "503"}))
    expect(status, (503,) if kind == "http_error" else (200,), data, "fault %s" % kind)


ACTIONS = {
    "paced stream": paced_stream,
    "zero-delay stream, any route": zero_delay_any_route,
    "hang-up (FIN)": lambda port, rng: hang_up(port, rng, False),
    "hang-up (RST)": lambda port, rng: hang_up(port, rng, True),
    "slow reader": slow_reader,
    "thread writes": thread_writes,
    "bad request": bad_request,
    "fault scenario": fault,
}


def sample(pid: int) -> Dict[str, float]:
    """The server's RSS (MB), threads and open file descriptors, from /proc."""
    with open("/proc/%d/status" % pid) as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024, "threads": int(status["Threads"]),
            "fds": len(os.listdir("/proc/%d/fd" % pid))}


async def delete_thread(port: int, rng: random.Random, outcomes: Dict[str, collections.Counter],
                        failures: List[str]) -> None:
    """Delete the client's thread (404 if no run of it ever stored one)."""
    try:
        status, data = await asyncio.wait_for(
            exchange(port, request("DELETE", "/v1/threads/%s" % rng.thread_id)), STEP_TIMEOUT)  # type: ignore
        expect(status, (200, 404), data, "delete the client's thread")
        outcomes["delete the client's thread"]["ok"] += 1
    except (Unexpected, asyncio.TimeoutError, OSError) as exc:
        outcomes["delete the client's thread"]["failed"] += 1
        failures.append("delete the client's thread: %s" % exc)


async def client(port: int, seed: int, deadline: float, outcomes: Dict[str, collections.Counter],
                 failures: List[str]) -> None:
    rng = random.Random(seed)
    rng.thread_id = "soak-%d" % seed  # type: ignore[attr-defined]
    names = list(ACTIONS)
    done = 0
    while time.monotonic() < deadline:
        name = rng.choice(names)
        try:
            await asyncio.wait_for(ACTIONS[name](port, rng), STEP_TIMEOUT)
            outcomes[name]["ok"] += 1
        except Unexpected as exc:
            outcomes[name]["unexpected"] += 1
            if len(failures) < 20:
                failures.append(str(exc))
        except asyncio.TimeoutError:
            outcomes[name]["timeout"] += 1
            if len(failures) < 20:
                failures.append("%s: no answer within %g s" % (name, STEP_TIMEOUT))
        except OSError as exc:
            outcomes[name]["connection error %s" % type(exc).__name__] += 1
        done += 1
        if done % CONVERSATION_ACTIONS == 0:  # a new conversation, as a chat app's user starts one
            await delete_thread(port, rng, outcomes, failures)
            rng.thread_id = "soak-%d-%d" % (seed, done // CONVERSATION_ACTIONS)  # type: ignore[attr-defined]
    await delete_thread(port, rng, outcomes, failures)  # leave nothing behind


async def soak(port: int, pid: int, clients: int, seconds: float, every: float, seed: int,
               rounds: int) -> Tuple[list, dict, list]:
    samples = [("start", sample(pid))]
    outcomes: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures: List[str] = []
    for round_number in range(1, rounds + 1):
        label = "round %d: " % round_number if rounds > 1 else ""
        started = time.monotonic()
        deadline = started + seconds
        first_seed = seed * 100_000 + (round_number - 1) * 1_000_000_000
        tasks = [asyncio.ensure_future(client(port, first_seed + i, deadline, outcomes, failures))
                 for i in range(clients)]
        while time.monotonic() < deadline:
            await asyncio.sleep(min(every, max(0.0, deadline - time.monotonic())))
            samples.append(("%s%.0f s" % (label, time.monotonic() - started), sample(pid)))
        await asyncio.wait(tasks, timeout=2 * STEP_TIMEOUT + 5)
        await asyncio.sleep(6.0)  # past the keep-alive and linger deadlines
        samples.append((label + "clients gone, threads deleted", sample(pid)))
        # What is left is what the mock keeps on purpose (every run without a threadId makes a
        # thread; the run log, the journal): POST /mock/reset lets it all go, so what RSS still
        # holds after that is the allocator's, or a leak; a next round that ends higher is a leak.
        status, data = await exchange(port, request("POST", "/mock/reset"))
        expect(status, (200,), data, "reset")
        await asyncio.sleep(2.0)
        samples.append((label + "after POST /mock/reset", sample(pid)))
    return samples, outcomes, failures


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=REPO_ROOT, help="checkout whose main.py to run (default: this one)")
    p.add_argument("--minutes", type=float, default=10.0, help="how long the clients run (default 10)")
    p.add_argument("--clients", type=int, default=1000, help="concurrent clients (default 1000)")
    p.add_argument("--sample-seconds", type=float, default=60.0, help="seconds between samples (default 60)")
    p.add_argument("--seed", type=int, default=1, help="seed of the clients' choices (default 1)")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds of --minutes of traffic, each ended by POST /mock/reset (default 1)")
    args = p.parse_args(argv)
    if not sys.platform.startswith("linux"):
        p.error("soak.py reads /proc: Linux only")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    cmd = [sys.executable, os.path.join(args.root, "main.py"), "--port", "0", "--log-level", "error",
           "--delay", "0.05"]
    proc = subprocess.Popen(cmd, cwd=args.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        match = re.search(r"listening on http://[^:]+:(\d+)", proc.stdout.readline())
        if not match:
            raise SystemExit("soak: the server did not start")
        port = int(match.group(1))
        samples, outcomes, failures = asyncio.run(soak(port, proc.pid, args.clients, args.minutes * 60,
                                                       args.sample_seconds, args.seed, args.rounds))
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    print("| when | server RSS (MB) | threads | open descriptors |")
    print("|---|---:|---:|---:|")
    for when, s in samples:
        print("| %s | %.1f | %d | %d |" % (when, s["rss_mb"], s["threads"], s["fds"]))
    print()
    print("| action | outcomes |")
    print("|---|---|")
    bad = 0
    for name in list(ACTIONS) + ["delete the client's thread"]:
        counts = outcomes.get(name, collections.Counter())
        bad += counts["unexpected"] + counts["timeout"] + counts["failed"]
        print("| %s | %s |" % (name, ", ".join("%s %d" % kv for kv in sorted(counts.items())) or "-"))
    for line in failures:
        print("unexpected: " + line)
    tracebacks = stderr.count("Traceback")
    print("\nserver exit status %s; tracebacks in its log: %d" % (proc.returncode, tracebacks))
    print("command: python3 bench/soak.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    return 1 if bad or tracebacks or proc.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
