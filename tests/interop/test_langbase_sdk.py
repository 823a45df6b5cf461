"""Interop tests: the official ``langbase`` Python SDK (PyPI ``langbase==0.0.5``) against the mock.

Each test starts a real server on 127.0.0.1:0 (``tests.support.RunningServer``) and talks to it
only through the SDK: ``Langbase(api_key=..., base_url=server.url)``, ``pipes.run``, the
``threads`` client and the stream helpers (``get_runner``, ``get_typed_runner``, ``parse_chunk``,
``get_tools_from_run``, ``get_tools_from_stream``). Expected behaviour follows the Langbase API
as described in ``langbase-api.md`` (sections 2, 3 and 6.1).

Run with the SDK installed (``pip install langbase==0.0.5``)::

    python3 -X dev -W error -m unittest discover -s tests/interop -t . -v

Without the SDK every test is skipped with an install hint.

Bounds: the SDK calls ``requests.request`` with no timeout, so each test replaces
``requests.request`` (for that test only) with a wrapper that adds ``timeout=SDK_TIMEOUT``; a
stalled server then fails the test instead of hanging CI. Servers use short
head and keep-alive deadlines, and every stream is read to its end (a cleanup drains any stream a failing
test left half-read).
"""

from __future__ import annotations

import json
import unittest
import uuid
from typing import Any, Dict, Iterator, List
from unittest import mock

from tests.support import RunningServer

SDK_VERSION = "0.0.5"
SKIP_REASON = "langbase SDK not installed: pip install langbase==%s" % SDK_VERSION

try:
    import requests
    from langbase import (
        AuthenticationError,
        BadRequestError,
        ConflictError,
        Langbase,
        NotFoundError,
        StreamEventType,
        get_runner,
        get_text_part,
        get_tools_from_run,
        get_tools_from_stream,
        get_typed_runner,
        parse_chunk,
    )
except ImportError:
    HAVE_SDK = False
else:
    HAVE_SDK = True

SDK_TIMEOUT = 10.0
"""Seconds: connect and per-read timeout added to every request the SDK makes."""

