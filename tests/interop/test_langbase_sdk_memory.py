"""Interop tests: the official ``langbase`` Python SDK (PyPI ``langbase==0.0.5``) against the
mock's memory and utility endpoints: ``memories.*`` (create, list, the two-step document upload,
document list until ``completed``, retrieve, retry, deletes), ``chunker``, ``embed``, ``parser``,
``tools.web_search``, ``tools.crawl`` and ``images.generate``.

Each test starts a real server on 127.0.0.1:0 and talks to it only through the SDK. Without the
SDK every test is skipped with an install hint (see ``test_langbase_sdk``, whose bounded-request
base class these tests share).
"""

from __future__ import annotations

import base64
import io
import math
import time
import unittest
import zlib
from contextlib import redirect_stdout

from tests.interop.test_langbase_sdk import HAVE_SDK, SKIP_REASON, SdkTestCase

if HAVE_SDK:
    from langbase import BadRequestError, ConflictError, NotFoundError

NOTES = (
    "Shipping policy. Orders leave the warehouse within two business days.\n\n"
    + "Returns are accepted for thirty days with the original receipt. " * 20 + "\n\n"
    + "The lighthouse keeper logs the tide tables every evening at dusk. " * 3 + "\n\n"
    + "Gift cards never expire and can be used online or in stores. " * 20
)
"""A text with one passage (the lighthouse keeper's) that nothing else resembles."""


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class MemorySdkTest(SdkTestCase):
    def wait_completed(self, lb, memory_name: str, document_name: str) -> list:
        """Poll ``documents.list`` (at most 5 s) until the document is ``completed``; returns
        every status seen, in order, without repeats."""
        seen = []
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            doc = next(d for d in lb.memories.documents.list(memory_name) if d["name"] == document_name)
            if not seen or seen[-1] != doc["status"]:
                seen.append(doc["status"])
            if doc["status"] in ("completed", "failed"):
                return seen
            time.sleep(0.05)
        self.fail("document never completed; statuses seen: %s" % seen)

    def test_upload_wait_and_retrieve_finds_the_uploaded_passage_first(self):
        server = self.start_server(memory_processing_seconds=0.6)
        lb = self.client(server)
        created = lb.memories.create(name="support-notes", description="FAQ", chunk_size=1024, chunk_overlap=256)
        self.assertEqual(created["name"], "support-notes")
        self.assertEqual((created["chunk_size"], created["chunk_overlap"]), (1024, 256))
        self.assertEqual(created["embedding_model"], "openai:text-embedding-3-large")
        listed = lb.memories.list()
        self.assertEqual([m["name"] for m in listed], ["support-notes"])
        self.assertEqual(listed[0]["embedding_model"], listed[0]["embeddingModel"])

        upload = lb.memories.documents.upload("support-notes", "notes.txt", NOTES.encode(), "text/plain",
                                              meta={"team": "support"})
        self.assertEqual(upload.status_code, 200)
        statuses = self.wait_completed(lb, "support-notes", "notes.txt")
        self.assertEqual(statuses[-1], "completed")
        self.assertIn("in_progress", statuses)
        doc = lb.memories.documents.list("support-notes")[0]
        self.assertEqual(doc["metadata"], {"size": len(NOTES.encode()), "type": "text/plain"})
        self.assertIsNone(doc["status_message"])

        results = lb.memories.retrieve("when does the lighthouse keeper log the tide tables?",
                                       [{"name": "support-notes"}], top_k=3)
        self.assertGreaterEqual(len(results), 1)
        self.assertIn("lighthouse keeper logs the tide tables", results[0]["text"])
        self.assertEqual(results[0]["meta"], {"documentName": "notes.txt", "team": "support"})
        self.assertTrue(0 < results[0]["similarity"] < 1)
        self.assertEqual([r["similarity"] for r in results], sorted((r["similarity"] for r in results), reverse=True))
        filtered = lb.memories.retrieve("lighthouse", [{"name": "support-notes", "filters": ["team", "Eq", "sales"]}])
        self.assertEqual(filtered, [])
        kept = lb.memories.retrieve("lighthouse", [{"name": "support-notes",
                                                    "filters": ["Or", [["team", "In", ["sales", "support"]]]]}])
        self.assertIn("lighthouse", kept[0]["text"])

        self.assertEqual(lb.memories.documents.embeddings.retry("support-notes", "notes.txt"), {"success": True})
        self.assertEqual(lb.memories.documents.list("support-notes")[0]["status"], "queued")
        self.assertEqual(lb.memories.documents.delete("support-notes", "notes.txt"), {"success": True})
        self.assertEqual(lb.memories.documents.list("support-notes"), [])
        self.assertEqual(lb.memories.delete("support-notes"), {"success": True})
        self.assertEqual(lb.memories.list(), [])

    def test_a_pdf_upload_ends_failed_with_a_status_message(self):
        server = self.start_server(memory_processing_seconds=0)
        lb = self.client(server)
        lb.memories.create(name="papers")
        lb.memories.documents.upload("papers", "paper.pdf", b"%PDF-1.7 ...", "application/pdf")
        doc = lb.memories.documents.list("papers")[0]
        self.assertEqual(doc["status"], "failed")
        self.assertIn("text files only", doc["status_message"])

    def test_errors_are_the_sdk_error_classes(self):
        server = self.start_server()
        lb = self.client(server)
        lb.memories.create(name="dup")
        with self.assertRaises(ConflictError):
            lb.memories.create(name="dup")
        with self.assertRaises(NotFoundError):
            lb.memories.delete("missing")
        with self.assertRaises(NotFoundError):
            lb.memories.documents.list("missing")
        with self.assertRaises(BadRequestError):
            lb.memories.retrieve("q", [{"name": "dup", "filters": ["team", "Like", "x"]}])


