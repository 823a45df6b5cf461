"""Interop tests: the official ``openai`` Python SDK (PyPI ``openai==3.54.0``) against the mock's
OpenAI-compatible routes, ``POST /v1/chat/completions`` and ``GET /v1/models``.

Each test starts a real server on 127.0.0.1:0 (``tests.support.RunningServer``) and talks to it
through ``OpenAI(api_key=..., base_url=server.url + "/v1")``: ``chat.completions.create`` (plain,
``stream=True``, ``stream_options``, ``tools``, ``with_raw_response``), the
``chat.completions.stream`` helper, ``models.list`` and the SDK's error classes. Scenario
settings reach the server through ``extra_body={"mock": {...}}`` (the SDK merges it into the
JSON body) or ``extra_headers`` (``X-Mock-*``). Expected text, deltas, tool calls and usage come
from the run's ground truth: the ``lb-mock-run-id`` response header names the run and
``GET /mock/runs/{id}`` returns what it encoded; nothing is compared with a reply written into a
test.

Run with the SDK installed (``pip install openai==3.54.0``)::

    python3 -X dev -W error -m unittest tests.interop.test_openai_sdk -v

Without the SDK every test is skipped with an install hint.

Bounds: every client has ``timeout=10`` (connect and each read) and ``max_retries=0``, except the
retry tests, which allow 2 retries to show that none happens. Servers use short
head and keep-alive deadlines. Every client and every stream is closed on cleanup, so a failing test never
leaves a connection open.
"""

from __future__ import annotations

import json
import unittest
from typing import Any, Dict, List, Tuple

from tests.support import RunningServer, call

SDK_VERSION = "3.54.0"
SKIP_REASON = "openai SDK not installed: pip install openai==%s" % SDK_VERSION

try:
    import openai
    from openai import OpenAI
except ImportError:
    HAVE_SDK = False
else:
    HAVE_SDK = True

CLIENT_TIMEOUT = 10.0
"""Seconds: the SDK's connect and per-read timeout for every request."""

