"""``--upstream`` and ``--record`` against a second mock as the upstream (no network): replies
served in the client's format with the upstream's chunk boundaries, one fixture file per
exchange (no secrets), a record-then-replay that gives identical bytes, and each upstream
failure as a proper error in the client's format."""

import contextlib
import io
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import unittest

import main
from tests.support import RunningServer, call, sse_data

KEY = "sk-upstream-secret-key-123"
ASK = [{"role": "user", "content": "Tell me something"}]
REPLY = "Hello from the upstream, in pieces."


def contents(body):
    return [json.loads(d)["choices"][0]["delta"].get("content") for d in sse_data(body)[:-1]]


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

    def test_record_then_replay_gives_identical_bytes(self):
        up = self.server(replies=(REPLY,), delay=0.01)
        body = {"model": "m", "stream": True, "messages": ASK}
        recorder = self.front(up, fixed=True, record=self.folder)
        first = call(recorder.port, "POST", "/v1/chat/completions", body)
        lb_first = call(recorder.port, "POST", "/v1/pipes/run", dict(body, stream=False))
        replayer = self.server(fixed=True, fixtures=self.folder)  # no upstream at all
        again = call(replayer.port, "POST", "/v1/chat/completions", body)
        lb_again = call(replayer.port, "POST", "/v1/pipes/run", dict(body, stream=False))
        self.assertEqual(first.status, 200)
        self.assertEqual(again.body, first.body)
        self.assertEqual(lb_again.body, lb_first.body)
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
        up = self.server(mock=(("fault", "disconnect"), ("fault_after", 3)))
        front = self.front(up)
        r = call(front.port, "POST", "/v1/chat/completions", {"model": "m", "stream": True, "messages": ASK})
        self.assertEqual(r.status, 502)
        self.assertIn("closed the stream after 3 chunks, before data: [DONE]", r.json()["error"]["message"])

    def test_too_slow_upstream_is_504(self):
        up = self.server(mock=(("ttft", 3.0),))
        front = self.front(up, upstream_timeout=0.5)
        r = call(front.port, "POST", "/v1/pipes/run", {"stream": True, "messages": ASK})
        self.assertEqual((r.status, r.json()["error"]["code"]), (504, "GATEWAY_TIMEOUT"))
        self.assertIn("within 0.5 s (--upstream-timeout)", r.json()["error"]["message"])

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


if __name__ == "__main__":
    unittest.main()
