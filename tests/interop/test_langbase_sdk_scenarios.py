"""Interop tests: stream-shaping settings and faults, seen through the official ``langbase``
Python SDK (PyPI ``langbase==0.0.5``).

Each test starts a real server (``tests.support.RunningServer``) and calls
``pipes.run(stream=True, raw_response=True, mock={...})``. ``Pipes.run`` merges its ``**kwargs``
into the JSON body and drops only top-level ``None`` values, so the ``mock`` object reaches the
server as the body's scenario layer unchanged. The ``lb-mock-run-id`` response header (in
``rawResponse.headers``, or in an error's ``headers``) names the run, and ``GET /mock/runs/{id}``
returns its ground truth (``text``, ``deltas``, ``usage``, ``finish_reason``, ``scenario``). What
the SDK reassembles is compared with that record, never with a reply written into the test.

Three groups:

* ``SpecConformantScenarioTest``: settings that stay within the SSE spec. Both
  ``get_runner(...).collect_text()`` and the typed runner must give the ground truth exactly.
* ``OutOfSpecAndFaultScenarioTest``: settings outside the spec, and faults. Each test asserts
  what the SDK actually does, and a comment says what a correct client should do.
* ``ReproducibilityScenarioTest``: the same seed gives the same text and chunks; with
  ``chunking=random``, other seeds cut the same text differently.

Every result below follows from how the SDK reads a stream. ``Request`` hands back
``response.iter_lines()``: ``requests`` splits the body on CR, LF and CRLF (bytes only, so
U+2028 or NEL inside JSON is safe) and keeps a partial last line until the next read.
``parse_chunk`` then removes a leading ``"data: "`` from each line and ``json.loads`` the rest,
returning ``None`` (skipped) when that fails. The SDK has no idea of SSE events or fields, of
``[DONE]``, or of in-band errors. Errors raised while iterating are ``requests`` exceptions,
not the SDK's ``APIError`` classes.

Run with the SDK installed (``pip install langbase==0.0.5``)::

    python3 -X dev -W error -m unittest tests.interop.test_langbase_sdk_scenarios -v

Without the SDK every test is skipped with the same message as ``test_langbase_sdk``.

Bounds: these tests reuse ``test_langbase_sdk.SdkTestCase``, whose wrapper gives every SDK
request a timeout. Servers use 2 s head and keep-alive deadlines. Delays are at most
0.02 s, and the one stall is 0.05 s. Every response the SDK opens is closed on cleanup, so a
stream that a test stopped reading (or that failed) never keeps its server busy.
"""

from __future__ import annotations

import time
import unittest
from typing import Any, Dict, List, Mapping, Optional, Tuple
from unittest import mock

from tests.interop import test_langbase_sdk as sdk_suite
from tests.support import call

import scenario as mock_scenario  # the server's module (tests.support puts the repo root on sys.path)

HAVE_SDK = sdk_suite.HAVE_SDK
SKIP_REASON = sdk_suite.SKIP_REASON

if HAVE_SDK:
    import requests
    import urllib3
    from langbase import (
        APIConnectionError,
        APIError,
        InternalServerError,
        RateLimitError,
        StreamEventType,
        get_runner,
        get_typed_runner,
        parse_chunk,
    )

PIPE = sdk_suite.PIPE
PROMPT = [{"role": "user", "content": "Shape this stream, please."}]

REPLIES = (
    "Voilà — café, naïve, Zürich; 你好，世界 🚀 and a G clef 𝄞, cut anywhere.",
    "Line one\nline two\r\nline three\ttabbed, \"quoted\" and a backslash \\ to end.",
    "Separators\u2028inside\u2029the text\u0085stay inside one JSON line.",
)
"""The server's replies: multi-byte UTF-8, escaped line breaks, and raw U+2028/U+2029/NEL
(characters ``str.splitlines`` would split on; see /mock/runs for which one a seed picks)."""

SEEDS = (10, 7, 1)
"""Seeds for the random settings. With ``PROMPT`` they pick ``REPLIES`` 0, 1 and 2 (the framing
test checks that every reply is covered)."""

EVENT_TYPES = ("connect", "content", "completion", "error", "end")


