"""``memory``: the chunker, BM25 ranking, hashed embeddings, filters, text extraction and the
``MemoryStore`` (bounds, statuses over time, signed uploads), tested by value with an injected
clock; and the PNG writer of ``routes.tools``."""

import math
import struct
import sys
import unittest
from unittest import mock
import zlib

from tests import support  # noqa: F401  (puts the project root on sys.path)
import memory
from routes.tools import png
from threads import InvalidRequest, StoreFull


class Clock:
    """A settable clock, in seconds."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(clock=None, processing=3.0, memories=5, documents=5, max_bytes=10_000):
    tokens = iter("token-%d" % i for i in range(1, 1000))
    return memory.MemoryStore(clock or Clock(), processing, memories, documents, max_bytes, lambda: next(tokens))


class ChunkTextTest(unittest.TestCase):
    def test_chunks_stay_under_max_length_overlap_and_cover_the_text(self):
        text = "".join("Word%d is here. " % i for i in range(2000))
        chunks = memory.chunk_text(text, 1024, 256)
        self.assertTrue(all(0 < len(c) <= 1024 for c in chunks))
        self.assertTrue(chunks[0].startswith("Word0 "))
        self.assertTrue(chunks[-1].endswith("Word1999 is here."))
        for before, after in zip(chunks, chunks[1:]):
            head = after[:40]
            self.assertIn(head, before[-300:])  # overlap of at most 256 characters, at a word start
            self.assertTrue(head.startswith("Word") or head.startswith("is") or head.startswith("here"), head)
        words = set(memory.words(text))
        self.assertEqual(set().union(*(memory.words(c) for c in chunks)), words)

    def test_prefers_paragraph_breaks_and_cuts_unbroken_text_hard(self):
        text = "a" * 700 + "\n\n" + "b" * 700
        self.assertEqual(memory.chunk_text(text, 1024, 256)[0], "a" * 700)
        solid = "x" * 3000
        chunks = memory.chunk_text(solid, 1024, 256)
        self.assertEqual([len(c) for c in chunks][:2], [1024, 1024])
        self.assertEqual(memory.chunk_text("   \n\n  ", 1024, 256), [])
        self.assertEqual(memory.chunk_text("short", 1024, 256), ["short"])

    def test_overlap_near_max_length_still_makes_progress(self):
        text = "word " * 5000
        chunks = memory.chunk_text(text, 1024, 1023)
        self.assertLess(len(chunks), 60)  # at most half a chunk overlaps

    def test_check_chunking_bounds(self):
        self.assertEqual(memory.check_chunking(1024, 256), (1024, 256))
        for args in ((1023, 256), (30001, 256), (2000, 255), (1024, 1024), ("2000", 256), (2000, 300.5), (True, 256)):
            with self.subTest(args=args), self.assertRaises(InvalidRequest):
                memory.check_chunking(*args)


class EmbedTest(unittest.TestCase):
    def test_unit_length_fixed_size_and_deterministic(self):
        a = memory.embed("The cat sat on the mat.", 384)
        self.assertEqual(len(a), 384)
        self.assertAlmostEqual(math.sqrt(sum(x * x for x in a)), 1.0, places=4)
        self.assertEqual(a, memory.embed("The cat sat on the mat.", 384))
        self.assertEqual(len(memory.embed(" ", 768)), 768)

    def test_similar_texts_are_closer_than_unrelated_ones(self):
        def cosine(x, y):
            return sum(p * q for p, q in zip(memory.embed(x, 1024), memory.embed(y, 1024)))
        self.assertGreater(cosine("the cat sat on the mat", "a cat sat on a mat"),
                           cosine("the cat sat on the mat", "quarterly revenue grew nine percent") + 0.3)

    def test_unknown_model_is_refused(self):
        self.assertEqual(memory.parse_embedding_model(None), "openai:text-embedding-3-large")
        with self.assertRaises(InvalidRequest):
            memory.parse_embedding_model("openai:ada-002")


class FilterTest(unittest.TestCase):
    META = {"team": "support", "lang": "en"}

    def test_operators_and_connectives(self):
        cases = [
            (["team", "Eq", "support"], True), (["team", "Eq", "sales"], False),
            (["team", "NotEq", "sales"], True), (["missing", "NotEq", "x"], True), (["missing", "Eq", "x"], False),
            (["lang", "In", ["en", "fr"]], True), (["lang", "In", "de"], False), (["lang", "NotIn", ["de"]], True),
            (["missing", "NotIn", ["x"]], True), (["missing", "In", ["x"]], False),
            (["And", [["team", "Eq", "support"], ["lang", "Eq", "fr"]]], False),
            (["Or", [["team", "Eq", "sales"], ["lang", "Eq", "en"]]], True),
            (["And", [["Or", [["team", "Eq", "x"], ["team", "Eq", "support"]]], ["lang", "NotIn", ["de"]]]], True),
        ]
        for raw, expected in cases:
            with self.subTest(filters=raw):
                self.assertIs(memory.filter_matches(memory.parse_filters(raw), self.META), expected)

    def test_malformed_filters_are_refused(self):
        deep = ["team", "Eq", "x"]
        for _ in range(memory.MAX_FILTER_DEPTH):
            deep = ["And", [deep]]
        for raw in ("team", [], ["team", "Like", "x"], ["team", "Eq", ["x"]], ["team", "In", [1]], ["And", []],
                    ["Or", "x"], [1, "Eq", "x"], ["And", [["team", "Eq"]]], deep):
            with self.subTest(filters=raw), self.assertRaises(InvalidRequest):
                memory.parse_filters(raw)


class Bm25Test(unittest.TestCase):
    def search(self, query, *texts):
        indexes = [memory.ChunkIndex(t, 1024, 256) for t in texts]
        return {pos: score for score, pos, _ in memory.bm25_search(sorted(set(memory.words(query))), indexes, 10)}

    def test_scores_rank_matching_and_rarer_terms_higher(self):
        scores = self.search("zebra crossing", "a zebra crossing here", "a crossing there", "crossing crossing",
                             "nothing at all")
        self.assertNotIn(3, scores)
        self.assertEqual(max(scores, key=scores.get), 0)
        self.assertGreater(scores[1], 0)
        self.assertEqual(self.search("", "a"), {})
        self.assertEqual(self.search("a"), {})

    def test_index_keeps_the_text_once_and_postings_per_chunk(self):
        text = " ".join("w%d" % i for i in range(600))
        index = memory.ChunkIndex(text, 1024, 256)
        self.assertEqual([index.chunk(i) for i in range(len(index))], memory.chunk_text(text, 1024, 256))
        self.assertEqual(list(index.postings["w0"]), [0, 1])
        self.assertEqual(index.words, sum(index.lengths))
        self.assertGreater(index.held, sys.getsizeof(text))

    def test_commonest_words_are_skipped_past_the_postings_budget(self):
        texts = ("common rare", "common", "common", "common")
        with mock.patch.object(memory, "MAX_POSTINGS_READ", 3):
            self.assertEqual(list(self.search("common rare", *texts)), [0])  # "common" (4 postings) left out
        self.assertEqual(sorted(self.search("common rare", *texts)), [0, 1, 2, 3])

    def test_words_are_the_same_for_ascii_and_unicode_text(self):
        self.assertEqual(memory.words("Hello, World_1! it's"), ["hello", "world_1", "it", "s"])
        self.assertEqual(memory.words("Hello, World_1! café"), ["hello", "world_1", "café"])

    def test_query_bounds(self):
        self.assertEqual(memory.query_words("B a b"), ["a", "b"])
        for query in ("", " ", 5, "x" * 2001, " ".join("w%d" % i for i in range(65))):
            with self.subTest(query=str(query)[:20]), self.assertRaises(InvalidRequest):
                memory.query_words(query)


class ExtractTextTest(unittest.TestCase):
    def test_text_types_and_html(self):
        self.assertEqual(memory.extract_text("\ufeffhé".encode(), "text/plain"), "hé")
        html = b"<html><head><title>T</title><style>p{}</style></head><body><h1>Head</h1><p>One &amp; two</p>" \
               b"<script>alert(1)</script><p>Three</p></body></html>"
        self.assertEqual(memory.extract_text(html, "text/html"), "Head\n\nOne & two\n\nThree")
        self.assertEqual(memory.extract_text(b'{"a": 1}', "application/json"), '{"a": 1}')

    def test_html_rules_of_the_tokenizer(self):
        cases = (
            (b'<a title="x>y">link</a> 1 < 2', "link 1 < 2"),  # ">" in a quoted value; a lone "<" is text
            (b"A<!-- <p>hidden</p> -->B<!DOCTYPE html><![CDATA[c]]><?pi?>C", "ABC"),
            (b"<SCRIPT type=x>if (a<b) {}</script >T<Style>p{}</STYLE>", "T"),
            (b"<P>one<BR/>two</P><noscript>Enable JS</noscript>", "one\ntwo"),
            (b"x<script>never closed <p>y</p>", "x"),
            (b"x<a href='never closed>y</a>", "x"),
            (b"&lt;b&gt; &#x41;&#66; &nosuch;", "<b> AB &nosuch;"),
            (b"<![<![x]]>", ""),  # made html.parser raise
        )
        for html, text in cases:
            with self.subTest(html=html):
                self.assertEqual(memory.extract_text(html, "text/html"), text)

    def test_other_types_and_bad_utf8_raise_with_a_sentence(self):
        with self.assertRaisesRegex(ValueError, "text files only.*application/pdf"):
            memory.extract_text(b"%PDF", "application/pdf")
        with self.assertRaisesRegex(ValueError, "not valid UTF-8"):
            memory.extract_text(b"\xff\xfe", "text/plain")

    def test_text_type_guesses_from_the_name_only_without_a_type(self):
        self.assertEqual(memory.text_type(None, "notes.md"), "text/markdown")
        self.assertEqual(memory.text_type("application/octet-stream", "a.csv"), "text/csv")
        self.assertEqual(memory.text_type("text/plain", "a.pdf"), "text/plain")
        self.assertEqual(memory.text_type(None, "noext"), "application/octet-stream")


class MemoryStoreTest(unittest.TestCase):
    def upload(self, s, name="doc.txt", data=b"alpha beta gamma", content_type="text/plain", meta=None,
               memory_name="m"):
        token, _ = s.new_upload(memory_name, name, meta or {})
        s.put_upload(token, data, content_type)

    def test_status_moves_queued_in_progress_completed_with_the_clock(self):
        clock = Clock()
        s = store(clock, processing=3.0)
        s.create({"name": "m"})
        self.upload(s)
        self.upload(s, "scan.pdf", b"%PDF", "application/pdf")
        seen = []
        for now in (1000.0, 1000.9, 1001.0, 1002.9, 1003.0):
            clock.now = now
            seen.append([d["status"] for d in s.list_documents("m")])
        self.assertEqual(seen, [["queued"] * 2, ["queued"] * 2, ["in_progress"] * 2, ["in_progress"] * 2,
                                ["completed", "failed"]])
        failed = s.list_documents("m")[1]
        self.assertIn("text files only", failed["status_message"])
        self.assertIsNone(s.list_documents("m")[0]["status_message"])
        self.assertEqual(s.retrieve("alpha", [("m", None)], 5)[0]["text"], "alpha beta gamma")
        s.retry_document("m", "doc.txt")
        self.assertEqual(s.list_documents("m")[0]["status"], "queued")
        self.assertEqual(s.retrieve("alpha", [("m", None)], 5), [])  # not completed: not searched

    def test_bounds_on_memories_documents_and_bytes_change_nothing(self):
        s = store(processing=0, memories=2, documents=2, max_bytes=5000)
        s.create({"name": "a"})
        s.create({"name": "b"})
        with self.assertRaises(StoreFull):
            s.create({"name": "c"})
        self.assertEqual(len(s), 2)
        token, _ = s.new_upload("a", "one.txt", {})
        with self.assertRaisesRegex(StoreFull, "5001-byte file"):  # refused on its size, before it is read
            s.put_upload(token, b"x" * 5001, "text/plain")
        distinct = b" ".join(b"w%d" % i for i in range(400))  # 2,289 bytes, ~50 KB once indexed
        with self.assertRaisesRegex(StoreFull, "takes about"):
            s.put_upload(token, distinct, "text/plain")
        self.assertEqual(s.bytes_held, 0)
        s.put_upload(token, b"x" * 10, "text/plain")
        self.assertGreater(s.bytes_held, memory.DOCUMENT_OVERHEAD)
        s.new_upload("a", "two.txt", {})  # pending uploads count
        with self.assertRaises(StoreFull):
            s.new_upload("b", "three.txt", {})
        s.delete("a")  # frees its document and its pending upload
        self.assertEqual(s.bytes_held, 0)
        self.upload(s, memory_name="b", data=b"0123456789")

    def test_tokens_expire_are_spent_and_die_with_their_memory(self):
        clock = Clock()
        s = store(clock, processing=0)
        s.create({"name": "m"})
        token, expires = s.new_upload("m", "a.txt", {})
        self.assertEqual(expires, clock.now + memory.UPLOAD_URL_SECONDS)
        clock.now = expires
        with self.assertRaises(memory.Missing):
            s.put_upload(token, b"late", "text/plain")
        token, _ = s.new_upload("m", "a.txt", {})
        s.put_upload(token, b"first", "text/plain")
        with self.assertRaises(memory.Missing):
            s.put_upload(token, b"again", "text/plain")
        token, _ = s.new_upload("m", "b.txt", {})
        s.delete("m")
        with self.assertRaises(memory.Missing):
            s.put_upload(token, b"orphan", "text/plain")

    def test_same_name_replaces_the_document_and_its_bytes(self):
        s = store(processing=0, max_bytes=4000)
        s.create({"name": "m"})
        self.upload(s, data=b"old words")
        self.upload(s, data=b"new words!")  # fits only because the old one's bytes are freed
        docs = s.list_documents("m")
        self.assertEqual([(d["name"], d["metadata"]["size"]) for d in docs], [("doc.txt", 10)])
        self.assertEqual(s.retrieve("old", [("m", None)], 5), [])
        held = s.bytes_held
        s.delete_document("m", "doc.txt")
        self.assertEqual((s.bytes_held, held > 0), (0, True))

    def test_retrieve_filters_ranks_and_limits(self):
        s = store(processing=0)
        s.create({"name": "m"})
        self.upload(s, "a.txt", b"the red fox jumps", meta={"color": "red"})
        self.upload(s, "b.txt", b"the blue fox sleeps fox", meta={"color": "blue"})
        results = s.retrieve("fox", [("m", None)], 5)
        self.assertEqual([r["meta"]["documentName"] for r in results], ["b.txt", "a.txt"])
        self.assertEqual(len(s.retrieve("fox", [("m", None)], 1)), 1)
        red = s.retrieve("fox", [("m", memory.parse_filters(["color", "Eq", "red"]))], 5)
        self.assertEqual(red, [{"text": "the red fox jumps", "similarity": red[0]["similarity"],
                                "meta": {"documentName": "a.txt", "color": "red"}}])
        with self.assertRaises(memory.Missing):
            s.retrieve("fox", [("nope", None)], 5)

    def test_create_validates_and_refuses_duplicates(self):
        s = store()
        created = s.create({"name": "m", "description": "d", "embedding_model": "google:text-embedding-004",
                            "top_k": 3, "chunk_size": 2000, "chunk_overlap": 300})
        self.assertEqual(created, {"name": "m", "description": "d", "owner_login": memory.OWNER_LOGIN,
                                   "url": "https://langbase.com/memorysets/%s/m" % memory.OWNER_LOGIN,
                                   "chunk_size": 2000, "chunk_overlap": 300,
                                   "embedding_model": "google:text-embedding-004"})
        with self.assertRaises(memory.Exists):
            s.create({"name": "m"})
        for bad in ({}, {"name": "-x"}, {"name": "a/b"}, {"name": "m2", "top_k": 0}, {"name": "m2", "description": 5},
                    {"name": "m2", "chunk_size": 100}, {"name": "m2", "embedding_model": "x"}):
            with self.subTest(body=bad), self.assertRaises(InvalidRequest):
                s.create(bad)


class PngTest(unittest.TestCase):
    def test_png_chunks_have_valid_lengths_crcs_and_pixels(self):
        data = png(3, 2, lambda x, y: (x, y, 7))
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        pos, kinds = 8, []
        while pos < len(data):
            length, = struct.unpack(">I", data[pos:pos + 4])
            kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
            crc, = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
            self.assertEqual(crc, zlib.crc32(kind + body))
            kinds.append(kind)
            if kind == b"IDAT":
                self.assertEqual(zlib.decompress(body), b"\x00\x00\x00\x07\x01\x00\x07\x02\x00\x07"
                                                         b"\x00\x00\x01\x07\x01\x01\x07\x02\x01\x07")
            pos += 12 + length
        self.assertEqual(kinds, [b"IHDR", b"IDAT", b"IEND"])


if __name__ == "__main__":
    unittest.main()
