"""HTTP behaviour over real sockets against a server started in the test."""

import contextlib
import json
import logging
import selectors
import socket
import threading
import unittest

from tests import support
from tests.support import RunningServer, call, connect, request_bytes, ResponseReader, sse_data

HELLO = {"messages": [{"role": "user", "content": "Hi there"}]}
STREAM = dict(HELLO, stream=True)

_HEAD = ('data: {"id":"chatcmpl-15a9cb6b455b6260356f9aedc83605ec","object":"chat.completion.chunk",'
         '"created":1700000000,"model":"gpt-4o-mini","system_fingerprint":null,"choices":[{"index":0,"delta":')
_TAIL = ',"logprobs":null,"finish_reason":null}]}\n\n'
GOLDEN_FRAMES = [
    _HEAD + '{"role":"assistant","content":""}' + _TAIL,
    _HEAD + '{"content":"Hello"}' + _TAIL,
    _HEAD + '{"content":","}' + _TAIL,
    _HEAD + '{"content":" world"}' + _TAIL,
    _HEAD + '{"content":"!"}' + _TAIL,
    _HEAD + '{},"logprobs":null,"finish_reason":"stop"}],'
            '"usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}}\n\n',
    "data: [DONE]\n\n",
]
GOLDEN_BODY = b"".join(b"%x\r\n%s\r\n" % (len(f.encode()), f.encode()) for f in GOLDEN_FRAMES) + b"0\r\n\r\n"


def text_of_stream(body):
    chunks = [json.loads(d) for d in sse_data(body) if d != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks), chunks


@contextlib.contextmanager
def no_logs_at_or_above(test, level):
    """Fail ``test`` if anything logs at ``level`` or above inside the block (what
    ``assertNoLogs`` does on Python 3.10+, which this suite must run without)."""
    records = []
    handler = logging.Handler(level)
    handler.emit = records.append
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level, level) if old_level else level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    test.assertEqual([r.getMessage() for r in records], [])