API_KEY = "test"
MODEL = "gpt-interop-test"
PROMPT = [{"role": "user", "content": "Shape this stream, please."}]
WEATHER_PROMPT = [{"role": "user", "content": "What's the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather at a place.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
SEEDS = (0, 7)


class OpenAISdkTestCase(unittest.TestCase):
    """Base: servers stopped, clients and streams closed on cleanup; ground-truth helpers."""

    def start_server(self, **settings: Any) -> RunningServer:
        """A running server (stopped on cleanup); ``settings`` override ``main.Settings``."""
        settings.setdefault("head_timeout", 2.0)
        settings.setdefault("keep_alive_timeout", 2.0)
        server = RunningServer(**settings)
        server.__enter__()
        self.addCleanup(server.__exit__, None, None, None)
        return server

    def client(self, server: RunningServer, api_key: str = API_KEY,
               max_retries: int = 0) -> "OpenAI":
        client = OpenAI(api_key=api_key, base_url=server.url + "/v1", timeout=CLIENT_TIMEOUT,
                        max_retries=max_retries)
        self.addCleanup(client.close)
        return client

    def truth(self, server: RunningServer, run_id: str) -> Dict[str, Any]:
        """``GET /mock/runs/{run_id}``: the run's ground truth."""
        response = call(server.port, "GET", "/mock/runs/" + run_id)
        self.assertEqual(response.status, 200, response.body)
        return response.json()

    def run_ids(self, server: RunningServer) -> List[str]:
        """``GET /mock/runs``: every recorded run id, newest first."""
        return call(server.port, "GET", "/mock/runs").json()["runs"]

    def create(self, client: "OpenAI", server: RunningServer,
               **params: Any) -> Tuple[Any, Any, Dict[str, Any]]:
        """``chat.completions.with_raw_response.create``: ``(raw, parsed, truth)``. A stream is
        read to its end here (a failing read leaves it closed by its own ``finally``); the parsed
        value of a stream is then the list of its chunks."""
        params.setdefault("model", MODEL)
        params.setdefault("messages", PROMPT)
        raw = client.chat.completions.with_raw_response.create(**params)
        truth = self.truth(server, raw.headers["lb-mock-run-id"])
        parsed = raw.parse()
        if params.get("stream"):
            self.addCleanup(parsed.close)
            parsed = list(parsed)
        return raw, parsed, truth

    def assertTextChunks(self, chunks: List[Any], truth: Dict[str, Any],
                         finish_reason: str = "stop") -> None:
        """The chunks of a text reply: one id, role first, the ground-truth deltas in order, the
        finish reason last, and nothing after it."""
        self.assertGreaterEqual(len(chunks), 3)
        self.assertEqual({chunk.id for chunk in chunks}, {truth["id"]})
        for chunk in chunks:
            self.assertEqual(chunk.object, "chat.completion.chunk")
            self.assertEqual(len(chunk.choices), 1)
            self.assertEqual(chunk.choices[0].index, 0)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        contents = [chunk.choices[0].delta.content for chunk in chunks]
        self.assertEqual("".join(c or "" for c in contents), truth["text"])
        self.assertEqual([c for c in contents if c], [d for d in truth["deltas"] if d])
        finishes = [chunk.choices[0].finish_reason for chunk in chunks]
        self.assertEqual(finishes, [None] * (len(chunks) - 1) + [finish_reason])

    def assertUsage(self, usage: Any, truth: Dict[str, Any]) -> None:
        self.assertIsNotNone(usage)
        self.assertEqual(
            {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
             "total_tokens": usage.total_tokens},
            truth["usage"],
        )
        self.assertGreater(usage.prompt_tokens, 0)
        self.assertGreater(usage.completion_tokens, 0)
        self.assertEqual(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)


def _accumulate_tool_calls(chunks: List[Any]) -> List[Dict[str, Any]]:
    """Tool calls rebuilt from stream deltas the way OpenAI documents it: by ``index``, the first
    piece carries ``id``, ``type`` and ``function.name``, later pieces append ``arguments``."""
    calls: Dict[int, Dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or []:
                call_ = calls.setdefault(piece.index, {
                    "id": None, "type": None, "function": {"name": "", "arguments": ""}})
                if piece.id:
                    call_["id"] = piece.id
                if piece.type:
                    call_["type"] = piece.type
                if piece.function is not None:
                    call_["function"]["name"] += piece.function.name or ""
                    call_["function"]["arguments"] += piece.function.arguments or ""
    return [calls[index] for index in sorted(calls)]


def _tool_call_dict(tool_call: Any) -> Dict[str, Any]:
    return {"id": tool_call.id, "type": tool_call.type,
            "function": {"name": tool_call.function.name,
                         "arguments": tool_call.function.arguments}}


# --- chat.completions.create, JSON ----------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ChatCompletionsCreateTest(OpenAISdkTestCase):
    def test_chat_completions_create_non_stream_returns_completion_with_ground_truth_text(self):
        server = self.start_server()
        raw, completion, truth = self.create(self.client(server), server)

        self.assertIsInstance(completion, openai.types.chat.ChatCompletion)
        self.assertEqual(raw.status_code, 200)
        self.assertEqual(completion.id, truth["id"])
        self.assertTrue(completion.id.startswith("chatcmpl-"), completion.id)
        self.assertEqual(completion.object, "chat.completion")
        self.assertEqual(completion.model, MODEL)
        self.assertIsInstance(completion.created, int)
        self.assertEqual(len(completion.choices), 1)
        choice = completion.choices[0]
        self.assertEqual(choice.index, 0)
        self.assertEqual(choice.message.role, "assistant")
        self.assertEqual(choice.message.content, truth["text"])
        self.assertTrue(choice.message.content)
        self.assertIsNone(choice.message.tool_calls)
        self.assertEqual(choice.finish_reason, "stop")
        self.assertUsage(completion.usage, truth)

    def test_chat_completions_create_same_seed_twice_returns_same_text_and_id(self):
        client = self.client(self.start_server(seed=42))
        first = client.chat.completions.create(model=MODEL, messages=PROMPT)
        second = client.chat.completions.create(model=MODEL, messages=PROMPT)
        self.assertEqual(first.choices[0].message.content, second.choices[0].message.content)
        self.assertEqual(first.id, second.id)

    def test_chat_completions_create_stream_options_without_stream_raises_bad_request_error(self):
        client = self.client(self.start_server())
        with self.assertRaises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=MODEL, messages=PROMPT,
                                           stream_options={"include_usage": True})
        self.assertEqual(caught.exception.status_code, 400)
        self.assertEqual(caught.exception.param, "stream_options")


# --- chat.completions.create, stream --------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ChatCompletionsStreamTest(OpenAISdkTestCase):
    def test_chat_completions_create_stream_joined_deltas_equal_ground_truth_text(self):
        server = self.start_server()
        client = self.client(server)
        raw, chunks, truth = self.create(client, server, stream=True)

        self.assertIsInstance(raw.parse(), openai.Stream)
        self.assertTrue(raw.headers["content-type"].startswith("text/event-stream"))
        self.assertTextChunks(chunks, truth)
        for chunk in chunks:
            self.assertEqual(chunk.model, MODEL)
            self.assertIsNone(chunk.usage)
            # Not asked for: no "usage" key at all, as OpenAI sends it.
            self.assertNotIn("usage", chunk.model_fields_set)
        # The same request without stream gives the same reply.
        completion = client.chat.completions.create(model=MODEL, messages=PROMPT)
        self.assertEqual(completion.choices[0].message.content, truth["text"])
        self.assertEqual(completion.id, chunks[0].id)

    def test_chat_completions_create_stream_include_usage_last_chunk_has_no_choices_and_usage(self):
        server = self.start_server()
        _, chunks, truth = self.create(self.client(server), server, stream=True,
                                       stream_options={"include_usage": True})

        last = chunks[-1]
        self.assertEqual(last.choices, [])
        self.assertEqual(last.id, truth["id"])
        self.assertUsage(last.usage, truth)
        self.assertTextChunks(chunks[:-1], truth)
        for chunk in chunks[:-1]:
            self.assertIn("usage", chunk.model_fields_set)  # "usage": null, as OpenAI sends it
            self.assertIsNone(chunk.usage)

    def test_chat_completions_stream_helper_get_final_completion_returns_exact_text(self):
        server = self.start_server()
        client = self.client(server)
        helper = getattr(client.chat.completions, "stream", None)
        if helper is None:
            self.skipTest("this openai version has no chat.completions.stream helper")
        with helper(model=MODEL, messages=PROMPT, stream_options={"include_usage": True}) as stream:
            events = list(stream)
            final = stream.get_final_completion()
        truth = self.truth(server, self.run_ids(server)[0])

        deltas = [event.delta for event in events if event.type == "content.delta"]
        self.assertEqual("".join(deltas), truth["text"])
        done = [event.content for event in events if event.type == "content.done"]
        self.assertEqual(done, [truth["text"]])
        self.assertEqual(final.id, truth["id"])
        self.assertEqual(final.model, MODEL)
        self.assertEqual(final.choices[0].message.role, "assistant")
        self.assertEqual(final.choices[0].message.content, truth["text"])
        self.assertEqual(final.choices[0].finish_reason, "stop")
        self.assertUsage(final.usage, truth)

    def test_chat_completions_create_stream_with_delay_yields_exact_text(self):
        server = self.start_server(delay=0.005)
        _, chunks, truth = self.create(self.client(server), server, stream=True)
        self.assertTextChunks(chunks, truth)


# --- tool calls -----------------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ToolCallsTest(OpenAISdkTestCase):
    def non_stream_call(self, client: "OpenAI", server: RunningServer) -> Dict[str, Any]:
        _, completion, truth = self.create(client, server, messages=WEATHER_PROMPT,
                                           tools=[WEATHER_TOOL])
        choice = completion.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertEqual(choice.message.role, "assistant")
        self.assertIsNone(choice.message.content)
        self.assertEqual(len(choice.message.tool_calls), 1)
        call_ = _tool_call_dict(choice.message.tool_calls[0])
        self.assertEqual([call_], truth["tool_calls"])
        self.assertUsage(completion.usage, truth)
        return call_

    def test_chat_completions_create_with_tools_non_stream_returns_get_weather_call(self):
        server = self.start_server()
        call_ = self.non_stream_call(self.client(server), server)
        self.assertTrue(call_["id"].startswith("call_"), call_["id"])
        self.assertEqual(call_["type"], "function")
        self.assertEqual(call_["function"]["name"], "get_weather")
        arguments = json.loads(call_["function"]["arguments"])
        self.assertIsInstance(arguments, dict)
        self.assertIsInstance(arguments["location"], str)

    def test_chat_completions_create_with_tools_stream_deltas_accumulate_to_non_stream_call(self):
        server = self.start_server()
        client = self.client(server)
        expected = self.non_stream_call(client, server)
        _, chunks, truth = self.create(client, server, messages=WEATHER_PROMPT,
                                       tools=[WEATHER_TOOL], stream=True,
                                       stream_options={"include_usage": True})

        self.assertEqual(_accumulate_tool_calls(chunks), [expected])
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        body = [chunk for chunk in chunks if chunk.choices]
        self.assertEqual({chunk.id for chunk in chunks}, {truth["id"]})
        self.assertEqual([c.choices[0].finish_reason for c in body],
                         [None] * (len(body) - 1) + ["tool_calls"])
        for chunk in body:
            self.assertIsNone(chunk.choices[0].delta.content)
        self.assertEqual(chunks[-1].choices, [])
        self.assertUsage(chunks[-1].usage, truth)

    def test_chat_completions_stream_helper_with_tools_final_tool_call_equals_non_stream_call(self):
        server = self.start_server()
        client = self.client(server)
        if getattr(client.chat.completions, "stream", None) is None:
            self.skipTest("this openai version has no chat.completions.stream helper")
        expected = self.non_stream_call(client, server)
        with client.chat.completions.stream(model=MODEL, messages=WEATHER_PROMPT,
                                            tools=[WEATHER_TOOL]) as stream:
            events = list(stream)
            final = stream.get_final_completion()

        choice = final.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertEqual([_tool_call_dict(tc) for tc in choice.message.tool_calls], [expected])
        done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
        self.assertEqual([(e.name, e.arguments) for e in done],
                         [(expected["function"]["name"], expected["function"]["arguments"])])


# --- models ---------------------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ModelsTest(OpenAISdkTestCase):
    def test_models_list_returns_mock_model_id(self):
        server = self.start_server(model="mock-model-1")
        page = self.client(server).models.list()
        models = list(page)
        self.assertEqual([model.id for model in models], ["mock-model-1"])
        self.assertEqual(models[0].object, "model")
        self.assertIsInstance(models[0].created, int)
        self.assertTrue(models[0].owned_by)


# --- errors ---------------------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ErrorsTest(OpenAISdkTestCase):
    def assertOpenAIError(self, err: Any, status: int) -> None:
        """An ``APIStatusError`` whose ``.body`` is OpenAI's inner error object."""
        self.assertEqual(err.status_code, status)
        self.assertIsInstance(err.body, dict)
        self.assertEqual(set(err.body), {"message", "type", "param", "code"})
        self.assertIsInstance(err.body["message"], str)
        self.assertTrue(err.body["message"])
        self.assertEqual(err.message, "Error code: %d - %s" % (status, err.body["message"]))
        self.assertEqual(err.type, err.body["type"])
        self.assertEqual(err.param, err.body["param"])
        self.assertEqual(err.code, err.body["code"])
        self.assertTrue(err.request_id)
        self.assertEqual(err.request_id, err.response.headers["x-request-id"])

    def test_chat_completions_create_missing_model_raises_bad_request_error_with_param_model(self):
        client = self.client(self.start_server())
        for label, model in (("omitted", openai.omit), ("null", None)):
            with self.subTest(model=label):
                with self.assertRaises(openai.BadRequestError) as caught:
                    client.chat.completions.create(model=model, messages=PROMPT)
                err = caught.exception
                sent = json.loads(err.request.content)
                self.assertEqual("model" in sent, label == "null")
                self.assertOpenAIError(err, 400)
                self.assertEqual(err.body["param"], "model")
                self.assertEqual(err.param, "model")
                self.assertEqual(err.type, "invalid_request_error")

    def test_chat_completions_create_empty_messages_raises_bad_request_error_param_messages(self):
        client = self.client(self.start_server())
        with self.assertRaises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=MODEL, messages=[])
        self.assertOpenAIError(caught.exception, 400)
        self.assertEqual(caught.exception.param, "messages")

    def test_chat_completions_create_wrong_api_key_raises_authentication_error(self):
        server = self.start_server(api_key="secret")
        client = self.client(server, api_key="wrong")
        with self.assertRaises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model=MODEL, messages=PROMPT)
        self.assertOpenAIError(caught.exception, 401)
        self.assertEqual(caught.exception.code, "invalid_api_key")
        with self.assertRaises(openai.AuthenticationError):
            client.chat.completions.create(model=MODEL, messages=PROMPT, stream=True)
        with self.assertRaises(openai.AuthenticationError):
            client.models.list()

    def test_chat_completions_create_correct_api_key_succeeds(self):
        server = self.start_server(api_key="secret")
        completion = self.client(server, api_key="secret").chat.completions.create(
            model=MODEL, messages=PROMPT)
        self.assertTrue(completion.choices[0].message.content)

    def assertFaultNotRetried(self, status: int, error_class: Any, stream: bool) -> Any:
        """A ``fault=http_error`` with ``fault_status`` raises ``error_class`` from a client that
        may retry twice, after exactly one request: the server says ``x-should-retry: false``."""
        server = self.start_server()
        client = self.client(server, max_retries=2)
        before = self.run_ids(server)
        with self.assertRaises(error_class) as caught:
            client.chat.completions.create(
                model=MODEL, messages=PROMPT, stream=stream,
                extra_body={"mock": {"fault": "http_error", "fault_status": status}})
        err = caught.exception
        new = [run_id for run_id in self.run_ids(server) if run_id not in before]
        self.assertEqual(new, [err.response.headers["lb-mock-run-id"]])
        self.assertEqual(self.truth(server, new[0])["fault"], "http_error")
        self.assertEqual(err.response.headers["x-should-retry"], "false")
        self.assertOpenAIError(err, status)
        return err

    def test_chat_completions_create_fault_429_raises_rate_limit_error_no_retry(self):
        err = self.assertFaultNotRetried(429, openai.RateLimitError, stream=False)
        self.assertEqual(err.code, "rate_limit_exceeded")
        self.assertEqual(err.response.headers["retry-after"], "1")

    def test_chat_completions_create_stream_fault_429_raises_rate_limit_error_no_retry(self):
        self.assertFaultNotRetried(429, openai.RateLimitError, stream=True)

    def test_chat_completions_create_fault_500_raises_internal_server_error_no_retry(self):
        err = self.assertFaultNotRetried(500, openai.InternalServerError, stream=False)
        self.assertEqual(err.type, "server_error")

    def test_chat_completions_create_stream_fault_503_raises_internal_server_error_no_retry(self):
        self.assertFaultNotRetried(503, openai.InternalServerError, stream=True)

    def test_chat_completions_create_stream_error_frame_raises_api_error_after_three_chunks(self):
        server = self.start_server()
        client = self.client(server)
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=PROMPT, stream=True,
            extra_body={"mock": {"fault": "error_frame", "fault_after": 3}})
        truth = self.truth(server, raw.headers["lb-mock-run-id"])
        stream = raw.parse()
        self.addCleanup(stream.close)
        received: List[Any] = []
        with self.assertRaises(openai.APIError) as caught:
            for chunk in stream:
                received.append(chunk)

        err = caught.exception
        # In-band: the status was 200, so it is a plain APIError, not an APIStatusError.
        self.assertNotIsInstance(err, openai.APIStatusError)
        self.assertEqual(raw.status_code, 200)
        self.assertEqual(truth["fault"], "error_frame")
        self.assertEqual(len(received), 3)
        self.assertEqual(received[0].choices[0].delta.role, "assistant")
        self.assertEqual([c.choices[0].delta.content for c in received[1:]], truth["deltas"][:2])
        self.assertIsInstance(err.body, dict)
        self.assertEqual(err.message, err.body["message"])
        self.assertTrue(err.message)
        self.assertEqual(err.type, "server_error")


