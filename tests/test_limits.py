"""Over real sockets: the thread store's byte bound, the ``model`` bound on every chat route,
the ``X-Mock-*`` header encoding rule, the ``Host`` check against DNS rebinding, and the
provider-key headers counted as script-only by the cross-site rule."""

import json
import unittest
from email.message import Message

import api
import routes
from routes import hosts
from tests.support import RunningServer, call, connect, request_bytes, ResponseReader

HI = [{"role": "user", "content": "Hi"}]


def with_host(port, method, path, host, body=None, headers=None):
    """One request whose only ``Host`` header is ``host``."""
    headers = dict(headers or {})
    if body is not None:
        body = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    raw = request_bytes(method, path, body, headers).replace(b"Host: 127.0.0.1\r\n", b"Host: %s\r\n" % host.encode(), 1)
    with connect(port) as sock:
        sock.sendall(raw)
        return ResponseReader(sock).read()


class ThreadBytesTest(unittest.TestCase):
    def test_a_write_past_max_thread_bytes_is_403_and_stores_nothing(self):
        big = [{"role": "user", "content": "x" * 1500}]
        with RunningServer(max_thread_bytes=2500) as s:
            first = call(s.port, "POST", "/v1/threads", {"threadId": "a", "messages": big})
            self.assertEqual(first.status, 200, first.body)
            for path, body in (("/v1/threads", {"threadId": "b", "messages": big}),
                               ("/v1/threads/a/messages", big),
                               ("/v1/pipes/run", {"threadId": "a", "messages": big})):
                with self.subTest(path=path):
                    r = call(s.port, "POST", path, body)
                    self.assertEqual(r.status, 403, r.body)
                    error = r.json()["error"]
                    self.assertEqual(error["code"], "USAGE_EXCEEDED")
                    self.assertIn("--max-thread-bytes", error["message"])
            self.assertEqual(call(s.port, "GET", "/health").json()["threads"], 1)
            self.assertEqual(len(call(s.port, "GET", "/v1/threads/a/messages").json()), 1)
            r = call(s.port, "POST", "/v1/threads/a", {"metadata": {"k": "v" * 2000}})
            self.assertEqual(r.status, 403, r.body)
            self.assertEqual(call(s.port, "GET", "/v1/threads/a").json()["metadata"], {})
            # Deleting gives the bytes back.
            self.assertEqual(call(s.port, "DELETE", "/v1/threads/a").status, 200)
            self.assertEqual(call(s.port, "POST", "/v1/threads", {"threadId": "b", "messages": big}).status, 200)

    def test_flag_and_environment(self):
        import main
        self.assertEqual(main.parse_args(["--max-thread-bytes", "4096"], env={}).max_thread_bytes, 4096)
        self.assertEqual(main.parse_args([], env={"LB_MOCK_MAX_THREAD_BYTES": "99"}).max_thread_bytes, 99)
        self.assertEqual(main.parse_args(["--allowed-hosts", "Dev.Test, x.test"], env={}).allowed_hosts,
                         ("dev.test", "x.test"))


class ModelBoundTest(unittest.TestCase):
    def test_model_is_bounded_on_every_chat_route(self):
        long, ok = "m" * 257, "m" * 256
        with RunningServer() as s:
            for path, body in (("/v1/chat/completions", {"messages": HI}), ("/api/chat", {"messages": HI}),
                               ("/v1/agent/run", {"input": "Hi"})):
                with self.subTest(path=path):
                    r = call(s.port, "POST", path, dict(body, model=long))
                    self.assertEqual(r.status, 400, r.body[:300])
                    self.assertIn("256", r.body.decode())
                    r = call(s.port, "POST", path, dict(body, model=ok))
                    self.assertEqual(r.status, 200, r.body[:300])
            self.assertEqual(call(s.port, "GET", "/health").json()["threads"], 0)


class HeaderEncodingTest(unittest.TestCase):
    def test_rfc_8187_values_are_decoded_and_bad_escapes_are_400(self):
        with RunningServer() as s:
            for value in ("UTF-8''Gr%C3%BC%C3%9Fe%2C%20%E4%BD%A0%E5%A5%BD", "utf-8'de'Gr%C3%BC%C3%9Fe%2C%20%E4%BD%A0%E5%A5%BD"):
                with self.subTest(value=value):
                    r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI}, {"X-Mock-Reply-Text": value})
                    self.assertEqual(r.status, 200, r.body[:300])
                    self.assertEqual(r.json()["completion"], "Grüße, 你好")
            for value in ("UTF-8''%FF", "UTF-8''%ED%A0%80"):  # not UTF-8; an encoded lone surrogate
                with self.subTest(value=value):
                    r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI}, {"X-Mock-Reply-Text": value})
                    self.assertEqual(r.status, 400, r.body[:300])
                    self.assertIn("UTF-8''", r.json()["error"]["message"])
            # Not the RFC 8187 form: taken literally.
            r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI}, {"X-Mock-Reply-Text": "100%25 sure"})
            self.assertEqual(r.json()["completion"], "100%25 sure")


