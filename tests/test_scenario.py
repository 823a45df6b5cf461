"""Scenario settings: validation and precedence, exact plans (no sockets), and each setting's
observable effect over a real socket."""

import json
import random
import unittest

from tests import support
from tests.support import RunningServer, call, connect, request_bytes
import scenario
from pipes import ChunkEncoder, Finish, Start, TextDelta, Usage, choose_reply, parse_run_request, reply_events
from steps import Close, Wait, Write
from scenario import build, header_layer, parse_layer, reframe, shape, splitter
from threads import InvalidRequest

HELLO = {"messages": [{"role": "user", "content": "Hi there"}]}
STREAM = dict(HELLO, stream=True)
ENC = ChunkEncoder("chatcmpl-1", 1700000000, "m")
EVENTS = [Start(""), TextDelta("Hi"), TextDelta(" there"), Finish("stop", Usage(1, 2))]


def sc(**settings):
    return build(0, settings.pop("delay", 0.0), parse_layer(settings, "test"))


def plan(fires=False, events=EVENTS, **settings):
    """The whole shaped and re-framed plan; ``fires`` says whether the fault happens."""
    s = sc(**settings)
    return list(reframe(shape(iter(events), ENC, s, random.Random(1), fires), s, random.Random(2)))


def reply_events_of(text):
    request = parse_run_request({"messages": []})
    return reply_events(choose_reply(request, (text,), 0))


def frames(**settings):
    return [ENC.encode(e) for e in EVENTS]


def _spec_events(body):
    """The data of every event a WHATWG-conformant parser dispatches (no BOM handling)."""
    lines = body.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    events, data = [], []
    for line in lines[:-1]:  # the text after the last line ending is not a complete line
        if line == "":
            if data:
                events.append("\n".join(data))
            data = []
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
    return events


def sends(steps):
    """The plan as the loop sends it: consecutive writes (no wait between) joined into one."""
    out = []
    for step in steps:
        if type(step) is Write and out and type(out[-1]) is Write:
            out[-1] = Write(out[-1].data + step.data)
        else:
            out.append(step)
    return out


def body_of(steps):
    return b"".join(s.data for s in steps if type(s) is Write)


class SettingsTest(unittest.TestCase):
    def test_unknown_setting_names_it_and_lists_known(self):
        with self.assertRaises(InvalidRequest) as ctx:
            parse_layer({"dealy": 1}, "mock")
        self.assertEqual(ctx.exception.param, "dealy")
        self.assertIn("unknown setting 'dealy'", ctx.exception.message)
        self.assertIn("delay", ctx.exception.message)

    def test_wrong_type_or_range_names_setting_and_allowed_values(self):
        cases = [({"delay": "1"}, "a number from 0 to 60"), ({"delay": 61}, "a number from 0 to 60"),
                 ({"chunking": "token"}, "one of word, char, fixed, random, whole"),
                 ({"event_ids": 1}, "true or false"), ({"chunk_size": 2.5}, "a whole number"),
                 ({"ttft": None}, "a number"), ({"delay": float("nan")}, "a number"),
                 ({"fault_code": "lower"}, "upper-case"), ({"fault_status": 200}, "400 to 599"),
                 ({"event_name": "a b"}, "letters, digits"), ({"reply_text": "x" * 20001}, "20000 characters")]
        for values, allowed in cases:
            with self.subTest(values=values), self.assertRaises(InvalidRequest) as ctx:
                parse_layer(values, "mock")
            self.assertIn(allowed, ctx.exception.message)
            self.assertEqual(ctx.exception.param, next(iter(values)))

    def test_text_values_parsed_for_headers_and_flags(self):
        self.assertEqual(parse_layer({"delay": "0.5", "event_ids": "true", "retry": "null", "chunk_size": "3"},
                                     "--mock", from_text=True),
                         {"delay": 0.5, "event_ids": True, "retry": None, "chunk_size": 3})
        with self.assertRaises(InvalidRequest):
            parse_layer({"delay": "fast"}, "--mock", from_text=True)

    def test_header_layer_reads_x_mock_headers_only(self):
        layer = header_layer([("X-Mock-Line-Ending", "crlf"), ("x-mock-event-ids", "1"), ("X-Other", "y")])
        self.assertEqual(layer, {"line_ending": "crlf", "event_ids": True})
        with self.assertRaises(InvalidRequest) as ctx:
            header_layer([("X-Mock-Nope", "1")])
        self.assertIn("X-Mock-Nope header", ctx.exception.message)

    def test_later_layers_win_and_server_seed_delay_fill_in(self):
        s = build(7, 0.25, {"line_ending": "crlf", "chunking": "char"}, {"line_ending": "cr"}, {"chunking": "whole"})
        self.assertEqual((s.seed, s.delay, s.line_ending, s.chunking), (7, 0.25, "cr", "whole"))
        self.assertEqual(build(7, 0.25, {"seed": 3, "delay": 0.0}).seed, 3)

    def test_fault_after_seconds_needs_disconnect(self):
        with self.assertRaises(InvalidRequest):
            build(0, 0, {"fault_after_seconds": 1.0})

    def test_tokens_per_second_sets_interval(self):
        self.assertEqual(sc(tokens_per_second=20).interval, 0.05)