@unittest.skipUnless(HAVE_SDK, SKIP_REASON)
class UtilitiesSdkTest(SdkTestCase):
    def test_chunker_honours_max_length_and_overlap(self):
        lb = self.client(self.start_server())
        content = "".join("Sentence number %d is here. " % i for i in range(300))
        chunks = lb.chunker(content, chunk_max_length=1024, chunk_overlap=256)
        self.assertGreater(len(chunks), 3)
        self.assertTrue(all(len(c) <= 1024 for c in chunks))
        self.assertTrue(chunks[0].startswith("Sentence number 0 is here."))
        self.assertTrue(chunks[-1].endswith("Sentence number 299 is here."))
        self.assertIn(chunks[1][:60], chunks[0])  # the overlap

    def test_embed_gives_unit_vectors_of_the_model_length(self):
        lb = self.client(self.start_server())
        vectors = lb.embed(["the cat sat", "the cat sat", "quarterly revenue grew"],
                           embedding_model="cohere:embed-multilingual-v3.0")
        self.assertEqual([len(v) for v in vectors], [1024] * 3)
        self.assertEqual(vectors[0], vectors[1])
        for v in vectors:
            self.assertAlmostEqual(math.sqrt(sum(x * x for x in v)), 1.0, places=4)

    def test_parser_returns_document_text(self):
        lb = self.client(self.start_server())
        with redirect_stdout(io.StringIO()):  # this SDK version prints every parser response
            result = lb.parser(b"<html><body><h1>Title</h1><p>Body text.</p><script>x()</script></body></html>",
                               "page.html", "text/html")
        self.assertEqual(result, {"document_name": "page.html", "content": "Title\n\nBody text."})

    def test_web_search_and_crawl_are_marked_mock_content(self):
        lb = self.client(self.start_server())
        found = lb.tools.web_search("offline testing", total_results=3, domains=["docs.example.org"],
                                    api_key="search-secret")
        self.assertEqual([r["url"] for r in found],
                         ["https://docs.example.org/mock-search/offline-testing/%d" % i for i in (1, 2, 3)])
        self.assertTrue(all("mock content" in r["content"] for r in found))
        pages = lb.tools.crawl(["https://example.com/a", "https://example.org/b"], max_pages=1, api_key="crawl-secret")
        self.assertEqual([p["url"] for p in pages], ["https://example.com/a", "https://example.org/b"])
        self.assertNotIn("secret", repr(found) + repr(pages))

    def test_images_generate_returns_a_png_data_url(self):
        lb = self.client(self.start_server())
        result = lb.images.generate(prompt="a red bicycle", model="openai:gpt-image-1", api_key="llm-key", n=2)
        images = result["choices"][0]["message"]["images"]
        self.assertEqual([i["index"] for i in images], [0, 1])
        url = images[0]["image_url"]["url"]
        self.assertTrue(url.startswith("data:image/png;base64,"))
        png = base64.b64decode(url.split(",", 1)[1])
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(len(zlib.decompress(png[png.index(b"IDAT") + 4:-16])), 64 * (1 + 64 * 3))
        self.assertEqual(result["provider"], "openai")
        self.assertNotIn("llm-key", repr(result))