class HostCheckTest(unittest.TestCase):
    def test_foreign_host_is_refused_on_a_loopback_server(self):
        with RunningServer() as s:
            for host in ("evil.test", "evil.test:%d" % s.port, "127.0.0.1.evil.test", ""):
                with self.subTest(host=host):
                    r = with_host(s.port, "POST", "/v1/threads", host, {"metadata": {}})
                    self.assertEqual(r.status, 403, r.body)
                    self.assertIn("--allowed-hosts", r.json()["error"]["message"])
            r = with_host(s.port, "POST", "/v1/threads", "a b", {"metadata": {}})  # no host at all: RFC 9112's 400
            self.assertEqual((r.status, r.json()["error"]["code"]), (400, "BAD_REQUEST"), r.body)
            r = with_host(s.port, "POST", "/v1/chat/completions", "evil.test", {"model": "m", "messages": HI})
            self.assertEqual((r.status, r.json()["error"]["type"]), (403, "permission_error"))  # OpenAI shape
            for host in ("localhost", "localhost:%d" % s.port, "127.0.0.1:%d" % s.port, "[::1]:%d" % s.port,
                         "LOCALHOST", "app.localhost:1", "127.0.0.2"):
                with self.subTest(host=host):
                    self.assertEqual(with_host(s.port, "POST", "/v1/threads", host, {"metadata": {}}).status, 200)
            self.assertEqual(call(s.port, "GET", "/health").json()["threads"], 7)

    def test_allowed_hosts_extends_the_rule(self):
        with RunningServer(allowed_hosts=("dev.test",)) as s:
            self.assertEqual(with_host(s.port, "GET", "/health", "dev.test:8000").status, 200)
            self.assertEqual(with_host(s.port, "GET", "/health", "other.test").status, 403)
            # The upload URL is built from the same Host the check read.
            call(s.port, "POST", "/v1/memory", {"name": "m"})
            r = with_host(s.port, "POST", "/v1/memory/documents", "dev.test:8000", {"memoryName": "m", "fileName": "a"})
            self.assertTrue(r.json()["signedUrl"].startswith("http://dev.test:8000/v1/memory/uploads/"), r.body)
        with RunningServer(allowed_hosts=("*",)) as s:
            self.assertEqual(with_host(s.port, "GET", "/health", "anything.test").status, 200)
            r = with_host(s.port, "POST", "/v1/memory/documents", "evil.test/x?", {"memoryName": "m", "fileName": "a"})
            self.assertEqual(r.status, 400, r.body)  # still no URL from a malformed Host

    def test_rule_applies_only_to_loopback_binds(self):
        headers = Message()
        headers["Host"] = "evil.test"
        request = api.Request("GET", "/health", headers=headers)
        for bound in ("0.0.0.0", "192.0.2.1", "::"):
            hosts.check_host(request, bound, ())
        for bound in ("127.0.0.1", "::1", "localhost"):
            with self.assertRaises(api.Forbidden):
                hosts.check_host(request, bound, ())
        hosts.check_host(api.Request("GET", "/health"), "127.0.0.1", ())  # no Host: an HTTP/1.0 client


class ScriptOnlyHeadersTest(unittest.TestCase):
    def test_provider_key_headers_mean_a_preflight(self):
        for name in ("LB-LLM-Key", "LB-WEB-SEARCH-KEY", "LB-CRAWL-KEY", "Authorization"):
            with self.subTest(header=name):
                headers = Message()
                headers["Origin"], headers["Host"], headers["Content-Type"] = "http://evil.test", "127.0.0.1", "text/plain"
                request = api.Request("POST", "/v1/tools/crawl", headers=headers)
                with self.assertRaises(api.Forbidden):
                    routes.check_cross_site(request, ("*",))
                headers[name] = "k"
                routes.check_cross_site(request, ("*",))


if __name__ == "__main__":
    unittest.main()