class ScenarioDocsTest(unittest.TestCase):
    def test_scenarios_page_documents_every_setting(self):
        with open(support.ROOT + "/docs/scenarios.md", encoding="utf-8") as f:
            page = f.read()
        for name in scenario.SETTINGS:
            self.assertIn("| `%s` |" % name, page)


class ChunkingTest(unittest.TestCase):
    TEXT = "Hello, w\u00f6rld \U0001f680!"

    def test_every_mode_joins_to_the_text(self):
        for mode in ("word", "char", "fixed", "random", "whole"):
            with self.subTest(mode=mode):
                pieces = splitter(sc(chunking=mode, chunk_size=3), random.Random(0))(self.TEXT)
                self.assertEqual("".join(pieces), self.TEXT)

    def test_mode_shapes(self):
        split = lambda mode, size=3: splitter(sc(chunking=mode, chunk_size=size), random.Random(0))(self.TEXT)
        self.assertEqual(split("char"), list(self.TEXT))
        self.assertEqual(split("whole"), [self.TEXT])
        self.assertEqual(split("fixed"), [self.TEXT[i:i + 3] for i in range(0, len(self.TEXT), 3)])
        self.assertTrue(all(1 <= len(p) <= 5 for p in split("random", 5)))
        self.assertEqual(split("random", 5), split("random", 5))


