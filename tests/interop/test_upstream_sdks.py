"""Interop: ``--upstream`` streams as the official SDKs see them. A second mock, pacing its reply
(0.25 s a piece), stands in for the real model; the server under test forwards to it. The
``openai`` SDK's ``chat.completions.create(stream=True)`` gets the first piece while the
upstream is still producing the reply (the run's record, published when the reply ends, is
not there yet), and an upstream that hangs up mid-stream surfaces as the SDK's own
``openai.APIError`` after the pieces that came. The ``langbase`` SDK's ``pipes.run(stream=True)``
and ``get_runner(...).collect_text()`` read a live stream to the upstream's exact text.
Skipped with an install hint without the SDKs (``pip install -r tests/interop/requirements.txt``).
"""

from __future__ import annotations

import unittest

from tests.support import RunningServer, call

try:  # both come from tests/interop/requirements.txt; without them the suites skip
    import openai
    from langbase import Langbase, get_runner
except ImportError:
    openai = Langbase = None

TIMEOUT = 10.0
ASK = [{"role": "user", "content": "Tell me something"}]
REPLY = "Hello from the upstream, in pieces."


def servers(test: unittest.TestCase, **upstream_settings) -> RunningServer:
    """A paced upstream mock and, in front of it, the server under test (returned)."""
    up = RunningServer(replies=(REPLY,), delay=0.25, **upstream_settings)
    up.__enter__()
    test.addCleanup(up.__exit__, None, None, None)
    front = RunningServer(upstream=up.url + "/v1", head_timeout=2.0, keep_alive_timeout=2.0)
    front.__enter__()
    test.addCleanup(front.__exit__, None, None, None)
    return front


@unittest.skipIf(openai is None, "openai SDK not installed: pip install -r tests/interop/requirements.txt")
class OpenAILiveUpstreamTest(unittest.TestCase):
    def client(self, front: RunningServer) -> "openai.OpenAI":
        client = openai.OpenAI(api_key="k", base_url=front.url + "/v1", timeout=TIMEOUT, max_retries=0)
        self.addCleanup(client.close)
        return client

    def test_the_first_piece_arrives_while_the_upstream_is_still_answering(self):
        front = servers(self)
        response = self.client(front).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=ASK, stream=True)
        run_id = response.headers["lb-mock-run-id"]
        stream = response.parse()
        self.addCleanup(stream.close)
        texts, record_during = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if not texts:
                    record_during = call(front.port, "GET", "/mock/runs/" + run_id).status
                texts.append(chunk.choices[0].delta.content)
        self.assertEqual(record_during, 404)  # the reply had not ended when its first piece came
        self.assertEqual("".join(texts), REPLY)
        record = call(front.port, "GET", "/mock/runs/" + run_id).json()
        self.assertEqual((record["deltas"], record["fixture"]), (texts, "upstream"))

    def test_an_upstream_that_hangs_up_mid_stream_raises_the_sdks_api_error(self):
        front = servers(self, mock=(("fault", "disconnect"), ("fault_after", 3)))
        stream = self.client(front).chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True)
        self.addCleanup(stream.close)
        texts = []
        with self.assertRaises(openai.APIError) as caught:
            for chunk in stream:
                texts.append(chunk.choices[0].delta.content)
        self.assertIn("closed the stream after 3 chunks", str(caught.exception))
        self.assertEqual(len(texts), 3)  # the role chunk and the two pieces that came first
        self.assertTrue(REPLY.startswith("".join(texts[1:])))


@unittest.skipIf(Langbase is None, "langbase SDK not installed: pip install -r tests/interop/requirements.txt")
class LangbaseLiveUpstreamTest(unittest.TestCase):
    def test_pipes_run_stream_collects_the_upstreams_text_and_stores_it_in_the_thread(self):
        front = servers(self)
        lb = Langbase(api_key="k", base_url=front.url)
        response = lb.pipes.run(name="any", messages=ASK, stream=True)
        text = get_runner(response).collect_text()
        self.assertEqual(text, REPLY)
        stored = call(front.port, "GET", "/v1/threads/%s/messages" % response["thread_id"]).json()
        self.assertEqual([(m["role"], m["content"]) for m in stored], [("user", ASK[0]["content"]), ("assistant", REPLY)])


if __name__ == "__main__":
    unittest.main()