API_KEY = "interop-test-key"
PIPE = "interop-pipe"
HELLO = [{"role": "user", "content": "Hello!"}]
DOCS = "https://langbase.com/docs/api-reference/errors/"
THREAD_KEYS = {"id", "object", "created_at", "metadata"}
MESSAGE_KEYS = {
    "id", "created_at", "thread_id", "role", "content", "name", "tool_call_id", "tool_calls",
    "attachments", "metadata",
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


class SdkTestCase(unittest.TestCase):
    """Base: bounded SDK requests, servers stopped and streams drained on cleanup."""

    def setUp(self) -> None:
        real_request = requests.request

        def bounded_request(*args: Any, **kwargs: Any) -> "requests.Response":
            kwargs.setdefault("timeout", SDK_TIMEOUT)
            return real_request(*args, **kwargs)

        patcher = mock.patch.object(requests, "request", bounded_request)
        patcher.start()
        self.addCleanup(patcher.stop)

    def start_server(self, **settings: Any) -> RunningServer:
        """A running server (stopped on cleanup); ``settings`` override ``main.Settings``."""
        settings.setdefault("head_timeout", 2.0)
        settings.setdefault("keep_alive_timeout", 2.0)
        server = RunningServer(**settings)
        server.__enter__()
        self.addCleanup(server.__exit__, None, None, None)
        return server

    def client(self, server: RunningServer, api_key: str = API_KEY) -> "Langbase":
        return Langbase(api_key=api_key, base_url=server.url)

    def run_stream(self, lb: "Langbase", **options: Any) -> Dict[str, Any]:
        """``pipes.run(stream=True)``; the stream is drained on cleanup if a test stops early."""
        result = lb.pipes.run(name=PIPE, stream=True, **options)
        stream = result.get("stream")
        if stream is not None:
            self.addCleanup(_drain, stream)
        return result

    def assertUuid4(self, value: Any) -> None:
        self.assertIsInstance(value, str)
        parsed = uuid.UUID(value)
        self.assertEqual(str(parsed), value)
        self.assertEqual(parsed.version, 4)

    def assertMessageObject(self, message: Dict[str, Any], thread_id: str) -> None:
        """The documented message object shape (langbase-api.md section 3)."""
        self.assertEqual(set(message), MESSAGE_KEYS)
        self.assertTrue(message["id"].startswith("msg_"), message["id"])
        self.assertIsInstance(message["created_at"], int)
        self.assertEqual(message["thread_id"], thread_id)


def _drain(stream: Iterator[bytes]) -> None:
    for _ in stream:
        pass


# --- pipes.run, JSON ---------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class PipesRunTest(SdkTestCase):
    def test_pipes_run_non_stream_returns_completion_thread_id_choices_usage(self):
        server = self.start_server()
        result = self.client(server).pipes.run(name=PIPE, messages=HELLO)

        self.assertIsInstance(result["completion"], str)
        self.assertTrue(result["completion"])
        self.assertUuid4(result["threadId"])
        self.assertEqual(result["object"], "chat.completion")
        self.assertEqual(result["model"], server.settings.model)
        self.assertEqual(len(result["choices"]), 1)
        choice = result["choices"][0]
        self.assertEqual(choice["message"]["role"], "assistant")
        self.assertEqual(choice["message"]["content"], result["completion"])
        self.assertEqual(choice["finish_reason"], "stop")
        usage = result["usage"]
        self.assertGreater(usage["prompt_tokens"], 0)
        self.assertGreater(usage["completion_tokens"], 0)
        self.assertEqual(usage["total_tokens"], usage["prompt_tokens"] + usage["completion_tokens"])

    def test_pipes_run_same_seed_and_messages_returns_same_completion(self):
        messages = [{"role": "user", "content": "Tell me about streaming."}]
        first = self.client(self.start_server(seed=42)).pipes.run(name=PIPE, messages=messages)
        second = self.client(self.start_server(seed=42)).pipes.run(name=PIPE, messages=messages)
        self.assertEqual(first["completion"], second["completion"])
        self.assertEqual(first["usage"], second["usage"])
        self.assertNotEqual(first["threadId"], second["threadId"])

    def test_pipes_run_raw_response_true_returns_lower_case_lb_headers(self):
        # The SDK copies dict(response.headers), keeping the server's spelling, and its error
        # path looks up "lb-request-id" case-sensitively: the names must be lower-case.
        server = self.start_server()
        result = self.client(server).pipes.run(name=PIPE, messages=HELLO, raw_response=True)
        headers = result["rawResponse"]["headers"]
        self.assertIn("lb-thread-id", headers)
        self.assertIn("lb-request-id", headers)
        self.assertEqual(headers["lb-thread-id"], result["threadId"])
        self.assertTrue(headers["lb-request-id"])


# --- pipes.run, stream -------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class PipesStreamTest(SdkTestCase):
    def test_pipes_run_stream_returns_stream_and_thread_id(self):
        lb = self.client(self.start_server())
        result = self.run_stream(lb, messages=HELLO)
        self.assertIn("stream", result)
        self.assertUuid4(result["thread_id"])
        self.assertTrue(get_runner(result).collect_text())

    def test_pipes_run_stream_runner_collect_text_equals_non_stream_completion(self):
        lb = self.client(self.start_server(seed=7))
        prompts = ["Hello!", "How do streams work?", "Show me some Python.", "Any tips?"]
        for prompt in prompts:
            with self.subTest(prompt=prompt):
                messages = [{"role": "user", "content": prompt}]
                expected = lb.pipes.run(name=PIPE, messages=messages)["completion"]
                streamed = get_runner(self.run_stream(lb, messages=messages)).collect_text()
                self.assertEqual(streamed, expected)

    def test_pipes_run_stream_raw_lines_parse_to_chunks_with_one_id_and_assistant_role_first(self):
        lb = self.client(self.start_server())
        expected = lb.pipes.run(name=PIPE, messages=HELLO)
        lines = list(self.run_stream(lb, messages=HELLO)["stream"])

        events = [line for line in lines if line]
        for line in events:
            self.assertTrue(line.startswith(b"data: "), line)
        self.assertEqual(events[-1], b"data: [DONE]")
        self.assertIsNone(parse_chunk(events[-1]))
        chunks = [parse_chunk(line) for line in events[:-1]]
        self.assertNotIn(None, chunks)
        self.assertGreaterEqual(len(chunks), 3)

        self.assertEqual({chunk.id for chunk in chunks}, {chunks[0].id})
        self.assertTrue(chunks[0].id.startswith("chatcmpl-"), chunks[0].id)
        for chunk in chunks:
            self.assertEqual(chunk.object, "chat.completion.chunk")
            self.assertEqual(len(chunk.choices), 1)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        finishes = [chunk.choices[0].finish_reason for chunk in chunks]
        self.assertEqual(finishes, [None] * (len(chunks) - 1) + ["stop"])
        self.assertIn("usage", chunks[-1])  # usage rides on the finish_reason chunk
        self.assertEqual(chunks[-1]["usage"], expected["usage"])
        self.assertEqual("".join(get_text_part(chunk) for chunk in chunks), expected["completion"])

    def test_pipes_run_stream_typed_runner_content_events_reassemble_completion(self):
        lb = self.client(self.start_server())
        expected = lb.pipes.run(name=PIPE, messages=HELLO)["completion"]
        result = self.run_stream(lb, messages=HELLO)
        runner = get_typed_runner(result)
        connects: List[dict] = []
        pieces: List[str] = []
        ends: List[dict] = []
        runner.on(StreamEventType.CONNECT, connects.append)
        runner.on(StreamEventType.CONTENT, lambda event: pieces.append(event["content"]))
        runner.on(StreamEventType.END, ends.append)
        runner.process()

        self.assertEqual([event["threadId"] for event in connects], [result["thread_id"]])
        self.assertGreater(len(pieces), 1)
        self.assertEqual("".join(pieces), expected)
        self.assertEqual(len(ends), 1)

    def test_pipes_run_stream_typed_runner_completion_event_reports_usage(self):
        lb = self.client(self.start_server())
        expected = lb.pipes.run(name=PIPE, messages=HELLO)
        runner = get_typed_runner(self.run_stream(lb, messages=HELLO))
        completions: List[dict] = []
        runner.on(StreamEventType.COMPLETION, completions.append)
        runner.process()

        self.assertEqual(len(completions), 1)
        self.assertEqual(completions[0]["reason"], "stop")
        usage = completions[0]["usage"]
        self.assertEqual(usage, expected["usage"])
        self.assertEqual(usage["total_tokens"], usage["prompt_tokens"] + usage["completion_tokens"])

    def test_pipes_run_stream_with_delay_yields_exact_text(self):
        lb = self.client(self.start_server(delay=0.01))
        expected = lb.pipes.run(name=PIPE, messages=HELLO)["completion"]
        self.assertEqual(get_runner(self.run_stream(lb, messages=HELLO)).collect_text(), expected)

    def test_pipes_run_stream_unicode_multiline_reply_yields_exact_text(self):
        reply = 'Voilà — café, 你好 🚀\nline two\r\n"quoted" \\ tab\tend'
        lb = self.client(self.start_server(replies=(reply,), delay=0.01))
        self.assertEqual(lb.pipes.run(name=PIPE, messages=HELLO)["completion"], reply)
        self.assertEqual(get_runner(self.run_stream(lb, messages=HELLO)).collect_text(), reply)


# --- thread continuation through pipes.run ---------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ThreadContinuationTest(SdkTestCase):
    def test_pipes_run_with_thread_id_reuses_thread_and_lists_four_messages_in_order(self):
        lb = self.client(self.start_server())
        first = lb.pipes.run(name=PIPE, messages=[{"role": "user", "content": "Hi"}])
        thread_id = first["threadId"]
        second = lb.pipes.run(
            name=PIPE, messages=[{"role": "user", "content": "And again?"}], thread_id=thread_id
        )
        self.assertEqual(second["threadId"], thread_id)

        messages = lb.threads.messages.list(thread_id)
        self.assertEqual([m["role"] for m in messages], ["user", "assistant", "user", "assistant"])
        self.assertEqual(
            [m["content"] for m in messages],
            ["Hi", first["completion"], "And again?", second["completion"]],
        )
        for message in messages:
            self.assertMessageObject(message, thread_id)
        self.assertEqual(len({m["id"] for m in messages}), 4)

    def test_pipes_run_stream_with_thread_id_returns_same_thread_id_and_stores_reply(self):
        lb = self.client(self.start_server())
        first = lb.pipes.run(name=PIPE, messages=[{"role": "user", "content": "Hi"}])
        thread_id = first["threadId"]
        result = self.run_stream(
            lb, messages=[{"role": "user", "content": "More?"}], thread_id=thread_id
        )
        self.assertEqual(result["thread_id"], thread_id)
        text = get_runner(result).collect_text()

        messages = lb.threads.messages.list(thread_id)
        self.assertEqual(
            [(m["role"], m["content"]) for m in messages],
            [("user", "Hi"), ("assistant", first["completion"]), ("user", "More?"),
             ("assistant", text)],
        )

    def test_pipes_run_with_thread_from_threads_create_appends_after_its_messages(self):
        lb = self.client(self.start_server())
        thread = lb.threads.create(messages=[{"role": "system", "content": "Be brief."}])
        result = lb.pipes.run(name=PIPE, messages=HELLO, thread_id=thread["id"])
        self.assertEqual(result["threadId"], thread["id"])
        messages = lb.threads.messages.list(thread["id"])
        self.assertEqual(
            [(m["role"], m["content"]) for m in messages],
            [("system", "Be brief."), ("user", "Hello!"), ("assistant", result["completion"])],
        )

    def test_pipes_run_unknown_thread_id_not_strict_creates_thread_with_that_id(self):
        lb = self.client(self.start_server())
        wanted = str(uuid.uuid4())
        result = lb.pipes.run(name=PIPE, messages=HELLO, thread_id=wanted)
        self.assertEqual(result["threadId"], wanted)
        self.assertEqual(lb.threads.get(wanted)["id"], wanted)


# --- threads API -------------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ThreadsApiTest(SdkTestCase):
    METADATA = {"project": "interop", "owner": "ada"}
    MESSAGES = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello"},
    ]

    def setUp(self) -> None:
        super().setUp()
        self.lb = self.client(self.start_server())

    def test_threads_create_with_metadata_and_messages_returns_thread_object(self):
        thread = self.lb.threads.create(metadata=self.METADATA, messages=self.MESSAGES)
        self.assertEqual(set(thread), THREAD_KEYS)  # messages are stored, not echoed
        self.assertUuid4(thread["id"])
        self.assertEqual(thread["object"], "thread")
        self.assertIsInstance(thread["created_at"], int)
        self.assertEqual(thread["metadata"], self.METADATA)
        stored = self.lb.threads.messages.list(thread["id"])
        self.assertEqual(
            [(m["role"], m["content"]) for m in stored],
            [("system", "You are terse."), ("user", "Hello")],
        )

    def test_threads_create_with_thread_id_uses_given_id(self):
        thread = self.lb.threads.create(thread_id="thread_interop_1", metadata=self.METADATA)
        self.assertEqual(thread["id"], "thread_interop_1")
        self.assertEqual(self.lb.threads.get("thread_interop_1"), thread)

    def test_threads_create_duplicate_thread_id_raises_conflict_error(self):
        self.lb.threads.create(thread_id="thread_dup")
        with self.assertRaises(ConflictError) as caught:
            self.lb.threads.create(thread_id="thread_dup")
        self.assertEqual(caught.exception.status_code, 409)
        self.assertEqual(caught.exception.code, "CONFLICT")

    def test_threads_get_existing_returns_created_thread(self):
        thread = self.lb.threads.create(metadata=self.METADATA)
        self.assertEqual(self.lb.threads.get(thread["id"]), thread)

    def test_threads_update_metadata_merges_and_keeps_old_keys(self):
        thread = self.lb.threads.create(metadata=self.METADATA)
        updated = self.lb.threads.update(thread["id"], {"owner": "grace", "stage": "beta"})
        expected = {"project": "interop", "owner": "grace", "stage": "beta"}
        self.assertEqual(set(updated), THREAD_KEYS)
        self.assertEqual(updated["id"], thread["id"])
        self.assertEqual(updated["created_at"], thread["created_at"])
        self.assertEqual(updated["metadata"], expected)
        self.assertEqual(self.lb.threads.get(thread["id"])["metadata"], expected)

    def test_threads_append_returns_created_message_objects(self):
        thread = self.lb.threads.create()
        created = self.lb.threads.append(
            thread["id"],
            [
                {"role": "user", "content": "What is SSE?"},
                {"role": "assistant", "content": "Server-Sent Events.", "metadata": {"k": "v"}},
            ],
        )
        self.assertIsInstance(created, list)
        self.assertEqual(len(created), 2)
        for message in created:
            self.assertMessageObject(message, thread["id"])
            self.assertIsNone(message["name"])
            self.assertIsNone(message["tool_call_id"])
            self.assertEqual(message["tool_calls"], [])
            self.assertEqual(message["attachments"], [])
        self.assertEqual(
            [(m["role"], m["content"], m["metadata"]) for m in created],
            [("user", "What is SSE?", {}), ("assistant", "Server-Sent Events.", {"k": "v"})],
        )
        self.assertNotEqual(created[0]["id"], created[1]["id"])

    def test_threads_messages_list_returns_messages_oldest_first(self):
        thread = self.lb.threads.create(messages=self.MESSAGES)
        appended = self.lb.threads.append(thread["id"], [{"role": "user", "content": "Next"}])
        appended += self.lb.threads.append(thread["id"], [{"role": "user", "content": "Last"}])
        listed = self.lb.threads.messages.list(thread["id"])
        self.assertEqual(
            [m["content"] for m in listed], ["You are terse.", "Hello", "Next", "Last"]
        )
        self.assertEqual(listed[2:], appended)
        for message in listed:
            self.assertMessageObject(message, thread["id"])

    def test_threads_delete_returns_success_then_get_raises_not_found_error(self):
        thread = self.lb.threads.create(metadata=self.METADATA, messages=self.MESSAGES)
        self.assertEqual(self.lb.threads.delete(thread["id"]), {"success": True})
        with self.assertRaises(NotFoundError) as caught:
            self.lb.threads.get(thread["id"])
        self.assertEqual(caught.exception.status_code, 404)
        self.assertEqual(caught.exception.code, "NOT_FOUND")
        with self.assertRaises(NotFoundError):
            self.lb.threads.messages.list(thread["id"])

    def test_threads_get_unknown_id_raises_not_found_error(self):
        with self.assertRaises(NotFoundError) as caught:
            self.lb.threads.get(str(uuid.uuid4()))
        self.assertEqual(caught.exception.status_code, 404)
        self.assertEqual(caught.exception.error["status"], 404)