class StreamTest(unittest.TestCase):
    def test_zero_delay_stream_coalesced_into_one_chunk_same_bytes(self):
        with RunningServer(fixed=True, replies=("Hello, world!",), delay=0.0) as s:
            r = call(s.port, "POST", "/v1/pipes/run", STREAM)
        data = "".join(GOLDEN_FRAMES).encode()
        self.assertEqual(r.raw_body, b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))

    def test_stream_byte_exact_chunked_one_frame_per_chunk(self):
        with RunningServer(fixed=True, replies=("Hello, world!",), delay=0.001) as s:
            r = call(s.port, "POST", "/v1/pipes/run", STREAM)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.raw_body, GOLDEN_BODY)
        self.assertEqual(r.header("Content-Type"), "text/event-stream; charset=utf-8")
        self.assertEqual(r.header("Cache-Control"), "no-cache")
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        self.assertEqual(r.header("lb-thread-id"), "00000000-0000-4000-8000-000000000002")
        self.assertIn(("lb-thread-id", "00000000-0000-4000-8000-000000000002"), r.headers)  # lower-case name
        self.assertIsNone(r.header("Content-Length"))

    def test_stream_and_non_stream_give_same_text_and_usage(self):
        with RunningServer(seed=3) as s:
            streamed = call(s.port, "POST", "/v1/pipes/run", STREAM)
            plain = call(s.port, "POST", "/v1/pipes/run", HELLO)
        text, chunks = text_of_stream(streamed.body)
        body = plain.json()
        self.assertEqual(text, body["completion"])
        self.assertEqual(chunks[-1]["usage"], body["raw"]["usage"])
        self.assertEqual(len({c["id"] for c in chunks}), 1)
        self.assertEqual(len({c["created"] for c in chunks}), 1)
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        self.assertEqual(sse_data(streamed.body)[-1], "[DONE]")

    def test_stream_false_or_absent_gives_json_with_thread_header(self):
        with RunningServer(fixed=True, replies=("Hi.",)) as s:
            for body in (HELLO, dict(HELLO, stream=False)):
                r = call(s.port, "POST", "/v1/pipes/run", body)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("Content-Type"), "application/json")
                self.assertTrue(r.header("lb-thread-id"))
                self.assertEqual(r.json()["completion"], "Hi.")
                self.assertEqual(r.json()["raw"]["choices"][0]["message"], {"role": "assistant", "content": "Hi."})

    def test_http10_client_gets_close_delimited_stream(self):
        with RunningServer(replies=("Hello, world!",)) as s, connect(s.port) as sock:
            body = json.dumps(STREAM).encode()
            sock.sendall(request_bytes("POST", "/v1/pipes/run", body, version="HTTP/1.0"))
            raw = support.read_all(sock)
        head, body = raw.split(b"\r\n\r\n", 1)
        self.assertNotIn(b"Transfer-Encoding", head)
        self.assertEqual(text_of_stream(body)[0], "Hello, world!")

    def test_variables_fill_reply_placeholders(self):
        with RunningServer(replies=("Hello {{name}}!",)) as s:
            r = call(s.port, "POST", "/v1/pipes/run", dict(STREAM, variables=[{"name": "name", "value": "Ada"}]))
        self.assertEqual(text_of_stream(r.body)[0], "Hello Ada!")

    def test_tool_call_stream_has_index_id_name_and_finish_reason(self):
        tool = {"type": "function", "function": {"name": "lookup", "parameters": {
            "type": "object", "properties": {"q": {"type": "string"}}}}}
        with RunningServer() as s:
            r = call(s.port, "POST", "/v1/pipes/run", dict(STREAM, tools=[tool]))
        _, chunks = text_of_stream(r.body)
        calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
        self.assertTrue(all("index" in c for c in calls))
        self.assertEqual(calls[0]["function"]["name"], "lookup")
        self.assertEqual(json.loads("".join(c["function"]["arguments"] for c in calls)), {"q": "example"})
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "tool_calls")

    def test_500_concurrent_paced_streams_all_complete(self):
        count = 500
        with RunningServer(delay=0.002, replies=("One two, three four!",)) as s:
            request = request_bytes("POST", "/v1/pipes/run", json.dumps(STREAM).encode(), {"Connection": "close"})
            sel = selectors.DefaultSelector()
            received = {}
            try:
                for i in range(count):
                    sock = connect(s.port)
                    sock.sendall(request)
                    sock.setblocking(False)
                    sel.register(sock, selectors.EVENT_READ, i)
                    received[i] = []
                open_count = count
                while open_count:
                    events = sel.select(support.TIMEOUT)
                    self.assertTrue(events, "streams stalled")
                    for key, _ in events:
                        data = key.fileobj.recv(65536)
                        if data:
                            received[key.data].append(data)
                        else:
                            sel.unregister(key.fileobj)
                            key.fileobj.close()
                            open_count -= 1
            finally:
                for key in list(sel.get_map().values()):
                    key.fileobj.close()
                sel.close()
        for i in range(count):
            raw = b"".join(received[i])
            head, body = raw.split(b"\r\n\r\n", 1)
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), i)
            self.assertTrue(body.endswith(b"\r\n0\r\n\r\n"), i)
            reader = ResponseReader(None)
            reader.buf = raw
            self.assertEqual(text_of_stream(reader.read().body)[0], "One two, three four!", i)

    def test_client_hang_up_mid_stream_server_keeps_serving_quietly(self):
        with RunningServer(delay=0.01) as s:
            with no_logs_at_or_above(self, logging.WARNING):
                sock = connect(s.port)
                sock.sendall(request_bytes("POST", "/v1/pipes/run", json.dumps(STREAM).encode()))
                self.assertTrue(sock.recv(100))
                sock.close()
                sock = connect(s.port)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.sendall(request_bytes("POST", "/v1/pipes/run", json.dumps(STREAM).encode()))
                self.assertTrue(sock.recv(100))
                sock.close()  # RST instead of FIN
                self.assertEqual(call(s.port, "GET", "/health").status, 200)


