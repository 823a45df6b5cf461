"""Tests for bench/loadgen.py: the incremental HTTP/SSE parser, and whole runs against a tiny
in-process server in every I/O mode.

They run with the project's tests (the load generator's numbers are only as good as its parser).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import socket
import socketserver
import tempfile
import threading
import time
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import loadgen  # noqa: E402

FRAMES = [b'data: {"i":%d}\n\n' % i for i in range(21)] + [b"data: [DONE]\n\n"]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(parts) -> bytes:
    return HEAD + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def new_stream(delay: float = 0.05):
    args = argparse.Namespace(host="127.0.0.1", port=1, streams=1, rounds=1, delay=delay,
                              io="epoll")
    lg = loadgen.LoadGen(args, b"")
    return lg, lg.streams[0]


class ParserTest(unittest.TestCase):
    def test_feed_random_chunk_and_read_splits_counts_every_frame(self):
        rng = random.Random(7)
        body = b"".join(FRAMES)
        for _ in range(500):
            cuts = sorted(set(rng.sample(range(1, len(body)), rng.randint(0, 40))))
            raw = chunked([body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])])
            lg, st = new_stream()
            pos, t, done = 0, 0.0, False
            while pos < len(raw) and not done:
                k = rng.choice([1, 2, 3, 7, 50, 300, 5000])
                done = st.feed(raw[pos:pos + k], t)
                pos, t = pos + k, t + 0.05
            self.assertTrue(done)
            st.finish()
            self.assertEqual((st.frames, st.done, st.error), (22, True, ""))
            self.assertEqual(len(lg.errs), 20)  # 21 data frames; the gap before [DONE] is dropped
            self.assertEqual(st.body_bytes, len(body))

    def test_interval_error_exact_pacing_is_zero_and_done_gap_is_dropped(self):
        lg, st = new_stream(0.05)
        st.feed(HEAD, 0.0)
        for i, f in enumerate(FRAMES[:-1]):
            st.feed(b"%x\r\n%s\r\n" % (len(f), f), i * 0.05)
        st.feed(b"%x\r\n%s\r\n0\r\n\r\n" % (len(FRAMES[-1]), FRAMES[-1]), 20 * 0.05 + 0.3)
        st.finish()
        self.assertEqual(len(lg.errs), 20)
        self.assertLess(max(lg.errs), 1e-9)

    def test_frames_in_one_read_have_error_equal_to_delay(self):
        lg, st = new_stream(0.05)
        self.assertTrue(st.feed(chunked(FRAMES), 1.0))
        st.finish()
        self.assertEqual(list(lg.errs), [0.05] * 20)

    def test_content_length_body_completes(self):
        body = b"".join(FRAMES)
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        _, st = new_stream()
        self.assertFalse(st.feed(raw[:100], 0.0))
        self.assertTrue(st.feed(raw[100:], 0.1))
        st.finish()
        self.assertEqual((st.frames, st.error), (22, ""))

    def test_close_delimited_body_completes_at_eof(self):
        _, st = new_stream()
        self.assertFalse(st.feed(b"HTTP/1.1 200 OK\r\n\r\n" + b"".join(FRAMES), 0.0))
        st.at_eof()
        self.assertEqual((st.frames, st.error), (22, ""))

    def test_non_200_is_bad_status(self):
        _, st = new_stream()
        self.assertTrue(st.feed(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}", 0.0))
        st.finish()
        self.assertEqual((st.error, st.detail), ("bad_status", "401"))

    def test_missing_done_is_incomplete(self):
        _, st = new_stream()
        self.assertTrue(st.feed(chunked(FRAMES[:-1]), 0.0))
        st.finish()
        self.assertEqual((st.error, st.detail), ("incomplete", "no_done_frame"))

    def test_eof_mid_body_is_incomplete(self):
        _, st = new_stream()
        st.feed(HEAD + b"6\r\ndata: \r\n", 0.0)
        st.at_eof()
        self.assertEqual((st.error, st.detail), ("incomplete", "eof_in_body"))

    def test_bad_chunk_size_raises(self):
        _, st = new_stream()
        with self.assertRaises(loadgen.ProtocolError):
            st.feed(HEAD + b"zz\r\n", 0.0)


class _SSEHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            part = self.request.recv(4096)
            if not part:
                return
            data += part
        self.request.sendall(HEAD)
        for f in FRAMES[:-1]:
            self.request.sendall(b"%x\r\n%s\r\n" % (len(f), f))
            time.sleep(0.005)
        self.request.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(FRAMES[-1]), FRAMES[-1]))
        with contextlib.suppress(OSError):
            self.request.recv(1)  # wait for the client to close first, like a keep-alive server


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class RunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = _Server(("127.0.0.1", 0), _SSEHandler)
        cls.thread = threading.Thread(target=cls.server.serve_forever,
                                      kwargs={"poll_interval": 0.01}, daemon=True)
        cls.thread.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        cls.thread.join(5)

    def run_loadgen(self, *extra) -> tuple:
        port = self.server.server_address[1]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "r.json")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = loadgen.main(["--port", str(port), "--delay", "0.005", "--timeout", "20",
                                   "--server-pid", str(os.getpid()), "--expect-frames", "22",
                                   "--json", path, *extra])
            with open(path, encoding="utf-8") as f:
                return rc, json.load(f), out.getvalue()

    def test_every_io_mode_completes_all_streams(self):
        for mode in ("epoll", "raw", "protocol", "streams"):
            with self.subTest(mode=mode):
                rc, r, out = self.run_loadgen("--io", mode, "--streams", "20", "--rounds", "2")
                self.assertEqual(rc, 0, out)
                self.assertEqual((r["streams_requested"], r["streams_completed"]), (40, 40))
                self.assertEqual(r["frame_count_mismatch"], 0)
                self.assertEqual(r["frames_total"], 40 * 22)
                self.assertEqual(r["interval_error_ms"]["n"], 40 * 20)
                self.assertIn("command: ", out)

    def test_refused_connections_are_reported(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: connections are refused
            out = io.StringIO()
            with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(out):
                path = os.path.join(tmp, "r.json")
                rc = loadgen.main(["--port", str(port), "--streams", "3", "--timeout", "5",
                                   "--json", path])
                with open(path, encoding="utf-8") as f:
                    r = json.load(f)
        self.assertEqual(rc, 1)
        self.assertEqual(r["errors"], {"connect_refused": 3})

    def test_non_loopback_host_is_refused(self):
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
            loadgen.parse_args(["--host", "192.0.2.1", "--port", "80"])


if __name__ == "__main__":
    unittest.main()
