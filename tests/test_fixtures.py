"""Fixtures: the file format and its errors (file, line, column), every match rule alone and
combined, sequences (``nth``), ``--strict``, hot reload (a broken edit included), pushed
fixtures (``/mock/fixtures``), reply modes ``echo`` and ``lorem``, errors and scenario settings
from a fixture, and a scripted tool loop byte for byte, over real sockets where it matters."""

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import unittest

import fixtures
import main
import pipes
from tests import support
from tests.support import RunningServer, call, sse_data

HI = [{"role": "user", "content": "Hi"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}


def run_request(messages=HI, variables=None, tools=None, thread_id=None):
    body = {"messages": messages}
    if variables:
        body["variables"] = variables
    if tools:
        body["tools"] = tools
    if thread_id:
        body["threadId"] = thread_id
    return pipes.parse_run_request(body)


def facts(wire="langbase", route="/v1/pipes/run", model="gpt-4o-mini", pipe=None, turn=1):
    return fixtures.Facts(wire, route, model, pipe, lambda: turn)


def one(match, response=None):
    """A fixture set holding one fixture with ``match``."""
    book = fixtures.FixtureSet()
    book.push(fixtures.parse_text(json.dumps({"name": "f", "match": match,
                                              "response": response or {"text": "scripted"}}), "request body"))
    return book


def push(server, body):
    return call(server.port, "POST", "/mock/fixtures", body)


def completion(server, messages=HI, path="/v1/pipes/run", **extra):
    body = dict({"messages": messages}, **extra)
    return call(server.port, "POST", path, body)


class FormatErrorsTest(unittest.TestCase):
    def error(self, text):
        with self.assertRaises(fixtures.FixtureError) as ctx:
            fixtures.parse_text(text, "f.json")
        return ctx.exception

    def test_json_syntax_error_has_the_position_json_found(self):
        text = '[\n  {"response": {"text": "x",}}\n]'
        with self.assertRaises(json.JSONDecodeError) as found:  # where this Python's json says
            json.loads(text)
        e = self.error(text)
        self.assertIn(found.exception.colno, (28, 29))  # the comma (3.13) or what follows it
        self.assertEqual((e.source, e.line, e.column), ("f.json", 2, found.exception.colno))
        self.assertIn("not valid JSON", str(e))
        self.assertTrue(str(e).startswith("f.json:2:%d: " % found.exception.colno), str(e))

    def test_semantic_errors_point_at_the_offending_key(self):
        cases = [
            ('{"fixtures": [\n {"response": {"text": "a"}},\n {"match": {"user_regex": "(("},\n  "response": {"text": "b"}}]}',
             3, 13, "fixtures[1].match.user_regex", "regular expression"),
            ('[{"match": {"nth": 0}, "response": {"text": "x"}}]', 1, 13, "[0].match.nth", "from 1"),
            ('[{"match": {"colour": "red"}, "response": {"text": "x"}}]', 1, 13, "[0].match.colour", "unknown match rule"),
            ('[{"match": {"wire": ["openai", "grpc"]}, "response": {"text": "x"}}]', 1, 32, "[0].match.wire[1]", "not one of"),
            ('[{"response": {"text": "x", "chunks": ["a"]}}]', 1, 29, "[0].response.chunks", "at most one"),
            ('[{"response": {"mock": {"line_ending": "lfcr"}}}]', 1, 25, "[0].response.mock.line_ending", "lf, crlf"),
            ('[{"response": {"tool_calls": [{"name": "f", "arguments": "{oops"}]}}]', 1, 45,
             "[0].response.tool_calls[0].arguments", "JSON text"),
            ('[{"response": {"error": {"status": 200}}}]', 1, 26, "[0].response.error.status", "400 to 599"),
            ('[{"match": {"user": "x"}}]', 1, 2, "[0]", "response is required"),
            ('{"fixture": []}', 1, 1, "", "holds an array of fixtures"),
            ('{"fixtures": [], "x": 1}', 1, 18, "x", "unknown top-level field"),
        ]
        for text, line, column, where, words in cases:
            with self.subTest(where=where):
                e = self.error(text)
                self.assertEqual((e.line, e.column, e.where), (line, column, where), str(e))
                self.assertIn(words, e.reason)

    def test_invalid_file_stops_the_server_at_startup_naming_file_line_column(self):
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        path = os.path.join(folder, "bad.json")
        with open(path, "w") as f:
            f.write('[\n {"match": {"turn": "two"}, "response": {"text": "x"}}\n]\n')
        with contextlib.redirect_stderr(io.StringIO()) as err, self.assertRaises(SystemExit) as ctx:
            main.parse_args(["--fixtures", path], env={})
        self.assertEqual(ctx.exception.code, 2)
        self.assertIn("%s:2:13: [0].match.turn: must be a whole number from 1, not a string" % path, err.getvalue())

    def test_example_file_is_valid_and_names_every_rule_and_response_kind(self):
        book = fixtures.FixtureSet(os.path.join(support.ROOT, "examples", "fixtures.json"))
        listing = book.listing()
        rules = {rule for f in listing for rule in f["match"]}
        kinds = {kind for f in listing for kind in f["response"]}
        self.assertEqual(rules, set(fixtures._MATCH_KEYS))
        self.assertEqual(kinds, set(fixtures._RESPONSE_KEYS))

    def test_docs_show_the_example_file_as_it_ships(self):
        with open(os.path.join(support.ROOT, "examples", "fixtures.json"), encoding="utf-8") as f:
            example = f.read()
        with open(os.path.join(support.ROOT, "docs", "fixtures.md"), encoding="utf-8") as f:
            self.assertIn("```json\n" + example + "```", f.read())


class MatchRulesTest(unittest.TestCase):
    """Each rule alone: a run it holds for and one it does not."""

    def check(self, match, hit, miss, hit_facts=None, miss_facts=None):
        book = one(match)
        self.assertIsNotNone(book.match(hit, hit_facts or facts()), match)
        book = one(match)
        self.assertIsNone(book.match(miss, miss_facts or facts()), match)

    def test_user_rules(self):
        self.check({"user": "Hi"}, run_request(), run_request([{"role": "user", "content": "Hi!"}]))
        self.check({"user_contains": "eat"}, run_request([{"role": "user", "content": "weather?"}]), run_request())
        self.check({"user_regex": "^W.*\\?$"}, run_request([{"role": "user", "content": "Why?"}]), run_request())

    def test_user_is_the_last_user_message_and_content_parts_count(self):
        messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": [{"type": "text", "text": "second"}]}]
        self.check({"user": "second"}, run_request(messages), run_request())

    def test_system_rules(self):
        system = [{"role": "system", "content": "You are a pirate."}] + HI
        self.check({"system": "You are a pirate."}, run_request(system), run_request())
        self.check({"system_contains": "pirate"}, run_request(system), run_request())
        self.check({"system_regex": "pir.te"}, run_request(system), run_request())

    def test_wire_route_pipe_and_model(self):
        r = run_request()
        self.check({"wire": ["openai", "lobe"]}, r, r, facts(wire="lobe"), facts(wire="langbase"))
        self.check({"route": "/v1/agent/run"}, r, r, facts(route="/v1/agent/run"), facts())
        self.check({"pipe": "support"}, r, r, facts(pipe="support"), facts(pipe="other"))
        self.check({"model": "openai:gpt-4o"}, r, r, facts(model="openai:gpt-4o"), facts())

    def test_variables_tools_tool_result_and_turn(self):
        self.check({"variables": {"plan": "pro"}}, run_request(variables={"plan": "pro", "x": "y"}),
                   run_request(variables={"plan": "free"}))
        self.check({"tools": True}, run_request(tools=[WEATHER]), run_request())
        self.check({"tools": False}, run_request(), run_request(tools=[WEATHER]))
        result = HI + [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
        self.check({"tool_result": True}, run_request(result), run_request())
        self.check({"turn": 2}, run_request(), run_request(), facts(turn=2), facts(turn=1))

    def test_combined_rules_all_must_hold_and_first_match_wins(self):
        book = fixtures.FixtureSet()
        book.push(fixtures.parse_text(json.dumps([
            {"name": "both", "match": {"user": "Hi", "wire": "openai"}, "response": {"text": "a"}},
            {"name": "any-hi", "match": {"user": "Hi"}, "response": {"text": "b"}},
            {"name": "also-hi", "match": {"user_contains": "H"}, "response": {"text": "c"}},
        ]), "request body"))
        self.assertEqual(book.match(run_request(), facts(wire="openai")).name, "both")
        self.assertEqual(book.match(run_request(), facts(wire="langbase")).name, "any-hi")
        self.assertIsNone(book.match(run_request([{"role": "user", "content": "yo"}]), facts()))

    def test_nth_counts_runs_the_other_rules_held_for_whichever_fixture_won(self):
        book = fixtures.FixtureSet()
        book.push(fixtures.parse_text(json.dumps([
            {"name": "one", "match": {"user": "Hi", "nth": 1}, "response": {"text": "1"}},
            {"name": "three", "match": {"user": "Hi", "nth": 3}, "response": {"text": "3"}},
            {"name": "rest", "match": {"user": "Hi"}, "response": {"text": "n"}},
        ]), "request body"))
        names = [book.match(run_request(), facts()).name for _ in range(5)]
        self.assertEqual(names, ["one", "rest", "three", "rest", "rest"])
        self.assertEqual([f["matched"] for f in book.listing()], [5, 5, 5])
        book.clear_pushed()
        self.assertEqual(book.listing(), [])


class ServedFixturesTest(unittest.TestCase):
    def test_a_pushed_fixture_answers_every_wire_format_and_the_run_names_it(self):
        with RunningServer() as s:
            self.assertEqual(push(s, {"name": "hi", "match": {"user": "Hi"},
                                      "response": {"chunks": ["Scripted ", "reply."]}}).status, 201)
            pipe = completion(s, stream=True)
            chunks = [json.loads(d) for d in sse_data(pipe.body)[:-1]]
            self.assertEqual([c["choices"][0]["delta"].get("content") for c in chunks],
                             ["", "Scripted ", "reply.", None])
            agent = call(s.port, "POST", "/v1/agent/run", {"model": "openai:gpt-4o", "input": "Hi"})
            self.assertEqual(agent.json()["output"], "Scripted reply.")
            chat = completion(s, path="/v1/chat/completions", model="gpt-4o-mini")
            self.assertEqual(chat.json()["choices"][0]["message"]["content"], "Scripted reply.")
            lobe = completion(s, path="/api/chat", model="gpt-4o-mini")
            self.assertIn(b'"Scripted "', lobe.body)
            events = call(s.port, "GET", "/api/events?prompt=Hi&payload=json")
            self.assertIn(b"reply.", events.body)
            record = call(s.port, "GET", "/mock/runs/" + pipe.header("lb-mock-run-id")).json()
            self.assertEqual((record["fixture"], record["text"], record["deltas"]),
                             ("hi", "Scripted reply.", ["Scripted ", "reply."]))
            self.assertEqual(call(s.port, "GET", "/mock/fixtures").json()["fixtures"][0]["matched"], 5)

    def test_unmatched_runs_get_the_built_in_reply_and_strict_names_the_request(self):
        with RunningServer(replies=("Built in.",)) as s:
            push(s, {"match": {"user": "other"}, "response": {"text": "x"}})
            self.assertEqual(completion(s).json()["completion"], "Built in.")
        with RunningServer(strict_fixtures=True) as s:
            r = completion(s, path="/v1/chat/completions", model="gpt-4o-mini")
            self.assertEqual(r.status, 404)
            message = r.json()["error"]["message"]
            for words in ("No fixture matched POST /v1/chat/completions", "wire openai", "'Hi'", "--strict"):
                self.assertIn(words, message)
            self.assertEqual(call(s.port, "GET", "/mock/runs").json()["runs"], [])

    def test_error_fixture_answers_in_each_route_shape_and_is_recorded(self):
        with RunningServer() as s:
            push(s, {"name": "limited", "response": {"error": {"status": 429, "code": "RATE_LIMITED",
                                                              "message": "Slow down."}}})
            r = completion(s)
            self.assertEqual(r.status, 429)
            self.assertEqual(r.json()["error"]["code"], "RATE_LIMITED")
            self.assertEqual(r.json()["error"]["message"], "Slow down.")
            o = completion(s, path="/v1/chat/completions", model="m")
            self.assertEqual(o.status, 429)
            self.assertEqual(o.json()["error"]["code"], "rate_limited")  # OpenAI's codes are lower case
            self.assertEqual(o.json()["error"]["message"], "Slow down.")
            record = call(s.port, "GET", "/mock/runs/" + r.header("lb-mock-run-id")).json()
            self.assertEqual((record["fixture"], record["error"]["status"]), ("limited", 429))

    def test_fixture_scenario_settings_shape_the_stream_and_the_body_mock_wins(self):
        with RunningServer() as s:
            push(s, {"response": {"text": "Hello there", "mock": {"line_ending": "crlf", "chunking": "whole"}}})
            r = completion(s, stream=True)
            self.assertIn(b'"content":"Hello there"}', r.body)
            self.assertNotIn(b"\n\n", r.body.replace(b"\r\n", b""))
            self.assertIn(b"\r\n\r\n", r.body)
            r = completion(s, stream=True, mock={"line_ending": "lf"})
            self.assertNotIn(b"\r", r.body)

    def test_variables_fill_a_fixture_text(self):
        with RunningServer() as s:
            push(s, {"match": {"variables": {"plan": "pro"}}, "response": {"text": "Hi {{plan}} user {{who}}"}})
            r = completion(s, variables={"plan": "pro"})
            self.assertEqual(r.json()["completion"], "Hi pro user {{who}}")

    def test_turn_counts_the_stored_thread(self):
        with RunningServer() as s:
            push(s, [{"name": "second", "match": {"turn": 2}, "response": {"text": "turn two"}},
                     {"name": "other", "response": {"text": "another turn"}}])
            first = completion(s)
            self.assertEqual(first.json()["completion"], "another turn")
            thread = first.header("lb-thread-id")
            again = completion(s, threadId=thread, messages=[{"role": "user", "content": "and then?"}])
            self.assertEqual(again.json()["completion"], "turn two")

    def test_pipe_rule_sees_the_run_pipe_name(self):
        with RunningServer() as s:
            push(s, {"match": {"pipe": "support"}, "response": {"text": "support pipe"}})
            self.assertEqual(completion(s, name="support").json()["completion"], "support pipe")
            self.assertNotEqual(completion(s, name="sales").json()["completion"], "support pipe")

    def test_push_list_delete_and_invalid_push_adds_nothing(self):
        with RunningServer() as s:
            bad = push(s, [{"response": {"text": "ok"}}, {"match": {"user_regex": "(("}, "response": {"text": "x"}}])
            self.assertEqual(bad.status, 400)
            self.assertIn("request body:1:43: [1].match.user_regex", bad.json()["error"]["message"])
            self.assertEqual(call(s.port, "GET", "/mock/fixtures").json()["fixtures"], [])
            added = push(s, {"fixtures": [{"name": "a", "response": {"text": "A"}},
                                          {"name": "b", "response": {"text": "B"}}]})
            self.assertEqual(added.status, 201)
            self.assertEqual(added.json()["added"], 2)
            listing = call(s.port, "GET", "/mock/fixtures").json()
            self.assertEqual([f["name"] for f in listing["fixtures"]], ["a", "b"])
            self.assertEqual((listing["path"], listing["strict"]), (None, False))
            self.assertEqual(call(s.port, "DELETE", "/mock/fixtures").json(), {"deleted": 2})
            self.assertEqual(call(s.port, "GET", "/mock/fixtures").json()["fixtures"], [])

    def test_a_lone_surrogate_escape_is_refused_where_it_is(self):
        with RunningServer() as s:
            r = call(s.port, "POST", "/mock/fixtures", b'{"response":\n {"text": "x\\udc00"}}',
                     {"Content-Type": "application/json"})
            self.assertEqual(r.status, 400)
            self.assertIn("request body:2:13: a lone UTF-16 surrogate escape", r.json()["error"]["message"])

    def test_json_python_reads_but_json_does_not_allow_is_a_400_not_a_500(self):
        # Regression (found by schemathesis): an integer past Python's 4300-digit conversion
        # limit made json.loads raise a plain ValueError, answered 500. NaN, Infinity and
        # 1e999 are not JSON either (a tool call's arguments object would carry them to the
        # client), and bytes that are not UTF-8 were silently replaced.
        cases = [(b'{"match": {"turn": ' + b"1" * 5000 + b'}, "response": {"text": "x"}}',
                  "request body:1:20: an integer of 5000 digits is too long"),
                 (b'{"response": {"tool_calls": [{"name": "f", "arguments": {"a": NaN}}]}}',
                  "request body:1:63: NaN is not JSON"),
                 (b'[{"response": {"tool_calls": [{"name": "f", "arguments": {"a": -Infinity}}]}}]',
                  ":1:64: -Infinity is not JSON"),
                 (b'{"response": {"tool_calls": [{"name": "f", "arguments": {"a": 1e999}}]}}',
                  ":1:63: 1e999 is too large"),
                 (b'{"response": {"text": "caf\xe9"}}', "not UTF-8 (byte 26)")]
        with RunningServer() as s:
            for raw, reason in cases:
                with self.subTest(raw=raw[:60]):
                    r = call(s.port, "POST", "/mock/fixtures", raw, {"Content-Type": "application/json"})
                    self.assertEqual((r.status, r.json()["error"]["code"]), (400, "BAD_REQUEST"), r.body[:300])
                    self.assertIn(reason, r.json()["error"]["message"])
            self.assertEqual(call(s.port, "GET", "/mock/fixtures").json()["fixtures"], [])

    def test_too_many_pushed_fixtures_is_403_with_nothing_added(self):
        with RunningServer() as s:
            r = push(s, [{"response": {"text": "x"}}] * (fixtures.MAX_PUSHED + 1))
            self.assertEqual((r.status, r.json()["error"]["code"]), (403, "USAGE_EXCEEDED"))
            self.assertEqual(call(s.port, "GET", "/mock/fixtures").json()["fixtures"], [])

    def test_pushed_fixtures_are_bounded_in_bytes_too(self):
        book = fixtures.FixtureSet()
        one_fixture = fixtures.parse_text('{"response": {"text": "x"}}', "request body")
        book.push(one_fixture, fixtures.MAX_PUSHED_BYTES - 10)
        with self.assertRaises(OverflowError):
            book.push(one_fixture, 11)
        self.assertEqual(len(book), 1)
        book.clear_pushed()
        book.push(one_fixture, fixtures.MAX_PUSHED_BYTES)
        self.assertEqual(len(book), 1)


class ReplyModesTest(unittest.TestCase):
    def test_echo_and_lorem_per_request_and_per_server(self):
        with RunningServer() as s:
            echo = completion(s, messages=[{"role": "user", "content": "Say {{this}} back"}],
                              variables={"this": "X"}, mock={"reply_mode": "echo"})
            self.assertEqual(echo.json()["completion"], "Say {{this}} back")
            lorem = call(s.port, "POST", "/v1/pipes/run", {"messages": HI},
                         {"X-Mock-Reply-Mode": "lorem", "X-Mock-Lorem-Words": "3"})
            self.assertEqual(lorem.json()["completion"], "Lorem ipsum dolor.")
        with RunningServer(mock=(("reply_mode", "lorem"),)) as s:
            text = completion(s).json()["completion"]
            self.assertEqual(len(text.split()), 50)
            self.assertTrue(text.endswith("."))

    def test_a_mock_only_fixture_picks_the_mode(self):
        with RunningServer() as s:
            push(s, {"match": {"wire": "openai"}, "response": {"mock": {"reply_mode": "echo"}}})
            r = completion(s, path="/v1/chat/completions", model="m",
                           messages=[{"role": "user", "content": "parrot"}])
            self.assertEqual(r.json()["choices"][0]["message"]["content"], "parrot")


class ToolLoopTest(unittest.TestCase):
    FIXTURES = [
        {"name": "call", "match": {"user_contains": "weather", "tool_result": False},
         "response": {"tool_calls": [{"id": "call_w1", "name": "get_weather", "arguments": {"location": "Paris"}},
                                     {"name": "get_time", "arguments": "{\"tz\": \"CET\"}"}]}},
        {"name": "answer", "match": {"user_contains": "weather", "tool_result": True},
         "response": {"chunks": ["Sunny, ", "18 °C."]}},
    ]
    QUESTION = [{"role": "user", "content": "weather in Paris?"}]

    def test_tool_loop_streams_byte_exact_openai_deltas_then_the_answer(self):
        with RunningServer(fixed=True) as s:
            push(s, self.FIXTURES)
            first = completion(s, path="/v1/chat/completions", model="m", stream=True,
                               messages=self.QUESTION, tools=[WEATHER])
            record = call(s.port, "GET", "/mock/runs/" + first.header("lb-mock-run-id")).json()
            time_id = record["tool_calls"][1]["id"]
            head = {"id": record["id"], "object": "chat.completion.chunk", "created": 1700000000,
                    "model": "m", "system_fingerprint": None}

            def chunk(delta, finish=None):
                return dict(head, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

            def args(index, piece):
                return chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})

            expected = [chunk({"role": "assistant", "content": None}),
                        chunk({"tool_calls": [{"index": 0, "id": "call_w1", "type": "function",
                                               "function": {"name": "get_weather", "arguments": ""}}]})]
            expected += [args(0, p) for p in ["{", '"', "location", '"', ":", '"', "Paris", '"', "}"]]
            expected.append(chunk({"tool_calls": [{"index": 1, "id": time_id, "type": "function",
                                                   "function": {"name": "get_time", "arguments": ""}}]}))
            expected += [args(1, p) for p in ["{", '"', "tz", '"', ":", ' "', "CET", '"', "}"]]
            expected.append(chunk({}, "tool_calls"))
            body = "".join("data: %s\n\n" % json.dumps(c, separators=(",", ":"), ensure_ascii=False)
                           for c in expected) + "data: [DONE]\n\n"
            self.assertEqual(first.body.decode("utf-8"), body)
            self.assertRegex(time_id, r"^call_[0-9a-f]{24}$")
            self.assertEqual(record["fixture"], "call")

            follow_up = self.QUESTION + [
                {"role": "assistant", "content": None, "tool_calls": record["tool_calls"]},
                {"role": "tool", "tool_call_id": "call_w1", "content": "{\"temp_c\": 18}"},
                {"role": "tool", "tool_call_id": time_id, "content": "12:00"}]
            second = completion(s, path="/v1/chat/completions", model="m", stream=True,
                                messages=follow_up, tools=[WEATHER])
            contents = [json.loads(d)["choices"][0]["delta"].get("content") for d in sse_data(second.body)[:-1]]
            self.assertEqual(contents, ["", "Sunny, ", "18 °C.", None])

    def test_json_runs_carry_message_tool_calls(self):
        with RunningServer() as s:
            push(s, self.FIXTURES)
            r = completion(s, path="/v1/chat/completions", model="m", messages=self.QUESTION, tools=[WEATHER])
            choice = r.json()["choices"][0]
            self.assertEqual(choice["finish_reason"], "tool_calls")
            self.assertEqual([(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                              for c in choice["message"]["tool_calls"]][0],
                             ("call_w1", "get_weather", {"location": "Paris"}))
            lb = completion(s, messages=self.QUESTION)
            self.assertEqual(lb.json()["completion"], "")
            self.assertEqual(len(lb.json()["raw"]["choices"][0]["message"]["tool_calls"]), 2)

    def test_formats_that_carry_text_only_refuse_a_tool_call_fixture_with_a_400(self):
        # The message lifecycle, EventSource JSON data messages and token streams have no event
        # for a tool call: such a fixture was a 200 whose stream broke off (a traceback in the
        # log) or whose arguments went out as text tokens.
        with RunningServer() as s:
            push(s, {"name": "call", "response": {"tool_calls": [{"name": "f", "arguments": {"a": 1}}]}})
            logs = io.StringIO()
            handler = logging.StreamHandler(logs)
            logging.getLogger().addHandler(handler)
            try:
                answers = [
                    completion(s, path="/api/stream", model="m", chatId="chat-1"),
                    call(s.port, "GET", "/events?prompt=Hi"),
                    call(s.port, "POST", "/api/generate", {"sessionId": "s", "chatMessageId": "m", "messages": HI}),
                    call(s.port, "GET", "/api/stream/s/m"),
                ]
            finally:
                logging.getLogger().removeHandler(handler)
            for r in answers:
                self.assertEqual(r.status, 400, r.body)
                self.assertIn("'call' answers with tool calls", r.json()["error"])
            self.assertNotIn("Traceback", logs.getvalue())
            self.assertEqual(call(s.port, "GET", "/mock/runs").json()["runs"], [])
            self.assertEqual(call(s.port, "GET", "/v1/threads/chat-1").status, 404)
            openai = call(s.port, "GET", "/api/events?prompt=Hi")  # OpenAI chunks carry tool calls
            self.assertEqual(openai.status, 200)
            self.assertIn(b'"finish_reason":"tool_calls"', openai.body)


class HotReloadTest(unittest.TestCase):
    def write(self, path, fixtures_list):
        with open(path + ".tmp", "w") as f:
            json.dump(fixtures_list, f)
        os.replace(path + ".tmp", path)

    def wait_for(self, server, text, seconds=5.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            got = completion(server).json()["completion"]
            if got == text:
                return got
            time.sleep(0.1)
        self.fail("the reply never became %r (last %r)" % (text, got))

    def test_changed_files_reload_and_a_broken_edit_keeps_the_previous_set(self):
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        path = os.path.join(folder, "a.json")
        self.write(path, [{"response": {"text": "version one"}}])
        with RunningServer(fixtures=folder) as s:
            self.assertEqual(completion(s).json()["completion"], "version one")
            self.write(path, [{"response": {"text": "version two!"}}])
            self.wait_for(s, "version two!")
            with self.assertLogs("fixtures", logging.WARNING) as logs:
                with open(path, "w") as f:
                    f.write('[{"response": {"text": "broken"}')
                deadline = time.monotonic() + 5
                while not logs.records and time.monotonic() < deadline:
                    time.sleep(0.1)
            self.assertIn("fixtures not reloaded, the previous 1 are kept", logs.output[0])
            self.assertIn("a.json:1:", logs.output[0])
            self.assertEqual(completion(s).json()["completion"], "version two!")
            self.write(os.path.join(folder, "0-first.json"), [{"response": {"text": "new file first"}}])
            self.write(path, [])
            self.wait_for(s, "new file first")
            self.assertEqual(call(s.port, "GET", "/mock/fixtures").json()["path"], folder)


if __name__ == "__main__":
    unittest.main()


class DelaysTest(unittest.TestCase):
    def test_delays_pace_each_chunk_instead_of_the_scenario(self):
        with RunningServer(delay=5.0) as s:  # the scenario's own pacing would take 20 s
            push(s, {"response": {"chunks": ["A", "B", "C"], "delays": [0.3, 0.0, 0.4]}})
            body = json.dumps({"stream": True, "messages": HI}).encode()
            arrivals = []
            with support.connect(s.port) as sock:
                start = time.monotonic()
                sock.sendall(support.request_bytes("POST", "/v1/pipes/run", body,
                                                   {"Content-Type": "application/json", "Connection": "close"}))
                data = b""
                while time.monotonic() - start < 5:
                    piece = sock.recv(65536)
                    if not piece:
                        break
                    data += piece
                    for name in (b"A", b"B", b"C"):
                        if b'"content":"%s"' % name in data and name not in dict(arrivals):
                            arrivals.append((name, time.monotonic() - start))
            when = dict(arrivals)
            self.assertEqual(sorted(when), [b"A", b"B", b"C"], data)
            self.assertGreaterEqual(when[b"A"], 0.28)
            self.assertLess(when[b"B"] - when[b"A"], 0.2)
            self.assertGreaterEqual(when[b"C"] - when[b"B"], 0.38)
            self.assertLess(when[b"C"], 3.0)
            self.assertIn(b"data: [DONE]\n\n", data)
            self.assertTrue(data.endswith(b"\r\n0\r\n\r\n"), data[-40:])

    def test_delays_must_fit_the_chunks(self):
        for response, words in (({"text": "x", "delays": [0]}, "delays go with chunks"),
                                ({"chunks": ["a", "b"], "delays": [0]}, "1 waits for 2 chunks"),
                                ({"chunks": ["a"], "delays": [61]}, "from 0 to 60")):
            with self.subTest(response=response):
                with self.assertRaises(fixtures.FixtureError) as ctx:
                    fixtures.parse_text(json.dumps({"response": response}), "request body")
                self.assertIn(words, str(ctx.exception))


class FixtureTimingTest(unittest.TestCase):
    def test_fixture_timing_scenario_keeps_the_boundaries_and_drops_the_delays(self):
        with RunningServer() as s:
            push(s, {"response": {"chunks": ["A", "B"], "delays": [3.0, 3.0]}})
            start = time.monotonic()
            r = completion(s, stream=True, mock={"fixture_timing": "scenario"})
            self.assertLess(time.monotonic() - start, 2.0)
            self.assertEqual([json.loads(d)["choices"][0]["delta"].get("content") for d in sse_data(r.body)[:-1]],
                             ["", "A", "B", None])