class ShapeTest(unittest.TestCase):
    def test_default_zero_delay_is_frames_then_done_without_waits(self):
        self.assertEqual(sends(plan()), [Write(b"".join(frames()) + b"data: [DONE]\n\n")])

    def test_zero_delay_frames_handed_over_a_few_kilobytes_at_a_time(self):
        events = list(reply_events_of(" ".join(["word"] * 2000)))
        steps = list(scenario._plain(iter(events), ENC, 0.0, 0.0))
        self.assertTrue(all(type(s) is Write for s in steps))
        self.assertGreater(len(steps), 10)
        self.assertTrue(all(len(s.data) < scenario._BATCH_BYTES + 1000 for s in steps))
        self.assertEqual(b"".join(s.data for s in steps), b"".join(ENC.encode(e) for e in events) + ENC.done)

    def test_plain_path_equals_general_path(self):
        events = list(reply_events_of("One, two three!"))
        for settings in ({}, {"delay": 0.5}, {"ttft": 1.5}, {"delay": 0.1, "ttft": 0.2}, {"tokens_per_second": 4}):
            with self.subTest(settings=settings):
                s = sc(**settings)
                self.assertTrue(s.is_plain())
                self.assertEqual(sends(scenario._plain(iter(events), ENC, s.ttft, s.interval)),
                                 sends(scenario._shaped(iter(events), ENC, s, random.Random(0), False)))

    def test_paced_every_event_its_own_write(self):
        steps = plan(delay=0.5, ttft=2.0)
        f = frames()
        self.assertEqual(steps, [Wait(2.0), Write(f[0]), Wait(0.5), Write(f[1]), Wait(0.5), Write(f[2]),
                                 Wait(0.5), Write(f[3]), Wait(0), Write(b"data: [DONE]\n\n")])

    def test_a_first_event_due_at_once_has_no_wait_before_it(self):
        # So the loop sends it with the response head, in one write (as Node's http does).
        f = frames()
        for settings in ({"delay": 0.5}, {"delay": 0.5, "keepalive": 0.2}, {"delay": 0.5, "event_ids": True}):
            with self.subTest(settings=settings):
                self.assertEqual(type(plan(**settings)[0]), Write)
        self.assertEqual(plan(delay=0.5)[:3], [Write(f[0]), Wait(0.5), Write(f[1])])
        self.assertEqual(plan(delay=0.5, ttft=0.25)[:2], [Wait(0.25), Write(f[0])])
        self.assertEqual(type(plan(delay=0.5, jitter=0.1)[0]), Wait)  # jittered: its draw is kept

    def test_jitter_is_seeded_and_bounded(self):
        a = [s.seconds for s in plan(delay=0.5, jitter=0.1) if type(s) is Wait]
        self.assertEqual(a, [s.seconds for s in plan(delay=0.5, jitter=0.1) if type(s) is Wait])
        self.assertTrue(all(0.4 <= w <= 0.6 for w in a[1:-1]), a)
        self.assertGreater(len(set(a[1:-1])), 1)

    def test_line_endings(self):
        self.assertEqual(body_of(plan(line_ending="crlf")), b"".join(frames()).replace(b"\n", b"\r\n") + b"data: [DONE]\r\n\r\n")
        self.assertEqual(body_of(plan(line_ending="cr")), b"".join(frames()).replace(b"\n", b"\r") + b"data: [DONE]\r\r")
        mixed = body_of(plan(line_ending="mixed"))
        self.assertEqual(mixed.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), body_of(plan()))
        kinds = {m for m in (b"\r\n", b"\r", b"\n")
                 if m in mixed.replace(b"\r\n", b"\x00" if m != b"\r\n" else b"\r\n")}
        self.assertEqual(kinds, {b"\r\n", b"\r", b"\n"})
        self.assertEqual(mixed, body_of(plan(line_ending="mixed")))

    def test_mixed_endings_never_merge_events(self):
        # Regression: a CR ending then an LF ending read as one CRLF, merging two events.
        for seed in range(40):
            s = sc(line_ending="mixed")
            body = b"".join(st.data for st in shape(iter(EVENTS), ENC, s, random.Random(seed), False)
                            if type(st) is Write)
            events = _spec_events(body)
            self.assertEqual(len(events), 5, (seed, body))
            self.assertEqual(events[-1], "[DONE]")

    def test_no_final_blank_line_with_any_endings(self):
        for ending in ("lf", "crlf", "cr", "mixed"):
            for seed in range(10):
                s = sc(line_ending=ending, ending="no_final_blank_line")
                body = b"".join(st.data for st in shape(iter(EVENTS), ENC, s, random.Random(seed), False)
                                if type(st) is Write)
                with self.subTest(ending=ending, seed=seed):
                    self.assertEqual(len(_spec_events(body)), 4)  # [DONE] is never dispatched
                    self.assertRegex(body, rb"\[DONE\](\r\n|\r|\n)$")

    def test_ids_retry_bom_and_comments(self):
        body = body_of(plan(event_ids=True, retry=3000, bom=True, keepalive_between=True))
        self.assertTrue(body.startswith(b"\xef\xbb\xbfid: 1\nretry: 3000\ndata: {"))
        self.assertIn(b"\n\nid: 2\ndata: ", body)
        self.assertEqual(body.count(b"retry:"), 1)
        self.assertEqual(body.count(b": ping\n\n"), 4)
        self.assertTrue(body.endswith(b"id: 5\ndata: [DONE]\n\n"))

    def test_keepalive_splits_long_waits(self):
        steps = plan(delay=1.0, keepalive=0.4)
        ping = Write(b": ping\n\n")
        self.assertEqual(steps[:5], [Write(frames()[0]), Wait(0.4), ping, Wait(0.4), ping])
        self.assertAlmostEqual(steps[5].seconds, 0.2)
        self.assertEqual(steps[6], Write(frames()[1]))
        self.assertEqual(steps.count(ping), 6)

    def test_event_name_spacing_and_multiline_data(self):
        named = body_of(plan(event_name="message", event_ids=True))
        self.assertTrue(named.startswith(b"event: message\nid: 1\ndata: {"))
        self.assertEqual(named.count(b"event: message\n"), 5)
        self.assertEqual(body_of(plan(data_spacing="none")), body_of(plan()).replace(b"data: ", b"data:"))
        self.assertEqual(body_of(plan(data_spacing="two")), body_of(plan()).replace(b"data: ", b"data:  "))
        tricky = [Start(""), TextDelta(","), TextDelta('",\"'), TextDelta(', "x": 1'), Finish("stop", Usage(1, 3))]
        for event, (_, _, data) in zip(tricky, [(None, None, e) for e in _spec_events(body_of(
                plan(events=tricky, multiline_data=True)))]):
            self.assertEqual(json.loads(data), json.loads(ENC.encode(event)[6:]))  # regression: split inside strings
        multi = body_of(plan(multiline_data=True))
        events = multi.split(b"\n\n")[:-1]
        self.assertGreater(events[0].count(b"\ndata: "), 3)
        for event, frame in zip(events, body_of(plan()).split(b"\n\n")):
            joined = b"\n".join(line[6:] for line in event.split(b"\n"))
            self.assertEqual(json.loads(joined) if joined != b"[DONE]" else joined,
                             json.loads(frame[6:]) if frame != b"data: [DONE]" else b"[DONE]")

    def test_data_spacing_keeps_content_that_mentions_data(self):
        events = [Start(""), TextDelta("data: x"), Finish("stop", Usage(1, 1))]
        body = body_of(plan(events=events, data_spacing="none"))
        self.assertIn(b'"content":"data: x"', body)

    def test_reply_and_reply_text_choose_the_set(self):
        replies = ("a", "b", "c")
        self.assertEqual(scenario.replies_for(sc(), replies), replies)
        self.assertEqual(scenario.replies_for(sc(reply=1), replies), ("b",))
        self.assertEqual(scenario.replies_for(sc(reply_text="mine"), replies), ("mine",))
        with self.assertRaises(InvalidRequest) as ctx:
            scenario.replies_for(sc(reply=3), replies)
        self.assertIn("use 0 to 2", ctx.exception.message)
        with self.assertRaises(InvalidRequest):
            sc(reply=0, reply_text="x")

    def test_endings(self):
        base = b"".join(frames())
        self.assertEqual(body_of(plan(ending="no_done")), base)
        self.assertEqual(body_of(plan(ending="done_no_space")), base + b"data:[DONE]\n\n")
        self.assertEqual(body_of(plan(ending="no_final_blank_line")), base + b"data: [DONE]\n")
        self.assertEqual(body_of(plan(ending="no_final_blank_line", line_ending="crlf"))[-14:], b"data: [DONE]\r\n")
        after = body_of(plan(ending="data_after_done"))
        self.assertTrue(after.startswith(base + b"data: [DONE]\n\ndata: {"))
        self.assertIn(b"[data after DONE]", after.split(b"[DONE]")[1])
        self.assertEqual(plan(ending="no_terminator")[-1], Close(False))


