"""Over real sockets: the memory endpoints (``routes/memory.py``) and the utilities
(``routes/tools.py``), each in success and in every error, with Langbase's envelope; CORS for the
signed upload and the tools' key headers; keys never echoed."""

import json
import logging
import unittest

from tests import support
from tests.support import RunningServer, call, connect, request_bytes, ResponseReader

TEXT = ("Shipping takes two business days from the warehouse.\n\n"
        "The lighthouse keeper logs the tide tables every evening.\n\n"
        "Gift cards never expire.")


def host_call(port, method, path, body=None, headers=None, host=None):
    """``call`` with a ``Host`` header naming the server (or ``host``), as HTTP clients send it."""
    headers = dict(headers or {})
    headers["Host"] = "127.0.0.1:%d" % port if host is None else host
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    with connect(port) as sock:
        raw = request_bytes(method, path, body, headers).replace(b"Host: 127.0.0.1\r\n", b"", 1)
        sock.sendall(raw)
        return ResponseReader(sock).read()


class Base(unittest.TestCase):
    settings = {"memory_processing_seconds": 0}

    def setUp(self):
        self.server = RunningServer(**self.settings)
        self.server.__enter__()
        self.addCleanup(self.server.__exit__, None, None, None)
        self.port = self.server.port

    def assertError(self, response, status, code, needle=""):
        self.assertEqual(response.status, status, response.body)
        error = response.json()["error"]
        self.assertEqual((error["status"], error["code"]), (status, code))
        self.assertIn(needle, error["message"])

    def upload_path(self, memory_name="m", file_name="notes.txt", meta=None):
        body = {"memoryName": memory_name, "fileName": file_name}
        if meta is not None:
            body["meta"] = meta
        r = host_call(self.port, "POST", "/v1/memory/documents", body)
        self.assertEqual(r.status, 200, r.body)
        url = r.json()["signedUrl"]
        prefix = "http://127.0.0.1:%d/v1/memory/uploads/" % self.port
        self.assertTrue(url.startswith(prefix), url)
        self.assertGreaterEqual(len(url) - len(prefix), 40)  # an unguessable token
        return url[len("http://127.0.0.1:%d" % self.port):]

    def upload(self, memory_name="m", file_name="notes.txt", data=TEXT.encode(), content_type="text/plain", meta=None):
        r = call(self.port, "PUT", self.upload_path(memory_name, file_name, meta), data,
                 {"Content-Type": content_type, "Authorization": "Bearer any"})
        self.assertEqual((r.status, r.body), (200, b""))