class ThreadRunTest(unittest.TestCase):
    def test_run_continues_thread_and_stores_both_sides(self):
        with RunningServer(replies=("Reply.",)) as s:
            first = call(s.port, "POST", "/v1/pipes/run", STREAM)
            tid = first.header("lb-thread-id")
            second = call(s.port, "POST", "/v1/pipes/run",
                          {"threadId": tid, "messages": [{"role": "user", "content": "Again"}]})
            third = call(s.port, "POST", "/v1/pipes/run",
                         {"thread_id": tid, "stream": True, "messages": [{"role": "user", "content": "More"}]})
            listed = call(s.port, "GET", "/v1/threads/%s/messages" % tid).json()
        self.assertEqual(second.header("lb-thread-id"), tid)
        self.assertEqual(third.header("lb-thread-id"), tid)
        self.assertEqual([(m["role"], m["content"]) for m in listed], [
            ("user", "Hi there"), ("assistant", "Reply."), ("user", "Again"), ("assistant", "Reply."),
            ("user", "More"), ("assistant", "Reply."),
        ])

    def test_unknown_thread_id_created_unless_strict(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/v1/pipes/run", dict(HELLO, threadId="kept-from-yesterday"))
            self.assertEqual(r.header("lb-thread-id"), "kept-from-yesterday")
            self.assertEqual(call(s.port, "GET", "/v1/threads/kept-from-yesterday").status, 200)
        with RunningServer(strict_threads=True) as s:
            r = call(s.port, "POST", "/v1/pipes/run", dict(STREAM, threadId="unknown"))
            self.assertEqual(r.status, 404)
            self.assertEqual(r.json()["error"]["code"], "NOT_FOUND")
            self.assertEqual(call(s.port, "GET", "/health").json()["threads"], 0)

    def test_header_injection_in_thread_id_rejected(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/v1/pipes/run", dict(HELLO, threadId="x\r\nSet-Cookie: a=b"))
            self.assertEqual(r.status, 400)
            self.assertIsNone(r.header("Set-Cookie"))
            self.assertEqual(r.json()["error"]["code"], "BAD_REQUEST")


class ThreadsApiTest(unittest.TestCase):
    def test_threads_lifecycle(self):
        with RunningServer(fixed=True) as s:
            created = call(s.port, "POST", "/v1/threads", {"metadata": {"a": "1"},
                                                           "messages": [{"role": "user", "content": "hi"}]})
            self.assertEqual(created.status, 200)
            thread = created.json()
            self.assertEqual(thread, {"id": "00000000-0000-4000-8000-000000000001", "object": "thread",
                                      "created_at": 1700000000, "metadata": {"a": "1"}})
            path = "/v1/threads/" + thread["id"]
            self.assertEqual(call(s.port, "GET", path).json(), thread)
            updated = call(s.port, "POST", path, {"metadata": {"b": "2"}, "threadId": thread["id"]}).json()
            self.assertEqual(updated["metadata"], {"a": "1", "b": "2"})
            appended = call(s.port, "POST", path + "/messages", [{"role": "assistant", "content": "yo"}]).json()
            self.assertEqual([m["content"] for m in appended], ["yo"])
            self.assertEqual(appended[0]["thread_id"], thread["id"])
            wrapped = call(s.port, "POST", path + "/messages", {"messages": [{"role": "user", "content": "3"}]})
            self.assertEqual(wrapped.status, 200)
            listed = call(s.port, "GET", path + "/messages").json()
            self.assertEqual([m["content"] for m in listed], ["hi", "yo", "3"])
            self.assertEqual(set(listed[0]), {"id", "created_at", "thread_id", "role", "content", "name",
                                              "tool_call_id", "tool_calls", "attachments", "metadata"})
            deleted = call(s.port, "DELETE", path)
            self.assertEqual((deleted.status, deleted.json()), (200, {"success": True}))
            for method, p in (("GET", path), ("DELETE", path), ("GET", path + "/messages"),
                              ("POST", path + "/messages")):
                r = call(s.port, method, p, [] if method == "POST" else None)
                self.assertEqual(r.status, 404, (method, p))

    def test_create_with_id_and_duplicate_conflict(self):
        with RunningServer() as s:
            self.assertEqual(call(s.port, "POST", "/v1/threads", {"threadId": "mine"}).json()["id"], "mine")
            r = call(s.port, "POST", "/v1/threads", {"threadId": "mine"})
            self.assertEqual(r.status, 409)
            self.assertEqual(r.json()["error"]["code"], "CONFLICT")

    def test_append_with_empty_body_appends_nothing(self):
        with RunningServer() as s:
            tid = call(s.port, "POST", "/v1/threads", {}).json()["id"]
            r = call(s.port, "POST", "/v1/threads/%s/messages" % tid, b"")
            self.assertEqual((r.status, r.json()), (200, []))

    def test_create_with_empty_body(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/v1/threads", b"")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["object"], "thread")

    def test_concurrent_appends_over_http_lose_nothing(self):
        with RunningServer() as s:
            tid = call(s.port, "POST", "/v1/threads", {}).json()["id"]
            errors = []

            def work(w):
                for i in range(25):
                    r = call(s.port, "POST", "/v1/threads/%s/messages" % tid,
                             [{"role": "user", "content": "%d-%d" % (w, i)}])
                    if r.status != 200:
                        errors.append(r.status)

            workers = [threading.Thread(target=work, args=(w,)) for w in range(8)]
            for t in workers:
                t.start()
            for t in workers:
                t.join()
            listed = call(s.port, "GET", "/v1/threads/%s/messages" % tid).json()
        self.assertEqual(errors, [])
        self.assertEqual(sorted(m["content"] for m in listed),
                         sorted("%d-%d" % (w, i) for w in range(8) for i in range(25)))


class StatusTest(unittest.TestCase):
    def test_health_and_root(self):
        with RunningServer(fixed=True) as s:
            call(s.port, "POST", "/v1/threads", {})
            health = call(s.port, "GET", "/health").json()
            root = call(s.port, "GET", "/").json()
        self.assertEqual(health["status"], "healthy")
        self.assertEqual(health["service"], "langbase-mock")
        self.assertEqual(health["threads"], 1)
        self.assertEqual(health["open_streams"], 0)
        self.assertGreaterEqual(health["connections"], 1)  # the one asking, at least
        self.assertIsInstance(health["uptime_seconds"], float)
        self.assertEqual(health["timestamp"], "2023-11-14T22:13:20Z")  # the server's clock, 1700000000
        self.assertIn("POST /v1/pipes/run", root["endpoints"])
        self.assertIn("GET /v1/threads/{threadId}", root["endpoints"])


class ErrorTest(unittest.TestCase):
    """Every error is a JSON Langbase envelope; the connection stays usable unless framing broke."""

    def assert_error(self, raw_request, status, code, keep_alive=True, s=None):
        with connect(s.port) as sock:
            sock.sendall(raw_request)
            reader = ResponseReader(sock)
            r = reader.read()
            self.assertEqual(r.status, status, r.body)
            self.assertEqual(r.header("Content-Type"), "application/json")
            error = r.json()["error"]
            self.assertEqual((error["code"], error["status"]), (code, status))
            self.assertTrue(error["message"])
            self.assertEqual(error["docs"], "https://langbase.com/docs/api-reference/errors/" + code.lower())
            if keep_alive:
                sock.sendall(request_bytes("GET", "/health"))
                self.assertEqual(reader.read().status, 200)
            else:
                self.assertEqual(r.header("Connection"), "close")
                self.assertEqual(reader.buf + support.read_all(sock), b"")
            return r

    def run_body(self, body, **kw):
        return request_bytes("POST", "/v1/pipes/run", body, {"Content-Type": "application/json"}, **kw)

    def test_bad_bodies_are_400(self):
        cases = [
            b"{not json",
            b"[1, 2]",
            b'"text"',
            b"\xff\xfe{}",
            b'{"messages": [], "stream": NaN}',
            b'{"messages": "hi"}',
            b'{"messages": [{"role": "wizard", "content": "x"}]}',
            b'{"messages": [{"role": "user", "content": 1}]}',
            b'{"stream": true}',
            b'{"messages": [], "stream": "true"}',
            b'{"messages": [], "threadId": ["x"]}',
        ]
        with RunningServer() as s:
            for body in cases:
                with self.subTest(body=body):
                    self.assert_error(self.run_body(body), 400, "BAD_REQUEST", s=s)

    def test_bad_thread_bodies_are_400(self):
        with RunningServer() as s:
            call(s.port, "POST", "/v1/threads", {"threadId": "t"})
            for path, body in [("/v1/threads", b'{"metadata": {"a": 1}}'),
                               ("/v1/threads", b'{"threadId": "bad id"}'),
                               ("/v1/threads", b'{"messages": [{"role": "user"}]}'),
                               ("/v1/threads/t", b'{}'),
                               ("/v1/threads/t", b'{"metadata": []}'),
                               ("/v1/threads/t/messages", b'{"nope": 1}'),
                               ("/v1/threads/t/messages", b'[{"role": "x", "content": "y"}]')]:
                with self.subTest(path=path, body=body):
                    self.assert_error(request_bytes("POST", path, body), 400, "BAD_REQUEST", s=s)

    def test_unknown_route_404_wrong_method_405_with_allow(self):
        with RunningServer() as s:
            self.assert_error(request_bytes("GET", "/v1/nope"), 404, "NOT_FOUND", s=s)
            self.assert_error(request_bytes("GET", "/v1/threads/unknown"), 404, "NOT_FOUND", s=s)
            r = self.assert_error(request_bytes("GET", "/v1/pipes/run?x=1"), 405, "METHOD_NOT_ALLOWED", s=s)
            self.assertEqual(r.header("Allow"), "POST, OPTIONS")
            r = self.assert_error(request_bytes("PUT", "/v1/threads/abc", b"{}"), 405, "METHOD_NOT_ALLOWED", s=s)
            self.assertEqual(r.header("Allow"), "DELETE, GET, HEAD, POST, OPTIONS")

    def test_body_over_limit_413_and_connection_closed(self):
        with RunningServer(max_body_bytes=100) as s:
            body = json.dumps(dict(HELLO, padding="x" * 200)).encode()
            self.assert_error(self.run_body(body), 413, "PAYLOAD_TOO_LARGE", keep_alive=False, s=s)
            self.assertEqual(call(s.port, "GET", "/health").status, 200)

    def test_bad_content_length_400_and_connection_closed(self):
        with RunningServer() as s:
            for value in ("abc", "-1", "1, 2", "+5"):
                with self.subTest(value=value):
                    raw = request_bytes("POST", "/v1/pipes/run", b"{}", {"Content-Length": value})
                    self.assert_error(raw, 400, "BAD_REQUEST", keep_alive=False, s=s)

    def test_chunked_request_body_411(self):
        with RunningServer() as s:
            raw = request_bytes("POST", "/v1/pipes/run", None, {"Transfer-Encoding": "chunked"}) + b"2\r\n{}\r\n0\r\n\r\n"
            self.assert_error(raw, 411, "LENGTH_REQUIRED", keep_alive=False, s=s)

    def test_missing_content_length_means_empty_body(self):
        with RunningServer() as s:
            self.assert_error(request_bytes("POST", "/v1/pipes/run"), 400, "BAD_REQUEST", s=s)

    def test_truncated_body_400(self):
        with RunningServer() as s:
            raw = request_bytes("POST", "/v1/pipes/run", b"{}", {"Content-Length": "10"})
            with connect(s.port) as sock:
                sock.sendall(raw)
                sock.shutdown(socket.SHUT_WR)
                r = ResponseReader(sock).read()
            self.assertEqual(r.status, 400)

    def test_malformed_request_line_and_unknown_method_are_json(self):
        with RunningServer() as s:
            self.assert_error(b"GARBAGE\r\n\r\n", 400, "BAD_REQUEST", keep_alive=False, s=s)
            self.assert_error(b"BREW /v1/pipes/run HTTP/1.1\r\n\r\n", 501, "NOT_IMPLEMENTED", keep_alive=False, s=s)

    def test_unexpected_error_is_json_500_and_logged(self):
        with RunningServer() as s:
            s.server.store.list_messages = None  # force a TypeError inside a route
            with self.assertLogs("routes", level="ERROR"):
                self.assert_error(request_bytes("GET", "/v1/threads/x/messages"), 500,
                                  "INTERNAL_SERVER_ERROR", keep_alive=False, s=s)
            self.assertEqual(call(s.port, "GET", "/health").status, 200)

    def test_store_full_is_403_usage_exceeded(self):
        with RunningServer(max_threads=1) as s:
            call(s.port, "POST", "/v1/threads", {})
            self.assert_error(self.run_body(json.dumps(HELLO).encode()), 403, "USAGE_EXCEEDED", s=s)


class AuthTest(unittest.TestCase):
    def status(self, s, auth):
        headers = {} if auth is None else {"Authorization": auth}
        r = call(s.port, "POST", "/v1/pipes/run", HELLO, headers)
        if r.status != 200:
            self.assertEqual(r.json()["error"]["code"], "UNAUTHORIZED")
        return r.status

    def test_without_api_key_missing_ok_malformed_401(self):
        with RunningServer() as s:
            self.assertEqual(self.status(s, None), 200)
            self.assertEqual(self.status(s, "Bearer anything"), 200)
            for bad in ("Basic abc", "Bearer", "Bearer ", "Bearer a b", "bearer x", "Bearer undefined", "Bearer None"):
                with self.subTest(auth=bad):
                    self.assertEqual(self.status(s, bad), 401)
            self.assertEqual(call(s.port, "GET", "/health", headers={"Authorization": "junk"}).status, 200)

    def test_with_api_key_exact_bearer_required(self):
        with RunningServer(api_key="s3cret") as s:
            self.assertEqual(self.status(s, "Bearer s3cret"), 200)
            for bad in (None, "Bearer wrong", "s3cret"):
                with self.subTest(auth=bad):
                    self.assertEqual(self.status(s, bad), 401)
            r = call(s.port, "GET", "/v1/threads/x")
            self.assertEqual(r.status, 401)


class CorsTest(unittest.TestCase):
    def test_preflight_any_path(self):
        with RunningServer() as s:
            r = call(s.port, "OPTIONS", "/v1/pipes/run", headers={
                "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "*")
        self.assertEqual(r.header("Access-Control-Allow-Methods"), "GET, HEAD, POST, PUT, DELETE, OPTIONS")
        allowed = r.header("Access-Control-Allow-Headers").split(", ")
        self.assertEqual(allowed[:3], ["Content-Type", "Authorization", "LB-LLM-Key"])
        self.assertIn("X-Mock-Line-Ending", allowed)
        self.assertIn("Cache-Control", allowed)  # what a browser's EventSource and fetch clients send
        self.assertIn("Last-Event-ID", allowed)
        self.assertEqual(r.body, b"")

    def test_stream_exposes_thread_id_header(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/v1/pipes/run", STREAM, {"Origin": "http://localhost:3000"})
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "*")
        self.assertIn("lb-thread-id", r.header("Access-Control-Expose-Headers"))

    def test_configured_origins_echo_only_listed(self):
        with RunningServer(cors_origins=("http://app.test", "http://other.test")) as s:
            ok = call(s.port, "GET", "/health", headers={"Origin": "http://other.test"})
            evil = call(s.port, "GET", "/health", headers={"Origin": "http://evil.test"})
        self.assertEqual(ok.header("Access-Control-Allow-Origin"), "http://other.test")
        self.assertEqual(ok.header("Vary"), "Origin")
        self.assertIsNone(evil.header("Access-Control-Allow-Origin"))


class KeepAliveTest(unittest.TestCase):
    def test_several_requests_on_one_connection(self):
        with RunningServer() as s, connect(s.port) as sock:
            reader = ResponseReader(sock)
            for _ in range(3):
                sock.sendall(request_bytes("POST", "/v1/pipes/run", json.dumps(HELLO).encode()))
                self.assertEqual(reader.read().status, 200)

    def test_idle_keep_alive_connection_blocks_no_one(self):
        with RunningServer(keep_alive_timeout=60) as s, connect(s.port) as idle:
            reader = ResponseReader(idle)
            idle.sendall(request_bytes("GET", "/health"))
            self.assertEqual(reader.read().status, 200)
            # Nothing is stuck waiting on the idle connection.
            for _ in range(3):
                self.assertEqual(call(s.port, "GET", "/health").status, 200)
            # And the idle connection is served again when its next request comes.
            idle.sendall(request_bytes("POST", "/v1/pipes/run", json.dumps(HELLO).encode()))
            self.assertEqual(reader.read().status, 200)

    def test_pipelined_requests_all_answered(self):
        with RunningServer() as s, connect(s.port) as sock:
            sock.sendall(request_bytes("GET", "/health") * 3)
            reader = ResponseReader(sock)
            self.assertEqual([reader.read().status for _ in range(3)], [200, 200, 200])

    def test_silent_connection_closed_after_head_timeout(self):
        with RunningServer(head_timeout=0.2) as s, connect(s.port) as sock:
            self.assertEqual(support.read_all(sock), b"")


if __name__ == "__main__":
    unittest.main()
