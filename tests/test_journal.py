"""The request journal (``GET``/``DELETE /mock/requests``) and ``POST /mock/reset``: secrets
masked before anything is kept, bounds in count and bytes, filters, and a reset that leaves
every store empty, over real sockets."""

import json
import unittest

import journal
from tests.support import RunningServer, call

SECRETS = ("sk-header-secret", "sk-llm-secret", "sk-body-secret", "sk-x-api-secret", "sk-nested-secret")


def add(book, path="/v1/pipes/run", status=200, body=b"{}", headers=(), method="POST", run_id=None, fixture=None):
    book.add(time=0.0, method=method, path=path, query="", headers=headers, body=body, status=status,
                    run_id=run_id, fixture=fixture, request_id="r")


class JournalUnitTest(unittest.TestCase):
    def test_headers_masked_keeping_the_scheme(self):
        masked = journal.mask_headers([("Authorization", "Bearer sk-1"), ("LB-LLM-Key", "sk-2"),
                                       ("X-Api-Key", "sk-3"), ("x-goog-api-key", "sk-4"), ("Cookie", "a=b"),
                                       ("X-Auth-Token", "t"), ("Content-Type", "application/json")])
        self.assertEqual(masked, [["Authorization", "Bearer ***"], ["LB-LLM-Key", "***"], ["X-Api-Key", "***"],
                                  ["x-goog-api-key", "***"], ["Cookie", "***"], ["X-Auth-Token", "***"],
                                  ["Content-Type", "application/json"]])

    def test_body_secrets_masked_at_any_depth_and_in_text_bodies(self):
        body, cut = journal.mask_body(json.dumps({"apiKey": "a", "nested": [{"api_key": "b", "LLM-Key": "c"}],
                                                  "messages": [{"content": "apiKey"}], "apikey": None}).encode())
        self.assertEqual(body, {"apiKey": "***", "nested": [{"api_key": "***", "LLM-Key": "***"}],
                                "messages": [{"content": "apiKey"}], "apikey": None})
        self.assertFalse(cut)
        text, cut = journal.mask_body(b'{"apiKey": "sk-1", broken')
        self.assertEqual(text, '{"apiKey": "***", broken')
        self.assertEqual(journal.mask_body(b""), (None, False))

    def test_escaped_names_are_masked_and_plain_bodies_kept_as_sent(self):
        body, _ = journal.mask_body(b'{"tok\\u0065n": "t-1", "Password": "p", "messages": []}')
        self.assertEqual(body, {"token": "***", "Password": "***", "messages": []})
        plain = {"messages": [{"role": "user", "content": "Hello"}], "stream": True}
        self.assertEqual(journal.mask_body(json.dumps(plain).encode()), (plain, False))
        self.assertEqual(journal.mask_body(b"not json"), ("not json", False))

    def test_secret_names_spelt_with_dashes_or_underscores_are_masked_in_any_body(self):
        # _secret_key ignores '-' and '_' ("pass_word" is "password"), so the fast path for
        # bodies "with nothing to mask" must not keep such a member's value either.
        for name in ("pass_word", "to-ken", "api_k-ey"):
            with self.subTest(name=name):
                body, _ = journal.mask_body(json.dumps({name: "abc"}).encode())
                self.assertEqual(body, {name: "***"})

    def test_long_bodies_are_cut_and_masked(self):
        raw = json.dumps({"apiKey": "sk-long", "pad": "x" * (journal.MAX_BODY_CHARS * 2)}).encode()
        text, cut = journal.mask_body(raw)
        self.assertTrue(cut)
        self.assertLessEqual(len(text), journal.MAX_BODY_CHARS)
        self.assertTrue(text.startswith('{"apiKey": "***", "pad": "xxx'), text[:40])
        self.assertNotIn("sk-long", text)

    def test_bounded_in_count_and_bytes_oldest_first(self):
        book = journal.Journal(limit=3, max_bytes=10 ** 9)
        for i in range(5):
            add(book, path="/p%d" % i)
        self.assertEqual([e["path"] for e in book.select({})], ["/p4", "/p3", "/p2"])
        self.assertEqual([e["seq"] for e in book.select({})], [5, 4, 3])
        small = journal.Journal(limit=100, max_bytes=3 * (journal.ENTRY_OVERHEAD_BYTES + 2000))
        for i in range(10):
            add(small, body=b"x" * 1900)
        self.assertLessEqual(small.bytes, small.max_bytes)
        self.assertEqual(len(small), 3)
        self.assertEqual(small.clear(), 3)
        self.assertEqual((len(small), small.bytes), (0, 0))

    def test_filters(self):
        book = journal.Journal()
        add(book, path="/v1/pipes/run", run_id="r1", fixture="greet")
        add(book, path="/v1/chat/completions", status=429, run_id="r2")
        add(book, path="/v1/threads/abc", method="GET")
        select = book.select
        self.assertEqual([e["run_id"] for e in select({"path_prefix": "/v1/"})], [None, "r2", "r1"])
        self.assertEqual([e["path"] for e in select({"method": "get"})], ["/v1/threads/abc"])
        self.assertEqual([e["run_id"] for e in select({"status": "429"})], ["r2"])
        self.assertEqual([e["run_id"] for e in select({"fixture": "greet"})], ["r1"])
        self.assertEqual([e["path"] for e in select({"path": "/v1/pipes/run", "run_id": "r1"})], ["/v1/pipes/run"])
        self.assertEqual(len(select({"limit": "2"})), 2)
        # Only ASCII digits: int() would also take "1_0", " 2 ", "+3" and other scripts' digits.
        for bad in ({"status": "x"}, {"limit": "-1"}, {"limit": "1_0"}, {"status": " 429"}, {"limit": "+2"},
                    {"status": "\u0664\u0662\u0669"}, {"limit": ""}):
            with self.assertRaises(ValueError):
                select(bad)