class MemoryRoutesTest(Base):
    def test_create_list_delete(self):
        r = call(self.port, "POST", "/v1/memory", {"name": "m", "description": "FAQ"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"name": "m", "description": "FAQ", "owner_login": "mock-user",
                                    "url": "https://langbase.com/memorysets/mock-user/m", "chunk_size": 10000,
                                    "chunk_overlap": 2048, "embedding_model": "openai:text-embedding-3-large"})
        listed = call(self.port, "GET", "/v1/memory").json()
        self.assertEqual(listed, [{"name": "m", "description": "FAQ", "owner_login": "mock-user",
                                   "url": "https://langbase.com/memorysets/mock-user/m",
                                   "embedding_model": "openai:text-embedding-3-large",
                                   "embeddingModel": "openai:text-embedding-3-large"}])
        self.assertEqual(call(self.port, "DELETE", "/v1/memory/m").json(), {"success": True})
        self.assertEqual(call(self.port, "GET", "/v1/memory").json(), [])

    def test_create_errors(self):
        call(self.port, "POST", "/v1/memory", {"name": "m"})
        self.assertError(call(self.port, "POST", "/v1/memory", {"name": "m"}), 409, "CONFLICT", "'m'")
        for body, needle in (({}, "name"), ({"name": "a b"}, "name"), ({"name": "x", "chunk_size": 10}, "chunk_size"),
                             ({"name": "x", "chunk_overlap": 10}, "chunk_overlap"), ({"name": "x", "top_k": 101}, "top_k"),
                             ({"name": "x", "embedding_model": "bad"}, "embedding_model"), ([1], "object")):
            with self.subTest(body=body):
                self.assertError(call(self.port, "POST", "/v1/memory", body), 400, "BAD_REQUEST", needle)
        self.assertError(call(self.port, "POST", "/v1/memory", b"{", {"Content-Type": "application/json"}),
                         400, "BAD_REQUEST", "JSON")
        self.assertError(call(self.port, "DELETE", "/v1/memory/nope"), 404, "NOT_FOUND", "'nope'")
        self.assertError(call(self.port, "DELETE", "/v1/memory/%FF"), 404, "NOT_FOUND")

    def test_upload_list_retrieve_and_delete_documents(self):
        call(self.port, "POST", "/v1/memory", {"name": "m", "chunk_size": 1024, "chunk_overlap": 256})
        self.upload(meta={"team": "support"})
        self.upload(file_name="my notes.md", data=b"# Title\n\nThe lighthouse is tall.", content_type="text/markdown")
        docs = call(self.port, "GET", "/v1/memory/m/documents").json()
        self.assertEqual(docs[0], {"name": "notes.txt", "status": "completed", "status_message": None,
                                   "metadata": {"size": len(TEXT), "type": "text/plain"}, "enabled": True,
                                   "chunk_size": 1024, "chunk_overlap": 256, "owner_login": "mock-user"})
        self.assertEqual([d["name"] for d in docs], ["notes.txt", "my notes.md"])

        r = call(self.port, "POST", "/v1/memory/retrieve",
                 {"query": "lighthouse keeper tide", "memory": [{"name": "m"}], "topK": 1})
        self.assertEqual(r.status, 200)
        [best] = r.json()
        self.assertEqual(best["text"], TEXT)
        self.assertEqual(best["meta"], {"documentName": "notes.txt", "team": "support"})
        only_md = call(self.port, "POST", "/v1/memory/retrieve", {"query": "lighthouse", "memory": [
            {"name": "m", "filters": ["And", [["documentName", "NotEq", "notes.txt"], ["team", "NotIn", ["x"]]]]}]}).json()
        self.assertEqual([x["meta"]["documentName"] for x in only_md], ["my notes.md"])

        self.assertEqual(call(self.port, "GET", "/v1/memory/m/documents/notes.txt/embeddings/retry").json(),
                         {"success": True})
        self.assertEqual(call(self.port, "DELETE", "/v1/memory/m/documents/my%20notes.md").json(), {"success": True})
        self.assertEqual([d["name"] for d in call(self.port, "GET", "/v1/memory/m/documents").json()], ["notes.txt"])

    def test_document_errors(self):
        call(self.port, "POST", "/v1/memory", {"name": "m"})
        for path, needle in (("/v1/memory/x/documents", "'x'"), ("/v1/memory/m/documents/d.txt/embeddings/retry", "d.txt")):
            with self.subTest(path=path):
                self.assertError(call(self.port, "GET", path), 404, "NOT_FOUND", needle)
        self.assertError(call(self.port, "DELETE", "/v1/memory/m/documents/d.txt"), 404, "NOT_FOUND", "d.txt")
        for body, code, needle in (({"memoryName": "x", "fileName": "a.txt"}, 404, "'x'"),
                                   ({"memoryName": "m"}, 400, "fileName"),
                                   ({"memoryName": "m", "fileName": "a/b"}, 400, "fileName"),
                                   ({"memoryName": "m", "fileName": "a", "meta": {"k": 1}}, 400, "meta.k"),
                                   ({"fileName": "a"}, 400, "memoryName")):
            with self.subTest(body=body):
                r = host_call(self.port, "POST", "/v1/memory/documents", body)
                self.assertError(r, code, "NOT_FOUND" if code == 404 else "BAD_REQUEST", needle)
        for host, status, code in (("evil.test/x?", 400, "BAD_REQUEST"), ("a b", 400, "BAD_REQUEST"),
                                   ("", 403, "FORBIDDEN")):  # not a Host value at all; not a name of this server
            with self.subTest(host=host):
                self.assertError(host_call(self.port, "POST", "/v1/memory/documents",
                                           {"memoryName": "m", "fileName": "a"}, host=host), status, code, "Host")
        r = host_call(self.port, "POST", "/v1/memory/documents", {"memoryName": "m", "fileName": "a"}, host="[::1]:80")
        self.assertTrue(r.json()["signedUrl"].startswith("http://[::1]:80/v1/memory/uploads/"))
        self.assertError(call(self.port, "PUT", "/v1/memory/uploads/guess", b"x", {"Content-Type": "text/plain"}),
                         403, "FORBIDDEN", "unknown, used or expired")
        path = self.upload_path()
        self.assertEqual(call(self.port, "PUT", path, b"once", {"Content-Type": "text/plain"}).status, 200)
        self.assertError(call(self.port, "PUT", path, b"twice", {"Content-Type": "text/plain"}), 403, "FORBIDDEN")
        self.assertError(call(self.port, "GET", path), 405, "METHOD_NOT_ALLOWED")

    def test_unsupported_and_unreadable_files_end_failed_with_a_message(self):
        call(self.port, "POST", "/v1/memory", {"name": "m"})
        self.upload(file_name="scan.pdf", data=b"%PDF-1.7", content_type="application/pdf")
        self.upload(file_name="bad.txt", data=b"\xff\xfe\xfa", content_type="text/plain")
        self.upload(file_name="page.html", data=b"<p>Lighthouse</p>", content_type="application/octet-stream")
        docs = {d["name"]: d for d in call(self.port, "GET", "/v1/memory/m/documents").json()}
        self.assertEqual(docs["scan.pdf"]["status"], "failed")
        self.assertIn("application/pdf", docs["scan.pdf"]["status_message"])
        self.assertIn("not valid UTF-8", docs["bad.txt"]["status_message"])
        self.assertEqual((docs["page.html"]["status"], docs["page.html"]["metadata"]["type"]), ("completed", "text/html"))

    def test_retrieve_errors(self):
        call(self.port, "POST", "/v1/memory", {"name": "m"})
        for body, needle in (({"memory": [{"name": "m"}]}, "query"), ({"query": " ", "memory": [{"name": "m"}]}, "query"),
                             ({"query": "q"}, "memory"), ({"query": "q", "memory": []}, "memory"),
                             ({"query": "q", "memory": ["m"]}, "memory[0]"),
                             ({"query": "q", "memory": [{"name": "m", "filters": ["a", "Like", "b"]}]}, "filters"),
                             ({"query": "q", "memory": [{"name": "m"}], "topK": 0}, "topK"),
                             ({"query": "q", "memory": [{"name": "m"}], "topK": 101}, "topK")):
            with self.subTest(body=body):
                self.assertError(call(self.port, "POST", "/v1/memory/retrieve", body), 400, "BAD_REQUEST", needle)
        self.assertError(call(self.port, "POST", "/v1/memory/retrieve", {"query": "q", "memory": [{"name": "zz"}]}),
                         404, "NOT_FOUND", "'zz'")
        self.assertEqual(call(self.port, "POST", "/v1/memory/retrieve",
                              {"query": "q", "memory": [{"name": "m"}]}).json(), [])


