"""Configuration, banner, and the real process: startup, hang-ups, SIGTERM."""

import contextlib
import io
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from tests import docs_blocks, support
from tests.support import ResponseReader, request_bytes
import main
import pipes


class ParseArgsTest(unittest.TestCase):
    def test_defaults(self):
        s = main.parse_args([], env={})
        self.assertEqual((s.host, s.port, s.delay, s.seed), ("127.0.0.1", 8000, 0.05, 0))
        self.assertEqual(s.replies, pipes.SAMPLE_REPLIES)
        self.assertEqual(s.cors_origins, ("*",))
        self.assertIsNone(s.api_key)
        self.assertFalse(s.strict_threads)

    def test_environment_fallbacks_and_command_line_wins(self):
        env = {"PORT": "9001", "HOST": "0.0.0.0", "LB_MOCK_DELAY": "1.0", "LB_MOCK_STRICT_THREADS": "1",
               "LB_MOCK_API_KEY": "k", "LB_MOCK_CORS_ORIGINS": "http://a.test, http://b.test"}
        s = main.parse_args([], env=env)
        self.assertEqual((s.port, s.host, s.delay, s.strict_threads, s.api_key),
                         (9001, "0.0.0.0", 1.0, True, "k"))
        self.assertEqual(s.cors_origins, ("http://a.test", "http://b.test"))
        cli = main.parse_args(["--port", "0", "--delay", "0"], env=env)
        self.assertEqual((cli.port, cli.delay), (0, 0.0))

    def test_replies_file_loaded(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(["One.", "Two {{x}}."], f)
        self.addCleanup(os.unlink, f.name)
        self.assertEqual(main.parse_args(["--replies", f.name], env={}).replies, ("One.", "Two {{x}}."))
        self.assertEqual(main.parse_args([], env={"LB_MOCK_REPLIES": f.name}).replies, ("One.", "Two {{x}}."))

    def test_bad_values_exit_2_with_message(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write("[1, 2]")
        self.addCleanup(os.unlink, f.name)
        for argv in (["--port", "70000"], ["--delay", "-1"], ["--delay", "nan"], ["--max-connections", "0"], ["--head-timeout", "0"],
                     ["--replies", f.name], ["--replies", "/nonexistent.json"], ["--log-level", "loud"]):
            with self.subTest(argv=argv):
                err = io.StringIO()
                with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as ctx:
                    main.parse_args(argv, env={})
                self.assertEqual(ctx.exception.code, 2)
                self.assertIn("error:", err.getvalue())

    def test_a_replies_file_entry_over_max_reply_chars_is_refused_at_start(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(["short", "x" * 101], f)
        self.addCleanup(os.unlink, f.name)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as ctx:
            main.parse_args(["--replies", f.name, "--max-reply-chars", "100"], env={})
        self.assertEqual(ctx.exception.code, 2)
        self.assertIn("reply 1 of --replies is 101 characters", err.getvalue())
        self.assertEqual(len(main.parse_args(["--replies", f.name], env={}).replies), 2)

    def test_mock_flags_and_environment_give_server_scenario_layer(self):
        s = main.parse_args(["--mock", "line_ending=crlf", "--mock", "fault=disconnect"], env={})
        self.assertEqual(dict(s.mock), {"line_ending": "crlf", "fault": "disconnect"})
        s = main.parse_args([], env={"LB_MOCK_SCENARIO": "event_ids=true, delay=0.5"})
        self.assertEqual(dict(s.mock), {"event_ids": True, "delay": 0.5})

    def test_token_wait_flag_environment_and_bound(self):
        self.assertEqual(main.parse_args([], env={}).token_wait, 1.0)
        self.assertEqual(main.parse_args([], env={"LB_MOCK_TOKEN_WAIT": "0"}).token_wait, 0.0)
        self.assertEqual(main.parse_args(["--token-wait", "2.5"], env={"LB_MOCK_TOKEN_WAIT": "0"}).token_wait, 2.5)
        for value in ("601", "-1", "soon"):
            with self.subTest(value=value):
                err = io.StringIO()
                with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as ctx:
                    main.parse_args(["--token-wait", value], env={})
                self.assertEqual(ctx.exception.code, 2)
                self.assertIn("--token-wait", err.getvalue())

    def test_bad_mock_flag_exits_2_naming_the_setting(self):
        for argv, needle in ((["--mock", "dealy=1"], "unknown setting 'dealy'"),
                             (["--mock", "line_ending"], "SETTING=VALUE"),
                             (["--mock", "framing=zigzag"], "framing"),
                             (["--mock", "fault_after_seconds=1"], "fault=disconnect")):
            with self.subTest(argv=argv):
                err = io.StringIO()
                with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as ctx:
                    main.parse_args(argv, env={})
                self.assertEqual(ctx.exception.code, 2)
                self.assertIn(needle, err.getvalue())

    def test_every_bad_value_names_its_flag_or_environment_variable(self):
        cases = (
            ([], {"LB_MOCK_DELAY": "abc"}, "environment variable LB_MOCK_DELAY: 'abc' is not a number of seconds >= 0"),
            (["--delay", "abc"], {}, "argument --delay: 'abc' is not a number of seconds >= 0"),
            ([], {"PORT": "http"}, "environment variable PORT: 'http' is not a port number"),
            (["--port", "-1"], {}, "argument --port: '-1' is not a port number"),
            ([], {"LB_MOCK_SEED": "1.5"}, "environment variable LB_MOCK_SEED: '1.5' is not a whole number"),
            ([], {"LB_MOCK_MAX_THREADS": "0"}, "environment variable LB_MOCK_MAX_THREADS: '0' is not a whole number >= 1"),
            ([], {"LB_MOCK_HEAD_TIMEOUT": "inf"}, "environment variable LB_MOCK_HEAD_TIMEOUT: 'inf'"),
            ([], {"LOG_LEVEL": "loud"}, "environment variable LOG_LEVEL: 'loud' is not one of debug, info"),
            ([], {"LB_MOCK_STRICT_THREADS": "maybe"}, "environment variable LB_MOCK_STRICT_THREADS: 'maybe'"),
            ([], {"LB_MOCK_REPLIES": "/nonexistent.json"}, "environment variable LB_MOCK_REPLIES: cannot use replies file"),
            ([], {"LB_MOCK_SCENARIO": "dealy=1"}, "environment variable LB_MOCK_SCENARIO: unknown setting 'dealy'"),
            ([], {"LB_MOCK_SCENARIO": "line_ending"}, "environment variable LB_MOCK_SCENARIO takes SETTING=VALUE"),
            (["--mock", "framing=zigzag"], {}, "--mock"),
        )
        for argv, env, needle in cases:
            with self.subTest(argv=argv, env=env):
                err = io.StringIO()
                with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as ctx:
                    main.parse_args(argv, env=env)
                self.assertEqual(ctx.exception.code, 2)
                self.assertIn("main.py: error: " + needle, err.getvalue())

    def test_strict_threads_from_environment_and_flag(self):
        for env, strict in (({}, False), ({"LB_MOCK_STRICT_THREADS": "1"}, True),
                            ({"LB_MOCK_STRICT_THREADS": "true"}, True), ({"LB_MOCK_STRICT_THREADS": "0"}, False),
                            ({"LB_MOCK_STRICT_THREADS": "no"}, False)):
            with self.subTest(env=env):
                self.assertIs(main.parse_args([], env=env).strict_threads, strict)
        self.assertIs(main.parse_args(["--strict-threads"], env={"LB_MOCK_STRICT_THREADS": "0"}).strict_threads, True)

    def test_mock_flags_override_the_environment_setting_by_setting(self):
        s = main.parse_args(["--mock", "delay=1"], env={"LB_MOCK_SCENARIO": "delay=0.5,event_ids=true"})
        self.assertEqual(dict(s.mock), {"delay": 1.0, "event_ids": True})

    def test_version_prints_name_and_version(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit) as ctx:
            main.parse_args(["--version"], env={"LB_MOCK_DELAY": "abc"})
        self.assertEqual(ctx.exception.code, 0)
        self.assertEqual(out.getvalue(), "langbase-mock %s\n" % main.VERSION)

    def test_help_names_every_option(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit):
            main.parse_args(["--help"], env={})
        for flag in ("--host", "--port", "--delay", "--seed", "--replies", "--strict-threads", "--api-key",
                     "--cors-origins", "--max-body-bytes", "--log-level", "--head-timeout", "--body-timeout",
                     "--keep-alive-timeout", "--write-timeout", "--max-connections", "--token-wait", "--mock"):
            self.assertIn(flag, out.getvalue())


class ExposureWarningTest(unittest.TestCase):
    def test_non_loopback_without_api_key_warns(self):
        for argv, warned in ((["--host", "0.0.0.0"], True), (["--host", "::"], True),
                             (["--host", "192.168.1.5"], True), (["--host", "mybox.local"], True),
                             (["--host", "0.0.0.0", "--api-key", "k"], False), ([], False),
                             (["--host", "127.0.0.2"], False), (["--host", "::1"], False),
                             (["--host", "localhost"], False)):
            with self.subTest(argv=argv):
                warning = main.exposure_warning(main.parse_args(argv, env={}))
                self.assertEqual(warning is not None, warned)
                if warned:
                    self.assertIn("--api-key", warning)


class ConfigurationDocsTest(unittest.TestCase):
    def test_docs_document_every_option_and_its_variable(self):
        # The user docs are README.md and docs/*.md (one page per area; most options are in
        # docs/configuration.md, an area's own bounds may be on that area's page).
        docs = ""
        for path in docs_blocks.doc_files():
            with open(os.path.join(support.ROOT, path), encoding="utf-8") as f:
                docs += f.read()
        parser = main._build_parser()
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    self.assertIn("`%s" % flag, docs)
        for env_name, _, _ in parser.env_options.values():
            self.assertIn("`%s" % env_name, docs)


class BannerTest(unittest.TestCase):
    def test_banner_has_url_and_curl_line(self):
        with support.RunningServer() as s:
            text = main.banner(s.server)
        self.assertIn("listening on http://127.0.0.1:%d" % s.port, text)
        self.assertIn("curl -N http://127.0.0.1:%d/v1/pipes/run" % s.port, text)
        self.assertIn("endpoints: http://127.0.0.1:%d/ " % s.port, text)
        self.assertNotIn("scenario", text.split("scenario settings:")[0])

    def test_banner_shows_the_server_wide_scenario(self):
        settings = main.parse_args(["--port", "0"], env={"LB_MOCK_SCENARIO": "line_ending=crlf,event_ids=true,retry=none"})
        with support.RunningServer(mock=settings.mock) as s:
            text = main.banner(s.server)
        self.assertIn("\n  scenario for every stream (--mock, LB_MOCK_SCENARIO): line_ending=crlf, event_ids=true, "
                      "retry=none\n", text)


class ProcessTest(unittest.TestCase):
    """The real command: ``python3 main.py --port 0``."""

    def start(self, *args):
        proc = subprocess.Popen(
            [sys.executable, os.path.join(support.ROOT, "main.py"), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.addCleanup(proc.stdout.close)
        self.addCleanup(proc.stderr.close)
        first = proc.stdout.readline()
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", first)
        self.assertTrue(match, first)
        return proc, int(match.group(1))

    def test_hang_ups_leave_stderr_empty_and_sigterm_finishes_open_stream(self):
        proc, port = self.start("--log-level", "warning", "--delay", "0.5")
        body = json.dumps({"stream": True, "messages": [{"role": "user", "content": "Hello"}]}).encode()
        # A client that leaves mid-stream, with FIN and with RST.
        for linger in (False, True):
            sock = support.connect(port)
            if linger:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.sendall(request_bytes("POST", "/v1/pipes/run", body))
            self.assertTrue(sock.recv(100))
            sock.close()
        self.assertEqual(support.call(port, "GET", "/health").status, 200)
        # SIGTERM while a slow stream is open: the stream is finished, then the process exits 0.
        with support.connect(port) as sock:
            sock.sendall(request_bytes("POST", "/v1/pipes/run", body))
            reader = ResponseReader(sock)
            self.assertEqual(reader.read(head_only=True).status, 200)
            proc.send_signal(signal.SIGTERM)
            rest = reader.buf + support.read_all(sock)
        self.assertTrue(rest.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), rest[-80:])
        self.assertEqual(proc.wait(support.TIMEOUT), 0)
        self.assertEqual(proc.stderr.read(), "")

    def test_port_in_use_is_a_clear_error(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            proc = subprocess.run([sys.executable, os.path.join(support.ROOT, "main.py"), "--port", str(port)],
                                  capture_output=True, text=True, timeout=support.TIMEOUT)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("cannot listen on 127.0.0.1:%d" % port, proc.stderr)
        self.assertIn("--port 0", proc.stderr)


class ShutdownUnderLoadTest(unittest.TestCase):
    """Signals against a real process holding many open streams and half-open connections."""

    def start(self, *args):
        proc = subprocess.Popen(
            [sys.executable, os.path.join(support.ROOT, "main.py"), "--port", "0", "--log-level", "warning", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.stdout.close)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait(support.TIMEOUT)))
        first = proc.stdout.readline()
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", first)
        self.assertTrue(match, first)
        return proc, int(match.group(1))

    def open(self, port, rcvbuf=None):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(support.TIMEOUT)
        sock.connect(("127.0.0.1", port))
        return sock

    def wait_for_streams(self, port, count, seconds):
        deadline = time.monotonic() + seconds
        open_streams = None
        for _ in range(1000):
            open_streams = support.call(port, "GET", "/health").json()["open_streams"]
            if open_streams >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertGreaterEqual(open_streams, count)

    def test_sigterm_with_300_streams_and_half_open_connections_exits_0_within_2_s(self):
        proc, port = self.start()
        body = json.dumps({"stream": True, "messages": [{"role": "user", "content": "Hello"}]}).encode()
        request = request_bytes("POST", "/v1/pipes/run", body,
                                {"Content-Type": "application/json", "X-Mock-Delay": "0.5"})
        streams = [self.open(port) for _ in range(300)]
        for sock in streams:
            sock.sendall(request)
        for _ in range(50):
            self.open(port).sendall(b"POST /v1/pipes/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        for _ in range(50):
            self.open(port)
        self.wait_for_streams(port, 300, 5.0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self.fail("still running 2 s after SIGTERM")
        self.assertLess(time.monotonic() - sent, 2.0)
        self.assertEqual(code, 0)
        self.assertNotIn("Traceback", proc.stderr.read())
        # Open streams were finished at full speed before the process ended.
        for sock in streams:
            self.assertTrue(support.read_all(sock).endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"))

    def test_second_sigint_during_drain_exits_at_once(self):
        proc, port = self.start()
        # Long streams whose clients never read: the drain cannot finish them, so it would take
        # its whole second.
        big = {"reply_text": "x " * 10000, "chunking": "char", "multiline_data": True, "event_ids": True,
               "keepalive_between": True, "delay": 0.04}
        body = json.dumps({"stream": True, "messages": [{"role": "user", "content": "Hello"}],
                           "mock": big}).encode()
        request = request_bytes("POST", "/v1/pipes/run", body, {"Content-Type": "application/json"})
        for _ in range(20):
            self.open(port, rcvbuf=4096).sendall(request)
        self.wait_for_streams(port, 20, 5.0)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        self.assertIsNone(proc.poll(), "the drain ended before the second signal")
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            self.fail("still running 1 s after the second SIGINT")
        self.assertLess(time.monotonic() - sent, 1.0)
        stderr = proc.stderr.read()
        self.assertNotIn("Traceback", stderr)
        self.assertNotIn("KeyboardInterrupt", stderr)


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(sys.platform.startswith("linux"), "reads /proc and sets RLIMIT_NOFILE")
class IdleMemoryReleaseTest(unittest.TestCase):
    """Once idle after serving, the server gives freed memory back (``main.release_memory``)."""

    def setUp(self):
        self.calls = []
        real = main.release_memory

        def counting():
            self.calls.append(time.monotonic())
            return real()

        for name, value in (("release_memory", counting), ("IDLE_CHECK_SECONDS", 0.1)):
            self.addCleanup(setattr, main, name, getattr(main, name))
            setattr(main, name, value)

    def stream(self, port):
        response = support.call(port, "POST", "/v1/pipes/run", {"stream": True, "messages": [
            {"role": "user", "content": "Hello"}]})
        self.assertEqual(response.status, 200)
        self.assertEqual(support.sse_data(response.body)[-1], "[DONE]")

    def test_released_once_when_the_last_connection_closes(self):
        with support.RunningServer() as server:
            time.sleep(0.5)
            self.assertEqual(self.calls, [], "nothing served yet")
            with support.connect(server.port):  # open, silent: the server is not idle
                self.stream(server.port)
                time.sleep(0.5)
                self.assertEqual(self.calls, [])
            deadline = time.monotonic() + 5
            while not self.calls and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            self.assertEqual(len(self.calls), 1, "once, then not again without traffic")
            self.stream(server.port)  # and the server streams as before

    def test_release_memory_returns_seconds(self):
        took = main.release_memory()
        self.assertGreaterEqual(took, 0.0)
        self.assertLess(took, 1.0)
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            self.assertIsNotNone(main._malloc_trim, "glibc has malloc_trim")


class DescriptorExhaustionTest(unittest.TestCase):
    """A server out of file descriptors pauses accepting instead of spinning, says so once, and
    serves again when descriptors come back."""

    def test_out_of_descriptors_backs_off_then_recovers(self):
        import resource

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

        proc = subprocess.Popen(
            [sys.executable, os.path.join(support.ROOT, "main.py"), "--port", "0", "--log-level", "warning",
             "--max-connections", "1000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=low_limit,
        )
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.stdout.close)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait(support.TIMEOUT)))
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", proc.stdout.readline())
        self.assertTrue(match)
        port = int(match.group(1))
        crowd = []
        try:
            for _ in range(80):  # more than the 48 descriptors the server may have
                crowd.append(support.connect(port))
            time.sleep(0.3)

            def cpu_seconds():
                with open("/proc/%d/stat" % proc.pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

            before = cpu_seconds()
            time.sleep(1.0)
            self.assertLess(cpu_seconds() - before, 0.3)  # paused, not spinning on accept()
        finally:
            for sock in crowd:
                sock.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                if support.call(port, "GET", "/health").status == 200:
                    break
            except OSError:
                pass
            self.assertLess(time.monotonic(), deadline, "the server did not recover")
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(support.TIMEOUT), 0)
        stderr = proc.stderr.read()
        self.assertEqual(stderr.count("out of file descriptors"), 1, stderr)
        self.assertNotIn("Traceback", stderr)