class JournalRoutesTest(unittest.TestCase):
    def test_requests_are_kept_masked_with_status_run_and_fixture(self):
        with RunningServer() as s:
            call(s.port, "POST", "/mock/fixtures", {"name": "greet", "match": {"user": "Hi"},
                                                     "response": {"text": "Hello"}})
            run = call(s.port, "POST", "/v1/agent/run",
                       {"model": "openai:gpt-4o-mini", "input": "Hi", "apiKey": SECRETS[2],
                        "extra": {"nested": {"api_key": SECRETS[4]}}},
                       {"Authorization": "Bearer " + SECRETS[0], "LB-LLM-Key": SECRETS[1],
                        "X-Api-Key": SECRETS[3]})
            call(s.port, "GET", "/v1/threads/00000000-0000-4000-8000-000000000009")
            call(s.port, "GET", "/health")
            r = call(s.port, "GET", "/mock/requests")
            self.assertEqual(r.status, 200)
            for secret in SECRETS:
                self.assertNotIn(secret.encode(), r.body)
            entries = r.json()["requests"]
            self.assertEqual([(e["method"], e["path"], e["status"]) for e in entries],
                             [("GET", "/health", 200), ("GET", "/v1/threads/00000000-0000-4000-8000-000000000009", 404),
                              ("POST", "/v1/agent/run", 200)])
            agent = entries[2]
            self.assertEqual((agent["run_id"], agent["fixture"]), (run.header("lb-mock-run-id"), "greet"))
            headers = dict(agent["headers"])
            self.assertEqual((headers["Authorization"], headers["LB-LLM-Key"], headers["X-Api-Key"]),
                             ("Bearer ***", "***", "***"))
            self.assertEqual(agent["body"]["apiKey"], "***")
            self.assertEqual(agent["body"]["extra"], {"nested": {"api_key": "***"}})
            self.assertEqual(agent["body"]["input"], "Hi")
            self.assertEqual(agent["request_id"], run.header("lb-request-id"))

            only = call(s.port, "GET", "/mock/requests?fixture=greet&path_prefix=/v1/").json()["requests"]
            self.assertEqual([e["path"] for e in only], ["/v1/agent/run"])
            self.assertEqual(len(call(s.port, "GET", "/mock/requests?status=404").json()["requests"]), 1)
            bad = call(s.port, "GET", "/mock/requests?colour=red")
            self.assertEqual(bad.status, 400)
            self.assertIn("Unknown filter 'colour'", bad.json()["error"]["message"])
            self.assertEqual(call(s.port, "GET", "/mock/requests?limit=x").status, 400)
            self.assertEqual(call(s.port, "DELETE", "/mock/requests").json(), {"deleted": 3})
            self.assertEqual(call(s.port, "GET", "/mock/requests").json(), {"requests": []})

    def test_a_secret_name_spelt_with_an_underscore_is_masked_over_the_wire(self):
        # The body holds no other secret-looking word, so only the spelling decides.
        with RunningServer() as s:
            call(s.port, "POST", "/v1/pipes/run", {"messages": [{"role": "user", "content": "Hi"}],
                                                   "extra": {"pass_word": "sk-underscored"}})
            r = call(s.port, "GET", "/mock/requests")
            self.assertNotIn(b"sk-underscored", r.body)
            self.assertEqual(r.json()["requests"][0]["body"]["extra"], {"pass_word": "***"})

    def test_a_token_stream_that_follows_a_generation_names_its_fixture(self):
        with RunningServer() as s:
            call(s.port, "POST", "/mock/fixtures", {"name": "tokens", "match": {"user": "Hi"},
                                                     "response": {"text": "Hello"}})
            call(s.port, "POST", "/api/generate", {"sessionId": "s1", "chatMessageId": "m1", "prompt": "Hi"})
            call(s.port, "GET", "/api/stream/s1/m1")
            entries = call(s.port, "GET", "/mock/requests").json()["requests"]
            self.assertEqual([(e["path"], e["fixture"]) for e in entries],
                             [("/api/stream/s1/m1", "tokens"), ("/api/generate", "tokens")])

    def test_a_body_no_response_could_carry_is_kept_as_its_text(self):
        with RunningServer() as s:
            bad = b'{"messages": [{"role": "user", "content": "\\ud800"}], "apiKey": "sk-1"}'
            self.assertEqual(call(s.port, "POST", "/v1/pipes/run", bad, {"Content-Type": "application/json"}).status, 400)
            r = call(s.port, "GET", "/mock/requests")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["requests"][0]["body"],
                             '{"messages": [{"role": "user", "content": "\\ud800"}], "apiKey": "***"}')

    def test_a_non_finite_number_in_a_body_is_kept_as_text_and_the_journal_still_answers(self):
        # Regression: Python's json reads NaN, Infinity and 1e999, which no JSON answer can
        # carry, so one such request made every later GET /mock/requests a 500.
        with RunningServer() as s:
            for raw in (b'{"x": NaN}', b'{"x": -Infinity}', b'{"x": 1e999, "apiKey": "sk-1"}'):
                self.assertEqual(call(s.port, "POST", "/v1/traces", raw, {"Content-Type": "application/json"}).status,
                                 400)
            r = call(s.port, "GET", "/mock/requests")
            self.assertEqual(r.status, 200, r.body[:300])
            self.assertEqual([e["body"] for e in r.json()["requests"]],
                             ['{"x": 1e999, "apiKey": "***"}', '{"x": -Infinity}', '{"x": NaN}'])

    def test_reset_empties_every_store_in_one_call(self):
        with RunningServer(memory_processing_seconds=0.0) as s:
            call(s.port, "POST", "/mock/fixtures", {"response": {"text": "x"}})
            call(s.port, "POST", "/v1/pipes/run", {"messages": [{"role": "user", "content": "Hi"}]})
            call(s.port, "POST", "/v1/pipes", {"name": "p1"})
            call(s.port, "POST", "/v1/memory", {"name": "m1"})
            call(s.port, "POST", "/v1/traces", {"workflow": {"id": "w1", "steps": []}})
            call(s.port, "POST", "/api/generate", {"sessionId": "s", "chatMessageId": "c",
                                                    "messages": [{"role": "user", "content": "Hi"}]})
            r = call(s.port, "POST", "/mock/reset")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json(), {"reset": {"threads": 1, "runs": 2, "requests": 5, "fixtures": 1, "pipes": 1,
                                                  "memories": 1, "traces": 1, "generations": 1}})
            self.assertEqual(call(s.port, "POST", "/mock/reset").json()["reset"],
                             dict.fromkeys(r.json()["reset"], 0))
            health = call(s.port, "GET", "/health").json()
            self.assertEqual((health["threads"], health["generations"]), (0, 0))
            self.assertEqual(call(s.port, "GET", "/mock/runs").json(), {"runs": []})
            self.assertEqual(call(s.port, "GET", "/v1/pipes").json(), [])
            self.assertEqual(call(s.port, "GET", "/v1/memory").json(), [])
            self.assertEqual(call(s.port, "GET", "/mock/traces").json(), {"traces": []})
            self.assertEqual(call(s.port, "GET", "/mock/fixtures").json()["fixtures"], [])


if __name__ == "__main__":
    unittest.main()