class HostileInputTest(Base):
    def test_odd_values_in_every_field_are_4xx_never_500(self):
        call(self.port, "POST", "/v1/memory", {"name": "m"})
        odd = [None, True, 1e308, -1, "", "\u0000", [], {}, [[[]]], ["And"], {"x": 1}, "a" * 5000]
        fields = {
            "/v1/memory": ("name", "description", "embedding_model", "top_k", "chunk_size", "chunk_overlap"),
            "/v1/memory/documents": ("memoryName", "fileName", "meta"),
            "/v1/memory/retrieve": ("query", "memory", "topK"),
            "/v1/chunker": ("content", "chunkMaxLength", "chunkOverlap"),
            "/v1/embed": ("chunks", "embeddingModel"),
            "/v1/tools/web-search": ("query", "service", "totalResults", "domains"),
            "/v1/tools/crawl": ("url", "maxPages", "service"),
            "/v1/images": ("prompt", "model", "width", "height", "n"),
        }
        valid = {"/v1/memory": {"name": "x"}, "/v1/memory/documents": {"memoryName": "m", "fileName": "f"},
                 "/v1/memory/retrieve": {"query": "q", "memory": [{"name": "m"}]}, "/v1/chunker": {"content": "c"},
                 "/v1/embed": {"chunks": ["c"]}, "/v1/tools/web-search": {"query": "q"},
                 "/v1/tools/crawl": {"url": ["https://example.com"]}, "/v1/images": {"prompt": "p", "model": "m"}}
        for path, names in fields.items():
            for name in names:
                for value in odd:
                    body = dict(valid[path], **{name: value})
                    r = host_call(self.port, "POST", path, body)
                    self.assertLess(r.status, 500, (path, name, value, r.body))
                    if r.status == 200 and path == "/v1/memory":
                        call(self.port, "DELETE", "/v1/memory/x")
        for value in odd:
            filters = {"query": "q", "memory": [{"name": "m", "filters": value}]}
            self.assertLess(call(self.port, "POST", "/v1/memory/retrieve", filters).status, 500, value)
        for method, path in (("GET", "/v1/memory/%00/documents"), ("DELETE", "/v1/memory/%C0%AF/documents/x"),
                             ("DELETE", "/v1/memory/m/documents/%2F")):
            self.assertEqual(call(self.port, method, path).status, 404, path)

    def test_form_part_parameters_in_an_undecodable_charset_are_400(self):
        # RFC 2231 and RFC 2047 parameters of a part's Content-Disposition name their charset; the
        # email package raised UnicodeError (or returned a lone surrogate) for some: a 500.
        odd = ("filename*=unicode_escape''%5Cud800.txt", "filename*=utf-7''+2AA-.txt",
               "filename*=punycode''abc-9999999.txt", 'filename="=?unicode_escape?q?=5Cud800?=.txt"')
        for param in odd:
            with self.subTest(param=param):
                body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"document\"; " + param.encode()
                        + b"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n")
                r = call(self.port, "POST", "/v1/parser", body, {"Content-Type": "multipart/form-data; boundary=XyZ"})
                self.assertError(r, 400, "BAD_REQUEST", "form part")
        self.assertEqual(call(self.port, "GET", "/health").status, 200)

    def test_a_charset_that_decodes_to_a_lone_surrogate_fails_the_document_not_retrieval(self):
        # Such text cannot be sent back as UTF-8: kept, it made every retrieval of the memory a 500.
        call(self.port, "POST", "/v1/memory", {"name": "m"})
        for charset, data in (("unicode_escape", b"hello \\ud800 world"), ("utf-7", b"hello +2AA- world"),
                              ("raw_unicode_escape", b"hello \\udfff world")):
            self.upload(file_name="%s.txt" % charset, data=data, content_type="text/plain; charset=" + charset)
        self.upload(file_name="fine.txt", data=b"hello \\u00e9 world", content_type="text/plain; charset=unicode_escape")
        docs = {d["name"]: d for d in call(self.port, "GET", "/v1/memory/m/documents").json()}
        for charset in ("unicode_escape", "utf-7", "raw_unicode_escape"):
            self.assertEqual(docs["%s.txt" % charset]["status"], "failed", charset)
            self.assertIn("surrogate", docs["%s.txt" % charset]["status_message"])
        self.assertEqual(docs["fine.txt"]["status"], "completed")
        r = call(self.port, "POST", "/v1/memory/retrieve", {"query": "hello", "memory": [{"name": "m"}]})
        self.assertEqual((r.status, [x["text"] for x in r.json()]), (200, ["hello \u00e9 world"]), r.body)


