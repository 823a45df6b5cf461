"""Byte-for-byte table tests of the SSE field encoder (WHATWG HTML 9.2.5)."""

import unittest

from tests import support  # noqa: F401  (puts the project root on sys.path)
from sse import DONE, dumps_compact, encode_event


class EncodeEventTest(unittest.TestCase):
    CASES = [
        ({"data": "hello"}, b"data: hello\n\n"),
        ({"data": ""}, b"data: \n\n"),
        ({"data": "a\nb"}, b"data: a\ndata: b\n\n"),
        ({"data": "a\r\nb\rc"}, b"data: a\ndata: b\ndata: c\n\n"),
        ({"data": "a\n"}, b"data: a\ndata: \n\n"),
        ({"data": "x", "event": "text", "id": "7", "retry": 3000},
         b"id: 7\nevent: text\nretry: 3000\ndata: x\n\n"),
        ({"data": "caf\u00e9 \U0001f680"}, "data: caf\u00e9 \U0001f680\n\n".encode("utf-8")),
        ({"data": "line\u2028sep"}, "data: line\u2028sep\n\n".encode("utf-8")),
        ({"id": ""}, b"id: \n\n"),
    ]

    def test_encode_event_table_exact_bytes(self):
        for kwargs, expected in self.CASES:
            with self.subTest(kwargs=kwargs):
                self.assertEqual(encode_event(**kwargs), expected)

    def test_encode_event_output_has_no_bom(self):
        self.assertFalse(encode_event("x").startswith(b"\xef\xbb\xbf"))

    def test_encode_event_invalid_fields_raise(self):
        bad = [
            {"data": "x", "event": "a\nb"},
            {"data": "x", "id": "a\rb"},
            {"data": "x", "id": "a\0b"},
            {"data": "x", "retry": -1},
            {"data": "x", "retry": 1.5},
            {"data": "x", "retry": True},
            {},
        ]
        for kwargs in bad:
            with self.subTest(kwargs=kwargs):
                with self.assertRaises(ValueError):
                    encode_event(**kwargs)

    def test_done_sentinel_exact_bytes(self):
        self.assertEqual(DONE, b"data: [DONE]\n\n")
        self.assertEqual(DONE, encode_event("[DONE]"))


class DumpsCompactTest(unittest.TestCase):
    def test_dumps_compact_one_line_no_spaces_utf8_kept(self):
        self.assertEqual(dumps_compact({"a": [1, "x\ny"], "b": "\u00e9"}), '{"a":[1,"x\\ny"],"b":"\u00e9"}')

    def test_dumps_compact_nan_rejected(self):
        with self.assertRaises(ValueError):
            dumps_compact({"x": float("nan")})


if __name__ == "__main__":
    unittest.main()