class FaultTest(unittest.TestCase):
    def test_fault_not_fired_changes_nothing(self):
        self.assertEqual(sends(plan(False, fault="disconnect")), sends(plan()))

    def test_error_frame_after_n_events_then_body_ends(self):
        steps = plan(True, fault="error_frame", fault_after=2, fault_status=429)
        f = frames()
        self.assertEqual(steps[:2], [Write(f[0]), Write(f[1])])
        error = json.loads(steps[2].data[6:])
        self.assertEqual(error["error"]["code"], "RATE_LIMITED")
        self.assertEqual(error["error"]["status"], 429)
        self.assertEqual(len(steps), 3)

    def test_disconnect_after_n_events_fin_or_reset(self):
        f = frames()
        self.assertEqual(plan(True, fault="disconnect", fault_after=1), [Write(f[0]), Close(False)])
        self.assertEqual(plan(True, fault="disconnect", fault_after=0, disconnect="reset"), [Close(True)])

    def test_disconnect_after_seconds(self):
        steps = plan(True, fault="disconnect", fault_after_seconds=1.2, delay=0.5)
        f = frames()
        self.assertEqual(steps[:6], [Wait(0.0), Write(f[0]), Wait(0.5), Write(f[1]), Wait(0.5), Write(f[2])])
        self.assertAlmostEqual(steps[6].seconds, 0.2)
        self.assertEqual(steps[7:], [Close(False)])

    def test_stall_after_n_events_then_continues(self):
        steps = plan(True, fault="stall", fault_after=2, stall=30.0)
        f = frames()
        self.assertEqual(steps, [Write(f[0]), Write(f[1]), Wait(30.0), Write(f[2]), Write(f[3]),
                                 Write(b"data: [DONE]\n\n")])

    def test_corrupt_event_is_not_json_and_stream_goes_on(self):
        steps = plan(True, fault="corrupt", fault_after=1)
        datas = [s.data for s in steps]
        self.assertEqual(datas[0], frames()[0])
        self.assertTrue(datas[1].startswith(b"data: {") and datas[1].endswith(b"\n\n"))
        with self.assertRaises(ValueError):
            json.loads(datas[1][6:])
        self.assertEqual(datas[2:], frames()[2:] + [b"data: [DONE]\n\n"])

    def test_fault_point_past_the_end_happens_before_done(self):
        self.assertEqual(plan(True, fault="disconnect", fault_after=99)[-1], Close(False))
        self.assertNotIn(b"[DONE]", body_of(plan(True, fault="error_frame", fault_after=99)))
        self.assertTrue(body_of(plan(True, fault="corrupt", fault_after=99)).endswith(b"data: [\n\n"))

    def test_fault_probability_is_seeded(self):
        s = sc(fault="disconnect", fault_probability=0.5)
        draws = [scenario.fault_fires(s, random.Random(seed)) for seed in range(40)]
        self.assertEqual(draws, [scenario.fault_fires(s, random.Random(seed)) for seed in range(40)])
        self.assertIn(True, draws)
        self.assertIn(False, draws)
        self.assertFalse(scenario.fault_fires(sc(fault="disconnect", fault_probability=0.0), random.Random(0)))
        self.assertFalse(scenario.fault_fires(sc(), random.Random(0)))