# --- errors ------------------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ErrorsTest(SdkTestCase):
    BAD_MESSAGES = [{"role": "robot", "content": "beep"}]

    def assertEnvelope(self, err: Exception, status: int, code: str) -> None:
        """The SDK error carries the Langbase envelope {"error": {code, status, message, docs}}."""
        self.assertEqual(err.status_code, status)
        self.assertIsInstance(err.error, dict)
        self.assertEqual(err.error["code"], code)
        self.assertEqual(err.error["status"], status)
        self.assertIsInstance(err.error["message"], str)
        self.assertTrue(err.error["message"])
        self.assertEqual(err.error["docs"], DOCS + code.lower())
        self.assertEqual(err.code, code)
        self.assertEqual(err.args[0], "%d %s" % (status, err.error["message"]))
        self.assertTrue(err.request_id)  # from the lower-case lb-request-id header
        self.assertEqual(json.loads(str(err))["error"], err.error)

    def test_pipes_run_invalid_role_raises_bad_request_error_with_envelope(self):
        lb = self.client(self.start_server())
        with self.assertRaises(BadRequestError) as caught:
            lb.pipes.run(name=PIPE, messages=self.BAD_MESSAGES)
        self.assertEnvelope(caught.exception, 400, "BAD_REQUEST")
        self.assertIn("role", caught.exception.error["message"])

    def test_pipes_run_stream_invalid_role_raises_bad_request_error(self):
        lb = self.client(self.start_server())
        with self.assertRaises(BadRequestError) as caught:
            lb.pipes.run(name=PIPE, messages=self.BAD_MESSAGES, stream=True)
        self.assertEnvelope(caught.exception, 400, "BAD_REQUEST")

    def test_pipes_run_wrong_api_key_raises_authentication_error(self):
        server = self.start_server(api_key="secret")
        with self.assertRaises(AuthenticationError) as caught:
            self.client(server, api_key="wrong").pipes.run(name=PIPE, messages=HELLO)
        self.assertEnvelope(caught.exception, 401, "UNAUTHORIZED")

    def test_pipes_run_correct_api_key_succeeds(self):
        server = self.start_server(api_key="secret")
        result = self.client(server, api_key="secret").pipes.run(name=PIPE, messages=HELLO)
        self.assertTrue(result["completion"])

    def test_pipes_run_pipe_api_key_argument_replaces_client_key_and_succeeds(self):
        # pipes.run(api_key=...) sends that key as the bearer (and also in the body as api_key).
        server = self.start_server(api_key="secret")
        lb = self.client(server, api_key="wrong")
        result = lb.pipes.run(api_key="secret", messages=HELLO)
        self.assertTrue(result["completion"])
        self.assertUuid4(result["threadId"])

    def test_threads_create_wrong_api_key_raises_authentication_error(self):
        server = self.start_server(api_key="secret")
        with self.assertRaises(AuthenticationError) as caught:
            self.client(server, api_key="wrong").threads.create(metadata={"a": "b"})
        self.assertEnvelope(caught.exception, 401, "UNAUTHORIZED")

    def test_pipes_run_empty_sdk_api_key_raises_authentication_error(self):
        # Langbase() defaults api_key to "", so the SDK sends "Authorization: Bearer " with no
        # token; the API requires a non-empty bearer key (langbase-api.md section 7, item 1).
        lb = self.client(self.start_server(), api_key="")
        with self.assertRaises(AuthenticationError) as caught:
            lb.pipes.run(name=PIPE, messages=HELLO)
        self.assertEnvelope(caught.exception, 401, "UNAUTHORIZED")

    def test_pipes_run_strict_threads_unknown_thread_id_raises_not_found_error(self):
        lb = self.client(self.start_server(strict_threads=True))
        with self.assertRaises(NotFoundError) as caught:
            lb.pipes.run(name=PIPE, messages=HELLO, thread_id=str(uuid.uuid4()))
        self.assertEnvelope(caught.exception, 404, "NOT_FOUND")

    def test_pipes_run_stream_strict_threads_unknown_thread_id_raises_not_found_error(self):
        lb = self.client(self.start_server(strict_threads=True))
        with self.assertRaises(NotFoundError) as caught:
            lb.pipes.run(name=PIPE, messages=HELLO, thread_id=str(uuid.uuid4()), stream=True)
        self.assertEnvelope(caught.exception, 404, "NOT_FOUND")


