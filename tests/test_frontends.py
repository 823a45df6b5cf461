"""The message-lifecycle and token-stream backends' rules over real sockets: ``messageId`` per
response, what ``POST /api/stream`` stores and when (completion, in-band error, hang-up), and
subscribe-first token streams (``GET /api/stream/{sessionId}/{chatMessageId}`` before, after or
without ``POST /api/generate``)."""

import json
import re
import socket
import time
import unittest
import urllib.parse

from tests.support import RunningServer, ResponseReader, call, connect, request_bytes
from tests.test_formats import events_of, truth

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def lifecycle_body(chat_id=None, messages=None, **extra):
    body = dict({"model": "llama2", "messages": messages or [
        {"id": "u1", "role": "user", "content": "Hello!", "timestamp": "2024-01-01T00:00:00.000Z"}]}, **extra)
    if chat_id is not None:
        body["chatId"] = chat_id
    return body


def stored(s, chat_id):
    return call(s.port, "GET", "/v1/threads/%s/messages" % chat_id).json()


def wait_until_no_streams(s, seconds=5.0):
    """Poll ``/health`` until the server has no stream open (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if call(s.port, "GET", "/health").json()["open_streams"] == 0:
            return
        time.sleep(0.02)
    raise AssertionError("a stream is still open after %.0f s" % seconds)


class MessageIdTest(unittest.TestCase):
    def test_message_id_is_a_fresh_uuid4_on_every_event(self):
        with RunningServer() as s:
            first, second = (events_of(call(s.port, "POST", "/api/stream", lifecycle_body()).body) for _ in "ab")
        ids = []
        for events in (first, second):
            message_ids = {json.loads(e[2])["messageId"] for e in events}
            self.assertEqual(len(message_ids), 1)  # start, every chunk and complete carry the same id
            ids.append(message_ids.pop())
        self.assertRegex(ids[0], UUID4)
        self.assertRegex(ids[1], UUID4)
        self.assertNotEqual(ids[0], ids[1])  # the same text twice: two messages, two React keys

    def test_model_is_required(self):
        body = lifecycle_body("chat-m")
        del body["model"]
        with RunningServer() as s:
            r = call(s.port, "POST", "/api/stream", body)
            missing = call(s.port, "GET", "/v1/threads/chat-m")
        self.assertEqual((r.status, r.json()), (400, {"error": 'model is required (a non-empty string, e.g. "llama2")'}))
        self.assertEqual(missing.status, 404)  # nothing stored


class LifecyclePersistenceTest(unittest.TestCase):
    def test_client_ids_and_timestamps_kept_and_reply_stored_under_message_id(self):
        messages = [{"id": "msg-1", "role": "user", "content": "Hello!", "timestamp": "2024-01-01T00:00:00.000Z"},
                    {"id": "msg-2", "role": "user", "content": "Still there?", "timestamp": 1704067260500}]
        with RunningServer() as s:
            r = call(s.port, "POST", "/api/stream", lifecycle_body("chat-1", messages))
            events = events_of(r.body)
            thread = stored(s, "chat-1")
            t = truth(s, r)
        message_id = json.loads(events[0][2])["messageId"]
        self.assertEqual([(m["id"], m["role"], m["created_at"], m["metadata"]) for m in thread], [
            ("msg-1", "user", 1704067200, {"timestamp": "2024-01-01T00:00:00.000Z"}),
            ("msg-2", "user", 1704067260, {"timestamp": "1704067260500"}),
            (message_id, "assistant", thread[2]["created_at"], {}),
        ])
        self.assertEqual(thread[2]["content"], json.loads(events[-1][2])["fullContent"])
        self.assertEqual((t["message_id"], t["thread_id"]), (message_id, "chat-1"))

    def test_resent_history_is_idempotent(self):
        with RunningServer() as s:
            first = events_of(call(s.port, "POST", "/api/stream", lifecycle_body("chat-2")).body)
            reply = json.loads(first[-1][2])
            history = lifecycle_body()["messages"] + [
                {"id": reply["messageId"], "role": "assistant", "content": reply["fullContent"],
                 "timestamp": "2024-01-01T00:00:01.000Z"},
                {"id": "u2", "role": "user", "content": "And then?", "timestamp": "2024-01-01T00:00:02.000Z"}]
            second = events_of(call(s.port, "POST", "/api/stream", lifecycle_body("chat-2", history)).body)
            thread = stored(s, "chat-2")
        second_id = json.loads(second[0][2])["messageId"]
        self.assertEqual([(m["id"], m["role"]) for m in thread], [
            ("u1", "user"), (reply["messageId"], "assistant"), ("u2", "user"), (second_id, "assistant")])

    def test_reply_is_stored_when_the_stream_completes_not_before(self):
        body = json.dumps(lifecycle_body("chat-3", mock={"delay": 0.05, "ttft": 0.3})).encode()
        with RunningServer() as s, connect(s.port) as sock:
            sock.sendall(request_bytes("POST", "/api/stream", body, {"Content-Type": "application/json"}))
            reader = ResponseReader(sock)
            reader.read(head_only=True)
            during = stored(s, "chat-3")  # the user message is in; the reply is still being generated
            while b"message-complete" not in reader.buf:
                self.assertTrue(reader._fill(), "the stream ended early")
            reader._take_until(b"\r\n0\r\n\r\n")
            after = stored(s, "chat-3")
        self.assertEqual([m["role"] for m in during], ["user"])
        self.assertEqual([m["role"] for m in after], ["user", "assistant"])

    def test_error_ended_and_disconnected_streams_store_no_reply(self):
        with RunningServer() as s:
            failed = call(s.port, "POST", "/api/stream", lifecycle_body(
                "chat-4", mock={"fault": "error_frame", "fault_after": 3}))
            self.assertEqual(events_of(failed.body)[-1][1], "error")
            self.assertEqual([m["role"] for m in stored(s, "chat-4")], ["user"])
            late = call(s.port, "POST", "/api/stream", lifecycle_body(  # the error comes after the last chunk
                "chat-5", mock={"fault": "error_frame", "fault_after": 1000}))
            self.assertEqual(events_of(late.body)[-1][1], "error")
            with connect(s.port) as sock:
                sock.sendall(request_bytes("POST", "/api/stream", json.dumps(lifecycle_body(
                    "chat-6", mock={"fault": "disconnect", "fault_after": 3})).encode(),
                    {"Content-Type": "application/json"}))
                while sock.recv(65536):
                    pass
            wait_until_no_streams(s)
            self.assertEqual([m["role"] for m in stored(s, "chat-5")], ["user"])
            self.assertEqual([m["role"] for m in stored(s, "chat-6")], ["user"])

    def test_client_that_hangs_up_mid_stream_stores_no_reply(self):
        body = json.dumps(lifecycle_body("chat-7", mock={"delay": 0.02})).encode()
        with RunningServer() as s:
            with connect(s.port) as sock:
                sock.sendall(request_bytes("POST", "/api/stream", body, {"Content-Type": "application/json"}))
                reader = ResponseReader(sock)
                reader.read(head_only=True)
                while b"message-chunk" not in reader.buf:
                    self.assertTrue(reader._fill())
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            wait_until_no_streams(s)  # the server noticed the hang-up and dropped the stream
            thread = stored(s, "chat-7")
        self.assertEqual([m["role"] for m in thread], ["user"])

    def test_bad_message_fields_store_nothing(self):
        cases = [({"id": "", "role": "user", "content": "x"}, "messages[0].id"),
                 ({"id": "a/b", "role": "user", "content": "x"}, "messages[0].id"),
                 ({"id": "x" * 257, "role": "user", "content": "x"}, "messages[0].id"),
                 ({"role": "user", "content": "x", "timestamp": "yesterday"}, "messages[0].timestamp"),
                 ({"role": "user", "content": "x", "timestamp": True}, "messages[0].timestamp"),
                 ({"role": "user", "content": "x", "timestamp": -1}, "messages[0].timestamp")]
        with RunningServer() as s:
            for message, param in cases:
                with self.subTest(message=message):
                    r = call(s.port, "POST", "/api/stream", lifecycle_body("chat-8", [message]))
                    self.assertEqual(r.status, 400)
                    self.assertTrue(r.json()["error"].startswith(param), r.json())
            self.assertEqual(call(s.port, "GET", "/v1/threads/chat-8").status, 404)



class SubscribeFirstTokenStreamTest(unittest.TestCase):
    """``GET /api/stream/{sessionId}/{chatMessageId}`` before any ``POST /api/generate``."""

    def tokens(self, body):
        events = events_of(body)
        self.assertEqual(events[-1], (None, None, "__END__"))
        self.assertEqual([e[0] for e in events[:-1]], [str(i) for i in range(1, len(events))])
        return [json.loads(e[2])["token"] for e in events[:-1]]

    def test_subscriber_waits_for_a_later_publish(self):
        with RunningServer(token_wait=10.0, delay=0.002) as s, connect(s.port) as sock:
            started = time.monotonic()
            sock.sendall(request_bytes("GET", "/api/stream/s1/m1"))
            reader = ResponseReader(sock)
            head = reader.read(head_only=True)
            time.sleep(0.2)  # the subscriber is waiting; now the producer publishes
            published = call(s.port, "POST", "/api/generate", {"sessionId": "s1", "chatMessageId": "m1", "prompt": "Hi"})
            reader._take_until(b"data: __END__\n\n\r\n0\r\n\r\n")
            elapsed = time.monotonic() - started
            t = call(s.port, "GET", "/mock/runs/" + published.json()["runId"]).json()
            again = call(s.port, "GET", "/api/stream/s1/m1")  # a late joiner replays the same tokens
            runs = call(s.port, "GET", "/mock/runs").json()["runs"]
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("lb-mock-seed"), "0")
        self.assertIsNone(head.header("lb-mock-run-id"))  # not known when the head went out
        self.assertLess(elapsed, 5.0)  # it followed the publish, not the 10 s fallback
        self.assertEqual(self.tokens(again.body), t["deltas"])
        self.assertEqual(len(runs), 1)  # the mock generated nothing itself

    def test_subscriber_alone_gets_a_generated_reply_from_the_seed_and_ids(self):
        with RunningServer(token_wait=0.2) as s:
            started = time.monotonic()
            first = call(s.port, "GET", "/api/stream/s1/m1")
            waited = time.monotonic() - started
            late = call(s.port, "GET", "/api/stream/s1/m1")
            resumed = call(s.port, "GET", "/api/stream/s1/m1", headers={"Last-Event-ID": "2"})
            runs = call(s.port, "GET", "/mock/runs").json()["runs"]
            t = call(s.port, "GET", "/mock/runs/" + runs[0]).json()
            other = call(s.port, "GET", "/api/stream/s1/m3")
        with RunningServer(token_wait=0.05) as s2:  # another server, the same seed: the same reply
            same = call(s2.port, "GET", "/api/stream/s1/m1")
        self.assertGreaterEqual(waited, 0.2)
        tokens = self.tokens(first.body)
        self.assertEqual(tokens, t["deltas"])
        self.assertEqual((len(runs), t["format"]), (1, "tokens"))
        self.assertEqual(self.tokens(late.body), tokens)
        self.assertEqual(events_of(resumed.body), events_of(first.body)[2:])
        self.assertEqual(same.body, first.body)
        self.assertNotEqual(self.tokens(other.body), tokens)  # another message id, another reply

    def test_stop_ends_a_waiting_subscriber_at_once_with_a_whole_stream(self):
        server = RunningServer(token_wait=600.0, delay=0.05)
        with server, connect(server.port) as sock:
            sock.sendall(request_bytes("GET", "/api/stream/s1/m1", headers={"Connection": "close"}))
            time.sleep(0.2)  # the subscriber is waiting for a producer that never comes
            busy = time.process_time()
            started = time.monotonic()
            server.server.stop(drain_seconds=5.0)
            stopped = time.monotonic() - started
            cpu = time.process_time() - busy
            response = ResponseReader(sock).read()
        self.assertLess(stopped, 1.0)  # it stops waiting and is sent at full speed
        self.assertLess(cpu, 0.5)  # without spinning through its polls meanwhile
        self.assertEqual(response.status, 200)
        self.assertTrue(self.tokens(response.body))

    def test_two_waiting_subscribers_share_one_generated_reply(self):
        with RunningServer(token_wait=0.2, delay=0.002) as s:
            socks = [connect(s.port) for _ in range(2)]
            try:
                for sock in socks:
                    sock.sendall(request_bytes("GET", "/api/stream/s1/m1", headers={"Connection": "close"}))
                bodies = [ResponseReader(sock).read().body for sock in socks]
            finally:
                for sock in socks:
                    sock.close()
            runs = call(s.port, "GET", "/mock/runs").json()["runs"]
            time.sleep(0.05)  # past the generation's last token (the loop may fire a timer a little early)
            taken = call(s.port, "POST", "/api/generate", {"sessionId": "s1", "chatMessageId": "m1", "prompt": "x"})
        self.assertEqual(bodies[0], bodies[1])
        self.assertEqual(len(runs), 1)
        self.assertEqual(taken.status, 202)  # the generated one has finished: a publish replaces it

    def test_generated_reply_follows_the_subscriber_mock_headers(self):
        with RunningServer(token_wait=0) as s:
            failed = events_of(call(s.port, "GET", "/api/stream/s1/m1", headers={
                "X-Mock-Fault": "error_frame", "X-Mock-Fault-After": "2"}).body)
            bad = call(s.port, "GET", "/api/stream/s1/m2", headers={"X-Mock-Fault": "sometimes"})
        self.assertEqual(len(failed), 3)
        self.assertEqual(json.loads(failed[-1][2]), {"error": "Mock fault: in-band error after 2 events (fault=error_frame)."})
        self.assertEqual(bad.status, 400)  # a bad setting is refused before any stream starts

    def test_ids_are_any_bounded_path_safe_string(self):
        session = "user@example.com"
        message = "msg 1:ü"
        with RunningServer(token_wait=5.0) as s:
            published = call(s.port, "POST", "/api/generate", {"sessionId": session, "chatMessageId": message, "prompt": "Hi"})
            path = published.json()["stream"]
            via_path = call(s.port, "GET", path)
            raw_at = call(s.port, "GET", "/api/stream/user@example.com/" + urllib.parse.quote(message))
            bad = {p: call(s.port, "GET", p) for p in (
                "/api/stream/s1/a%2Fb", "/api/stream/s1/a%00b", "/api/stream/s1/%FF", "/api/stream/s1/" + "x" * 257)}
            bad_body = call(s.port, "POST", "/api/generate", {"sessionId": "a/b", "chatMessageId": "m", "prompt": "x"})
            health = call(s.port, "GET", "/health").json()
        self.assertEqual(published.status, 202)
        self.assertEqual(path, "/api/stream/user@example.com/msg%201:%C3%BC")
        self.assertEqual(via_path.body, raw_at.body)
        self.assertTrue(via_path.body.endswith(b"data: __END__\n\n"))
        for p, r in bad.items():
            with self.subTest(path=p):
                self.assertEqual(r.status, 400)
                self.assertIn("chatMessageId", r.json()["error"])
        self.assertEqual(bad_body.status, 400)
        self.assertEqual(health["generations"], 1)  # nothing was started by a refused id


if __name__ == "__main__":
    unittest.main()
