"""``POST /v1/agent/run``, the Pipes API (``/v1/pipes``), ``POST /v1/traces`` and
``GET /mock/traces`` over real sockets: success and error shapes byte for byte where they are
fixed, the SDK types' field sets, the store bounds, and that the LLM key is never sent back,
kept or logged."""

import json
import logging
import unittest

from tests.support import RunningServer, call, sse_data

MODEL = "openai:gpt-4o-mini"
HI = [{"role": "user", "content": "Hi"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}
SUMMARY_KEYS = {"name", "description", "status", "owner_login", "url", "type", "api_key"}
LIST_KEYS = {
    "name", "description", "status", "owner_login", "url", "model", "stream", "json", "store", "moderate",
    "top_p", "max_tokens", "temperature", "presence_penalty", "frequency_penalty", "stop", "tool_choice",
    "parallel_tool_calls", "messages", "variables", "tools", "memory",
}
SECRET = "sk-mock-test-secret-9f8e7d"


def chunks(response):
    """The JSON chunks of an SSE body (``[DONE]`` checked and left out)."""
    data = sse_data(response.body)
    assert data[-1] == "[DONE]", data[-1]
    return [json.loads(d) for d in data[:-1]]


def streamed_text(response):
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks(response))


class ErrorAssertions(unittest.TestCase):
    def assertLangbaseError(self, response, status, code, *words):
        """``response`` is the Langbase envelope with ``status``/``code`` and a message holding
        every one of ``words``."""
        self.assertEqual(response.status, status, response.body)
        self.assertEqual(response.header("Content-Type"), "application/json")
        error = response.json()["error"]
        self.assertEqual((error["status"], error["code"]), (status, code))
        self.assertEqual(error["docs"], "https://langbase.com/docs/api-reference/errors/" + code.lower())
        for word in words:
            self.assertIn(word, error["message"])


