"""Interop: a tool loop scripted by two pushed fixtures, driven through the official Python SDKs'
own tool-call helpers: the ``openai`` SDK's streaming accumulation
(``chat.completions.stream(...).get_final_completion()``) and the ``langbase`` SDK's
``get_tools_from_stream``, ``get_typed_runner(...).collect_tool_calls()`` and
``get_runner(...).collect_text()``. Skipped with an install hint without the SDKs
(``pip install -r tests/interop/requirements.txt``)."""

from __future__ import annotations

import json
import unittest
from typing import Any
from unittest import mock

from tests.support import RunningServer, call

try:
    import openai
except ImportError:
    openai = None
try:
    import requests
    from langbase import Langbase, get_runner, get_tools_from_stream, get_typed_runner
except ImportError:
    Langbase = None

TIMEOUT = 10.0
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]
QUESTION = "What is the weather in Paris?"
FIXTURES = [
    {"name": "call", "match": {"user": QUESTION, "tool_result": False},
     "response": {"tool_calls": [{"id": "call_paris", "name": "get_weather", "arguments": {"location": "Paris"}},
                                 {"name": "get_weather", "arguments": {"location": "Paris, TX"}}]}},
    {"name": "answer", "match": {"user": QUESTION, "tool_result": True},
     "response": {"text": "Sunny in both Parises."}},
]


def start(test: unittest.TestCase) -> RunningServer:
    server = RunningServer(head_timeout=2.0, keep_alive_timeout=2.0)
    server.__enter__()
    test.addCleanup(server.__exit__, None, None, None)
    assert call(server.port, "POST", "/mock/fixtures", FIXTURES).status == 201
    return server


def follow_up(calls: Any) -> list:
    """The conversation after the client ran each tool: question, the assistant's calls, results."""
    return [{"role": "user", "content": QUESTION},
            {"role": "assistant", "content": None, "tool_calls": calls}] + [
        {"role": "tool", "tool_call_id": c["id"], "content": json.dumps({"temp_c": 18})} for c in calls]


@unittest.skipIf(openai is None, "openai SDK not installed: pip install -r tests/interop/requirements.txt")
class OpenAIToolLoopTest(unittest.TestCase):
    def test_stream_helper_accumulates_both_tool_calls_then_the_answer_comes(self):
        server = start(self)
        client = openai.OpenAI(api_key="k", base_url=server.url + "/v1", timeout=TIMEOUT, max_retries=0)
        self.addCleanup(client.close)
        messages = [{"role": "user", "content": QUESTION}]
        with client.chat.completions.stream(model="gpt-4o-mini", messages=messages, tools=TOOLS) as stream:
            final = stream.get_final_completion()
        choice = final.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        calls = choice.message.tool_calls
        self.assertEqual([(c.id[:5], c.function.name, json.loads(c.function.arguments)) for c in calls],
                         [("call_", "get_weather", {"location": "Paris"}),
                          ("call_", "get_weather", {"location": "Paris, TX"})])
        self.assertEqual(calls[0].id, "call_paris")
        answer = client.chat.completions.create(
            model="gpt-4o-mini", tools=TOOLS, messages=follow_up([c.model_dump(exclude_none=True) for c in calls]))
        self.assertEqual(answer.choices[0].message.content, "Sunny in both Parises.")


@unittest.skipIf(Langbase is None, "langbase SDK not installed: pip install -r tests/interop/requirements.txt")
class LangbaseToolLoopTest(unittest.TestCase):
    def setUp(self) -> None:
        real = requests.request

        def bounded(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", TIMEOUT)
            return real(*args, **kwargs)

        patcher = mock.patch.object(requests, "request", bounded)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_tool_helpers_read_the_scripted_calls_and_runner_collects_the_answer(self):
        server = start(self)
        lb = Langbase(api_key="k", base_url=server.url)
        messages = [{"role": "user", "content": QUESTION}]
        calls = get_tools_from_stream(lb.pipes.run(name="p", messages=messages, tools=TOOLS, stream=True)["stream"])
        self.assertEqual([(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls],
                         [("get_weather", {"location": "Paris"}), ("get_weather", {"location": "Paris, TX"})])
        typed = get_typed_runner(lb.pipes.run(name="p", messages=messages, tools=TOOLS, stream=True))
        self.assertEqual(typed.collect_tool_calls(), calls)
        result = lb.pipes.run(name="p", messages=follow_up(calls), tools=TOOLS, stream=True)
        self.assertEqual(get_runner(result).collect_text(), "Sunny in both Parises.")


if __name__ == "__main__":
    unittest.main()
