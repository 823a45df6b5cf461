"""Crafted values that used to be a 500 (or to poison a thread) are a 400 in the route's own
error shape, over a real socket; nothing is stored, and the server answers the next request."""

import json
import unittest

from tests import support
from tests.support import RunningServer, call

HI = [{"role": "user", "content": "Hi"}]
HUGE = "1" * 400  # an integer of 400 digits


def deep(levels):
    return "[" * levels + "]" * levels


class HostileBodyTest(unittest.TestCase):
    CASES = [
        ("lone surrogate in content", "/v1/pipes/run", '{"messages": [{"role": "user", "content": "\\ud800"}]}'),
        ("lone surrogate in metadata", "/v1/threads", '{"metadata": {"a": "\\udfff"}}'),
        ("1e999 in content parts", "/v1/threads",
         '{"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "n": 1e999}]}]}'),
        ("1e999 in tool_calls", "/v1/threads",
         '{"messages": [{"role": "assistant", "content": null, "tool_calls": [{"x": 1e999}]}]}'),
        ("1e999 in tool parameters", "/v1/pipes/run",
         '{"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": '
         '{"name": "f", "parameters": {"type": "object", "default": -1e999}}}]}'),
        ("1e999 in attachments", "/v1/threads",
         '{"messages": [{"role": "user", "content": "x", "attachments": [{"size": 1e999}]}]}'),
        ("400-digit mock.seed", "/v1/pipes/run", '{"messages": [], "mock": {"seed": %s}}' % HUGE),
        ("400-digit mock.delay", "/v1/pipes/run", '{"messages": [], "mock": {"delay": %s}}' % HUGE),
        ("content parts nested 500 deep", "/v1/threads",
         '{"messages": [{"role": "user", "content": %s}]}' % deep(500)),
        ("nested 100,000 deep", "/v1/threads", deep(100_000)),
        ("OpenAI body with 1e999", "/v1/chat/completions",
         '{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 1e999}'),
        ("Lobe body with a lone surrogate", "/api/chat", '{"messages": [{"role": "user", "content": "\\ud800"}]}'),
    ]

    def test_each_crafted_body_is_a_400_and_nothing_is_stored(self):
        with RunningServer() as s:
            for name, path, body in self.CASES:
                with self.subTest(name):
                    r = call(s.port, "POST", path, body.encode(), {"Content-Type": "application/json"})
                    self.assertEqual(r.status, 400, r.body[:300])
                    self.assertTrue(r.body.startswith(b'{"'), r.body[:100])  # the route's JSON error shape
            status = call(s.port, "GET", "/health").json()
            self.assertEqual((status["threads"], status["status"]), (0, "healthy"))
            self.assertEqual(call(s.port, "GET", "/mock/runs").json()["runs"], [])

    def test_nesting_up_to_the_limit_is_accepted(self):
        with RunningServer() as s:
            nested = json.dumps({"metadata": {}, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "x", "extra": json.loads(deep(55))}]}]})
            r = call(s.port, "POST", "/v1/threads", nested.encode(), {"Content-Type": "application/json"})
            self.assertEqual(r.status, 200, r.body[:300])
            self.assertEqual(call(s.port, "GET", "/v1/threads/%s/messages" % r.json()["id"]).status, 200)


class BoundedWorkTest(unittest.TestCase):
    def test_a_small_request_cannot_make_a_huge_reply(self):
        # 30 KB of request asked for an 80 MB reply; as a cross-site "simple" request, too.
        body = json.dumps({"messages": HI, "variables": {"a": "x y " * 2500},
                           "mock": {"reply_text": "{{a}}" * 4000}}).encode()
        with RunningServer() as s:
            for content_type in ("application/json", "text/plain"):
                with self.subTest(content_type=content_type):
                    r = call(s.port, "POST", "/v1/pipes/run", body, {"Content-Type": content_type})
                    self.assertEqual(r.status, 400)
                    self.assertIn("--max-reply-chars", r.json()["error"]["message"])
            self.assertEqual(call(s.port, "GET", "/health").json()["threads"], 0)

    def test_long_tool_arguments_and_too_many_chunks_are_400(self):
        tools = [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"a": {"enum": ["y" * 300_000]}}}}}]
        chunky = {"messages": HI, "variables": {"a": "x" * 150_000},
                  "mock": {"reply_text": "{{a}}", "chunking": "char"}}
        with RunningServer() as s:
            for name, body, words in (("tool arguments", {"messages": HI, "tools": tools}, "--max-reply-chars"),
                                      ("150,000 one-character chunks", chunky, "chunks")):
                with self.subTest(name):
                    r = call(s.port, "POST", "/v1/pipes/run", body)
                    self.assertEqual(r.status, 400, r.body[:200])
                    self.assertIn(words, r.json()["error"]["message"])
            self.assertEqual(call(s.port, "GET", "/health").json()["threads"], 0)

    def test_run_records_are_bounded_in_bytes(self):
        body = {"messages": HI, "mock": {"reply_text": "x" * 20000, "chunking": "char"}}
        with RunningServer(max_run_log_bytes=2_000_000) as s:
            for _ in range(20):
                self.assertEqual(call(s.port, "POST", "/v1/pipes/run", body).status, 200)
            runs = call(s.port, "GET", "/mock/runs").json()["runs"]
            self.assertLessEqual(len(runs), 2)
            self.assertEqual(s.server.app.runs.get(runs[0])["text"], "x" * 20000)