class AgentRunTest(ErrorAssertions):
    def agent(self, server, body, headers=None):
        return call(server.port, "POST", "/v1/agent/run", body, headers)

    def test_json_answer_is_output_and_raw_chat_completion_with_the_model_echoed(self):
        with RunningServer(fixed=True) as s:
            r = self.agent(s, {"model": MODEL, "input": "Hi"})
        self.assertEqual(r.status, 200)
        body = r.json()
        self.assertEqual(set(body), {"output", "raw"})
        raw = body["raw"]
        self.assertEqual(raw["object"], "chat.completion")
        self.assertEqual(raw["model"], MODEL)
        self.assertEqual(raw["created"], 1700000000)
        self.assertEqual(raw["choices"][0]["message"], {"role": "assistant", "content": body["output"]})
        self.assertEqual(raw["choices"][0]["finish_reason"], "stop")
        self.assertTrue(body["output"])
        self.assertIsNone(r.header("lb-thread-id"))  # agent runs keep no thread
        self.assertEqual(r.header("lb-mock-seed"), "0")

    def test_stream_is_the_chunk_sse_with_the_model_echoed_and_the_json_text(self):
        with RunningServer() as s:
            text = self.agent(s, {"model": "anthropic:claude-3-5-sonnet", "input": "Hi"}).json()["output"]
            r = self.agent(s, {"model": "anthropic:claude-3-5-sonnet", "input": "Hi", "stream": True})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/event-stream; charset=utf-8")
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        self.assertIsNone(r.header("lb-thread-id"))
        got = chunks(r)
        self.assertEqual({c["model"] for c in got}, {"anthropic:claude-3-5-sonnet"})
        self.assertEqual(len({c["id"] for c in got}), 1)
        self.assertEqual({c["object"] for c in got}, {"chat.completion.chunk"})
        self.assertEqual(got[0]["choices"][0]["delta"], {"role": "assistant", "content": ""})
        self.assertEqual(got[-1]["choices"][0]["finish_reason"], "stop")
        self.assertIn("usage", got[-1])
        self.assertEqual(streamed_text(r), text)

    def test_stream_bytes_and_scenarios_equal_pipes_run_for_the_same_messages(self):
        scenarios = [{}, {"line_ending": "crlf", "chunking": "char"}, {"framing": "byte"},
                     {"fault": "error_frame", "fault_after": 2}, {"ending": "no_done", "event_ids": True}]
        with RunningServer(fixed=True, model=MODEL) as s:
            for mock in scenarios:
                with self.subTest(mock=mock):
                    agent = self.agent(s, {"model": MODEL, "input": HI, "stream": True, "mock": mock})
                    pipe = call(s.port, "POST", "/v1/pipes/run", {"messages": HI, "stream": True, "mock": mock})
                    self.assertEqual(agent.status, 200)
                    self.assertEqual(agent.raw_body, pipe.raw_body)
                    self.assertEqual(agent.header("lb-mock-seed"), pipe.header("lb-mock-seed"))

    def test_x_mock_header_and_http_error_fault_as_on_pipes_run(self):
        with RunningServer() as s:
            r = self.agent(s, {"model": MODEL, "input": "Hi"},
                           {"X-Mock-Fault": "http_error", "X-Mock-Fault-Status": "429"})
            run = call(s.port, "GET", "/mock/runs/" + r.header("lb-mock-run-id")).json()
        self.assertLangbaseError(r, 429, "RATE_LIMITED", "fault=http_error")
        self.assertEqual(r.header("Retry-After"), "1")
        self.assertEqual((run["format"], run["fault"], run["thread_id"]), ("agent", "http_error", None))

    def test_run_record_is_published_with_format_agent_and_the_model(self):
        with RunningServer() as s:
            r = self.agent(s, {"model": MODEL, "input": "Hi", "stream": True})
            run = call(s.port, "GET", "/mock/runs/" + r.header("lb-mock-run-id")).json()
        self.assertEqual((run["format"], run["model"], run["stream"]), ("agent", MODEL, True))
        self.assertEqual(run["text"], streamed_text(r))

    def test_input_string_is_one_user_message_and_instructions_a_system_prompt(self):
        with RunningServer() as s:
            text = self.agent(s, {"model": MODEL, "input": "Hi"}).json()
            listed = self.agent(s, {"model": MODEL, "input": HI}).json()
            told = self.agent(s, {"model": MODEL, "input": "Hi", "instructions": "Be brief and kind."}).json()
        self.assertEqual(text, listed)
        self.assertEqual(told["raw"]["usage"]["prompt_tokens"], text["raw"]["usage"]["prompt_tokens"] + 5)  # Be, brief, and, kind, .

    def test_tool_calls_json_and_stream(self):
        body = {"model": MODEL, "input": "Weather in Paris?", "tools": [WEATHER], "parallel_tool_calls": False}
        with RunningServer() as s:
            r = self.agent(s, body)
            streamed = self.agent(s, dict(body, stream=True))
            none = self.agent(s, dict(body, tool_choice="none"))
        answer = r.json()
        self.assertEqual(answer["output"], "")
        message = answer["raw"]["choices"][0]["message"]
        self.assertEqual(answer["raw"]["choices"][0]["finish_reason"], "tool_calls")
        (call_,) = message["tool_calls"]
        self.assertEqual((call_["type"], call_["function"]["name"]), ("function", "get_weather"))
        self.assertEqual(json.loads(call_["function"]["arguments"]), {"location": "example"})
        deltas = [c["choices"][0]["delta"] for c in chunks(streamed)]
        self.assertEqual(deltas[1]["tool_calls"][0]["id"], call_["id"])
        arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas if d.get("tool_calls"))
        self.assertEqual(arguments, call_["function"]["arguments"])
        self.assertEqual(chunks(streamed)[-1]["choices"][0]["finish_reason"], "tool_calls")
        self.assertTrue(none.json()["output"])

    def test_llm_key_is_accepted_and_never_sent_back_kept_or_logged(self):
        records = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = records.append
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            with RunningServer(log_level="debug") as s:
                body = {"model": MODEL, "input": "Hi", "apiKey": SECRET}
                responses = [self.agent(s, body, {"LB-LLM-Key": SECRET}),
                             self.agent(s, dict(body, stream=True), {"LB-LLM-KEY": SECRET})]
                runs = [call(s.port, "GET", "/mock/runs/" + r.header("lb-mock-run-id")) for r in responses]
                listing = call(s.port, "GET", "/mock/runs")
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
        self.assertTrue(records)
        for r in responses + runs + [listing]:
            self.assertEqual(r.status, 200)
            self.assertNotIn(SECRET.encode(), r.body)
            self.assertNotIn(SECRET, json.dumps(r.headers))
        for record in records:
            self.assertNotIn(SECRET, record.getMessage())

    def test_cors_preflight_allows_the_llm_key_header(self):
        with RunningServer() as s:
            r = call(s.port, "OPTIONS", "/v1/agent/run", headers={
                "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization,lb-llm-key"})
        self.assertEqual(r.status, 204)
        self.assertIn("LB-LLM-Key", r.header("Access-Control-Allow-Headers").split(", "))

    def test_bad_bodies_are_400s_naming_the_field(self):
        cases = [
            ({"input": "Hi"}, "model is required"),
            ({"model": MODEL}, "input is required"),
            ({"model": MODEL, "input": None}, "input is required"),
            ({"model": "", "input": "Hi"}, "model must be a non-empty string"),
            ({"model": 4, "input": "Hi"}, "model must be a non-empty string"),
            ({"model": "openai:" + "x" * 250, "input": "Hi"}, "at most 256 characters"),
            ({"model": MODEL, "input": []}, "input must be a string or a non-empty array"),
            ({"model": MODEL, "input": {"role": "user"}}, "input must be a string or a non-empty array"),
            ({"model": MODEL, "input": [{"role": "robot", "content": "x"}]}, "input[0].role must be one of"),
            ({"model": MODEL, "input": "Hi", "instructions": ["x"]}, "instructions must be a string"),
            ({"model": MODEL, "input": "Hi", "stream": "yes"}, "stream must be a boolean"),
            ({"model": MODEL, "input": "Hi", "tools": [{"type": "function"}]}, "tools[0] must be"),
            ({"model": MODEL, "input": "Hi", "tool_choice": "sometimes"}, "tool_choice must be"),
            ({"model": MODEL, "input": "Hi", "mock": {"chunking": "never"}}, "chunking"),
            ([MODEL], "must be a JSON object"),
        ]
        with RunningServer() as s:
            for body, words in cases:
                with self.subTest(body=body):
                    self.assertLangbaseError(self.agent(s, body), 400, "BAD_REQUEST", words)
            self.assertEqual(call(s.port, "GET", "/mock/runs").json()["runs"], [])  # nothing half-done

    def test_missing_model_is_the_exact_langbase_envelope(self):
        with RunningServer() as s:
            r = self.agent(s, {"input": "Hi"})
        self.assertEqual(r.body, b'{"error":{"code":"BAD_REQUEST","status":400,"message":"model is required: '
                                 b'\\"provider:model-id\\", e.g. \\"openai:gpt-4o-mini\\"","docs":'
                                 b'"https://langbase.com/docs/api-reference/errors/bad_request"}}')

    def test_auth_and_method_errors(self):
        with RunningServer(api_key="right") as s:
            wrong = self.agent(s, {"model": MODEL, "input": "Hi"}, {"Authorization": "Bearer wrong"})
            right = self.agent(s, {"model": MODEL, "input": "Hi"}, {"Authorization": "Bearer right"})
            get = call(s.port, "GET", "/v1/agent/run", headers={"Authorization": "Bearer right"})
        self.assertLangbaseError(wrong, 401, "UNAUTHORIZED", "Invalid API key")
        self.assertEqual(right.status, 200)
        self.assertLangbaseError(get, 405, "METHOD_NOT_ALLOWED")
        self.assertEqual(get.header("Allow"), "POST, OPTIONS")


