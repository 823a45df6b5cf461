"""OpenSSL only when it is used: the server program (``python3 main.py``, ``python3 .``)
loads neither ``ssl`` nor ``_hashlib`` (both load OpenSSL's libcrypto, about 4 MB of memory),
and an https ``--upstream`` still works: a streamed run goes through TLS to a local HTTPS
upstream whose certificate comes from a test CA, trusted through ``SSL_CERT_FILE``, and is
refused (502) when that CA is not trusted. The CA and the upstream's key and certificate (for
``127.0.0.1`` and ``localhost``, valid until the year 3000) are files in ``tests/data``, made
once with the ``trustme`` package; they serve these tests only.

Each server runs in its own process, so the test process's own imports do not count."""

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import unittest

from tests.support import ROOT, call, sse_data

try:
    import ssl
except ImportError:  # a Python built without ssl
    ssl = None  # type: ignore[assignment]

OPENSSL_MODULES = ("ssl", "_ssl", "_hashlib")
TEST_CA = os.path.join(ROOT, "tests", "data", "tls-ca.pem")
UPSTREAM_KEY_AND_CERT = os.path.join(ROOT, "tests", "data", "tls-upstream.pem")
PIECES = ["Hello", " over", " TLS", "."]
ASK = {"stream": True, "messages": [{"role": "user", "content": "Say hello"}]}

# Runs the server program as __main__ in this process, with a thread that waits for a line on
# stdin, then prints which of OPENSSL_MODULES are loaded and ends the process.
PROBE = r"""
import json, os, runpy, sys, threading
def report():
    sys.stdin.readline()
    loaded = sorted(m for m in %r if m in sys.modules)
    sys.stdout.write("loaded: " + json.dumps(loaded) + "\n")
    sys.stdout.flush()
    os._exit(0)
threading.Thread(target=report, daemon=True).start()
path = sys.argv[1]
sys.argv = [path] + sys.argv[2:]
runpy.run_path(path, run_name="__main__")
""" % (OPENSSL_MODULES,)


def start(test, argv, env=None):
    """Start ``argv`` (a server printing its banner), stopped at cleanup; returns
    ``(process, port)``."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        test.addCleanup(stream.close)

    def stop():  # runs before the streams are closed
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    test.addCleanup(stop)
    first = proc.stdout.readline()
    match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", first)
    test.assertTrue(match, first + (proc.stderr.read() if proc.poll() is not None else ""))
    return proc, int(match.group(1))


class ServerProgramTest(unittest.TestCase):
    def test_no_openssl_without_an_https_upstream(self):
        for entry in ("main.py", "."):  # the script, and the package entry (__main__.py)
            with self.subTest(entry=entry):
                proc, port = start(self, [sys.executable, "-c", PROBE, entry, "--port", "0", "--delay", "0",
                                          "--log-level", "warning"])
                reply = call(port, "POST", "/v1/pipes/run", ASK)  # hashes the request (seeded reply)
                self.assertEqual(reply.status, 200, reply.body)
                self.assertEqual(sse_data(reply.body)[-1], "[DONE]")
                out, err = proc.communicate("report\n", timeout=10)
                self.assertIn('loaded: []\n', out, err)


class _Upstream(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible ``/chat/completions`` that streams ``PIECES``."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, body["stream"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in PIECES:
            chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@unittest.skipIf(ssl is None, "this Python has no ssl module")
class HttpsUpstreamTest(unittest.TestCase):
    def setUp(self):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(UPSTREAM_KEY_AND_CERT)
        self.upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
        self.upstream.seen = []
        self.upstream.socket = context.wrap_socket(self.upstream.socket, server_side=True)
        thread = threading.Thread(target=self.upstream.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self.addCleanup(self.upstream.server_close)
        self.addCleanup(thread.join, 10)
        self.addCleanup(self.upstream.shutdown)

    def server(self, trust):
        env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        if trust:
            env["SSL_CERT_FILE"] = TEST_CA  # ssl.create_default_context() trusts it
        url = "https://127.0.0.1:%d/v1" % self.upstream.server_address[1]
        return start(self, [sys.executable, os.path.join(ROOT, "main.py"), "--port", "0", "--upstream", url,
                            "--log-level", "error"], env)[1]

    def test_a_streamed_run_goes_through_tls(self):
        reply = call(self.server(trust=True), "POST", "/v1/pipes/run", ASK)
        self.assertEqual(reply.status, 200, reply.body)
        data = sse_data(reply.body)
        self.assertEqual(data[-1], "[DONE]")
        self.assertEqual([json.loads(d)["choices"][0]["delta"].get("content") for d in data[:-1]
                          if json.loads(d)["choices"][0]["delta"].get("content")], PIECES)
        self.assertEqual(self.upstream.seen, [("/v1/chat/completions", True)])

    def test_an_untrusted_certificate_is_refused(self):
        reply = call(self.server(trust=False), "POST", "/v1/pipes/run", ASK)
        self.assertEqual(reply.status, 502, reply.body)
        self.assertIn("CERTIFICATE_VERIFY_FAILED", reply.json()["error"]["message"])
        self.assertEqual(self.upstream.seen, [])


if __name__ == "__main__":
    unittest.main()