class ReframeTest(unittest.TestCase):
    def writes(self, steps):
        return [s.data for s in steps if type(s) is Write]

    def test_split_and_byte(self):
        for settings, size in (({"framing": "split", "split_bytes": 7}, 7), ({"framing": "byte"}, 1)):
            with self.subTest(settings=settings):
                steps = plan(delay=0.1, **settings)
                self.assertEqual(body_of(steps), body_of(plan()))
                self.assertTrue(all(len(w) <= size for w in self.writes(steps)))
                # pieces are separated by waits, so each is its own send
                self.assertTrue(all(type(a) is not Write or type(b) is not Write for a, b in zip(steps, steps[1:])))

    def test_random_cuts_hit_the_tricky_places(self):
        events = [Start(""), TextDelta("caf\u00e9 \U0001f680 \u4f60\u597d"), Finish("stop", Usage(1, 1))]
        steps = plan(events=events, framing="random", line_ending="crlf")
        writes = self.writes(steps)
        self.assertEqual(b"".join(writes), body_of(plan(events=events, line_ending="crlf")))
        ends = [w[-1:] for w in writes[:-1]]
        starts = [w[:1] for w in writes[1:]]
        self.assertTrue(any(0x80 <= s[0] < 0xC0 for s in starts if s), "no cut inside a UTF-8 character")
        self.assertTrue(any(e == b"\r" and s == b"\n" for e, s in zip(ends, starts)), "no cut between CR and LF")
        self.assertEqual(writes, self.writes(plan(events=events, framing="random", line_ending="crlf")))

    def test_coalesce_joins_k_events_and_sums_waits(self):
        steps = plan(framing="coalesce", coalesce=2, delay=0.5)
        f = frames()
        self.assertEqual(steps, [Wait(0.5), Write(f[0] + f[1]), Wait(1.0), Write(f[2] + f[3]),
                                 Wait(0), Write(b"data: [DONE]\n\n")])


