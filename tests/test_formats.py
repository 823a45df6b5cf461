"""The other wire formats: encoders and the token buffer without sockets, then each route over a
real socket (byte shapes, errors in the format's own shape, scenarios applied, resume)."""

import json
import threading
import unittest
from unittest import mock

from tests import support
from tests.support import RunningServer, call, connect, request_bytes
import formats
import pipes
import scenario
from pipes import Finish, Start, TextDelta, ToolCallDelta, Usage, parse_run_request, choose_reply
from threads import InvalidRequest

HI = [{"role": "user", "content": "Hi"}]


def events_of(body, text_key=None):
    """``[(id, event, data), ...]`` of an LF-framed SSE body (data joined with LF)."""
    out = []
    for block in body.decode("utf-8").split("\n\n")[:-1]:
        fields = {"id": None, "event": None, "data": []}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if name == "data":
                fields["data"].append(value)
            elif name in ("id", "event"):
                fields[name] = value
        out.append((fields["id"], fields["event"], "\n".join(fields["data"])))
    return out


def cut_body(raw):
    """The de-chunked body of a response whose chunked body may have been cut off."""
    rest = raw.split(b"\r\n\r\n", 1)[1]
    out = []
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


def truth(s, response):
    return call(s.port, "GET", "/mock/runs/" + response.header("lb-mock-run-id")).json()