class BoundsTest(Base):
    settings = {"memory_processing_seconds": 0, "max_memories": 1, "max_documents": 1, "max_memory_bytes": 4000,
                "max_body_bytes": 4096}

    def test_store_bounds_are_403_usage_exceeded_and_bodies_413(self):
        call(self.port, "POST", "/v1/memory", {"name": "m"})
        self.assertError(call(self.port, "POST", "/v1/memory", {"name": "n"}), 403, "USAGE_EXCEEDED", "--max-memories")
        path = self.upload_path()
        self.assertError(host_call(self.port, "POST", "/v1/memory/documents", {"memoryName": "m", "fileName": "b"}),
                         403, "USAGE_EXCEEDED", "--max-documents")
        self.assertError(call(self.port, "PUT", path, b"x" * 4001, {"Content-Type": "text/plain"}),
                         403, "USAGE_EXCEEDED", "--max-memory-bytes")
        distinct = b" ".join(b"w%d" % i for i in range(400))  # 2,289 bytes: its word index is far more
        self.assertError(call(self.port, "PUT", path, distinct, {"Content-Type": "text/plain"}),
                         403, "USAGE_EXCEEDED", "--max-memory-bytes")
        self.assertError(call(self.port, "PUT", path, b"x" * 5000, {"Content-Type": "text/plain"}),
                         413, "PAYLOAD_TOO_LARGE", "--max-body-bytes")
        self.assertEqual(call(self.port, "GET", "/v1/memory/m/documents").json(), [])
        self.assertEqual(call(self.port, "PUT", path, b"x" * 20, {"Content-Type": "text/plain"}).status, 200)