class HttpScenarioTest(unittest.TestCase):
    """Each setting's effect on the wire, read with raw sockets."""

    def stream(self, s, body=None, headers=None):
        return call(s.port, "POST", "/v1/pipes/run", dict(STREAM, **(body or {})), headers)

    def test_precedence_flag_header_body(self):
        with RunningServer(mock=(("line_ending", "crlf"),)) as s:
            self.assertIn(b"\r\n\r\n", self.stream(s).body)
            cr = self.stream(s, headers={"X-Mock-Line-Ending": "cr"}).body
            self.assertNotIn(b"\n", cr)
            lf = self.stream(s, {"mock": {"line_ending": "lf"}}, {"X-Mock-Line-Ending": "cr"}).body
            self.assertNotIn(b"\r", lf)

    def test_invalid_settings_are_400_naming_them(self):
        with RunningServer() as s:
            for body, headers, needle in [({"mock": {"nope": 1}}, None, "unknown setting 'nope'"),
                                          ({"mock": {"delay": "x"}}, None, "delay"),
                                          ({"mock": []}, None, "mock must be an object"),
                                          (None, {"X-Mock-Framing": "zigzag"}, "X-Mock-Framing header"),
                                          ({"mock": {"delay": 60}}, None, "the limit is 900 s")]:
                with self.subTest(body=body, headers=headers):
                    r = self.stream(s, body, headers)
                    self.assertEqual(r.status, 400)
                    self.assertIn(needle, r.json()["error"]["message"])

    def test_seed_and_run_id_headers_and_same_seed_same_bytes(self):
        with RunningServer() as s:
            a = self.stream(s, {"mock": {"seed": 42, "chunking": "random", "framing": "random"}})
            b = self.stream(s, {"mock": {"seed": 42, "chunking": "random", "framing": "random"}})
            c = self.stream(s, {"mock": {"seed": 43, "chunking": "random", "framing": "random"}})
        self.assertEqual(a.header("lb-mock-seed"), "42")
        self.assertNotEqual(a.header("lb-mock-run-id"), b.header("lb-mock-run-id"))
        self.assertEqual(a.raw_body, b.raw_body)
        self.assertNotEqual(a.raw_body, c.raw_body)
        self.assertIn("lb-mock-run-id", a.header("Access-Control-Expose-Headers"))

    def test_http_error_fault_429_with_retry_headers_and_nothing_stored(self):
        with RunningServer() as s:
            for stream in (True, False):
                r = call(s.port, "POST", "/v1/pipes/run", dict(HELLO, stream=stream, mock={
                    "fault": "http_error", "fault_status": 429, "retry_after": 7}))
                self.assertEqual(r.status, 429)
                self.assertEqual(r.json()["error"]["code"], "RATE_LIMITED")
                self.assertEqual(r.header("Retry-After"), "7")
                self.assertEqual(r.header("x-ratelimit-remaining"), "0")
                self.assertTrue(r.header("lb-mock-run-id"))
            r = self.stream(s, {"mock": {"fault": "http_error", "fault_status": 503, "fault_code": "OVERLOADED"}})
            self.assertEqual((r.status, r.json()["error"]["code"]), (503, "OVERLOADED"))
            self.assertEqual(call(s.port, "GET", "/health").json()["threads"], 0)

    def test_error_frame_in_band_then_clean_end(self):
        with RunningServer() as s:
            r = self.stream(s, {"mock": {"fault": "error_frame", "fault_after": 2}})
        datas = support.sse_data(r.body)
        self.assertEqual(len(datas), 3)
        self.assertEqual(json.loads(datas[-1])["error"]["code"], "INTERNAL_SERVER_ERROR")
        self.assertTrue(r.raw_body.endswith(b"0\r\n\r\n"))

    def test_disconnect_fin_cuts_body_without_terminator(self):
        with RunningServer() as s, connect(s.port) as sock:
            body = json.dumps(dict(STREAM, mock={"fault": "disconnect", "fault_after": 2})).encode()
            sock.sendall(request_bytes("POST", "/v1/pipes/run", body))
            raw = support.read_all(sock)
        head, rest = raw.split(b"\r\n\r\n", 1)
        self.assertIn(b"Transfer-Encoding: chunked", head)
        self.assertEqual(rest.count(b"data: "), 2)
        self.assertFalse(rest.endswith(b"0\r\n\r\n"))

    def test_disconnect_reset_is_a_connection_reset(self):
        with RunningServer() as s, connect(s.port) as sock:
            body = json.dumps(dict(STREAM, mock={"fault": "disconnect", "fault_after": 2, "disconnect": "reset"})).encode()
            sock.sendall(request_bytes("POST", "/v1/pipes/run", body))
            with self.assertRaises(ConnectionResetError):
                while sock.recv(65536):
                    pass

    def test_no_terminator_ending_closes_after_done(self):
        with RunningServer() as s, connect(s.port) as sock:
            body = json.dumps(dict(STREAM, mock={"ending": "no_terminator"})).encode()
            sock.sendall(request_bytes("POST", "/v1/pipes/run", body))
            raw = support.read_all(sock)
        self.assertTrue(raw.endswith(b"data: [DONE]\n\n\r\n"))

    def test_body_close_and_buffered(self):
        with RunningServer() as s:
            plain = self.stream(s).body
            for mode in ("close", "buffered"):
                with self.subTest(mode=mode), connect(s.port) as sock:
                    body = json.dumps(dict(STREAM, mock={"body": mode})).encode()
                    sock.sendall(request_bytes("POST", "/v1/pipes/run", body, {"Connection": "close"}))
                    raw = support.read_all(sock)
                    head, rest = raw.split(b"\r\n\r\n", 1)
                    self.assertNotIn(b"Transfer-Encoding", head)
                    self.assertEqual(b"Content-Length: %d" % len(rest) in head, mode == "buffered")
                    self.assertEqual(rest, plain)

    def test_content_type_and_reply_text(self):
        with RunningServer() as s:
            r = self.stream(s, {"mock": {"content_type": "text/plain", "reply_text": "Line\u2028sep\u0085x"}})
        self.assertEqual(r.header("Content-Type"), "text/plain")
        text = "".join(json.loads(d)["choices"][0]["delta"].get("content", "") for d in support.sse_data(r.body)[:-1])
        self.assertEqual(text, "Line\u2028sep\u0085x")
        self.assertIn("\u2028sep".encode("utf-8"), r.body)  # raw, not a \\u escape

    def test_framing_modes_keep_the_bytes(self):
        with RunningServer() as s:
            plain = self.stream(s).body
            for mock in ({"framing": "byte"}, {"framing": "split", "split_bytes": 5}, {"framing": "random"},
                         {"framing": "coalesce", "coalesce": 3}):
                with self.subTest(mock=mock):
                    self.assertEqual(self.stream(s, {"mock": mock}).body, plain)

    def test_stall_and_keepalive_still_deliver_everything(self):
        with RunningServer() as s:
            r = self.stream(s, {"mock": {"fault": "stall", "fault_after": 1, "stall": 0.05, "keepalive": 0.02}})
        self.assertEqual(r.body.count(b"data: "), len(support.sse_data(r.body.replace(b": ping\n\n", b""))))
        self.assertIn(b": ping\n\n", r.body)
        self.assertTrue(r.body.endswith(b"data: [DONE]\n\n"))

    def test_ground_truth_matches_the_stream(self):
        with RunningServer() as s:
            r = self.stream(s, {"mock": {"chunking": "fixed", "chunk_size": 5}})
            run_id = r.header("lb-mock-run-id")
            truth = call(s.port, "GET", "/mock/runs/" + run_id).json()
            runs = call(s.port, "GET", "/mock/runs").json()["runs"]
            missing = call(s.port, "GET", "/mock/runs/nope")
            settings = call(s.port, "GET", "/mock/settings").json()
        chunks = [json.loads(d) for d in support.sse_data(r.body)[:-1]]
        deltas = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
        self.assertEqual(truth["deltas"], deltas)
        self.assertEqual(truth["text"], "".join(deltas))
        self.assertTrue(all(len(d) <= 5 for d in deltas))
        self.assertEqual(truth["usage"], chunks[-1]["usage"])
        self.assertEqual(truth["finish_reason"], "stop")
        self.assertEqual(truth["thread_id"], r.header("lb-thread-id"))
        self.assertEqual(truth["scenario"]["chunk_size"], 5)
        self.assertEqual(runs, [run_id])
        self.assertEqual(missing.status, 404)
        self.assertEqual(set(settings), set(scenario.SETTINGS))
        self.assertEqual(settings["line_ending"]["allowed"], "one of lf, crlf, cr, mixed")


if __name__ == "__main__":
    unittest.main()
