"""``--upstream`` and ``--record`` against a second mock as the upstream (no network): replies
served in the client's format with the upstream's chunk boundaries, one fixture file per
exchange (no secrets), a record-then-replay that gives identical bytes, and each upstream
failure as a proper error in the client's format."""

import contextlib
import http.client
import io
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest

import main
import pipes
import upstream
from tests.support import ResponseReader, RunningServer, call, sse_data

KEY = "sk-upstream-secret-key-123"
ASK = [{"role": "user", "content": "Tell me something"}]
REPLY = "Hello from the upstream, in pieces."


def contents(body):
    return [json.loads(d)["choices"][0]["delta"].get("content") for d in sse_data(body)[:-1]]


def start_stream(sock):
    """Send a streamed ``POST /v1/pipes/run`` on ``sock`` and read until the first piece of
    ``REPLY`` is in; returns the bytes read."""
    body = json.dumps({"stream": True, "messages": ASK}).encode()
    sock.sendall(b"POST /v1/pipes/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while b'"content":"H' not in got:
        got += sock.recv(65536)
    return got


def timed_lines(port, path, body, on_first=None):
    """POST ``body`` to ``path`` (GET when None) and read the streamed body line by line:
    ``(response, [(seconds since the request, line bytes)])``; ``on_first(response)`` is called
    when the first piece of ``REPLY`` (``"Hello``, a JSON string in every format) arrives."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        start = time.monotonic()
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        lines = []
        while True:
            line = response.readline()
            if not line:
                return response, lines
            if on_first is not None and b'"Hello' in line:
                on_first(response)
                on_first = None
            lines.append((time.monotonic() - start, line))
    finally:
        conn.close()


class UpstreamTest(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)

    def server(self, **settings):
        server = RunningServer(**settings)
        server.__enter__()
        self.addCleanup(server.__exit__, None, None, None)
        return server

    def front(self, up, **settings):
        return self.server(upstream=up.url + "/v1", upstream_key=KEY, **settings)

    def test_replies_come_from_the_upstream_with_its_boundaries_and_are_recorded_without_secrets(self):
        up = self.server(replies=(REPLY,), delay=0.02)
        front = self.front(up, record=self.folder)
        logs = io.StringIO()
        handler = logging.StreamHandler(logs)
        logging.getLogger().addHandler(handler)
        old_level = logging.getLogger().level
        logging.getLogger().setLevel(logging.DEBUG)
        try:
            r = call(front.port, "POST", "/v1/pipes/run", {"stream": True, "messages": ASK},
                     {"Authorization": "Bearer sk-client-key"})
        finally:
            logging.getLogger().removeHandler(handler)
            logging.getLogger().setLevel(old_level)
        self.assertEqual(r.status, 200)
        upstream_run = call(up.port, "GET", "/mock/runs").json()["runs"][0]
        truth = call(up.port, "GET", "/mock/runs/" + upstream_run).json()
        self.assertEqual(contents(r.body), [""] + truth["deltas"] + [None])
        self.assertEqual(truth["format"], "openai")
        sent = call(up.port, "GET", "/mock/requests").json()["requests"][0]
        self.assertEqual(dict(sent["headers"])["Authorization"], "Bearer ***")  # the key went, masked here
        self.assertEqual(sent["body"], {"model": "gpt-4o-mini", "messages": ASK, "stream": True})
        record = call(front.port, "GET", "/mock/runs/" + r.header("lb-mock-run-id")).json()
        self.assertEqual(record["fixture"], "upstream")
        files = os.listdir(self.folder)
        self.assertEqual(len(files), 1, files)
        with open(os.path.join(self.folder, files[0]), encoding="utf-8") as f:
            text = f.read()
        saved = json.loads(text)["fixtures"][0]
        self.assertEqual(saved["match"], {"user": "Tell me something", "tool_result": False})
        self.assertEqual(saved["response"]["chunks"], truth["deltas"])
        self.assertEqual(len(saved["response"]["delays"]), len(truth["deltas"]))
        self.assertTrue(all(0 <= d < 5 for d in saved["response"]["delays"]))
        for secret in (KEY, "sk-client-key"):
            self.assertNotIn(secret, text)
            self.assertNotIn(secret, logs.getvalue())
        self.assertIn("recorded an upstream exchange", logs.getvalue())

    def test_a_stream_goes_out_while_the_upstream_is_still_producing_it(self):
        up = self.server(replies=(REPLY,), delay=0.2)
        front = self.front(up)
        seen = {}

        def during(response):  # the first piece is in: the run is not over, its reply not stored yet
            thread = response.getheader("lb-thread-id")
            seen["record"] = call(front.port, "GET", "/mock/runs/" + response.getheader("lb-mock-run-id")).status
            seen["stored"] = call(front.port, "GET", "/v1/threads/%s/messages" % thread).json()

        response, lines = timed_lines(front.port, "/v1/pipes/run", {"stream": True, "messages": ASK}, during)
        self.assertEqual(response.status, 200)
        texts = [(t, line) for t, line in lines if line.startswith(b"data: {")]
        first = next(t for t, line in texts if b'"content":"H' in line)
        last = texts[-1][0]
        self.assertLess(first, 0.8)  # the upstream's first piece, not its whole reply (about 1.8 s)
        self.assertGreater(last - first, 0.8)
        self.assertEqual(seen["record"], 404)  # published when the reply ends
        self.assertEqual([m["role"] for m in seen["stored"]], ["user"])
        journal = call(front.port, "GET", "/mock/requests").json()["requests"]
        self.assertEqual([(e["path"], e["fixture"]) for e in journal][-1], ("/v1/pipes/run", "upstream"))
        record = call(front.port, "GET", "/mock/runs/" + response.getheader("lb-mock-run-id")).json()
        self.assertEqual(("".join(record["deltas"]), record["finish_reason"], record["fixture"]),
                         (REPLY, "stop", "upstream"))
        thread = response.getheader("lb-thread-id")
        stored = call(front.port, "GET", "/v1/threads/%s/messages" % thread).json()
        self.assertEqual([(m["role"], m["content"]) for m in stored], [("user", ASK[0]["content"]), ("assistant", REPLY)])

    def test_every_streaming_route_serves_the_upstream_live(self):
        up = self.server(replies=(REPLY,), delay=0.03)
        front = self.front(up)
        cases = [
            ("/v1/agent/run", {"model": "openai:gpt-4o-mini", "input": ASK, "stream": True}),
            ("/v1/chat/completions", {"model": "m", "messages": ASK, "stream": True}),
            ("/api/chat", {"model": "m", "messages": ASK}),
            ("/api/stream", {"model": "m", "messages": ASK, "chatId": "chat-live"}),
            ("/api/events?prompt=Tell+me+something", None),
            ("/events?prompt=Tell+me+something", None),
        ]
        for path, body in cases:
            with self.subTest(path=path):
                during = []  # the run's record when its first piece came: none yet, if live
                response, lines = timed_lines(front.port, path, body, lambda response: during.append(call(
                    front.port, "GET", "/mock/runs/" + response.getheader("lb-mock-run-id")).status))
                self.assertEqual((response.status, during), (200, [404]))
                record = call(front.port, "GET", "/mock/runs/" + response.getheader("lb-mock-run-id")).json()
                self.assertEqual(("".join(record["deltas"]), record["fixture"]), (REPLY, "upstream"))
                streamed = b"".join(line for _, line in lines)
                for piece in record["deltas"]:
                    self.assertIn(json.dumps(piece).encode(), streamed)
        stored = call(front.port, "GET", "/v1/threads/chat-live/messages").json()
        self.assertEqual([(m["role"], m["content"]) for m in stored], [("user", ASK[0]["content"]), ("assistant", REPLY)])
        # A browser that resumes needs the whole reply to skip what it has: that one waits for it.
        r = call(front.port, "GET", "/api/events?prompt=Tell+me+something", headers={"Last-Event-ID": "2"})
        self.assertEqual(r.body.split(b"\n", 1)[0], b"id: 3")

    def test_a_client_that_leaves_a_live_stream_cancels_it_and_nothing_of_the_reply_is_stored(self):
        up = self.server(replies=(REPLY,), delay=0.3)
        front = self.front(up)
        with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
            got = start_stream(sock)
        head = dict(line.split(": ", 1) for line in got.split(b"\r\n\r\n")[0].decode().split("\r\n")[1:])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = call(front.port, "GET", "/mock/runs/" + head["lb-mock-run-id"])
            if r.status == 200:
                break
            time.sleep(0.05)
        self.assertEqual(r.json()["error"]["status"], 499)
        self.assertEqual(r.json()["error"]["code"], "CLIENT_CLOSED_REQUEST")
        self.assertIsNone(r.json()["finish_reason"])
        stored = call(front.port, "GET", "/v1/threads/%s/messages" % head["lb-thread-id"]).json()
        self.assertEqual([m["role"] for m in stored], ["user"])

    def test_an_http_error_fault_answers_instead_of_a_live_stream(self):
        up = self.server(replies=(REPLY,), delay=0.05)
        front = self.front(up)
        r = call(front.port, "POST", "/v1/pipes/run", {"stream": True, "messages": ASK,
                                                        "mock": {"fault": "http_error", "fault_status": 503}})
        self.assertEqual((r.status, r.json()["error"]["code"]), (503, "SERVICE_UNAVAILABLE"))
        record = call(front.port, "GET", "/mock/runs/" + r.header("lb-mock-run-id")).json()
        self.assertEqual((record["fault"], record["deltas"], record["finish_reason"]), ("http_error", [], None))

    def test_settings_that_hold_writes_back_take_the_whole_reply_and_the_loop_keeps_serving(self):
        up = self.server(replies=(REPLY,), delay=0.1)  # about 1 s for the whole reply
        front = self.front(up)
        for header, value in (("X-Mock-Body", "buffered"), ("X-Mock-Framing", "coalesce")):
            with self.subTest(header=header):
                done = {}
                worker = threading.Thread(target=lambda: done.update(r=call(
                    front.port, "POST", "/v1/chat/completions", {"model": "m", "stream": True, "messages": ASK},
                    {header: value})))
                worker.start()
                time.sleep(0.15)  # the upstream is streaming now
                start = time.monotonic()
                self.assertEqual(call(front.port, "GET", "/health").status, 200)
                self.assertLess(time.monotonic() - start, 0.3)
                worker.join(10)
                self.assertEqual("".join(c for c in contents(done["r"].body) if c), REPLY)

    def test_keep_alive_comments_go_out_while_a_live_stream_waits(self):
        up = self.server(replies=(REPLY,), delay=0.2)
        front = self.front(up)
        r = call(front.port, "POST", "/v1/pipes/run", {"stream": True, "messages": ASK, "mock": {"keepalive": 0.05}})
        self.assertGreaterEqual(r.body.count(b": ping\n\n"), 10)
        self.assertEqual("".join(c for c in contents(r.body.replace(b": ping\n\n", b"")) if c), REPLY)

    def test_a_fault_that_cuts_a_live_stream_lets_the_upstream_finish_as_a_replay_would(self):
        up = self.server(replies=(REPLY,), delay=0.1)
        front = self.front(up, record=self.folder)
        r = call(front.port, "POST", "/v1/pipes/run", {"stream": True, "messages": ASK,
                                                        "mock": {"fault": "error_frame", "fault_after": 2}})
        self.assertIn("fault=error_frame", json.loads(sse_data(r.body)[-1])["error"]["message"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and call(front.port, "GET", "/mock/runs/" + r.header("lb-mock-run-id")).status != 200:
            time.sleep(0.05)
        record = call(front.port, "GET", "/mock/runs/" + r.header("lb-mock-run-id")).json()
        self.assertEqual(("".join(record["deltas"]), record["finish_reason"], record["fault"]), (REPLY, "stop", "error_frame"))
        self.assertNotIn("error", record)
        self.assertEqual(len(os.listdir(self.folder)), 1)  # recorded, as any finished exchange
        stored = call(front.port, "GET", "/v1/threads/%s/messages" % r.header("lb-thread-id")).json()
        self.assertEqual([m["role"] for m in stored], ["user", "assistant"])

    def test_an_error_answered_instead_of_a_live_stream_cancels_the_upstream(self):
        up = self.server(replies=(REPLY,), delay=0.1)
        front = self.front(up, record=self.folder, strict_threads=True)
        r = call(front.port, "POST", "/v1/pipes/run", {"stream": True, "messages": ASK,
                                                        "threadId": "00000000-0000-4000-8000-000000000009"})
        self.assertEqual(r.status, 404)
        time.sleep(1.5)  # the upstream's whole reply takes about 1 s
        self.assertEqual(os.listdir(self.folder), [])  # cancelled: nothing recorded
        self.assertEqual(call(front.port, "GET", "/mock/runs").json()["runs"], [])

    def test_head_takes_the_whole_reply(self):
        up = self.server(replies=(REPLY,), delay=0.05)
        front = self.front(up)
        with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
            sock.sendall(b"HEAD /api/events?prompt=Tell+me+something HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = ResponseReader(sock).read(head_only=True)
        self.assertEqual(head.status, 200)
        record = call(front.port, "GET", "/mock/runs/" + head.header("lb-mock-run-id")).json()
        self.assertEqual("".join(record["deltas"]), REPLY)

    def test_stopping_ends_a_live_stream_at_once_with_an_in_band_error(self):
        up = self.server(replies=(REPLY,), delay=0.5)
        front = RunningServer(upstream=up.url + "/v1")
        front.__enter__()
        with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
            got = start_stream(sock)
            start = time.monotonic()
            front.__exit__(None, None, None)  # server.stop(drain_seconds=1.0)
            took = time.monotonic() - start
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                got += data
        self.assertLess(took, 0.5)  # not the drain timeout, not the model's remaining 3 s
        self.assertIn(b'"code":"SERVICE_UNAVAILABLE"', got)
        self.assertIn(b"stopping", got)

    def test_a_live_stream_with_a_file_store_stores_its_reply(self):
        up = self.server(replies=(REPLY,), delay=0.05)
        front = self.front(up, db=os.path.join(self.folder, "mock.db"))
        r = call(front.port, "POST", "/v1/pipes/run", {"stream": True, "messages": ASK})
        self.assertEqual(contents(r.body)[1:-1], call(front.port, "GET", "/mock/runs/" + r.header(
            "lb-mock-run-id")).json()["deltas"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stored = call(front.port, "GET", "/v1/threads/%s/messages" % r.header("lb-thread-id")).json()
            if len(stored) == 2:
                break
            time.sleep(0.05)
        self.assertEqual(stored[1]["content"], REPLY)

    def test_tool_calls_from_the_upstream_reach_every_format(self):
        up = self.server()
        front = self.front(up)
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"location": {"type": "string"}}}}}]
        r = call(front.port, "POST", "/v1/chat/completions", {"model": "m", "messages": ASK, "tools": tools})
        message = r.json()["choices"][0]["message"]
        truth = call(up.port, "GET", "/mock/runs/" + call(up.port, "GET", "/mock/runs").json()["runs"][0]).json()
        self.assertEqual(message["tool_calls"], truth["tool_calls"])
        self.assertEqual(r.json()["choices"][0]["finish_reason"], "tool_calls")

    def test_tool_calls_from_the_upstream_on_a_text_only_format_are_a_502(self):
        up = self.server(delay=0.05)  # slow enough that the lifecycle stream goes out live
        call(up.port, "POST", "/mock/fixtures", {"response": {"tool_calls": [{"name": "f", "arguments": {}}]}})
        front = self.front(up)
        logs = io.StringIO()
        handler = logging.StreamHandler(logs)
        logging.getLogger().addHandler(handler)
        try:
            live = call(front.port, "POST", "/api/stream", {"model": "m", "messages": ASK, "chatId": "c1"})
            whole = call(front.port, "GET", "/api/stream/s/m")  # a token stream takes the reply whole
        finally:
            logging.getLogger().removeHandler(handler)
        # The lifecycle stream is live when the calls arrive: the format's in-band error ends it.
        self.assertEqual(live.status, 200)
        self.assertTrue(live.body.endswith(b"\n\n"), live.body)
        error = json.loads(live.body.split(b"event: error\ndata: ", 1)[1])
        self.assertEqual(error["status"], 502)
        self.assertIn("tool calls", error["message"])
        self.assertEqual((whole.status, whole.json()["error"]), (502, upstream.TOOL_CALLS_IN_TEXT))
        self.assertNotIn("Traceback", logs.getvalue())
        self.assertEqual([m["role"] for m in call(front.port, "GET", "/v1/threads/c1/messages").json()], ["user"])

    def test_record_then_replay_gives_identical_bytes(self):
        up = self.server(replies=(REPLY,), delay=0.05)  # slow enough that the streams go out live
        body = {"model": "m", "stream": True, "messages": ASK}
        recorder = self.front(up, fixed=True, record=self.folder)
        first = call(recorder.port, "POST", "/v1/chat/completions", body)
        lb_first = call(recorder.port, "POST", "/v1/pipes/run", dict(body, stream=False))
        lobe_first = call(recorder.port, "POST", "/api/chat", body)
        replayer = self.server(fixed=True, fixtures=self.folder)  # no upstream at all
        again = call(replayer.port, "POST", "/v1/chat/completions", body)
        lb_again = call(replayer.port, "POST", "/v1/pipes/run", dict(body, stream=False))
        lobe_again = call(replayer.port, "POST", "/api/chat", body)
        self.assertEqual(first.status, 200)
        self.assertEqual(again.body, first.body)
        self.assertEqual(lb_again.body, lb_first.body)
        self.assertEqual(lobe_again.body, lobe_first.body)
        self.assertTrue(call(replayer.port, "GET", "/mock/fixtures").json()["fixtures"][0]["name"]
                        .endswith("Tell-me-something"))

    def test_recording_into_the_fixtures_directory_asks_the_upstream_once(self):
        up = self.server(replies=(REPLY,))
        front = self.front(up, record=self.folder, fixtures=self.folder)
        first = call(front.port, "POST", "/v1/pipes/run", {"messages": ASK}).json()["completion"]
        deadline = time.monotonic() + 5
        while not call(front.port, "GET", "/mock/fixtures").json()["fixtures"] and time.monotonic() < deadline:
            time.sleep(0.1)
        again = call(front.port, "POST", "/v1/pipes/run", {"messages": ASK}).json()["completion"]
        self.assertEqual((first, again), (REPLY, REPLY))
        self.assertEqual(len(call(up.port, "GET", "/mock/requests").json()["requests"]), 1)

    def test_fixtures_answer_before_the_upstream(self):
        up = self.server()
        front = self.front(up)
        call(front.port, "POST", "/mock/fixtures", {"response": {"text": "local"}})
        self.assertEqual(call(front.port, "POST", "/v1/pipes/run", {"messages": ASK}).json()["completion"], "local")
        self.assertEqual(call(up.port, "GET", "/mock/requests").json()["requests"], [])

    def test_connection_refused_is_502_in_the_client_format(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        front = self.server(upstream="http://127.0.0.1:%d/v1" % port)
        r = call(front.port, "POST", "/v1/pipes/run", {"messages": ASK})
        self.assertEqual((r.status, r.json()["error"]["code"]), (502, "BAD_GATEWAY"))
        self.assertIn("Cannot reach the upstream http://127.0.0.1:%d" % port, r.json()["error"]["message"])
        o = call(front.port, "POST", "/v1/chat/completions", {"model": "m", "messages": ASK})
        self.assertEqual(o.status, 502)
        self.assertEqual(set(o.json()["error"]), {"message", "type", "param", "code"})
        journal = call(front.port, "GET", "/mock/requests").json()["requests"]
        self.assertEqual([e["status"] for e in journal], [502, 502])

    def test_upstream_http_errors_pass_on_their_status_and_message(self):
        up = self.server(mock=(("fault", "http_error"), ("fault_status", 429)))
        front = self.front(up)
        r = call(front.port, "POST", "/v1/pipes/run", {"messages": ASK})
        self.assertEqual((r.status, r.json()["error"]["code"]), (429, "RATE_LIMITED"))
        self.assertIn("The upstream answered HTTP 429: Mock fault", r.json()["error"]["message"])

    def test_upstream_hang_up_mid_stream_is_502(self):
        up = self.server(replies=(REPLY,), delay=0.05, mock=(("fault", "disconnect"), ("fault_after", 3)))
        front = self.front(up)
        r = call(front.port, "POST", "/v1/chat/completions", {"model": "m", "messages": ASK})
        self.assertEqual(r.status, 502)
        self.assertIn("closed the stream after 3 chunks, before data: [DONE]", r.json()["error"]["message"])
        # A stream is already live when the upstream hangs up: the pieces that came, then
        # the format's in-band error, no [DONE]; the record keeps what arrived, and why it ended.
        r = call(front.port, "POST", "/v1/chat/completions", {"model": "m", "stream": True, "messages": ASK})
        self.assertEqual(r.status, 200)
        data = sse_data(r.body)
        error = json.loads(data[-1])["error"]
        self.assertEqual((error["code"], error["type"]), (None, "server_error"))  # as its HTTP 502 body
        self.assertIn("closed the stream after 3 chunks", error["message"])
        received = [json.loads(d)["choices"][0]["delta"].get("content") for d in data[:-1]]
        record = call(front.port, "GET", "/mock/runs/" + r.header("lb-mock-run-id")).json()
        self.assertEqual(received, [""] + record["deltas"])
        self.assertEqual(len(record["deltas"]), 2)  # the upstream's role chunk, then 2 pieces
        self.assertEqual((record["finish_reason"], record["error"]["status"], record["tool_calls"]), (None, 502, []))

    def test_an_upstream_speaking_nonsense_is_a_502_saying_what_without_a_traceback(self):
        # One canned answer per connection from a fake upstream; each was a 502 "The upstream
        # exchange failed: AttributeError." (or ValueError, TypeError, BadStatusLine) with a
        # traceback in the log per request.
        ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        end = b"data: [DONE]\n\n"
        cases = [
            (b"NOT HTTP\r\n\r\n", "did not answer in HTTP/1.x (BadStatusLine)"),
            (ok + b'data: {"choices":[{"delta":{"tool_calls":[1]}}]}\n\n' + end, "not OpenAI tool call pieces"),
            (ok + b'data: {"choices":[{"delta":{"tool_calls":[{"index":"x"}]}}]}\n\n' + end, "not OpenAI tool call"),
            (ok + b'data: {"choices":[{"delta":{"tool_calls":5}}]}\n\n' + end, "not OpenAI tool call pieces"),
            (ok + b'data: {"choices":[{"delta":{"tool_calls":[{"function":"f"}]}}]}\n\n' + end, "not OpenAI tool"),
            (ok + b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":7}}]}}]}\n\n' + end,
             "not OpenAI tool call pieces"),
        ]
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        listener.settimeout(10)

        def serve():
            for answer, _ in cases:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(10)
                    got = b""
                    while b"\r\n\r\n" not in got:
                        got += conn.recv(65536)
                    conn.sendall(answer)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        front = self.server(upstream="http://127.0.0.1:%d/v1" % listener.getsockname()[1])
        logs = io.StringIO()
        handler = logging.StreamHandler(logs)
        logging.getLogger().addHandler(handler)
        try:
            for _, words in cases:
                r = call(front.port, "POST", "/v1/chat/completions", {"model": "m", "messages": ASK})
                self.assertEqual(r.status, 502, r.body)
                self.assertIn(words, r.json()["error"]["message"])
        finally:
            logging.getLogger().removeHandler(handler)
        thread.join(10)
        self.assertNotIn("Traceback", logs.getvalue())

    def test_too_slow_upstream_is_504(self):
        up = self.server(mock=(("ttft", 3.0),))
        front = self.front(up, upstream_timeout=0.5)
        r = call(front.port, "POST", "/v1/pipes/run", {"messages": ASK})
        self.assertEqual((r.status, r.json()["error"]["code"]), (504, "GATEWAY_TIMEOUT"))
        self.assertIn("within 0.5 s (--upstream-timeout)", r.json()["error"]["message"])
        # The upstream answered 200 at once, so the stream is live: the error comes in-band.
        r = call(front.port, "POST", "/v1/pipes/run", {"stream": True, "messages": ASK})
        self.assertEqual(r.status, 200)
        error = json.loads(sse_data(r.body)[-1])["error"]
        self.assertEqual((error["status"], error["code"]), (504, "GATEWAY_TIMEOUT"))
        self.assertIn("within 0.5 s (--upstream-timeout)", error["message"])

    def test_flags(self):
        for argv, words in ((["--record", self.folder], "--record needs --upstream"),
                            (["--upstream", "ftp://x/v1"], "http:// or https://")):
            with self.subTest(argv=argv):
                with contextlib.redirect_stderr(io.StringIO()) as err, self.assertRaises(SystemExit):
                    main.parse_args(argv, env={})
                self.assertIn(words, err.getvalue())
        settings = main.parse_args(["--upstream", "http://127.0.0.1:9/v1"], env={"LB_MOCK_UPSTREAM_KEY": KEY})
        self.assertEqual(settings.upstream_key, KEY)
        self.assertNotIn(KEY, repr(settings))


class LiveReplyTest(unittest.TestCase):
    """What ends a live reply that never streamed: its response dropped unsent."""

    def setUp(self):
        with socket.socket() as s:  # a port nobody listens on: the job fails at once if run
            s.bind(("127.0.0.1", 0))
            self.url = "http://127.0.0.1:%d/v1" % s.getsockname()[1]
        self.request = pipes.parse_run_request({"messages": ASK})

    def live(self, finish_on_close):
        job = upstream.Upstream(self.url, timeout=2).start(self.request, "m") if finish_on_close else \
            upstream.Job(upstream.Upstream(self.url), {}, "Tell me something", False)
        ended = []
        live = upstream.LiveReply(job, self.request, 0, "digest", pipes.tokenize, 1000, finish_on_close)
        live.on_end(lambda reply: ended.append((reply.reply, reply.error)))
        return job, live, ended

    def test_a_reply_dropped_before_it_streamed_cancels_its_job_and_ends(self):
        job, live, ended = self.live(False)
        del live  # no cycle holds it: freed, so ended, at once
        self.assertTrue(job.cancelled)
        self.assertEqual(ended, [(None, upstream.CLOSED_EARLY)])

    def test_a_reply_a_fault_cuts_ends_when_its_job_does(self):
        job, live, ended = self.live(True)
        del live
        self.assertFalse(job.cancelled)
        deadline = time.monotonic() + 5
        while not ended and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(len(ended), 1)
        self.assertEqual(ended[0][1][:2], (502, "BAD_GATEWAY"))  # nobody listens: the job's own error


if __name__ == "__main__":
    unittest.main()