class StatusOverTimeTest(Base):
    settings = {"memory_processing_seconds": 1.2}  # queued 0.4 s, in_progress 0.8 s: room for a slow poll

    def test_status_queued_then_in_progress_then_completed(self):
        import time
        call(self.port, "POST", "/v1/memory", {"name": "m"})
        self.upload()
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not seen or seen[-1] != "completed"):
            status = call(self.port, "GET", "/v1/memory/m/documents").json()[0]["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            time.sleep(0.02)
        self.assertEqual(seen, ["queued", "in_progress", "completed"])


class ReviewFindingsTest(Base):
    """The small findings of a review of these endpoints, each over the socket."""

    def test_the_default_overlap_follows_a_small_chunk_size(self):
        r = call(self.port, "POST", "/v1/memory", {"name": "m", "chunk_size": 1024})
        self.assertEqual((r.status, r.json()["chunk_size"], r.json()["chunk_overlap"]), (200, 1024, 256), r.body)
        r = call(self.port, "POST", "/v1/memory", {"name": "n", "chunk_size": 4000})
        self.assertEqual(r.json()["chunk_overlap"], 1000)
        r = call(self.port, "POST", "/v1/memory", {"name": "o"})
        self.assertEqual(r.json()["chunk_overlap"], 2048)

    def test_an_invalid_content_type_falls_back_to_the_extension_and_charset_is_read(self):
        call(self.port, "POST", "/v1/memory", {"name": "m"})
        self.upload(file_name="f.pdf", data=b"%PDF-1.7", content_type="pdf")
        self.upload(file_name="latin.txt", data="caf\u00e9 cr\u00e8me".encode("latin-1"),
                    content_type="text/plain; charset=iso-8859-1")
        self.upload(file_name="odd.txt", data=b"x", content_type="text/plain; charset=no-such-charset")
        docs = {d["name"]: d for d in call(self.port, "GET", "/v1/memory/m/documents").json()}
        self.assertEqual((docs["f.pdf"]["status"], docs["f.pdf"]["metadata"]["type"]), ("failed", "application/pdf"))
        self.assertEqual(docs["latin.txt"]["status"], "completed")
        self.assertEqual((docs["odd.txt"]["status"], docs["odd.txt"]["status_message"]),
                         ("failed", "The file's charset 'no-such-charset' is unknown."))
        found = call(self.port, "POST", "/v1/memory/retrieve", {"query": "crème", "memory": [{"name": "m"}]}).json()
        self.assertEqual([x["text"] for x in found], ["caf\u00e9 cr\u00e8me"])

    def test_document_names_an_sdk_cannot_put_in_a_path_are_refused(self):
        call(self.port, "POST", "/v1/memory", {"name": "m"})
        for name in ("a?b.txt", "a#b.txt", "100%.txt", "a%2Fb.txt"):
            with self.subTest(name=name):
                r = host_call(self.port, "POST", "/v1/memory/documents", {"memoryName": "m", "fileName": name})
                self.assertError(r, 400, "BAD_REQUEST", "'?', '#', '%'")

    def test_crawl_ports_and_search_domains_are_checked(self):
        r = call(self.port, "POST", "/v1/tools/crawl", {"url": ["https://example.com:99999/"]})
        self.assertError(r, 400, "BAD_REQUEST", "url")
        self.assertEqual(call(self.port, "POST", "/v1/tools/crawl", {"url": ["https://example.com:8443/"]}).status, 200)
        for domains in (0, {}, "", False, "example.com"):
            with self.subTest(domains=domains):
                r = call(self.port, "POST", "/v1/tools/web-search", {"query": "q", "domains": domains})
                self.assertError(r, 400, "BAD_REQUEST", "domains")
        r = call(self.port, "POST", "/v1/tools/web-search", {"query": "q", "domains": [], "totalResults": 1})
        self.assertEqual(r.json()[0]["url"], "https://example.com/mock-search/q/1")


class AuthTest(Base):
    settings = {"memory_processing_seconds": 0, "api_key": "secret-key"}

    def test_key_required_except_on_the_signed_url(self):
        for method, path in (("GET", "/v1/memory"), ("POST", "/v1/memory/retrieve"), ("POST", "/v1/chunker"),
                             ("POST", "/v1/images"), ("DELETE", "/v1/memory/m/documents/a")):
            with self.subTest(path=path):
                self.assertError(call(self.port, method, path, {}), 401, "UNAUTHORIZED")
        auth = {"Authorization": "Bearer secret-key"}
        call(self.port, "POST", "/v1/memory", {"name": "m"}, auth)
        r = host_call(self.port, "POST", "/v1/memory/documents", {"memoryName": "m", "fileName": "a.txt"}, auth)
        path = r.json()["signedUrl"].split(str(self.port), 1)[1]
        self.assertEqual(call(self.port, "PUT", path, b"hello", {"Content-Type": "text/plain"}).status, 200)


class UtilityRoutesTest(Base):
    def test_chunker(self):
        content = "".join("Line %d of the text.\n" % i for i in range(200))
        chunks = call(self.port, "POST", "/v1/chunker", {"content": content}).json()
        self.assertTrue(all(len(c) <= 1024 for c in chunks))
        self.assertEqual(call(self.port, "POST", "/v1/chunker", {"content": ""}).json(), [])
        for body, needle in (({}, "content"), ({"content": 5}, "content"), ({"content": "x", "chunkMaxLength": 100},
                             "chunkMaxLength"), ({"content": "x", "chunkOverlap": 2000}, "chunkOverlap")):
            with self.subTest(body=body):
                self.assertError(call(self.port, "POST", "/v1/chunker", body), 400, "BAD_REQUEST", needle)

    def test_embed(self):
        vectors = call(self.port, "POST", "/v1/embed", {"chunks": ["a b", "a b"]}).json()
        self.assertEqual([len(v) for v in vectors], [3072, 3072])
        self.assertEqual(vectors[0], vectors[1])
        light = call(self.port, "POST", "/v1/embed", {"chunks": ["x"], "embeddingModel": "cohere:embed-multilingual-light-v3.0"})
        self.assertEqual(len(light.json()[0]), 384)
        for body, needle in (({}, "chunks"), ({"chunks": []}, "chunks"), ({"chunks": [""]}, "chunks"),
                             ({"chunks": ["x"] * 101}, "chunks"), ({"chunks": ["x" * 100_001] * 2}, "characters"), ({"chunks": ["x"], "embeddingModel": "nope"}, "embeddingModel")):
            with self.subTest(body=body):
                self.assertError(call(self.port, "POST", "/v1/embed", body), 400, "BAD_REQUEST", needle)

    def form(self, parts, boundary="XyZ"):
        out = b""
        for name, filename, ctype, data in parts:
            out += b"--" + boundary.encode() + b"\r\n"
            disposition = 'form-data; name="%s"' % name + ('; filename="%s"' % filename if filename else "")
            out += ("Content-Disposition: %s\r\n" % disposition).encode()
            if ctype:
                out += ("Content-Type: %s\r\n" % ctype).encode()
            out += b"\r\n" + data + b"\r\n"
        return out + b"--" + boundary.encode() + b"--\r\n"

    def test_parser(self):
        body = self.form([("document", "t.csv", "text/csv", b"a,b\r\n1,2\r\n"), ("documentName", None, None, b"t.csv")])
        r = call(self.port, "POST", "/v1/parser", body, {"Content-Type": "multipart/form-data; boundary=XyZ"})
        self.assertEqual(r.json(), {"documentName": "t.csv", "content": "a,b\r\n1,2\r\n"})
        untyped = self.form([("document", "n.md", None, b"# Hi")])
        r = call(self.port, "POST", "/v1/parser", untyped, {"Content-Type": "multipart/form-data; boundary=XyZ"})
        self.assertEqual(r.json(), {"documentName": "n.md", "content": "# Hi"})
        cases = (
            (b"{}", "application/json", "multipart/form-data"),
            (self.form([("documentName", None, None, b"x")]), "multipart/form-data; boundary=XyZ", "'document'"),
            (self.form([("document", "a.pdf", "application/pdf", b"%PDF")]), "multipart/form-data; boundary=XyZ",
             "text files only"),
            (b"garbage", "multipart/form-data; boundary=XyZ", "malformed"),
            (self.form([("document", "a.txt", "text/plain", b"x")] * 11), "multipart/form-data; boundary=XyZ", "at most"),
        )
        for data, ctype, needle in cases:
            with self.subTest(needle=needle):
                self.assertError(call(self.port, "POST", "/v1/parser", data, {"Content-Type": ctype}),
                                 400, "BAD_REQUEST", needle)

    def test_web_search_and_crawl(self):
        keys = {"LB-WEB-SEARCH-KEY": "ws-secret", "LB-CRAWL-KEY": "crawl-secret"}
        r = call(self.port, "POST", "/v1/tools/web-search", {"query": "mock servers", "service": "exa",
                                                             "apiKey": "ws-secret"}, keys)
        self.assertEqual(len(r.json()), 5)
        self.assertEqual(r.json()[0]["url"], "https://example.com/mock-search/mock-servers/1")
        self.assertIn("mock content", r.json()[0]["content"])
        self.assertNotIn(b"secret", r.body + repr(r.headers).encode())
        for body, needle in (({}, "query"), ({"query": "q", "service": "google"}, "service"),
                             ({"query": "q", "totalResults": 0}, "totalResults"),
                             ({"query": "q", "domains": ["not a host"]}, "domains")):
            with self.subTest(body=body):
                self.assertError(call(self.port, "POST", "/v1/tools/web-search", body), 400, "BAD_REQUEST", needle)
        r = call(self.port, "POST", "/v1/tools/crawl", {"url": ["https://example.com/x"], "maxPages": 2}, keys)
        self.assertEqual(r.json()[0]["url"], "https://example.com/x")
        self.assertIn("mock content", r.json()[0]["content"])
        self.assertNotIn(b"secret", r.body)
        for body, needle in (({}, "url"), ({"url": ["ftp://x"]}, "url"), ({"url": ["https://x"], "maxPages": 0}, "maxPages"),
                             ({"url": ["https://x"], "service": "other"}, "service")):
            with self.subTest(body=body):
                self.assertError(call(self.port, "POST", "/v1/tools/crawl", body), 400, "BAD_REQUEST", needle)

    def test_images(self):
        r = call(self.port, "POST", "/v1/images", {"prompt": "a cat", "model": "together:flux", "n": 2},
                 {"LB-LLM-Key": "llm-secret"})
        body = r.json()
        self.assertEqual((body["provider"], body["model"], body["object"]), ("together", "together:flux", "chat.completion"))
        images = body["choices"][0]["message"]["images"]
        self.assertEqual(len(images), 2)
        self.assertNotEqual(images[0]["image_url"]["url"], images[1]["image_url"]["url"])
        again = call(self.port, "POST", "/v1/images", {"prompt": "a cat", "model": "together:flux", "n": 2}).json()
        self.assertEqual(again["choices"][0]["message"]["images"], images)
        self.assertNotIn(b"llm-secret", r.body)
        for body, needle in (({"model": "m"}, "prompt"), ({"prompt": "p"}, "model"),
                             ({"prompt": "p", "model": "m", "n": 5}, "n"), ({"prompt": "p", "model": "m", "width": 0}, "width")):
            with self.subTest(body=body):
                self.assertError(call(self.port, "POST", "/v1/images", body), 400, "BAD_REQUEST", needle)

    def test_cors_preflight_allows_put_and_the_key_headers(self):
        r = call(self.port, "OPTIONS", "/v1/memory/uploads/t", headers={"Origin": "http://app.test",
                                                                        "Access-Control-Request-Method": "PUT"})
        self.assertEqual(r.status, 204)
        self.assertIn("PUT", r.header("Access-Control-Allow-Methods").split(", "))
        allowed = r.header("Access-Control-Allow-Headers").split(", ")
        for name in ("LB-WEB-SEARCH-KEY", "LB-CRAWL-KEY", "Authorization", "Content-Type"):
            self.assertIn(name, allowed)

    def test_keys_are_not_logged(self):
        with self.assertLogs(level=logging.DEBUG) as logs:
            logging.getLogger("access").info("marker")
            call(self.port, "POST", "/v1/tools/web-search", {"query": "q"}, {"LB-WEB-SEARCH-KEY": "ws-secret"})
            call(self.port, "POST", "/v1/images", {"prompt": "p", "model": "m"}, {"LB-LLM-Key": "llm-secret"})
        self.assertNotIn("secret", "\n".join(logs.output))


if __name__ == "__main__":
    unittest.main()