class CrossSiteTest(unittest.TestCase):
    """A web page on another site can POST a form or plain text anywhere without asking; such a
    request must change nothing. JSON makes the browser ask first (a preflight), so it passes."""

    BODY = json.dumps({"messages": HI}).encode()

    def post(self, s, path, content_type, origin):
        headers = {} if content_type is None else {"Content-Type": content_type}
        if origin is not None:
            headers["Origin"] = origin
        return call(s.port, "POST", path, self.BODY, headers)

    def test_simple_cross_site_writes_are_refused_and_change_nothing(self):
        with RunningServer() as s:
            for path in ("/v1/threads", "/v1/pipes/run", "/api/chat", "/v1/chat/completions"):
                for content_type in ("text/plain", "text/plain;charset=UTF-8",
                                     "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
                    with self.subTest(path=path, content_type=content_type):
                        r = self.post(s, path, content_type, "http://evil.test")
                        self.assertEqual(r.status, 403, r.body[:200])
                        self.assertIn("cross-site", r.body.decode())
            self.assertEqual(call(s.port, "GET", "/health").json()["threads"], 0)
            self.assertEqual(call(s.port, "GET", "/mock/runs").json()["runs"], [])

    def test_preflighted_same_origin_and_proxied_requests_pass(self):
        with RunningServer() as s:
            evil = {"Origin": "http://evil.test"}
            for extra in ({"Authorization": "Bearer k", "Content-Type": "text/plain;charset=UTF-8"},  # fetch, no type
                          {"X-Mock-Delay": "0"},  # a script-set header: preflighted
                          {"Sec-Fetch-Mode": "cors", "Content-Type": "text/plain"},
                          {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "same-origin", "Content-Type": "text/plain"}):
                with self.subTest(extra=extra):
                    r = call(s.port, "POST", "/v1/threads", b"", dict(evil, **extra))
                    self.assertEqual(r.status, 200, r.body[:200])
            for extra in ({"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
                          {"Sec-Fetch-Mode": "navigate", "Content-Type": "application/x-www-form-urlencoded"}):
                with self.subTest(extra=extra):
                    r = call(s.port, "POST", "/v1/threads", b"", dict(evil, **extra))
                    self.assertEqual(r.status, 403, r.body[:200])
            self.assertEqual(call(s.port, "GET", "/health").json()["threads"], 4)

    def test_same_origin_ignores_case_and_default_ports(self):
        import routes
        from email.message import Message
        import api
        for origin, host, same in (("http://localhost", "localhost:80", True), ("http://localhost:5", "LOCALHOST:5", True),
                                   ("https://x.test", "x.test:443", True), ("http://[::1]:5", "[::1]:5", True),
                                   ("http://localhost:5173", "127.0.0.1:8000", False), ("http://a", "b", False)):
            with self.subTest(origin=origin, host=host):
                headers = Message()
                headers["Origin"], headers["Host"], headers["Content-Type"] = origin, host, "text/plain"
                request = api.Request("POST", "/v1/threads", headers=headers)
                if same:
                    routes.check_cross_site(request, ("*",))
                else:
                    with self.assertRaises(api.Forbidden):
                        routes.check_cross_site(request, ("*",))

    def test_what_still_passes(self):
        with RunningServer(cors_origins=("http://localhost:3000",)) as s:
            same_origin = "http://127.0.0.1"  # tests.support sends "Host: 127.0.0.1"
            for content_type, origin in (("application/json", "http://evil.test"),  # preflighted
                                         ("text/plain", None),  # curl, SDKs: no Origin
                                         ("text/plain", "http://localhost:3000"),  # listed
                                         ("text/plain", same_origin)):
                with self.subTest(content_type=content_type, origin=origin):
                    headers = {"Content-Type": content_type}
                    if origin:
                        headers["Origin"] = origin
                    r = call(s.port, "POST", "/v1/threads", self.BODY, headers)
                    self.assertEqual(r.status, 200, r.body[:200])


class HostileHeaderTest(unittest.TestCase):
    def test_400_digit_and_odd_digit_header_values_are_400(self):
        with RunningServer() as s:
            for name, value in (("X-Mock-Seed", HUGE), ("X-Mock-Delay", HUGE), ("X-Mock-Delay", "\u00b2"),
                                ("Last-Event-ID", "\u00b2")):
                with self.subTest(header=name, value=value[:5]):
                    path = "/api/events?prompt=Hi" if name == "Last-Event-ID" else "/v1/pipes/run"
                    method = "GET" if name == "Last-Event-ID" else "POST"
                    body = None if method == "GET" else {"messages": HI}
                    headers = {name: value.encode("utf-8").decode("latin-1")}
                    r = call(s.port, method, path, body, headers)
                    self.assertEqual(r.status, 400, r.body[:300])
            self.assertEqual(call(s.port, "GET", "/health").status, 200)

    def test_numbers_in_text_are_ascii_digits_without_underscores(self):
        # int() and float() read "1_0" as 10 and other scripts' digits ("\u0663" is 3).
        with RunningServer() as s:
            for name, value in (("X-Mock-Seed", "1_0"), ("X-Mock-Chunk-Size", "\u0663"),
                                ("X-Mock-Delay", "\u0660.\u0661"), ("X-Mock-Ttft", "1_0e-1")):
                with self.subTest(header=name, value=value):
                    headers = {name: value.encode("utf-8").decode("latin-1")}
                    r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI}, headers)
                    self.assertEqual(r.status, 400, r.body[:300])
                    self.assertIn("is not allowed", r.json()["error"]["message"])
            for query in ("seed=1_0", "seed=%D9%A3"):
                r = call(s.port, "GET", "/api/events?prompt=Hi&" + query)
                self.assertEqual(r.status, 400, r.body[:300])
            r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI}, {"X-Mock-Seed": " 10 "})
            self.assertEqual((r.status, r.header("lb-mock-seed")), (200, "10"))

    def test_keepalive_is_off_or_at_least_a_millisecond(self):
        # keepalive=1e-300 with a long stall used to send ': ping' comments as fast as the
        # client read, for the whole stall: a flood bounded by time only.
        with RunningServer() as s:
            for value in ("1e-300", "0.0001", "0.00099"):
                with self.subTest(value=value):
                    r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI, "stream": True}, {"X-Mock-Keepalive": value})
                    self.assertEqual(r.status, 400, r.body[:300])
                    self.assertIn("0 (off) or a number from 0.001 to 600", r.json()["error"]["message"])
            r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI, "stream": True, "mock": {"keepalive": 1e-300}})
            self.assertEqual(r.status, 400, r.body[:300])
            for value in (0, 0.001):
                r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI, "stream": True, "mock": {"keepalive": value}})
                self.assertEqual(r.status, 200, r.body[:300])
            schema = call(s.port, "GET", "/openapi.json").json()
            self.assertIn('"enum": [0]', json.dumps(schema))

    def test_none_turns_a_server_wide_fault_off_per_request(self):
        with RunningServer(mock=(("fault", "http_error"),)) as s:
            self.assertEqual(call(s.port, "POST", "/v1/pipes/run", {"messages": HI}).status, 500)
            r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI}, {"X-Mock-Fault": "none"})
            self.assertEqual(r.status, 200, r.body[:300])
            r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI, "mock": {"fault": "none"}})
            self.assertEqual(r.status, 200, r.body[:300])

    def test_header_values_are_read_as_utf8(self):
        with RunningServer() as s:
            raw = "Grüße, 你好".encode("utf-8").decode("latin-1")  # the bytes curl sends
            r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI}, {"X-Mock-Reply-Text": raw})
            self.assertEqual(r.status, 200, r.body[:300])
            self.assertEqual(r.json()["completion"], "Grüße, 你好")
            r = call(s.port, "POST", "/v1/pipes/run", {"messages": HI}, {"X-Mock-Reply-Text": "\xff\xfe"})
            self.assertEqual(r.status, 400)
            self.assertIn("UTF-8", r.json()["error"]["message"])


if __name__ == "__main__":
    unittest.main()
