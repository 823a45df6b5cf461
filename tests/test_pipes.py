"""Sans-I/O tests of pipes.py: reply choice, events, chunk encoding and plans (no sockets)."""

import json
import unittest

from tests import support  # noqa: F401  (puts the project root on sys.path)
import pipes
from pipes import (
    ChunkEncoder, Finish, RunLog, Start, TextDelta, ToolCallDelta, Usage,
    choose_reply, completion_body, error_envelope, parse_replies, parse_run_request,
    reply_events, tokenize,
)
from sse import dumps_compact
from threads import InvalidRequest

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["location"],
        },
    },
}


def run_request(**body):
    body.setdefault("messages", [{"role": "user", "content": "Hello"}])
    return parse_run_request(body)


class TokenizeTest(unittest.TestCase):
    def test_tokenize_words_and_punctuation_keep_whitespace(self):
        self.assertEqual(tokenize("Hello! How are you?"), ("Hello", "!", " How", " are", " you", "?"))

    def test_tokenize_reuses_pieces_of_recent_texts_within_a_bound(self):
        text = "Shared pieces for a reply sent %d times" % 2
        self.assertIs(tokenize(text), tokenize(text))
        huge = "word " * (pipes._TOKEN_CACHE_CHARS // 16)  # over the per-text limit: not kept
        self.assertIsNot(tokenize(huge), tokenize(huge))
        for i in range(2000):  # many distinct texts: the cache stays within its character bound
            tokenize("text number %d " % i * 40)
        self.assertLessEqual(pipes._token_cache_chars, pipes._TOKEN_CACHE_CHARS)
        self.assertEqual(pipes._token_cache_chars, sum(map(len, pipes._token_cache)))

    def test_tokenize_join_equals_text_for_every_sample(self):
        extra = ["", "  ", "a  ", "\n\nx\t", "caf\u00e9 \U0001f680!", "x\u2028y"]
        for text in pipes.SAMPLE_REPLIES + tuple(extra):
            with self.subTest(text=text):
                self.assertEqual("".join(tokenize(text)), text)


class ParseRunRequestTest(unittest.TestCase):
    def test_parse_run_request_accepts_thread_id_spellings(self):
        self.assertEqual(run_request(threadId="t1").thread_id, "t1")
        self.assertEqual(run_request(thread_id="t2").thread_id, "t2")

    def test_parse_run_request_variables_array_or_object(self):
        self.assertEqual(run_request(variables=[{"name": "a", "value": "1"}]).variables, {"a": "1"})
        self.assertEqual(run_request(variables={"a": "1"}).variables, {"a": "1"})

    def test_parse_run_request_messages_optional_with_variables(self):
        self.assertEqual(parse_run_request({"variables": {"a": "b"}}).messages, [])

    def test_parse_run_request_unknown_keys_ignored(self):
        self.assertFalse(run_request(name="my-pipe", api_key="k", raw_response=True, stream=None).stream)

    def test_parse_run_request_invalid_bodies_name_the_field(self):
        cases = [
            ([], None),
            ({}, "messages"),
            ({"messages": "hi"}, "messages"),
            ({"messages": ["hi"]}, "messages[0]"),
            ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
            ({"messages": [{"role": "user"}]}, "messages[0].content"),
            ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
            ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages[0].content[0]"),
            ({"messages": [{"role": "tool", "content": "x", "tool_call_id": 3}]}, "messages[0].tool_call_id"),
            ({"messages": [], "stream": "yes"}, "stream"),
            ({"messages": [], "threadId": 42}, "threadId"),
            ({"messages": [], "threadId": "a\r\nSet-Cookie: x=1"}, "threadId"),
            ({"messages": [], "threadId": ""}, "threadId"),
            ({"messages": [], "variables": "x"}, "variables"),
            ({"messages": [], "variables": [{"name": "a", "value": 1}]}, "variables"),
            ({"messages": [], "variables": {"a": None}}, "variables"),
            ({"messages": [], "tools": [{"type": "function"}]}, "tools[0]"),
            ({"messages": [], "tools": "x"}, "tools"),
            ({"messages": [], "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ]
        for body, param in cases:
            with self.subTest(body=body):
                with self.assertRaises(InvalidRequest) as ctx:
                    parse_run_request(body)
                self.assertEqual(ctx.exception.param, param)

    def test_parse_replies_rejects_empty_and_non_strings(self):
        self.assertEqual(parse_replies(["a"]), ("a",))
        for bad in ([], {}, [""], ["a", 1], "a"):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                parse_replies(bad)


class ChooseReplyTest(unittest.TestCase):
    def test_choose_reply_same_seed_same_request_same_reply(self):
        a = choose_reply(run_request(), pipes.SAMPLE_REPLIES, 7)
        b = choose_reply(run_request(), pipes.SAMPLE_REPLIES, 7)
        self.assertEqual(a, b)

    def test_choose_reply_varies_with_seed(self):
        texts = {choose_reply(run_request(), pipes.SAMPLE_REPLIES, seed).text for seed in range(20)}
        self.assertGreater(len(texts), 1)

    def test_choose_reply_substitutes_variables_leaves_unknown(self):
        req = run_request(variables=[{"name": "name", "value": "Ada"}])
        reply = choose_reply(req, ("Hi {{name}}, {{ name }} and {{other}}.",), 0)
        self.assertEqual(reply.text, "Hi Ada, Ada and {{other}}.")

    def test_choose_reply_usage_counts_pieces(self):
        req = run_request(messages=[{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": [{"type": "text", "text": "Hi there"}]}])
        reply = choose_reply(req, ("One, two.",), 0)
        self.assertEqual(reply.usage, Usage(prompt_tokens=3 + 2, completion_tokens=4))
        self.assertEqual(reply.usage.as_dict(), {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9})

    def test_choose_reply_tools_give_tool_call_from_schema(self):
        reply = choose_reply(run_request(tools=[WEATHER_TOOL]), pipes.SAMPLE_REPLIES, 0)
        self.assertIsNone(reply.text)
        self.assertEqual(reply.finish_reason, "tool_calls")
        (call,) = reply.tool_calls
        self.assertEqual(call.name, "get_weather")
        self.assertRegex(call.id, r"^call_[0-9a-f]{24}$")
        args = json.loads(call.arguments)
        self.assertEqual(set(args), {"location", "unit", "days"})
        self.assertEqual(args["unit"], "celsius")
        self.assertIsInstance(args["days"], int)

    def test_choose_reply_tool_result_or_none_choice_gives_text(self):
        after_tool = run_request(tools=[WEATHER_TOOL], messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "c"},
        ])
        self.assertIsNotNone(choose_reply(after_tool, pipes.SAMPLE_REPLIES, 0).text)
        self.assertIsNotNone(choose_reply(run_request(tools=[WEATHER_TOOL], tool_choice="none"), pipes.SAMPLE_REPLIES, 0).text)


class EncoderTest(unittest.TestCase):
    def setUp(self):
        self.enc = ChunkEncoder("chatcmpl-1", 1700000000, "gpt-4o-mini")

    def chunk(self, delta, finish_reason=None, **extra):
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000,
                 "model": "gpt-4o-mini", "system_fingerprint": None,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
        chunk.update(extra)
        return ("data: " + dumps_compact(chunk) + "\n\n").encode("utf-8")

    def test_encode_text_delta_fast_path_equals_full_encoding(self):
        long = "x\"" * 40  # past the length whose encoding is kept
        for text in ["Hello", " w\u00f6rld", "\"q\"\\", "\n", "\U0001f680", "</script>", "\u2028", long]:
            with self.subTest(text=text):
                self.assertEqual(self.enc.encode(TextDelta(text)), self.chunk({"content": text}))
                self.assertEqual(self.enc.encode(TextDelta(text)), self.chunk({"content": text}))  # kept

    def test_encode_start_finish_tool_call_exact_bytes(self):
        self.assertEqual(self.enc.encode(Start("")), self.chunk({"role": "assistant", "content": ""}))
        self.assertEqual(
            self.enc.encode(Finish("stop", Usage(2, 3))),
            self.chunk({}, "stop", usage={"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}),
        )
        self.assertEqual(
            self.enc.encode(ToolCallDelta(0, "call_1", "f", "")),
            self.chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
        )
        self.assertEqual(
            self.enc.encode(ToolCallDelta(0, None, None, '{"a"')),
            self.chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        )

    def test_encode_unknown_event_raises(self):
        with self.assertRaises(TypeError):
            self.enc.encode(Usage(1, 1))

    def test_completion_body_shape(self):
        reply = choose_reply(run_request(), ("Hi.",), 0)
        body = completion_body(reply, self.enc)
        self.assertEqual(body["completion"], "Hi.")
        raw = body["raw"]
        self.assertEqual(raw["object"], "chat.completion")
        self.assertEqual(raw["id"], "chatcmpl-1")
        self.assertEqual(raw["choices"], [{"index": 0, "message": {"role": "assistant", "content": "Hi."},
                                           "logprobs": None, "finish_reason": "stop"}])
        self.assertEqual(raw["usage"]["total_tokens"], raw["usage"]["prompt_tokens"] + 2)

    def test_completion_body_tool_call_has_empty_completion(self):
        reply = choose_reply(run_request(tools=[WEATHER_TOOL]), ("x",), 0)
        body = completion_body(reply, self.enc)
        self.assertEqual(body["completion"], "")
        message = body["raw"]["choices"][0]["message"]
        self.assertIsNone(message["content"])
        self.assertEqual(message["tool_calls"][0]["function"]["name"], "get_weather")


class EventsTest(unittest.TestCase):
    def test_text_deltas_are_kept_for_recent_pieces_and_bounded(self):
        pieces = ("Hi", " there", ".")
        deltas = pipes.text_deltas(pieces)
        self.assertEqual(deltas, (TextDelta("Hi"), TextDelta(" there"), TextDelta(".")))
        self.assertIs(pipes.text_deltas(tuple(list(pieces))), deltas)  # equal pieces: the same events
        per_reply = pipes._DELTAS_MAX_BYTES // 4 // 200  # bytes of one piece's share
        for n in range(8):  # more than the bound in all: the oldest are let go
            pipes.text_deltas(tuple("%d-%d-" % (n, i) + "x" * (per_reply // 4 - 100) for i in range(200)))
            self.assertLessEqual(pipes._deltas_bytes, pipes._DELTAS_MAX_BYTES)
        self.assertIsNot(pipes.text_deltas(pieces), deltas)

    def test_a_huge_reply_is_not_kept(self):
        whole = ("\U0001f600" * (pipes._DELTAS_MAX_BYTES // 8),)  # one piece, 4 MB by the estimate
        before = pipes._deltas_bytes
        self.assertEqual(pipes.text_deltas(whole), (TextDelta(whole[0]),))
        self.assertEqual(pipes._deltas_bytes, before)
        self.assertIsNot(pipes.text_deltas(whole), pipes.text_deltas(whole))

    def test_text_events_follow_the_pieces(self):
        reply = choose_reply(run_request(), ("Hi there.",), 0)
        self.assertEqual(list(reply_events(reply)), [
            Start(""), TextDelta("Hi"), TextDelta(" there"), TextDelta("."), Finish("stop", reply.usage)])

    def test_custom_split_sets_pieces_and_usage(self):
        reply = choose_reply(run_request(), ("abcde",), 0, split=lambda t: [t[:2], t[2:]])
        self.assertEqual(reply.pieces, ("ab", "cde"))
        self.assertEqual(reply.usage.completion_tokens, 2)

    def test_completion_id_depends_on_seed_only_through_rng(self):
        a = choose_reply(run_request(), ("x",), 1).id
        self.assertEqual(a, choose_reply(run_request(), ("x",), 1).id)
        self.assertNotEqual(a, choose_reply(run_request(), ("x",), 2).id)
        self.assertRegex(a, r"^chatcmpl-[0-9a-f]{32}$")

    def test_tool_call_events_reassemble_arguments(self):
        reply = choose_reply(run_request(tools=[WEATHER_TOOL]), ("x",), 0)
        events = list(reply_events(reply))
        self.assertEqual(events[0], Start(None))
        deltas = [e for e in events if type(e) is ToolCallDelta]
        self.assertEqual(deltas[0].name, "get_weather")
        self.assertTrue(all(d.id is None for d in deltas[1:]))
        self.assertEqual("".join(d.arguments for d in deltas), reply.tool_calls[0].arguments)
        self.assertEqual(events[-1], Finish("tool_calls", reply.usage))
        self.assertEqual(reply.usage.completion_tokens, len(deltas) - 1)


class ErrorEnvelopeTest(unittest.TestCase):
    def test_error_envelope_and_in_band_frame(self):
        env = error_envelope(429, "RATE_LIMITED", "Slow down.")
        self.assertEqual(env, {"error": {"code": "RATE_LIMITED", "status": 429, "message": "Slow down.",
                                         "docs": "https://langbase.com/docs/api-reference/errors/rate_limited"}})
        frame = ChunkEncoder("c", 1, "m").error(429, "RATE_LIMITED", "Slow down.")
        self.assertEqual(frame, ("data: " + dumps_compact(env) + "\n\n").encode())


class LazyRandomTest(unittest.TestCase):
    def draws(self, rng) -> list:
        seq = list(range(20))
        out = []
        for _ in range(30):
            out += [rng.randint(1, 9), rng.random(), rng.getrandbits(70), rng.choice(seq),
                    rng.uniform(-1, 1), rng.randrange(1000)]
        rng.shuffle(seq)
        return out + seq

    def test_same_numbers_as_an_eagerly_seeded_generator(self) -> None:
        eager = pipes.seeded_random(7, "digest", "scenario")
        lazy = pipes.seeded_random(7, "digest", "scenario", lazy=True)
        self.assertIsInstance(lazy, pipes.LazyRandom)
        self.assertEqual(self.draws(lazy), self.draws(eager))

    def test_a_first_draw_through_randbelow_terminates(self) -> None:
        # randint's first draw holds the generator's getrandbits before it has been seeded.
        lazy = pipes.seeded_random(1, "d", "p", lazy=True)
        eager = pipes.seeded_random(1, "d", "p")
        self.assertEqual([lazy.randint(1, 3) for _ in range(20)], [eager.randint(1, 3) for _ in range(20)])


class DigestTest(unittest.TestCase):
    def test_sha256_is_hashlibs_and_comes_from_the_standard_library(self):
        import hashlib
        import sys

        import digests

        for data in (b"", b"abc", "h\u00e9llo".encode(), bytes(range(256)) * 40):
            self.assertEqual(digests.sha256(data).hexdigest(), hashlib.sha256(data).hexdigest())
        module = getattr(digests.sha256, "__module__", None)  # _sha256, _sha2, or _hashlib via hashlib
        names = getattr(sys, "stdlib_module_names", None)  # Python 3.10+
        if names is not None and module:
            self.assertIn(module.split(".")[0], names)


class RunLogTest(unittest.TestCase):
    def test_run_log_keeps_newest_within_limit(self):
        log = RunLog(limit=2)
        for i in range(3):
            log.add("r%d" % i, {"i": i})
        self.assertIsNone(log.get("r0"))
        self.assertEqual(log.get("r2"), {"i": 2})
        self.assertEqual(log.recent(), ["r2", "r1"])

    def test_run_log_keeps_its_estimated_bytes_within_max_bytes(self):
        big = {"text": "x" * 20000, "deltas": tuple("x" * 20000)}  # a char-chunked reply
        log = RunLog(limit=1000, max_bytes=10 * pipes.record_bytes(big))
        for i in range(50):
            log.add("r%d" % i, dict(big))
        self.assertEqual(len(log.recent()), 10)
        self.assertLessEqual(log.bytes, log.max_bytes)
        self.assertEqual(log.recent()[0], "r49")
        huge = RunLog(max_bytes=1)  # one record over the bound is still kept: the newest
        huge.add("only", big)
        self.assertEqual(huge.recent(), ["only"])


class ReplyBoundTest(unittest.TestCase):
    def test_variables_cannot_blow_a_small_request_up_into_a_huge_reply(self):
        request = parse_run_request({"messages": [], "variables": {"a": "x y " * 2500}})
        with self.assertRaises(InvalidRequest) as ctx:
            choose_reply(request, ("{{a}}" * 4000,), 0, max_chars=200_000)
        self.assertIn("200000", ctx.exception.message)
        reply = choose_reply(request, ("{{a}}{{b}}",), 0, max_chars=200_000)
        self.assertEqual(reply.text, "x y " * 2500 + "{{b}}")

    def test_tool_call_arguments_are_bounded_too(self):
        tools = [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"a": {"enum": ["y" * 600]}}}}}]
        request = parse_run_request({"messages": [{"role": "user", "content": "x"}], "tools": tools})
        with self.assertRaises(InvalidRequest):
            choose_reply(request, ("t",), 0, max_chars=500)
        self.assertTrue(choose_reply(request, ("t",), 0, max_chars=700).tool_calls)

    def test_record_bytes_counts_what_the_record_holds(self):
        class Sc:
            reply_text = "{{a}}" * 4000  # held by the record's scenario even when the reply is empty
        empty = {"text": "", "deltas": (), "scenario": Sc(), "tool_calls": []}
        self.assertGreaterEqual(pipes.record_bytes(empty), 2 * 20000)
        call = {"text": None, "deltas": ("{}",), "scenario": None,
                "tool_calls": [{"function": {"name": "f", "arguments": "x" * 5000}}]}
        self.assertGreaterEqual(pipes.record_bytes(call), 2 * 5000)

    def test_too_many_pieces_is_refused(self):
        request = parse_run_request({"messages": []})
        with self.assertRaises(InvalidRequest):
            choose_reply(request, ("x" * 1000,), 0, split=list, max_pieces=999)
        self.assertEqual(len(choose_reply(request, ("x" * 1000,), 0, split=list, max_pieces=1000).pieces), 1000)


if __name__ == "__main__":
    unittest.main()