class ScenarioTestCase(sdk_suite.SdkTestCase):
    """Base: one server with ``REPLIES``; runs with a ``mock`` object; ground truth by run id.

    Every ``requests`` response the SDK opens is closed on cleanup (after the test), which also
    ends any stream left half-read.
    """

    def setUp(self) -> None:
        super().setUp()
        bounded = requests.request  # already the suite's timeout wrapper

        def tracked(*args: Any, **kwargs: Any) -> "requests.Response":
            response = bounded(*args, **kwargs)
            self.addCleanup(response.close)
            return response

        patcher = mock.patch.object(requests, "request", tracked)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.server = self.start_server(replies=REPLIES)
        self.lb = self.client(self.server)

    # -- running ---------------------------------------------------------------------------

    def start_run(self, settings: Mapping[str, Any], **options: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """``pipes.run(stream=True, mock=settings)``: (the SDK's result, the run's ground truth).

        Also checks that the server applied every setting (the truth's ``scenario``)."""
        result = self.lb.pipes.run(
            name=PIPE, messages=PROMPT, stream=True, raw_response=True, mock=dict(settings), **options
        )
        truth = self.ground_truth(result["rawResponse"]["headers"]["lb-mock-run-id"])
        for name, value in settings.items():
            self.assertEqual(truth["scenario"][name], value, name)
        self.assertEqual(truth["thread_id"], result["thread_id"])
        self.assertEqual("".join(truth["deltas"]), truth["text"])
        self.assertIn(truth["text"], REPLIES)
        return result, truth

    def ground_truth(self, run_id: str) -> Dict[str, Any]:
        response = call(self.server.port, "GET", "/mock/runs/" + run_id)
        self.assertEqual(response.status, 200, response.body)
        return response.json()

    def raw_lines(self, settings: Mapping[str, Any]) -> Tuple[List[bytes], Dict[str, Any]]:
        """The lines the SDK's stream yields (``response.iter_lines()``), read to the end."""
        result, truth = self.start_run(settings)
        return list(result["stream"]), truth

    # -- reading through the SDK -----------------------------------------------------------

    @staticmethod
    def text_until_error(result: Dict[str, Any]) -> Tuple[str, Optional[BaseException]]:
        """The runner's text pieces (``text_generator``) up to the end or the first exception."""
        pieces: List[str] = []
        try:
            for piece in get_runner(result).text_generator():
                pieces.append(piece)
        except Exception as exc:  # the caller asserts the exact class
            return "".join(pieces), exc
        return "".join(pieces), None

    @staticmethod
    def typed_events(result: Dict[str, Any]) -> Tuple[Dict[str, List[dict]], Optional[BaseException]]:
        """Every event the typed runner emits, by type, and the exception ``process`` raised."""
        runner = get_typed_runner(result)
        seen: Dict[str, List[dict]] = {name: [] for name in EVENT_TYPES}
        for name in EVENT_TYPES:
            runner.on(StreamEventType(name), seen[name].append)
        try:
            runner.process()
        except Exception as exc:  # the caller asserts the exact class
            return seen, exc
        return seen, None

    # -- assertions ------------------------------------------------------------------------

    def assertTypedEvents(
        self,
        seen: Dict[str, List[dict]],
        truth: Dict[str, Any],
        deltas: List[str],
        completed: bool,
        errors: int = 0,
    ) -> None:
        """One connect with the thread id, these content pieces, a completion with the ground
        truth's reason and usage when ``completed``, ``errors`` error events, one end."""
        self.assertEqual([e["threadId"] for e in seen["connect"]], [truth["thread_id"]])
        self.assertEqual([e["content"] for e in seen["content"]], deltas)
        expected = [(truth["finish_reason"], truth["usage"])] if completed else []
        self.assertEqual([(e["reason"], e["usage"]) for e in seen["completion"]], expected)
        self.assertEqual(len(seen["error"]), errors)
        self.assertEqual(len(seen["end"]), 1)

    def assertSurvives(self, settings: Mapping[str, Any]) -> Dict[str, Any]:
        """Two runs with ``settings``: the runner's text equals the ground truth text, and the
        typed runner gives exactly the ground-truth deltas, completion and usage, no error."""
        result, truth = self.start_run(settings)
        self.assertEqual(get_runner(result).collect_text(), truth["text"])

        result, truth = self.start_run(settings)
        seen, error = self.typed_events(result)
        self.assertIsNone(error)
        self.assertTypedEvents(seen, truth, truth["deltas"], completed=True)
        return truth

    def assertChunkedEncodingError(self, error: Optional[BaseException], disconnect: str) -> None:
        """``error`` is exactly ``requests``' ``ChunkedEncodingError`` (not one of the SDK's
        ``APIError``s) wrapping urllib3's ``ProtocolError``: "Response ended prematurely" after
        a clean close (``disconnect="fin"``), or one carrying a ``ConnectionResetError``
        (``"reset"``)."""
        self.assertIs(type(error), requests.exceptions.ChunkedEncodingError, repr(error))
        self.assertNotIsInstance(error, APIError)
        inner = error.args[0]
        self.assertIs(type(inner), urllib3.exceptions.ProtocolError, repr(inner))
        if disconnect == "reset":
            self.assertIsInstance(inner.args[1], ConnectionResetError)
        else:
            self.assertEqual(str(inner), "Response ended prematurely")


def sent_deltas(truth: Dict[str, Any], events_sent: int) -> List[str]:
    """The text deltas among the first ``events_sent`` events (a role event, the deltas, a
    finish event, in that order)."""
    return truth["deltas"][: max(0, min(events_sent - 1, len(truth["deltas"])))]


# --- within the SSE spec: exact ground truth ---------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class SpecConformantScenarioTest(ScenarioTestCase):
    """Writes cut anywhere, other line endings, comments, ``id:``/``retry:`` fields, other body
    framings and endings that the spec allows: the SDK must return the exact text and deltas."""

    def test_stream_framing_event_split_random_byte_coalesce_yields_ground_truth(self):
        framings = [
            {"framing": "event"},
            {"framing": "split", "split_bytes": 1},
            {"framing": "split", "split_bytes": 3},
            {"framing": "split", "split_bytes": 7},
            {"framing": "split"},
            {"framing": "random"},
            {"framing": "byte"},
            {"framing": "coalesce"},
            {"framing": "coalesce", "coalesce": 3},
        ]
        replies = set()
        for framing in framings:
            for seed in SEEDS:
                with self.subTest(seed=seed, **framing):
                    replies.add(self.assertSurvives(dict(framing, seed=seed))["text"])
        self.assertEqual(replies, set(REPLIES))  # every reply went through every framing

    def test_stream_chunking_word_char_fixed_random_whole_yields_ground_truth_deltas(self):
        chunkings = [
            {"chunking": "word"},
            {"chunking": "char"},
            {"chunking": "fixed"},
            {"chunking": "fixed", "chunk_size": 1},
            {"chunking": "fixed", "chunk_size": 5},
            {"chunking": "random"},
            {"chunking": "random", "chunk_size": 9},
            {"chunking": "whole"},
        ]
        for chunking in chunkings:
            for seed in SEEDS:
                with self.subTest(seed=seed, **chunking):
                    truth = self.assertSurvives(dict(chunking, seed=seed))
                    if chunking["chunking"] == "whole":
                        self.assertEqual(truth["deltas"], [truth["text"]])

    def test_stream_line_endings_lf_crlf_cr_mixed_yield_ground_truth(self):
        # crlf with framing split/byte puts CR and LF in different reads: requests then yields
        # an extra empty line, which the SDK skips. Note: mixed can end an event with a CR
        # terminator followed by an LF terminator, which reads as one CRLF (no blank line, so
        # a spec parser merges two events); a line-based reader like this SDK cannot notice.
        for line_ending in ("lf", "crlf", "cr", "mixed"):
            for framing in ({}, {"framing": "byte"}, {"framing": "split", "split_bytes": 3},
                            {"framing": "random"}):
                for seed in SEEDS:
                    settings = dict(framing, line_ending=line_ending, seed=seed)
                    with self.subTest(**settings):
                        self.assertSurvives(settings)

    def test_stream_keepalive_between_comments_yield_ground_truth(self):
        lines, truth = self.raw_lines({"keepalive_between": True})
        self.assertEqual(lines.count(b": ping"), len(truth["deltas"]) + 2)  # after every event
        for settings in ({"keepalive_between": True},
                         {"keepalive_between": True, "framing": "byte", "line_ending": "crlf"}):
            with self.subTest(**settings):
                self.assertSurvives(settings)

    def test_stream_timed_keepalive_during_delay_yields_ground_truth(self):
        settings = {"delay": 0.01, "keepalive": 0.004}
        lines, truth = self.raw_lines(settings)
        self.assertGreaterEqual(lines.count(b": ping"), len(truth["deltas"]) + 1)
        self.assertSurvives(settings)

    def test_stream_event_ids_yield_ground_truth(self):
        lines, truth = self.raw_lines({"event_ids": True})
        ids = [line for line in lines if line.startswith(b"id: ")]
        self.assertEqual(ids[:2], [b"id: 1", b"id: 2"])
        self.assertEqual(len(ids), len(truth["deltas"]) + 3)  # every event, [DONE] included
        for settings in ({"event_ids": True}, {"event_ids": True, "framing": "random", "seed": 7}):
            with self.subTest(**settings):
                self.assertSurvives(settings)

    def test_stream_retry_field_yields_ground_truth(self):
        lines, _ = self.raw_lines({"retry": 1000})
        self.assertEqual(lines[0], b"retry: 1000")
        for retry in (0, 1000):
            with self.subTest(retry=retry):
                self.assertSurvives({"retry": retry})

    def test_stream_body_close_delimited_and_buffered_yield_ground_truth(self):
        for body in ("close", "buffered"):
            for extra in ({}, {"framing": "byte"}, {"delay": 0.01}):
                with self.subTest(body=body, **extra):
                    self.assertSurvives(dict(extra, body=body))

    def test_stream_ending_no_done_yields_ground_truth(self):
        # The SDK never looks for [DONE]; it reads to the end of the body either way.
        lines, _ = self.raw_lines({"ending": "no_done"})
        self.assertNotIn(b"data: [DONE]", lines)
        self.assertSurvives({"ending": "no_done"})

    def test_stream_pacing_jitter_ttft_tokens_per_second_yield_ground_truth(self):
        pacings = [
            {"delay": 0.01, "jitter": 0.005},
            {"delay": 0.005, "jitter": 0.02},  # waits clipped at 0
            {"ttft": 0.02},
            {"tokens_per_second": 200.0},
        ]
        for pacing in pacings:
            for seed in SEEDS[:2]:
                with self.subTest(seed=seed, **pacing):
                    self.assertSurvives(dict(pacing, seed=seed))

    def test_stream_all_spec_extras_together_yield_ground_truth(self):
        settings = {
            "framing": "random", "chunking": "random", "line_ending": "mixed", "event_ids": True,
            "retry": 250, "keepalive_between": True, "body": "close", "ending": "no_done",
        }
        for seed in SEEDS:
            with self.subTest(seed=seed):
                self.assertSurvives(dict(settings, seed=seed))


# --- outside the spec, and faults: what the SDK actually does ----------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class OutOfSpecAndFaultScenarioTest(ScenarioTestCase):
    """Each test pins the SDK's observable behaviour; comments say what a correct client does."""

    def test_stream_bom_first_event_lost_text_survives(self):
        # A correct client strips a BOM at byte 0 and parses the role event. The SDK decodes the
        # first line as "\ufeffdata: {...}", which does not start with "data: ", so json.loads
        # fails and the first event (the role delta, content "") is dropped. The text survives
        # only because that event carries no text.
        lines, truth = self.raw_lines({"bom": True})
        self.assertTrue(lines[0].startswith(b"\xef\xbb\xbfdata: {"), lines[0][:20])
        self.assertIsNone(parse_chunk(lines[0]))

        result, truth = self.start_run({"bom": True})
        chunks = list(get_runner(result).process_chunks())
        self.assertEqual(len(chunks), len(truth["deltas"]) + 1)  # role event missing
        self.assertNotIn("assistant", [chunk.choices[0].delta.role for chunk in chunks])
        self.assertEqual("".join(chunk.choices[0].delta.content or "" for chunk in chunks), truth["text"])

        self.assertSurvives({"bom": True})

    def test_stream_bom_before_id_field_no_event_lost(self):
        # With event_ids the BOM lands on the "id: 1" line, which the SDK skips anyway.
        result, truth = self.start_run({"bom": True, "event_ids": True})
        chunks = list(get_runner(result).process_chunks())
        self.assertEqual(len(chunks), len(truth["deltas"]) + 2)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")

    def test_stream_ending_done_no_space_ignored_text_survives(self):
        # "data:[DONE]" is valid SSE (the space after the colon is optional): a correct client
        # must still see [DONE]. The SDK never recognises [DONE] in any spelling (json.loads
        # fails on it, so it is skipped) and ends at EOF, so nothing changes for it.
        lines, _ = self.raw_lines({"ending": "done_no_space"})
        self.assertEqual(lines[-2:], [b"data:[DONE]", b""])
        self.assertIsNone(parse_chunk(lines[-2]))
        self.assertSurvives({"ending": "done_no_space"})

    def test_stream_ending_no_final_blank_line_flushed_text_survives(self):
        # A spec parser drops an unterminated last event, so a correct client sees EOF without
        # [DONE] and should treat the reply as possibly cut. requests flushes the partial last
        # line, and the SDK ignores it like any [DONE]: no error and no difference.
        lines, _ = self.raw_lines({"ending": "no_final_blank_line"})
        self.assertEqual(lines[-1], b"data: [DONE]")
        self.assertSurvives({"ending": "no_final_blank_line"})

    def test_stream_ending_no_terminator_raises_chunked_encoding_error_after_all_text(self):
        # The chunked body ends without its 0-size chunk. A correct client has already seen
        # [DONE], so it can keep the complete reply (and log the broken framing). In the SDK
        # the exception escapes iteration after every delta was yielded: collect_text() raises
        # and its text is lost, and the typed runner emits content, completion, error and end.
        settings = {"ending": "no_terminator"}
        result, truth = self.start_run(settings)
        text, error = self.text_until_error(result)
        self.assertEqual(text, truth["text"])
        self.assertChunkedEncodingError(error, "fin")

        result, truth = self.start_run(settings)
        with self.assertRaises(requests.exceptions.ChunkedEncodingError):
            get_runner(result).collect_text()

        result, truth = self.start_run(settings)
        seen, error = self.typed_events(result)
        self.assertChunkedEncodingError(error, "fin")
        self.assertTypedEvents(seen, truth, truth["deltas"], completed=True, errors=1)
        self.assertIs(seen["error"][0]["error"], error)

    def test_stream_ending_no_terminator_close_delimited_body_yields_ground_truth(self):
        # With body=close the connection close is the body's end, so nothing is missing.
        self.assertSurvives({"ending": "no_terminator", "body": "close"})

    def test_stream_ending_data_after_done_sdk_appends_text_after_done(self):
        # [DONE] ends the reply in the Langbase/OpenAI format: a correct client stops there and
        # ignores the extra event. The SDK does not know [DONE], reads on, and appends the
        # extra chunk's content to the reply (collect_text and the typed runner alike).
        lines, _ = self.raw_lines({"ending": "data_after_done"})
        after = lines[lines.index(b"data: [DONE]") + 1:]
        extra_chunks = [parse_chunk(line) for line in after if line]
        self.assertEqual(len(extra_chunks), 1)
        extra = extra_chunks[0].choices[0].delta.content
        self.assertTrue(extra)

        result, truth = self.start_run({"ending": "data_after_done"})
        self.assertEqual(get_runner(result).collect_text(), truth["text"] + extra)

        result, truth = self.start_run({"ending": "data_after_done"})
        seen, error = self.typed_events(result)
        self.assertIsNone(error)
        self.assertTypedEvents(seen, truth, truth["deltas"] + [extra], completed=True)

    def test_stream_fault_error_frame_skipped_silently_returns_prefix(self):
        # After fault_after events the server sends data: {"error": {...}} and ends the body
        # without [DONE]. A correct client raises an error (the OpenAI SDKs raise APIError).
        # The SDK parses the error frame as a chunk with no choices, skips it, and returns the
        # text sent so far as if the reply were complete: no exception, no error event.
        cases = [
            {"fault_after": 3},
            {"fault_after": 0},
            {"fault_after": 1},
            {"fault_after": 5, "fault_status": 429},
            {"fault_after": 100000},  # past the last event: every delta, then the error
        ]
        for case in cases:
            settings = dict(case, fault="error_frame")
            with self.subTest(**case):
                lines, truth = self.raw_lines(settings)
                frames = [parse_chunk(line) for line in lines if line]
                self.assertEqual(frames[-1]["error"]["status"], truth["scenario"]["fault_status"])
                self.assertNotIn(b"data: [DONE]", lines)

                result, truth = self.start_run(settings)
                self.assertEqual(truth["fault"], "error_frame")
                text, error = self.text_until_error(result)
                self.assertIsNone(error)
                expected = sent_deltas(truth, case["fault_after"])
                self.assertEqual(text, "".join(expected))

                result, truth = self.start_run(settings)
                seen, error = self.typed_events(result)
                self.assertIsNone(error)
                completed = case["fault_after"] >= len(truth["deltas"]) + 2
                self.assertTypedEvents(seen, truth, expected, completed=completed)

    def test_stream_fault_corrupt_event_dropped_silently(self):
        # The event after fault_after events has its JSON cut in half. A correct client reports
        # the malformed event (a JSON error) instead of returning a reply with a hole in it. The
        # SDK's parse_chunk swallows the JSONDecodeError: that one event is simply missing.
        cases = [
            ({"fault_after": 3}, "a text delta is missing from the reply"),
            ({"fault_after": 0}, "the role event is lost; the text survives"),
            ({"fault_after": 2, "chunking": "whole"}, "the finish event (reason, usage) is lost"),
            ({"fault_after": 100000}, "[DONE] is cut, which the SDK never reads anyway"),
        ]
        for case, meaning in cases:
            settings = dict(case, fault="corrupt")
            with self.subTest(meaning, **case):
                result, truth = self.start_run(settings)
                self.assertEqual(truth["fault"], "corrupt")
                events = ["start"] + truth["deltas"] + ["finish", "done"]
                lost = min(case["fault_after"], len(events) - 1)
                kept = [d for i, d in enumerate(truth["deltas"], 1) if i != lost]
                text, error = self.text_until_error(result)
                self.assertIsNone(error)
                self.assertEqual(text, "".join(kept))

                result, truth = self.start_run(settings)
                seen, error = self.typed_events(result)
                self.assertIsNone(error)
                finish_lost = lost == len(truth["deltas"]) + 1
                self.assertTypedEvents(seen, truth, kept, completed=not finish_lost)

    def test_stream_fault_disconnect_fin_raises_chunked_encoding_error_after_prefix(self):
        # The server closes cleanly mid-body, before the chunked terminator. A correct client
        # reports a cut stream. The SDK (through requests) raises ChunkedEncodingError from
        # iteration, after the deltas sent so far; collect_text() loses even those.
        settings = {"fault": "disconnect", "disconnect": "fin"}
        result, truth = self.start_run(settings)
        text, error = self.text_until_error(result)
        self.assertEqual(text, "".join(sent_deltas(truth, truth["scenario"]["fault_after"])))
        self.assertChunkedEncodingError(error, "fin")

        result, truth = self.start_run(settings)
        seen, error = self.typed_events(result)
        self.assertChunkedEncodingError(error, "fin")
        expected = sent_deltas(truth, truth["scenario"]["fault_after"])
        self.assertTypedEvents(seen, truth, expected, completed=False, errors=1)

    def test_stream_fault_disconnect_reset_raises_chunked_encoding_error_after_prefix(self):
        # Same cut with a TCP reset: ChunkedEncodingError wrapping ProtocolError("Connection
        # broken: ConnectionResetError(...)"). urllib3 reads a chunked body chunk by chunk, so
        # every delta that arrived before the reset is still yielded.
        settings = {"fault": "disconnect", "disconnect": "reset"}
        result, truth = self.start_run(settings)
        text, error = self.text_until_error(result)
        self.assertEqual(text, "".join(sent_deltas(truth, truth["scenario"]["fault_after"])))
        self.assertChunkedEncodingError(error, "reset")

        result, truth = self.start_run(settings)
        seen, error = self.typed_events(result)
        self.assertChunkedEncodingError(error, "reset")
        expected = sent_deltas(truth, truth["scenario"]["fault_after"])
        self.assertTypedEvents(seen, truth, expected, completed=False, errors=1)

    def test_stream_fault_disconnect_reset_close_delimited_body_loses_last_partial_read(self):
        # With body=close the SDK's iter_lines() reads 512-byte blocks (http.client's buffered
        # read(512) waits for 512 bytes or EOF). A reset during a block raises and throws away
        # the bytes already received for it, so the deltas that arrived in the last partial
        # block are lost, although the kernel had delivered them. A correct client keeps every
        # byte received before the reset. With these settings (seed 0) neither body ends on a
        # 512-byte boundary, so at least the last delta sent is lost.
        settings = {"fault": "disconnect", "disconnect": "reset", "body": "close", "seed": 0}
        for fault_after in (3, 6):
            with self.subTest(fault_after=fault_after):
                settings["fault_after"] = fault_after
                result, truth = self.start_run(settings)
                sent = "".join(sent_deltas(truth, fault_after))
                text, error = self.text_until_error(result)
                self.assertChunkedEncodingError(error, "reset")
                self.assertTrue(sent.startswith(text), (text, sent))
                self.assertLess(len(text), len(sent))

                result, truth = self.start_run(settings)
                seen, error = self.typed_events(result)
                self.assertChunkedEncodingError(error, "reset")
                self.assertEqual("".join(e["content"] for e in seen["content"]), text)
                self.assertEqual(len(seen["error"]), 1)

    def test_stream_fault_disconnect_fin_close_delimited_body_returns_prefix_without_error(self):
        # With body=close a clean close is a normal end of body, so only the missing [DONE] (and
        # finish_reason) tell that the reply was cut; a correct client checks for them. The SDK
        # returns the prefix as the whole reply with no exception and no completion event.
        settings = {"fault": "disconnect", "disconnect": "fin", "body": "close"}
        result, truth = self.start_run(settings)
        expected = sent_deltas(truth, truth["scenario"]["fault_after"])
        self.assertEqual(get_runner(result).collect_text(), "".join(expected))

        result, truth = self.start_run(settings)
        seen, error = self.typed_events(result)
        self.assertIsNone(error)
        self.assertTypedEvents(seen, truth, expected, completed=False)

    def test_pipes_run_fault_disconnect_buffered_body_raises_api_connection_error(self):
        # A buffering proxy whose upstream drops sends nothing at all: the connection closes
        # before a status line. pipes.run raises the SDK's APIConnectionError, caused by
        # requests' ConnectionError; no stream or run id reaches the caller.
        with self.assertRaises(APIConnectionError) as caught:
            self.lb.pipes.run(name=PIPE, messages=PROMPT, stream=True,
                              mock={"fault": "disconnect", "body": "buffered"})
        self.assertIs(type(caught.exception.__cause__), requests.exceptions.ConnectionError)
        self.assertIsNone(caught.exception.status_code)

    def test_pipes_run_fault_http_error_429_raises_rate_limit_error_with_retry_after(self):
        # A correct client backs off for Retry-After seconds. The SDK raises RateLimitError
        # with the envelope; its headers are a plain dict copied from the response, so the
        # lookup is case-sensitive: "Retry-After" (the server's spelling) works, lower case not.
        for stream in (True, False):
            for retry_after in (0, 1, 30):
                with self.subTest(stream=stream, retry_after=retry_after):
                    error = self.http_error(429, retry_after, stream)
                    self.assertIs(type(error), RateLimitError)
                    self.assertEqual(error.headers["Retry-After"], str(retry_after))
                    self.assertNotIn("retry-after", error.headers)
                    self.assertEqual(error.headers["x-ratelimit-remaining"], "0")
                    self.assertEqual(error.headers["x-ratelimit-reset"], str(retry_after))

    def test_pipes_run_fault_http_error_503_raises_internal_server_error_with_retry_after(self):
        # The SDK maps every 5xx to InternalServerError; status_code and code tell 503 apart.
        for stream in (True, False):
            with self.subTest(stream=stream):
                error = self.http_error(503, 4, stream)
                self.assertIs(type(error), InternalServerError)
                self.assertEqual(int(error.headers["Retry-After"]), 4)
                self.assertNotIn("x-ratelimit-remaining", error.headers)

    def test_pipes_run_fault_http_error_fault_code_overrides_error_code(self):
        error = self.http_error(429, 1, True, fault_code="SLOW_DOWN")
        self.assertIs(type(error), RateLimitError)
        self.assertEqual(error.code, "SLOW_DOWN")

    def http_error(self, status: int, retry_after: int, stream: bool, fault_code: Optional[str] = None) -> "APIError":
        """Run with fault=http_error; check the SDK error's envelope and the run's ground truth."""
        settings = {"fault": "http_error", "fault_status": status, "retry_after": retry_after}
        if fault_code:
            settings["fault_code"] = fault_code
        with self.assertRaises(APIError) as caught:
            self.lb.pipes.run(name=PIPE, messages=PROMPT, stream=stream, mock=settings)
        error = caught.exception
        code = fault_code or mock_scenario.ERROR_CODES[status]
        self.assertEqual(error.status_code, status)
        self.assertEqual(error.code, code)
        self.assertEqual(error.error["status"], status)
        self.assertEqual(error.error["code"], code)
        self.assertEqual(error.args[0], "%d %s" % (status, error.error["message"]))
        self.assertTrue(error.request_id)
        truth = self.ground_truth(error.headers["lb-mock-run-id"])
        self.assertEqual(truth["fault"], "http_error")
        self.assertIsNone(truth["thread_id"])  # nothing was stored
        self.assertEqual(truth["stream"], stream)
        for name, value in settings.items():
            self.assertEqual(truth["scenario"][name], value)
        return error

    def test_stream_fault_stall_short_stall_completes_with_ground_truth(self):
        # A stall is only a long wait: a client with a read timeout above it sees a normal
        # stream (this suite's SDK requests time out after 10 s).
        settings = {"fault": "stall", "stall": 0.05}
        started = time.monotonic()
        truth = self.assertSurvives(settings)
        self.assertGreaterEqual(time.monotonic() - started, 2 * 0.05)  # two runs, one stall each
        self.assertEqual(truth["fault"], "stall")

    def test_stream_fault_probability_zero_never_fires_and_yields_ground_truth(self):
        truth = self.assertSurvives({"fault": "error_frame", "fault_probability": 0.0})
        self.assertIsNone(truth["fault"])


# --- reproducibility ---------------------------------------------------------------------------


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class ReproducibilityScenarioTest(ScenarioTestCase):
    def test_pipes_run_mock_kwarg_reaches_body_and_sets_scenario(self):
        # Pipes.run copies **kwargs into the body and drops only top-level None values, so a
        # nested null (retry: None, which is also the default) goes through as JSON null.
        settings = {"seed": 5, "chunking": "char", "retry": None, "line_ending": "crlf"}
        result, truth = self.start_run(settings)
        self.assertEqual(result["rawResponse"]["headers"]["lb-mock-seed"], "5")
        self.assertEqual(truth["seed"], 5)
        self.assertEqual(get_runner(result).collect_text(), truth["text"])

    def test_stream_same_seed_twice_gives_identical_text_and_chunks(self):
        variants = [
            {"chunking": "random", "framing": "random"},
            {"line_ending": "mixed", "framing": "random", "event_ids": True},
            {"chunking": "random", "chunk_size": 7, "delay": 0.005, "jitter": 0.005},
        ]
        for variant in variants:
            for seed in SEEDS:
                settings = dict(variant, seed=seed)
                with self.subTest(**settings):
                    runs = []
                    for _ in range(2):
                        result, truth = self.start_run(settings)
                        chunks = [dict(c) for c in get_runner(result).process_chunks()]
                        runs.append((truth, chunks))
                    (first, chunks_a), (second, chunks_b) = runs
                    self.assertEqual(chunks_a, chunks_b)
                    self.assertEqual(first["deltas"], second["deltas"])
                    self.assertEqual(first["usage"], second["usage"])
                    texts = ["".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
                             for chunks in (chunks_a, chunks_b)]
                    self.assertEqual(texts, [first["text"], first["text"]])

                    result, truth = self.start_run(settings)
                    self.assertEqual(get_runner(result).collect_text(), first["text"])

    def test_stream_different_seeds_chunking_random_give_different_deltas(self):
        # Same reply (one-reply server), different seeds: the same text cut differently.
        server = self.start_server(replies=(REPLIES[0],))
        self.server, self.lb = server, self.client(server)
        cuts = {}
        for seed in (1, 2, 3, 4, 5):
            with self.subTest(seed=seed):
                result, truth = self.start_run({"chunking": "random", "chunk_size": 6, "seed": seed})
                seen, error = self.typed_events(result)
                self.assertIsNone(error)
                self.assertTypedEvents(seen, truth, truth["deltas"], completed=True)
                self.assertEqual("".join(truth["deltas"]), REPLIES[0])
                cuts[seed] = tuple(truth["deltas"])
        self.assertEqual(len(set(cuts.values())), len(cuts), cuts)


if __name__ == "__main__":
    unittest.main()