# --- tool calls --------------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ToolCallsTest(SdkTestCase):
    MESSAGES = [{"role": "user", "content": "What's the weather in Paris?"}]

    def assertWeatherCall(self, calls: List[dict]) -> None:
        self.assertEqual(len(calls), 1)
        call = calls[0]
        self.assertTrue(call["id"].startswith("call_"), call["id"])
        self.assertEqual(call["type"], "function")
        self.assertEqual(call["function"]["name"], "get_weather")
        arguments = json.loads(call["function"]["arguments"])
        self.assertIsInstance(arguments, dict)
        self.assertIn("location", arguments)
        self.assertIsInstance(arguments["location"], str)

    def test_pipes_run_with_tools_get_tools_from_run_returns_get_weather_call(self):
        lb = self.client(self.start_server())
        result = lb.pipes.run(name=PIPE, messages=self.MESSAGES, tools=[WEATHER_TOOL])
        self.assertWeatherCall(get_tools_from_run(result))
        self.assertEqual(result["completion"], "")
        self.assertEqual(result["choices"][0]["finish_reason"], "tool_calls")

    def test_pipes_run_stream_with_tools_get_tools_from_stream_returns_same_call(self):
        lb = self.client(self.start_server())
        expected = get_tools_from_run(
            lb.pipes.run(name=PIPE, messages=self.MESSAGES, tools=[WEATHER_TOOL])
        )
        result = self.run_stream(lb, messages=self.MESSAGES, tools=[WEATHER_TOOL])
        calls = get_tools_from_stream(result["stream"])
        self.assertWeatherCall(calls)
        self.assertEqual(calls, expected)

    def test_pipes_run_stream_with_tools_typed_runner_reports_tool_call_and_reason(self):
        lb = self.client(self.start_server())
        runner = get_typed_runner(
            self.run_stream(lb, messages=self.MESSAGES, tools=[WEATHER_TOOL])
        )
        completions: List[dict] = []
        runner.on(StreamEventType.COMPLETION, completions.append)
        calls = runner.collect_tool_calls()
        self.assertWeatherCall(calls)
        self.assertEqual([event["reason"] for event in completions], ["tool_calls"])
        self.assertIsNotNone(completions[0]["usage"])


# --- variables ---------------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class VariablesTest(SdkTestCase):
    VARIABLES = [{"name": "name", "value": "Ada"}]

    def test_pipes_run_variables_fill_reply_placeholders(self):
        lb = self.client(self.start_server(replies=("Hello {{name}}!",)))
        result = lb.pipes.run(name=PIPE, messages=HELLO, variables=self.VARIABLES)
        self.assertEqual(result["completion"], "Hello Ada!")

    def test_pipes_run_stream_variables_without_messages_fill_reply_placeholders(self):
        # Without messages the SDK still sends "messages": [] beside the variables.
        lb = self.client(self.start_server(replies=("Hello {{name}}!",)))
        result = self.run_stream(lb, variables=self.VARIABLES)
        self.assertEqual(get_runner(result).collect_text(), "Hello Ada!")


if __name__ == "__main__":
    unittest.main()