class PipesApiTest(ErrorAssertions):
    def create(self, server, body, headers=None):
        return call(server.port, "POST", "/v1/pipes", body, headers)

    def test_create_answers_the_sdk_summary_and_list_the_full_config_with_defaults(self):
        with RunningServer(fixed=True) as s:
            created = self.create(s, {"name": "support", "description": "Helps", "status": "private"})
            listed = call(s.port, "GET", "/v1/pipes")
        self.assertEqual(created.status, 200)
        self.assertEqual(created.json(), {
            "name": "support", "description": "Helps", "status": "private", "owner_login": "mock-user",
            "url": "https://langbase.com/mock-user/support", "type": "chat",
            "api_key": "pipe_00000000000040008000000000000001"})
        (pipe,) = listed.json()
        self.assertEqual(set(pipe), LIST_KEYS)
        self.assertEqual(pipe, {
            "name": "support", "description": "Helps", "status": "private", "owner_login": "mock-user",
            "url": "https://langbase.com/mock-user/support", "model": "openai:gpt-4o-mini", "stream": True,
            "json": False, "store": True, "moderate": False, "top_p": 1, "max_tokens": 1000,
            "temperature": 0.7, "presence_penalty": 0, "frequency_penalty": 0, "stop": [],
            "tool_choice": "auto", "parallel_tool_calls": True, "messages": [], "variables": [], "tools": [],
            "memory": []})

    def test_every_field_round_trips_through_list(self):
        config = {
            "model": "anthropic:claude-3-5-sonnet", "stream": False, "json": True, "store": False,
            "moderate": True, "top_p": 0.5, "max_tokens": 200, "temperature": 0.2, "presence_penalty": 0.1,
            "frequency_penalty": -0.5, "stop": ["END"], "tool_choice": {"type": "function", "function": {
                "name": "get_weather"}}, "parallel_tool_calls": False,
            "messages": [{"role": "system", "content": "You are {{who}}."}],
            "variables": [{"name": "who", "value": "kind"}], "tools": [WEATHER], "memory": [{"name": "docs"}],
        }
        with RunningServer() as s:
            self.assertEqual(self.create(s, dict(config, name="all")).status, 200)
            (pipe,) = call(s.port, "GET", "/v1/pipes").json()
        self.assertEqual({k: pipe[k] for k in config}, config)

    def test_duplicate_is_409_and_upsert_updates_keeping_the_key(self):
        with RunningServer() as s:
            first = self.create(s, {"name": "p1", "model": "openai:gpt-4o"}).json()
            duplicate = self.create(s, {"name": "p1", "description": "again"})
            upserted = self.create(s, {"name": "p1", "upsert": True, "description": "again"})
            new = self.create(s, {"name": "p2", "upsert": True})
            listed = call(s.port, "GET", "/v1/pipes").json()
        self.assertLangbaseError(duplicate, 409, "CONFLICT", "'p1' already exists", "upsert")
        self.assertEqual(upserted.status, 200)
        self.assertEqual(upserted.json(), dict(first, description="again"))
        self.assertEqual(new.status, 200)
        self.assertEqual([(p["name"], p["description"], p["model"]) for p in listed],
                         [("p1", "again", "openai:gpt-4o"), ("p2", "", "openai:gpt-4o-mini")])

    def test_update_sets_the_fields_sent_and_may_rename(self):
        with RunningServer() as s:
            key = self.create(s, {"name": "p1", "tools": [WEATHER]}).json()["api_key"]
            self.create(s, {"name": "taken"})
            updated = call(s.port, "POST", "/v1/pipes/p1", {"name": "p1", "temperature": 0.1,
                                                           "tool_choice": {"type": "function",
                                                                           "function": {"name": "get_weather"}}})
            renamed = call(s.port, "POST", "/v1/pipes/p1", {"name": "p9", "description": "moved"})
            clash = call(s.port, "POST", "/v1/pipes/p9", {"name": "taken"})
            dropped = call(s.port, "POST", "/v1/pipes/p9", {"tools": []})  # tool_choice names get_weather
            missing = call(s.port, "POST", "/v1/pipes/p1", {"temperature": 0.3})
            listed = {p["name"]: p for p in call(s.port, "GET", "/v1/pipes").json()}
        self.assertEqual(updated.status, 200)
        self.assertEqual(renamed.json()["name"], "p9")
        self.assertEqual(renamed.json()["api_key"], key)
        self.assertLangbaseError(clash, 409, "CONFLICT", "'taken' already exists")
        self.assertLangbaseError(dropped, 400, "BAD_REQUEST", "tool_choice")
        self.assertLangbaseError(missing, 404, "NOT_FOUND", "No pipe named 'p1'")
        self.assertEqual(sorted(listed), ["p9", "taken"])
        self.assertEqual((listed["p9"]["temperature"], listed["p9"]["description"]), (0.1, "moved"))
        self.assertEqual(listed["p9"]["tools"], [WEATHER])

    def test_bad_bodies_are_400s_and_store_nothing(self):
        cases = [
            ({}, "name is required"),
            ({"name": ""}, "name must be a pipe name"),
            ({"name": "has space"}, "name must be a pipe name"),
            ({"name": "run"}, "reserved"),
            ({"name": "p", "upsert": "yes"}, "upsert must be a boolean"),
            ({"name": "p", "status": "hidden"}, "status must be"),
            ({"name": "p", "model": ""}, "model must be a non-empty string"),
            ({"name": "p", "model": "m" * 257}, "at most 256 characters"),
            ({"name": "p", "description": 3}, "description must be a string"),
            ({"name": "p", "stream": 1}, "stream must be a boolean"),
            ({"name": "p", "max_tokens": 1.5}, "max_tokens must be an integer"),
            ({"name": "p", "temperature": "hot"}, "temperature must be a number"),
            ({"name": "p", "stop": "END"}, "stop must be an array of strings"),
            ({"name": "p", "memory": ["docs"]}, "memory must be an array"),
            ({"name": "p", "response_format": "json"}, "response_format must be an object"),
            ({"name": "p", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
            ({"name": "p", "variables": [{"name": "a", "value": 1}]}, "variables"),
            ({"name": "p", "tools": [{"type": "retrieval"}]}, "tools[0] must be"),
            ({"name": "p", "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ]
        with RunningServer() as s:
            for body, words in cases:
                with self.subTest(body=body):
                    self.assertLangbaseError(self.create(s, body), 400, "BAD_REQUEST", words)
            self.create(s, {"name": "kept", "temperature": 0.5})
            bad_update = call(s.port, "POST", "/v1/pipes/kept", {"temperature": "hot", "description": "x"})
            bad_rename = call(s.port, "POST", "/v1/pipes/kept", {"name": "no spaces"})
            listed = call(s.port, "GET", "/v1/pipes").json()
        self.assertLangbaseError(bad_update, 400, "BAD_REQUEST", "temperature")
        self.assertLangbaseError(bad_rename, 400, "BAD_REQUEST", "name must be a pipe name")
        self.assertEqual([(p["name"], p["temperature"], p["description"]) for p in listed], [("kept", 0.5, "")])

    def test_store_bounds_are_403_usage_exceeded_with_nothing_stored(self):
        with RunningServer(max_pipes=2) as s:
            self.create(s, {"name": "a"})
            self.create(s, {"name": "b"})
            full = self.create(s, {"name": "c"})
            upsert = self.create(s, {"name": "b", "upsert": True, "description": "still fits"})
            names = [p["name"] for p in call(s.port, "GET", "/v1/pipes").json()]
        self.assertLangbaseError(full, 403, "USAGE_EXCEEDED", "2 pipes", "--max-pipes")
        self.assertEqual(upsert.status, 200)
        self.assertEqual(names, ["a", "b"])
        with RunningServer(max_pipe_bytes=8000) as s:  # a default pipe is estimated at about 4,200 bytes
            self.assertEqual(self.create(s, {"name": "a"}).status, 200)
            grown = call(s.port, "POST", "/v1/pipes/a", {"description": "x" * 2000})
            second = self.create(s, {"name": "b", "description": "y" * 900})
            (pipe,) = call(s.port, "GET", "/v1/pipes").json()
        self.assertLangbaseError(grown, 403, "USAGE_EXCEEDED", "--max-pipe-bytes")
        self.assertLangbaseError(second, 403, "USAGE_EXCEEDED", "--max-pipe-bytes")
        self.assertEqual((pipe["name"], pipe["description"]), ("a", ""))

    def test_pipes_routes_follow_api_key_and_methods(self):
        with RunningServer(api_key="right") as s:
            listed = call(s.port, "GET", "/v1/pipes")
            created = self.create(s, {"name": "p"}, {"Authorization": "Bearer wrong"})
            delete = call(s.port, "DELETE", "/v1/pipes/p", headers={"Authorization": "Bearer right"})
        self.assertLangbaseError(listed, 401, "UNAUTHORIZED", "Missing Authorization")
        self.assertLangbaseError(created, 401, "UNAUTHORIZED")
        self.assertLangbaseError(delete, 405, "METHOD_NOT_ALLOWED")


class PipeRunTest(ErrorAssertions):
    def run_pipe(self, server, body, headers=None):
        return call(server.port, "POST", "/v1/pipes/run", body, headers)

    def test_a_named_pipe_gives_its_model_prompt_and_variable_defaults(self):
        with RunningServer(replies=("Hello {{who}} from {{where}}.",)) as s:
            call(s.port, "POST", "/v1/pipes", {
                "name": "greeter", "model": "google:gemini-1.5-pro", "stream": False,
                "messages": [{"role": "system", "content": "Greet warmly."}],
                "variables": [{"name": "who", "value": "Ada"}, {"name": "where", "value": "London"}]})
            plain = self.run_pipe(s, {"messages": HI}).json()
            named = self.run_pipe(s, {"name": "greeter", "messages": HI})
            override = self.run_pipe(s, {"name": "greeter", "messages": HI,
                                         "variables": [{"name": "who", "value": "Grace"}]}).json()
            thread = call(s.port, "GET", "/v1/threads/%s/messages" % named.header("lb-thread-id")).json()
        answer = named.json()
        self.assertEqual(answer["completion"], "Hello Ada from London.")
        self.assertEqual(answer["raw"]["model"], "google:gemini-1.5-pro")
        self.assertEqual(plain["raw"]["model"], "gpt-4o-mini")
        self.assertEqual(plain["completion"], "Hello {{who}} from {{where}}.")
        self.assertEqual(override["completion"], "Hello Grace from London.")
        self.assertEqual(answer["raw"]["usage"]["prompt_tokens"], plain["raw"]["usage"]["prompt_tokens"] + 3)
        # The pipe's prompt is not part of the conversation the thread keeps.
        self.assertEqual([(m["role"], m["content"]) for m in thread],
                         [("user", "Hi"), ("assistant", "Hello Ada from London.")])

    def test_the_pipe_stream_default_applies_when_the_run_sends_no_stream(self):
        with RunningServer() as s:
            call(s.port, "POST", "/v1/pipes", {"name": "streamer", "model": "openai:gpt-4o"})
            default = self.run_pipe(s, {"name": "streamer", "messages": HI})
            json_answer = self.run_pipe(s, {"name": "streamer", "messages": HI, "stream": False})
        self.assertEqual(default.header("Content-Type"), "text/event-stream; charset=utf-8")
        self.assertEqual({c["model"] for c in chunks(default)}, {"openai:gpt-4o"})
        self.assertEqual(streamed_text(default), json_answer.json()["completion"])

    def test_the_pipe_tools_apply_unless_the_run_sends_tools(self):
        other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
        with RunningServer() as s:
            call(s.port, "POST", "/v1/pipes", {"name": "tooled", "stream": False, "tools": [WEATHER]})
            piped = self.run_pipe(s, {"name": "tooled", "messages": HI}).json()
            chosen = self.run_pipe(s, {"name": "tooled", "messages": HI, "tool_choice": {
                "type": "function", "function": {"name": "get_weather"}}}).json()
            own = self.run_pipe(s, {"name": "tooled", "messages": HI, "tools": [other]}).json()
            off = self.run_pipe(s, {"name": "tooled", "messages": HI, "tool_choice": "none"}).json()
        self.assertEqual(piped["raw"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather")
        self.assertEqual(chosen["raw"]["choices"][0]["finish_reason"], "tool_calls")
        self.assertEqual(own["raw"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_time")
        self.assertEqual(off["raw"]["choices"][0]["finish_reason"], "stop")

    def test_the_pipe_key_as_bearer_names_the_pipe(self):
        with RunningServer() as s:
            key = call(s.port, "POST", "/v1/pipes", {"name": "keyed", "model": "openai:o1",
                                                     "stream": False}).json()["api_key"]
            by_key = self.run_pipe(s, {"messages": HI}, {"Authorization": "Bearer " + key}).json()
            other = self.run_pipe(s, {"messages": HI}, {"Authorization": "Bearer someone-else"}).json()
            unknown = self.run_pipe(s, {"name": "never-created", "messages": HI}).json()
        self.assertEqual(by_key["raw"]["model"], "openai:o1")
        self.assertEqual(other["raw"]["model"], "gpt-4o-mini")
        self.assertEqual(unknown["raw"]["model"], "gpt-4o-mini")  # as before pipes could be created


class TracesTest(ErrorAssertions):
    TRACE = {"workflow": {"createdAt": "2026-01-01T00:00:00.000Z", "id": "3f1c", "agentWorkflowId": "",
                          "name": "summarise", "startTime": 1, "endTime": 5, "duration": 4,
                          "steps": [{"name": "fetch", "output": "ok", "traces": None, "duration": 2,
                                     "startTime": 1, "endTime": 3}]},
             "entityAuthId": ""}

    def test_a_workflow_trace_is_accepted_and_read_back_newest_first(self):
        with RunningServer(fixed=True) as s:
            posted = call(s.port, "POST", "/v1/traces", self.TRACE)
            other = call(s.port, "POST", "/v1/traces", {"agent": {"model": MODEL}})
            listed = call(s.port, "GET", "/mock/traces")
        self.assertEqual(posted.status, 200)
        self.assertEqual(posted.json(), {"success": True, "id": "3f1c"})
        self.assertEqual(other.json(), {"success": True, "id": "00000000-0000-4000-8000-000000000001"})
        self.assertEqual(listed.json(), {"traces": [
            {"id": "00000000-0000-4000-8000-000000000001", "received_at": 1700000000,
             "trace": {"agent": {"model": MODEL}}},
            {"id": "3f1c", "received_at": 1700000000, "trace": self.TRACE}]})

    def test_only_the_last_100_traces_are_kept(self):
        with RunningServer() as s:
            for i in range(103):
                self.assertEqual(call(s.port, "POST", "/v1/traces", {"workflow": {"id": "t%d" % i}}).status, 200)
            traces = call(s.port, "GET", "/mock/traces").json()["traces"]
        self.assertEqual([t["id"] for t in traces], ["t%d" % i for i in range(102, 2, -1)])

    def test_what_is_not_a_trace_is_a_400(self):
        cases = [[], {}, {"entityAuthId": ""}, {"workflow": "x"}, {"workflow": {}, "agent": {}}]
        with RunningServer(api_key="k") as s:
            for body in cases:
                with self.subTest(body=body):
                    r = call(s.port, "POST", "/v1/traces", body, {"Authorization": "Bearer k"})
                    self.assertLangbaseError(r, 400, "BAD_REQUEST", "must be" if body == [] else "workflow")
            unauthorised = call(s.port, "POST", "/v1/traces", self.TRACE)
            kept = call(s.port, "GET", "/mock/traces").json()
        self.assertLangbaseError(unauthorised, 401, "UNAUTHORIZED")
        self.assertEqual(kept, {"traces": []})


if __name__ == "__main__":
    unittest.main()