class EncoderTest(unittest.TestCase):
    def test_openai_include_usage_adds_null_usage_and_a_last_usage_chunk(self):
        enc = formats.OpenAIChunkEncoder("c", 1, "m", include_usage=True)
        chunk = json.loads(enc.encode(TextDelta("x"))[6:])
        self.assertIsNone(chunk["usage"])
        finish, last = enc.encode(Finish("stop", Usage(2, 3))).split(b"\n\n")[:2]
        self.assertIsNone(json.loads(finish[6:])["usage"])
        self.assertEqual(json.loads(last[6:])["choices"], [])
        self.assertEqual(json.loads(last[6:])["usage"], {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5})
        plain = formats.OpenAIChunkEncoder("c", 1, "m", include_usage=False)
        self.assertNotIn(b"usage", plain.encode(TextDelta("x")) + plain.encode(Finish("stop", Usage(1, 1))))

    def test_lobe_events_exact_bytes(self):
        enc = formats.LobeEncoder("chatcmpl-1")
        self.assertEqual(enc.encode(TextDelta("Hi")), b'id: chatcmpl-1\nevent: text\ndata: "Hi"\n\n')
        self.assertEqual(
            enc.encode(ToolCallDelta(0, "call_1", "f", "")),
            b'id: chatcmpl-1\nevent: tool_calls\ndata: [{"function":{"arguments":"","name":"f"},'
            b'"id":"call_1","index":0,"type":"function"}]\n\n')
        self.assertIn(b'"id":"call_1"', enc.encode(ToolCallDelta(0, None, None, "{}")))
        self.assertEqual(
            enc.encode(Finish("stop", Usage(2, 3))),
            b'id: chatcmpl-1\nevent: stop\ndata: "stop"\n\n'
            b'id: chatcmpl-1\nevent: usage\ndata: {"inputTextTokens":2,"outputTextTokens":3,'
            b'"totalInputTokens":2,"totalOutputTokens":3,"totalTokens":5}\n\n')
        self.assertIsNone(enc.done)

    def test_lifecycle_events_exact_bytes(self):
        enc = formats.LifecycleEncoder("msg_1")
        out = enc.encode(Start("")) + enc.encode(TextDelta("Hi")) + enc.encode(TextDelta("!")) + \
            enc.encode(Finish("stop", Usage(1, 2)))
        self.assertEqual(out, b'event: message-start\ndata: {"messageId":"msg_1"}\n\n'
                              b'event: message-chunk\ndata: {"messageId":"msg_1","content":"Hi","done":false}\n\n'
                              b'event: message-chunk\ndata: {"messageId":"msg_1","content":"!","done":false}\n\n'
                              b'event: message-complete\ndata: {"messageId":"msg_1","fullContent":"Hi!"}\n\n')
        self.assertEqual(enc.error(500, "X", "boom"), b'event: error\ndata: {"message":"boom","code":"X","status":500}\n\n')

    def test_token_encoder_ids_end_and_error(self):
        enc = formats.TokenEncoder(after=4)
        self.assertEqual(enc.encode(TextDelta("a")), b'id: 5\ndata: {"token":"a"}\n\n')
        self.assertEqual(enc.done, b"data: __END__\n\n")
        self.assertEqual(enc.error(500, "X", "boom"), b'data: {"error":"boom"}\n\n')

    def test_eventsource_ids_retry_and_total(self):
        reply = choose_reply(parse_run_request({"messages": HI}), ("A b.",), 0)
        chunks = formats.EventSourceEncoder(pipes.ChunkEncoder("c", 1, "m"), 1000, after=0)
        self.assertEqual(chunks.total(reply), 1 + 3 + 1 + 1)  # Start, 3 pieces, Finish, [DONE]
        enc = formats.EventSourceEncoder(pipes.ChunkEncoder("c", 1, "m"), 1000, after=2)
        events = list(enc.events(reply))
        self.assertEqual(events[0], TextDelta(" b"))
        self.assertTrue(enc.encode(events[0]).startswith(b"id: 3\nretry: 1000\ndata: {"))
        self.assertTrue(enc.encode(events[1]).startswith(b"id: 4\ndata: {"))
        enc.encode(events[2])
        self.assertEqual(enc.done, b"id: 6\ndata: [DONE]\n\n")

    def test_eventsource_json_messages_end_without_a_sentinel(self):
        reply = choose_reply(parse_run_request({"messages": HI}), ("A b.",), 0)
        enc = formats.EventSourceEncoder(formats.EventMessageEncoder(), 1000, after=0)
        self.assertEqual(enc.total(reply), 3 + 1)  # 3 pieces, then the finish message
        frames = b"".join(enc.encode(e) for e in enc.events(reply))
        self.assertEqual(frames, b'id: 1\nretry: 1000\ndata: {"event":"token","data":"A"}\n\n'
                                 b'id: 2\ndata: {"event":"token","data":" b"}\n\n'
                                 b'id: 3\ndata: {"event":"token","data":"."}\n\n'
                                 b'id: 4\ndata: {"event":"finish","data":"stop","usage":'
                                 b'{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}\n\n')
        self.assertIsNone(enc.done)
        self.assertEqual(enc.error(500, "X", "boom"),
                         b'data: {"event":"error","data":"boom","code":"X","status":500}\n\n')

    def test_parsers_name_the_field(self):
        cases = [
            (formats.parse_chat_completion, {"messages": HI}, "model"),
            (formats.parse_chat_completion, {"model": "m", "messages": []}, "messages"),
            (formats.parse_chat_completion, {"model": "m", "messages": HI, "stream_options": {"include_usage": True}}, "stream_options"),
            (formats.parse_chat_completion, {"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
            (formats.parse_lobe_chat, {"model": "m"}, "messages"),
            (formats.parse_lifecycle, {"messages": HI}, "model"),
            (formats.parse_lifecycle, {"model": "m", "messages": []}, "messages"),
            (formats.parse_lifecycle, {"model": "m", "messages": HI, "chatId": "bad id"}, "chatId"),
            (formats.parse_lifecycle, {"model": "m", "messages": [dict(HI[0], id=7)]}, "messages[0].id"),
            (formats.parse_lifecycle, {"model": "m", "messages": [dict(HI[0], timestamp="soon")]}, "messages[0].timestamp"),
            (formats.parse_generate, {"chatMessageId": "m", "prompt": "x"}, "sessionId"),
            (formats.parse_generate, {"sessionId": "s", "chatMessageId": "m"}, "messages"),
        ]
        for parse, body, param in cases:
            with self.subTest(body=body), self.assertRaises(InvalidRequest) as ctx:
                parse(body)
            self.assertEqual(ctx.exception.param, param)
        request, model, usage = formats.parse_chat_completion(
            {"model": "m", "stream": True, "stream_options": {"include_usage": True},
             "messages": [{"role": "developer", "content": "Be brief."}] + HI})
        self.assertEqual((model, usage, request.stream), ("m", True, True))


class TokenBrokerTest(unittest.TestCase):
    def setUp(self):
        self.now = 100.0
        self.broker = formats.TokenBroker(lambda: self.now, limit=2, ttl=10.0)
        self.sc = scenario.build(0, 0.0)

    def start(self, key, interval=1.0):
        return self.broker.start(key, ("a", "b", "c"), 0.5, interval, "run", self.sc, False)

    def test_schedule_follows_the_timeline_for_late_and_resuming_subscribers(self):
        gen = self.start(("s", "m"))
        self.assertEqual(self.broker.schedule(gen, 0), [0.5, 1.0, 1.0])
        self.now = 101.7  # tokens 0 and 1 exist (100.5, 101.5); token 2 at 102.5
        waits = self.broker.schedule(gen, 0)
        self.assertEqual(waits[:2], [0.0, 0.0])
        self.assertAlmostEqual(waits[2], 0.8)
        self.assertEqual(len(self.broker.schedule(gen, 2)), 1)

    def test_duplicate_full_and_expiry(self):
        self.start(("s", "1"))
        with self.assertRaises(formats.GenerationExists):
            self.start(("s", "1"))
        self.start(("s", "2"))
        with self.assertRaises(OverflowError):  # full of generations still producing
            self.start(("s", "3"))
        self.now = 100.0 + 2.5 + 10.0 + 0.1  # past the last token plus ttl
        self.assertIsNone(self.broker.get(("s", "1")))
        self.start(("s", "3"))
        self.assertEqual(len(self.broker), 1)

    def test_finished_generations_make_room_and_can_be_replaced(self):
        self.start(("s", "1"))
        self.start(("s", "2"))
        self.now = 103.0  # both finished (last tokens at 102.5), neither expired
        self.start(("s", "1"))  # same key again: the finished one is replaced
        self.start(("s", "3"))  # full: the oldest finished one ("s", "2") makes room
        self.assertIsNone(self.broker.get(("s", "2")))
        self.assertEqual(len(self.broker), 2)

    def test_get_looks_at_its_own_generation_only(self):
        # Waiting subscribers call get every few milliseconds: it must not scan the buffer.
        broker = formats.TokenBroker(lambda: self.now, limit=1000, ttl=10.0)
        for i in range(500):
            broker.start(("s", str(i)), ("a",), 0.0, 0.0, "run", self.sc, False)
        looked = []
        original = formats.Generation.finished_at
        with mock.patch.object(formats.Generation, "finished_at",
                               lambda g: looked.append(g) or original(g)):
            self.assertIsNone(broker.get(("s", "missing")))
            self.assertIsNotNone(broker.get(("s", "7")))
            self.now += 100.0  # every generation expired: get drops its own
            self.assertIsNone(broker.get(("s", "8")))
        self.assertEqual(len(looked), 2)

    def test_bounded_in_bytes(self):
        broker = formats.TokenBroker(lambda: self.now, limit=1000, ttl=10.0, max_bytes=50_000)
        tokens = tuple("x" * 10 for _ in range(200))  # about 15 KB each by the estimate
        for i in range(3):
            broker.start(("s", str(i)), tokens, 0.0, 0.0, "run", self.sc, False)
        self.now = 101.0
        for i in range(3, 10):  # the finished ones give way, oldest first
            broker.start(("s", str(i)), tokens, 0.0, 0.0, "run", self.sc, False)
        self.assertLessEqual(broker.bytes, broker.max_bytes)
        self.assertIsNotNone(broker.get(("s", "9")))
        self.assertIsNone(broker.get(("s", "0")))


class BadInputOverSocketTest(unittest.TestCase):
    """Every bad input the new routes reject, sent over a real socket, in the route's own shape."""

    def test_bad_bodies_and_headers_are_400(self):
        cases = [
            ("POST", "/v1/chat/completions", {"model": "m", "messages": HI, "stream_options": {"include_usage": True}},
             None, lambda b: b["error"]["param"] == "stream_options"),
            ("POST", "/v1/chat/completions", {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
             None, lambda b: b["error"]["param"] == "messages[0].role"),
            ("POST", "/v1/chat/completions", b"[1]", None, lambda b: b["error"]["type"] == "invalid_request_error"),
            ("POST", "/api/chat", {"messages": "Hi"}, None, lambda b: b["errorType"] == "BadRequest"),
            ("POST", "/api/stream", {"model": "m", "messages": HI, "chatId": "bad id"}, None, lambda b: "chatId" in b["error"]),
            ("POST", "/api/stream", {"model": "m", "messages": HI, "systemPrompt": 3}, None, lambda b: "systemPrompt" in b["error"]),
            ("POST", "/api/generate", {"chatMessageId": "m", "prompt": "x"}, None, lambda b: "sessionId" in b["error"]),
            ("POST", "/api/generate", {"sessionId": "s", "chatMessageId": "m"}, None, lambda b: "prompt" in b["error"]),
            ("POST", "/api/generate", {"sessionId": "s", "chatMessageId": "m", "prompt": "x", "mock": {"nope": 1}},
             None, lambda b: "unknown setting 'nope'" in b["error"]),
            ("GET", "/api/events?prompt=Hi", None, {"Last-Event-ID": "abc"}, lambda b: "Last-Event-ID" in b["error"]),
        ]
        with RunningServer() as s:
            for method, path, body, headers, check in cases:
                with self.subTest(path=path, body=body, headers=headers):
                    r = call(s.port, method, path, body, headers)
                    self.assertEqual(r.status, 400, r.body)
                    self.assertEqual(r.header("Content-Type"), "application/json")
                    self.assertTrue(check(r.json()), r.json())
            call(s.port, "POST", "/api/generate", {"sessionId": "s", "chatMessageId": "m", "prompt": "x"})
            r = call(s.port, "GET", "/api/stream/s/m", headers={"Last-Event-ID": "-1"})
            self.assertEqual((r.status, "Last-Event-ID" in r.json()["error"]), (400, True))
            self.assertEqual(call(s.port, "GET", "/health").status, 200)


class NoSentinelFormatTest(unittest.TestCase):
    def test_http10_client_gets_formats_without_an_end_sentinel(self):
        # Regression: the plain shaping path wrote Write(None) for formats with no [DONE]; on a
        # close-delimited (HTTP/1.0) body that reached send() and stopped the pacer.
        with RunningServer() as s:
            for path, body in (("/api/chat", {"messages": HI}), ("/api/stream", {"model": "m", "messages": HI})):
                with self.subTest(path=path), connect(s.port) as sock:
                    sock.sendall(request_bytes("POST", path, json.dumps(body).encode(), version="HTTP/1.0"))
                    raw = support.read_all(sock)
                    self.assertTrue(raw.endswith(b"\n\n"), raw[-60:])
            self.assertEqual(call(s.port, "POST", "/v1/pipes/run", {"stream": True, "messages": HI}).status, 200)


class OpenAIRouteTest(unittest.TestCase):
    BODY = {"model": "gpt-test", "messages": HI}

    def test_non_stream_completion_and_request_id(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/v1/chat/completions", self.BODY)
            body = r.json()
            self.assertEqual(body["object"], "chat.completion")
            self.assertEqual(body["model"], "gpt-test")
            self.assertEqual(body["choices"][0]["message"]["content"], truth(s, r)["text"])
            self.assertEqual(r.header("x-request-id"), r.header("lb-request-id"))

    def test_stream_with_usage_chunk(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/v1/chat/completions",
                     dict(self.BODY, stream=True, stream_options={"include_usage": True}))
            datas = support.sse_data(r.body)
            chunks = [json.loads(d) for d in datas[:-1]]
            self.assertEqual(datas[-1], "[DONE]")
            self.assertEqual(chunks[-1]["choices"], [])
            self.assertEqual(chunks[-1]["usage"], truth(s, r)["usage"])
            self.assertTrue(all(c["usage"] is None for c in chunks[:-1]))
            self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "stop")
            self.assertEqual("".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]),
                             truth(s, r)["text"])

    def test_errors_in_openai_shape(self):
        with RunningServer(api_key="k") as s:
            r = call(s.port, "POST", "/v1/chat/completions", {"messages": HI}, {"Authorization": "Bearer k"})
            self.assertEqual(r.status, 400)
            self.assertEqual(r.json(), {"error": {"message": "you must provide a model parameter",
                                                  "type": "invalid_request_error", "param": "model", "code": None}})
            r = call(s.port, "POST", "/v1/chat/completions", self.BODY, {"Authorization": "Bearer nope"})
            self.assertEqual((r.status, r.json()["error"]["type"], r.json()["error"]["code"]),
                             (401, "invalid_request_error", "invalid_api_key"))
            r = call(s.port, "GET", "/v1/models", headers={"Authorization": "Bearer k"})
            self.assertEqual(r.json()["data"][0]["id"], "gpt-4o-mini")
            r = call(s.port, "GET", "/v1/models/gpt-4o-mini", headers={"Authorization": "Bearer k"})
            self.assertEqual(r.json()["object"], "model")
            r = call(s.port, "GET", "/v1/models/gpt-5", headers={"Authorization": "Bearer k"})
            self.assertEqual((r.status, r.json()["error"]["type"]), (404, "not_found_error"))

    def test_fault_says_do_not_retry(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/v1/chat/completions",
                     dict(self.BODY, mock={"fault": "http_error", "fault_status": 429}))
            self.assertEqual(r.status, 429)
            self.assertEqual(r.header("x-should-retry"), "false")
            self.assertEqual(r.json()["error"]["type"], "requests")
            self.assertEqual(r.json()["error"]["code"], "rate_limit_exceeded")
            self.assertEqual(r.header("Retry-After"), "1")


class LobeRouteTest(unittest.TestCase):
    def test_text_stop_usage_events_with_ids(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/api/chat", {"model": "m", "messages": HI, "stream": True})
            events = events_of(r.body)
            t = truth(s, r)
        self.assertEqual({e[0] for e in events}, {t["id"]})
        kinds = [e[1] for e in events]
        self.assertEqual(kinds, ["text"] * len(t["deltas"]) + ["stop", "usage"])
        self.assertEqual("".join(json.loads(e[2]) for e in events if e[1] == "text"), t["text"])
        self.assertEqual(json.loads(events[-1][2])["totalTokens"], t["usage"]["total_tokens"])
        self.assertNotIn(b"[DONE]", r.body)

    def test_bad_body_in_lobe_shape_and_error_event(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/api/chat", {"model": "m"})
            self.assertEqual(r.status, 400)
            self.assertEqual(r.json()["errorType"], "BadRequest")
            self.assertIn("messages", r.json()["body"]["message"])
            r = call(s.port, "POST", "/api/chat", {"messages": HI, "mock": {"fault": "error_frame", "fault_after": 2}})
            events = events_of(r.body)
            self.assertEqual([e[1] for e in events], ["text", "text", "error"])
            self.assertEqual(json.loads(events[-1][2])["type"], "ProviderBizError")


class LifecycleRouteTest(unittest.TestCase):
    def test_events_and_chat_id_stores_user_messages_then_reply(self):
        body = {"chatId": "chat-7", "systemPrompt": "Be kind.", "model": "m",
                "messages": [{"id": "u1", "role": "user", "content": "Hi", "timestamp": 1}]}
        with RunningServer() as s:
            r = call(s.port, "POST", "/api/stream", body)
            events = events_of(r.body)
            t = truth(s, r)
            stored = call(s.port, "GET", "/v1/threads/chat-7/messages").json()
        kinds = [e[1] for e in events]
        self.assertEqual(kinds, ["message-start"] + ["message-chunk"] * len(t["deltas"]) + ["message-complete"])
        message_id = json.loads(events[0][2])["messageId"]
        self.assertEqual(json.loads(events[-1][2]), {"messageId": message_id, "fullContent": t["text"]})
        self.assertEqual([(m["role"], m["content"]) for m in stored], [("user", "Hi"), ("assistant", t["text"])])

    def test_invalid_body_is_400_before_any_stream(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/api/stream", {"model": "m", "messages": "Hi"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertIn("messages", r.json()["error"])


class EventSourceRouteTest(unittest.TestCase):
    def test_resume_after_last_event_id_loses_and_repeats_nothing(self):
        with RunningServer() as s:
            full = events_of(call(s.port, "GET", "/api/events?prompt=Hello").body)
            # The connection drops after 3 events; EventSource reconnects with Last-Event-ID: 3.
            with connect(s.port) as sock:
                sock.sendall(request_bytes("GET", "/api/events?prompt=Hello&fault=disconnect&fault_after=3"))
                cut = events_of(cut_body(support.read_all(sock)))
            resumed = events_of(call(s.port, "GET", "/api/events?prompt=Hello",
                                     headers={"Last-Event-ID": cut[-1][0]}).body)
            done = call(s.port, "GET", "/api/events?prompt=Hello", headers={"Last-Event-ID": str(len(full))})
        self.assertEqual([e[0] for e in full], [str(i) for i in range(1, len(full) + 1)])
        self.assertEqual(full[-1][2], "[DONE]")
        self.assertEqual(cut + resumed, full)
        self.assertEqual(len(cut), 3)
        self.assertEqual(done.status, 204)

    def test_reconnect_past_a_disconnect_does_not_meet_it_again(self):
        # The URL keeps its fault settings on every automatic reconnect.
        url = "/api/events?prompt=Hello&fault=disconnect&fault_after=3"
        with RunningServer() as s:
            full = events_of(call(s.port, "GET", "/api/events?prompt=Hello").body)
            resumed = events_of(call(s.port, "GET", url, headers={"Last-Event-ID": "3"}).body)
        self.assertEqual(resumed, full[3:])

    def test_retry_hint_on_first_event_only(self):
        with RunningServer() as s:
            body = call(s.port, "GET", "/api/events?prompt=Hello").body
        self.assertTrue(body.startswith(b"id: 1\nretry: 1000\ndata: {"))
        self.assertEqual(body.count(b"retry:"), 1)

    def test_default_prompt_and_query_settings_validated(self):
        with RunningServer() as s:
            default = call(s.port, "GET", "/api/events")
            self.assertEqual(truth(s, default)["text"], truth(s, call(s.port, "GET", "/api/events?prompt=Hello!"))["text"])
            bad = call(s.port, "GET", "/api/events?payload=xml")
            self.assertEqual((bad.status, bad.json()), (400, {"error": "payload must be one of json, openai."}))
            r = call(s.port, "GET", "/api/events?prompt=x&dealy=1")
            self.assertEqual(r.status, 400)
            self.assertIn("unknown setting 'dealy'", r.json()["error"])
            crlf = call(s.port, "GET", "/api/events?prompt=x&line_ending=crlf")
            self.assertIn(b"\r\n\r\n", crlf.body)


class EventMessagesRouteTest(unittest.TestCase):
    """``GET /events`` and ``GET /hello``: the Flask/EventSource design's request and stream."""

    BRIEF_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive",
                     "Authorization": "Bearer MY_TOKEN"}

    def test_json_object_messages_then_close_without_a_sentinel(self):
        with RunningServer() as s:
            for path in ("/events", "/hello"):
                with self.subTest(path=path):
                    r = call(s.port, "GET", path, headers=self.BRIEF_HEADERS)
                    self.assertEqual(r.status, 200)
                    self.assertEqual(r.header("Content-Type"), "text/event-stream; charset=utf-8")
                    events = events_of(r.body)
                    messages = [json.loads(e[2]) for e in events]  # every data message is a JSON object
                    t = truth(s, r)
                    self.assertEqual([m["data"] for m in messages[:-1]], t["deltas"])
                    self.assertEqual({m["event"] for m in messages[:-1]}, {"token"})
                    self.assertEqual(messages[-1], {"event": "finish", "data": "stop", "usage": t["usage"]})
                    self.assertEqual([e[0] for e in events], [str(i) for i in range(1, len(events) + 1)])
                    self.assertNotIn(b"[DONE]", r.body)
                    self.assertEqual(t["text"], truth(s, call(s.port, "GET", "/api/events?prompt=Hello!"))["text"])

    def test_reconnect_after_the_end_is_204_and_resume_repeats_nothing(self):
        with RunningServer() as s:
            full = events_of(call(s.port, "GET", "/hello").body)
            resumed = events_of(call(s.port, "GET", "/hello", headers={"Last-Event-ID": "3"}).body)
            done = call(s.port, "GET", "/hello", headers={"Last-Event-ID": str(len(full))})
        self.assertEqual(resumed, full[3:])
        self.assertEqual(done.status, 204)

    def test_payload_openai_and_prompt_in_the_query(self):
        with RunningServer() as s:
            r = call(s.port, "GET", "/events?payload=openai&prompt=Hi&line_ending=crlf")
            self.assertEqual(r.body.replace(b"\r\n", b"\n"), call(s.port, "GET", "/api/events?prompt=Hi").body)
            error = events_of(call(s.port, "GET", "/events?fault=error_frame&fault_after=2").body)
        self.assertTrue(r.body.endswith(b"data: [DONE]\r\n\r\n"))
        self.assertEqual(json.loads(error[-1][2]), {
            "event": "error", "data": "Mock fault: in-band error after 2 events (fault=error_frame).",
            "code": "INTERNAL_SERVER_ERROR", "status": 500})
        self.assertIsNone(error[-1][0])  # no id: a reconnect resumes before the error


class TokenStreamRouteTest(unittest.TestCase):
    def generate(self, s, **extra):
        body = dict({"sessionId": "s1", "chatMessageId": "m1", "prompt": "Hi"}, **extra)
        return call(s.port, "POST", "/api/generate", body)

    def test_generate_then_many_subscribers_get_identical_tokens(self):
        with RunningServer(delay=0.002) as s:
            started = self.generate(s)
            self.assertEqual(started.status, 202)
            self.assertEqual(started.json()["stream"], "/api/stream/s1/m1")
            results = []

            def subscribe():
                results.append(call(s.port, "GET", "/api/stream/s1/m1").body)

            workers = [threading.Thread(target=subscribe) for _ in range(8)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            late = call(s.port, "GET", "/api/stream/s1/m1").body  # a late subscriber replays from the start
            t = call(s.port, "GET", "/mock/runs/" + started.json()["runId"]).json()
        self.assertEqual(len(set(results + [late])), 1)
        events = events_of(late)
        self.assertEqual(events[-1], (None, None, "__END__"))
        self.assertEqual([json.loads(e[2])["token"] for e in events[:-1]], t["deltas"])
        self.assertEqual([e[0] for e in events[:-1]], [str(i) for i in range(1, len(t["deltas"]) + 1)])

    def test_resume_unknown_duplicate_and_failure(self):
        with RunningServer() as s:
            self.generate(s, chatMessageId="slow", mock={"delay": 5})
            self.assertEqual(self.generate(s, chatMessageId="slow").status, 409)  # still producing
            self.generate(s)
            self.assertEqual(self.generate(s).status, 202)  # finished at once (delay 0): replaced
            full = events_of(call(s.port, "GET", "/api/stream/s1/m1").body)
            resumed = events_of(call(s.port, "GET", "/api/stream/s1/m1", headers={"Last-Event-ID": "2"}).body)
            self.assertEqual(resumed, full[2:])
            self.generate(s, chatMessageId="m2", mock={"fault": "error_frame", "fault_after": 2})
            failed = events_of(call(s.port, "GET", "/api/stream/s1/m2").body)
            self.assertEqual(json.loads(failed[-1][2]), {"error": "Mock fault: in-band error after 2 events (fault=error_frame)."})
            self.assertEqual(len(failed), 3)
            self.assertEqual(call(s.port, "GET", "/health").json()["generations"], 3)  # slow, m1, m2


class ScenarioOnEveryFormatTest(unittest.TestCase):
    """The same scenario (CRLF endings, disconnect after 3 events) applies to every format."""

    def test_crlf_and_disconnect_after_three(self):
        mock = {"line_ending": "crlf", "fault": "disconnect", "fault_after": 3}
        requests = [
            ("POST", "/v1/pipes/run", {"stream": True, "messages": HI, "mock": mock}),
            ("POST", "/v1/chat/completions", {"model": "m", "stream": True, "messages": HI, "mock": mock}),
            ("POST", "/api/chat", {"messages": HI, "mock": mock}),
            ("POST", "/api/stream", {"model": "m", "messages": HI, "mock": mock}),
            ("GET", "/api/events?prompt=Hi&line_ending=crlf&fault=disconnect&fault_after=3", None),
        ]
        with RunningServer() as s:
            for method, path, body in requests:
                with self.subTest(path=path), connect(s.port) as sock:
                    data = json.dumps(body).encode() if body is not None else None
                    sock.sendall(request_bytes(method, path, data))
                    raw = support.read_all(sock)
                    self.assertIn(b" 200 ", raw.split(b"\r\n")[0])
                    self.assertFalse(raw.endswith(b"0\r\n\r\n"))  # cut: no chunked terminator
                    body = cut_body(raw)
                    self.assertTrue(body.endswith(b"\r\n\r\n"))
                    self.assertEqual(body.count(b"\r\n\r\n"), 3)
                    self.assertNotIn(b"\n", body.replace(b"\r\n", b""))


    def test_formats_without_an_end_sentinel_end_cleanly_when_shaped(self):
        # Lobe Chat, the message lifecycle and EventSource JSON messages have no [DONE]: a shaped
        # stream (CRLF endings) ends after its last event with the chunked terminator.
        requests = [("POST", "/api/chat", {"messages": HI}), ("POST", "/api/stream", {"model": "m", "messages": HI}),
                    ("GET", "/events", None)]
        with RunningServer() as s:
            for method, path, body in requests:
                with self.subTest(path=path):
                    r = call(s.port, method, path, body, {"X-Mock-Line-Ending": "crlf"})
                    self.assertTrue(r.raw_body.endswith(b"\r\n\r\n\r\n0\r\n\r\n"))
                    self.assertEqual(len(events_of(r.body.replace(b"\r\n", b"\n"))), len(truth(s, r)["deltas"]) + 2
                                     - (path == "/events"))

if __name__ == "__main__":
    unittest.main()