# --- scenario settings ----------------------------------------------------------------------------


SPEC_SCENARIOS: Tuple[Dict[str, Any], ...] = (
    {"line_ending": "crlf"},
    {"line_ending": "cr"},
    {"line_ending": "mixed"},
    {"framing": "byte"},
    {"framing": "random"},
    {"framing": "split", "split_bytes": 3},
    {"keepalive_between": True},
    {"event_ids": True},
    {"retry": 3000},
    {"event_name": "message"},
    {"data_spacing": "none"},
    {"chunking": "char", "framing": "random"},
    {"line_ending": "crlf", "framing": "random", "event_ids": True},
    {"line_ending": "mixed", "framing": "split", "split_bytes": 3, "keepalive_between": True},
    {"line_ending": "cr", "framing": "byte", "ending": "no_final_blank_line"},
    {"body": "close", "framing": "random"},
    {"body": "buffered"},
)
"""Settings whose streams stay within the SSE spec (WHATWG) and OpenAI's framing."""


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ScenarioTest(OpenAISdkTestCase):
    def test_chat_completions_create_stream_spec_conformant_scenarios_yield_ground_truth_text(self):
        server = self.start_server()
        client = self.client(server)
        for settings in SPEC_SCENARIOS:
            for seed in SEEDS:
                with self.subTest(settings=settings, seed=seed):
                    _, chunks, truth = self.create(client, server, stream=True,
                                                   extra_body={"mock": dict(settings, seed=seed)})
                    for name, value in settings.items():
                        self.assertEqual(truth["scenario"][name], value)
                    self.assertEqual(truth["seed"], seed)
                    self.assertTextChunks(chunks, truth)

    def test_chat_completions_create_stream_x_mock_headers_yield_ground_truth_text(self):
        server = self.start_server()
        client = self.client(server)
        for seed in SEEDS:
            with self.subTest(seed=seed):
                headers = {"X-Mock-Line-Ending": "crlf", "X-Mock-Framing": "split",
                           "X-Mock-Split-Bytes": "3", "X-Mock-Seed": str(seed)}
                _, chunks, truth = self.create(client, server, stream=True, extra_headers=headers)
                self.assertEqual(truth["scenario"]["line_ending"], "crlf")
                self.assertEqual(truth["scenario"]["split_bytes"], 3)
                self.assertEqual(truth["seed"], seed)
                self.assertTextChunks(chunks, truth)

    def test_chat_completions_stream_helper_crlf_random_framing_returns_exact_text(self):
        server = self.start_server()
        client = self.client(server)
        if getattr(client.chat.completions, "stream", None) is None:
            self.skipTest("this openai version has no chat.completions.stream helper")
        for seed in SEEDS:
            with self.subTest(seed=seed):
                mock_ = {"line_ending": "crlf", "framing": "random", "seed": seed}
                with client.chat.completions.stream(model=MODEL, messages=PROMPT,
                                                    extra_body={"mock": mock_}) as stream:
                    final = stream.get_final_completion()
                truth = self.truth(server, self.run_ids(server)[0])
                self.assertEqual(truth["scenario"]["framing"], "random")
                self.assertEqual(final.choices[0].message.content, truth["text"])
                self.assertEqual(final.choices[0].finish_reason, "stop")

    def test_chat_completions_create_stream_unicode_reply_byte_framing_yields_exact_text(self):
        reply = ('Voilà — café, 你好 🚀\nline two\r\n"quoted" \\ tab\tend'
                 ' \u2028 sep \u0085 nel')
        server = self.start_server(replies=(reply,))
        client = self.client(server)
        for settings in ({"framing": "byte"}, {"framing": "random", "line_ending": "mixed"}):
            with self.subTest(settings=settings):
                _, chunks, truth = self.create(client, server, stream=True,
                                               extra_body={"mock": settings})
                self.assertEqual(truth["text"], reply)
                self.assertTextChunks(chunks, truth)

    # --- where this SDK's SSE decoder leaves the spec (the mock's bytes are valid SSE) ------------

    def test_chat_completions_create_stream_event_ids_and_pings_sdk_raises_json_error(self):
        # "id: 1" then a ": ping" comment and a blank line. By the SSE spec, a blank line with an
        # empty data buffer dispatches nothing, so a correct client yields the ground truth.
        # openai 3.54.0's SSEDecoder.decode dispatches an event whenever a last event id is set
        # (openai/_streaming.py, "if not self._event and not self._data and not
        # self._last_event_id ..."), and Stream.__stream__ then json.loads("") the empty data.
        # Either setting alone works (see SPEC_SCENARIOS).
        server = self.start_server()
        client = self.client(server)
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=PROMPT, stream=True,
            extra_body={"mock": {"event_ids": True, "keepalive_between": True}})
        stream = raw.parse()
        self.addCleanup(stream.close)
        received: List[Any] = []
        with self.assertRaises(json.JSONDecodeError):
            for chunk in stream:
                received.append(chunk)
        self.assertEqual(len(received), 1)  # the event before the first ping
        self.assertEqual(received[0].choices[0].delta.role, "assistant")

    def test_chat_completions_create_stream_bom_sdk_drops_first_event_text_survives(self):
        # By the SSE spec a leading U+FEFF is skipped. openai 3.54.0 decodes each line with
        # bytes.decode("utf-8"), so the first line reads "\ufeffdata: ...", an unknown field,
        # and the first event (the role chunk, whose content is "") is lost. The text survives.
        server = self.start_server()
        _, chunks, truth = self.create(self.client(server), server, stream=True,
                                       extra_body={"mock": {"bom": True}})
        self.assertEqual(truth["scenario"]["bom"], True)
        self.assertIsNone(chunks[0].choices[0].delta.role)
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in chunks), truth["text"])
        self.assertEqual(len(chunks), len(truth["deltas"]) + 1)  # role chunk missing

    # --- regressions ---------------------------------------------------------------------------

    def test_chat_completions_create_stream_multiline_data_yields_ground_truth_text(self):
        # Regression: multiline_data used to split at every b',"', also inside a JSON string (a
        # "," delta), leaving a raw LF in the string; it now breaks only between JSON tokens.
        server = self.start_server()
        settings = {"multiline_data": True, "reply_text": "Hello, world."}
        _, chunks, truth = self.create(self.client(server), server, stream=True,
                                       extra_body={"mock": settings})
        self.assertEqual(truth["deltas"], ["Hello", ",", " world", "."])
        self.assertTextChunks(chunks, truth)


# --- request ids ----------------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class RequestIdTest(OpenAISdkTestCase):
    def test_chat_completions_create_non_stream_request_id_equals_x_request_id_header(self):
        server = self.start_server()
        raw, completion, _ = self.create(self.client(server), server)
        request_id = raw.headers.get("x-request-id")
        self.assertTrue(request_id)
        self.assertEqual(completion._request_id, request_id)
        self.assertEqual(raw.request_id, request_id)

    def test_chat_completions_create_stream_response_has_x_request_id(self):
        server = self.start_server()
        client = self.client(server)
        first, _, _ = self.create(client, server, stream=True)
        second, _, _ = self.create(client, server, stream=True)
        self.assertTrue(first.request_id)
        self.assertTrue(second.request_id)
        self.assertNotEqual(first.request_id, second.request_id)

    def test_models_list_response_has_x_request_id(self):
        server = self.start_server()
        raw = self.client(server).models.with_raw_response.list()
        self.assertTrue(raw.headers.get("x-request-id"))


if __name__ == "__main__":
    unittest.main()
