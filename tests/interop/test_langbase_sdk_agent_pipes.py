"""Interop tests: the official ``langbase`` Python SDK (PyPI ``langbase==0.0.5``) against the
mock's ``agent.run`` and Pipes API.

Each test starts a real server on 127.0.0.1:0 and talks to it only through the SDK:
``agent.run`` (JSON and streamed, read with ``get_runner``; tool calls read with
``get_tools_from_run`` / ``get_tools_from_stream``) and ``pipes.create`` / ``list`` /
``update`` / ``run``. Requests are bounded by ``SdkTestCase`` (a timeout on every SDK request);
without the SDK every test is skipped with an install hint.
"""

from __future__ import annotations

import json
import unittest
from typing import Any, Dict

from tests.interop.test_langbase_sdk import HAVE_SDK, SKIP_REASON, WEATHER_TOOL, SdkTestCase, _drain

if HAVE_SDK:
    from langbase import ConflictError, NotFoundError, get_runner, get_tools_from_run, get_tools_from_stream

MODEL = "openai:gpt-4o-mini"
LLM_KEY = "sk-interop-llm-key"


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class AgentRunSdkTest(SdkTestCase):
    def agent_stream(self, lb: Any, **options: Any) -> Dict[str, Any]:
        result = lb.agent.run(model=MODEL, api_key=LLM_KEY, stream=True, **options)
        self.addCleanup(_drain, result["stream"])
        return result

    def test_agent_run_json_returns_output_and_the_flattened_completion(self):
        server = self.start_server()
        result = self.client(server).agent.run(input="Hello!", model=MODEL, api_key=LLM_KEY)
        self.assertIsInstance(result["output"], str)
        self.assertTrue(result["output"])
        self.assertEqual(result["object"], "chat.completion")
        self.assertEqual(result["model"], MODEL)
        self.assertEqual(result["choices"][0]["message"]["content"], result["output"])
        self.assertNotIn("threadId", result)  # agent runs keep no thread
        self.assertNotIn(LLM_KEY, json.dumps(result))

    def test_agent_run_stream_get_runner_collects_the_json_output(self):
        server = self.start_server()
        lb = self.client(server)
        messages = [{"role": "user", "content": "How do streams work?"}]
        expected = lb.agent.run(input=messages, model=MODEL, api_key=LLM_KEY, instructions="Be brief.")["output"]
        result = self.agent_stream(lb, input=messages, instructions="Be brief.")
        self.assertIsNone(result["thread_id"])
        self.assertEqual(get_runner(result).collect_text(), expected)

    def test_agent_run_tool_calls_json_and_stream(self):
        lb = self.client(self.start_server())
        answer = lb.agent.run(input="Weather in Paris?", model=MODEL, api_key=LLM_KEY, tools=[WEATHER_TOOL])
        (call,) = get_tools_from_run(answer)
        self.assertEqual(answer["output"], "")
        self.assertEqual(call["function"]["name"], "get_weather")
        self.assertEqual(json.loads(call["function"]["arguments"]), {"location": "example"})
        streamed = self.agent_stream(lb, input="Weather in Paris?", tools=[WEATHER_TOOL])
        (streamed_call,) = get_tools_from_stream(streamed["stream"])
        self.assertEqual(streamed_call["id"], call["id"])
        self.assertEqual(streamed_call["function"], call["function"])


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class PipesSdkTest(SdkTestCase):
    def test_create_upsert_list_update_and_run_by_name(self):
        server = self.start_server(replies=("Hi {{who}}!",))
        lb = self.client(server)
        created = lb.pipes.create(name="sdk-pipe", description="first", model="openai:gpt-4o",
                                  stream=False, variables=[{"name": "who", "value": "Ada"}],
                                  messages=[{"role": "system", "content": "Be kind."}])
        self.assertEqual(set(created), {"name", "description", "status", "owner_login", "url", "type", "api_key"})
        self.assertEqual((created["name"], created["description"]), ("sdk-pipe", "first"))
        self.assertTrue(created["api_key"].startswith("pipe_"))

        with self.assertRaises(ConflictError) as caught:
            lb.pipes.create(name="sdk-pipe")
        self.assertEqual(caught.exception.status_code, 409)
        upserted = lb.pipes.create(name="sdk-pipe", description="second", upsert=True)
        self.assertEqual(upserted["api_key"], created["api_key"])

        updated = lb.pipes.update(name="sdk-pipe", temperature=0.2, model="anthropic:claude-3-5-sonnet")
        self.assertEqual(updated["description"], "second")
        (listed,) = lb.pipes.list()
        self.assertEqual((listed["model"], listed["temperature"], listed["stream"]),
                         ("anthropic:claude-3-5-sonnet", 0.2, False))
        self.assertEqual(listed["messages"], [{"role": "system", "content": "Be kind."}])

        ran = lb.pipes.run(name="sdk-pipe", messages=[{"role": "user", "content": "Hello"}])
        self.assertEqual(ran["completion"], "Hi Ada!")
        self.assertEqual(ran["model"], "anthropic:claude-3-5-sonnet")
        streamed = lb.pipes.run(name="sdk-pipe", messages=[{"role": "user", "content": "Hello"}],
                                variables=[{"name": "who", "value": "Grace"}], stream=True)
        self.addCleanup(_drain, streamed["stream"])
        self.assertEqual(get_runner(streamed).collect_text(), "Hi Grace!")

        with self.assertRaises(NotFoundError):
            lb.pipes.update(name="never-made", description="x")

    def test_run_with_the_pipe_key_uses_that_pipe(self):
        server = self.start_server()
        lb = self.client(server)
        key = lb.pipes.create(name="keyed", model="openai:o1", stream=False)["api_key"]
        ran = lb.pipes.run(api_key=key, messages=[{"role": "user", "content": "Hello"}])
        self.assertEqual(ran["model"], "openai:o1")


if __name__ == "__main__":
    unittest.main()
