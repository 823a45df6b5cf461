"""Unit tests of the thread store and message validation (no HTTP). ``ThreadStoreTest`` runs
against the in-memory store; ``SqliteThreadStoreTest`` runs the same tests against the SQLite
store (``--db``), so both backends must behave the same."""

import os
import shutil
import tempfile
import threading
import tracemalloc
import unittest
import warnings

from sqlite_store import SqliteThreadStore
from tests import support
from threads import (
    InvalidRequest, StoreFull, ThreadExists, ThreadNotFound, ThreadStore, check_thread_id,
    parse_messages, parse_metadata,
)


def user(text):
    return parse_messages([{"role": "user", "content": text}], thread=True)[0]


class ThreadStoreTest(unittest.TestCase):
    def make(self, **kwargs):
        """A store of the backend under test (fixed clock and ids unless given)."""
        kwargs.setdefault("clock", lambda: 1700000000.9)
        kwargs.setdefault("new_id", support.FixedIds())
        return ThreadStore(**kwargs)

    def test_create_returns_thread_object_seconds(self):
        s = self.make()
        self.assertEqual(s.create(metadata={"a": "1"}),
                         {"id": "00000000-0000-4000-8000-000000000001", "object": "thread",
                          "created_at": 1700000000, "metadata": {"a": "1"}})

    def test_clear_forgets_every_thread_and_gives_every_byte_back(self):
        store = self.make(max_bytes=600)
        store.create("t1", messages=[user("x" * 300)])
        self.assertEqual(store.clear(), 1)
        self.assertEqual((store.bytes, len(store)), (0, 0))
        with self.assertRaises(ThreadNotFound):
            store.list_messages("t1")
        store.create("t2", messages=[user("y" * 300)])  # StoreFull while the old bytes were counted
        self.assertEqual(len(store.list_messages("t2")), 1)

    def test_create_duplicate_id_raises_and_keeps_original(self):
        s = self.make()
        s.create("t1", {"k": "v"}, [user("hi")])
        with self.assertRaises(ThreadExists):
            s.create("t1", {"k": "other"})
        self.assertEqual(s.get("t1")["metadata"], {"k": "v"})
        self.assertEqual(len(s.list_messages("t1")), 1)

    def test_message_object_shape(self):
        s = self.make()
        s.create("t1")
        (msg,) = s.append("t1", [user("hi")])
        self.assertEqual(msg, {"id": "msg_00000000000040008000000000000001", "created_at": 1700000000,
                               "thread_id": "t1", "role": "user", "content": "hi", "name": None,
                               "tool_call_id": None, "tool_calls": [], "attachments": [], "metadata": {}})

    def test_update_merges_metadata(self):
        s = self.make()
        s.create("t1", {"a": "1", "b": "2"})
        self.assertEqual(s.update("t1", {"b": "3", "c": "4"})["metadata"], {"a": "1", "b": "3", "c": "4"})

    def test_unknown_thread_raises_everywhere(self):
        s = self.make()
        for call in (lambda: s.get("x"), lambda: s.update("x", {}), lambda: s.delete("x"),
                     lambda: s.append("x", []), lambda: s.list_messages("x")):
            with self.assertRaises(ThreadNotFound):
                call()

    def test_returned_values_are_copies(self):
        s = self.make()
        s.create("t1", {"a": "1"}, [user("hi")])
        s.get("t1")["metadata"]["a"] = "changed"
        s.list_messages("t1")[0]["content"] = "changed"
        self.assertEqual(s.get("t1")["metadata"], {"a": "1"})
        self.assertEqual(s.list_messages("t1")[0]["content"], "hi")

    def test_record_run_unknown_id_created_or_refused(self):
        s = self.make()
        self.assertEqual(s.record_run("kept-id", [user("a")], create_missing=True), "kept-id")
        with self.assertRaises(ThreadNotFound):
            s.record_run("other", [user("a")], create_missing=False)
        self.assertEqual(len(s), 1)

    def test_client_ids_kept_known_ids_skipped_and_room_reserved(self):
        st = self.make(max_messages=4)
        a, b = dict(user("a"), id="m-a", created_at=5), dict(user("b"), id="m-b", created_at=None)
        st.record_run("t", [a, a, b], create_missing=True, reserve=1, skip_known_ids=True)
        self.assertEqual([(m["id"], m["created_at"]) for m in st.list_messages("t")], [("m-a", 5), ("m-b", 1700000000)])
        self.assertEqual(st.append_new("t", [a, dict(user("c"), id=None)]), 1)  # m-a is known; no id: always new
        with self.assertRaises(StoreFull):  # 3 stored + 1 new + 1 reserved > 4
            st.record_run("t", [dict(user("d"), id="m-d")], create_missing=True, reserve=1, skip_known_ids=True)
        self.assertEqual(len(st.list_messages("t")), 3)

    def test_bounds_refuse_without_writing(self):
        s = self.make(max_threads=1, max_messages=2)
        s.create("t1", messages=[user("a")])
        with self.assertRaises(StoreFull):
            s.create("t2")
        with self.assertRaises(StoreFull):
            s.append("t1", [user("b"), user("c")])
        with self.assertRaises(StoreFull):
            s.record_run(None, [user("x")], create_missing=True)
        self.assertEqual(len(s), 1)
        self.assertEqual([m["content"] for m in s.list_messages("t1")], ["a"])

    def test_concurrent_appends_lose_nothing_and_stay_grouped(self):
        s = self.make(clock=__import__("time").time, new_id=__import__("threads").new_uuid4)
        s.create("t1")
        workers, per_worker = 8, 200

        def work(w):
            for i in range(per_worker):
                s.append("t1", [user("%d-%d-a" % (w, i)), user("%d-%d-b" % (w, i))])

        threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        contents = [m["content"] for m in s.list_messages("t1")]
        self.assertEqual(len(contents), workers * per_worker * 2)
        self.assertEqual(len({m["id"] for m in s.list_messages("t1")}), len(contents))
        for a, b in zip(contents[::2], contents[1::2]):
            self.assertEqual((a[:-2], a[-1], b[-1]), (b[:-2], "a", "b"))


    def test_byte_bound_counts_messages_and_metadata_and_delete_gives_them_back(self):
        s = self.make(max_bytes=1000)
        s.create("t1", {"k": "v"}, [user("x" * 300)])
        used = s.bytes
        self.assertGreater(used, 300)
        with self.assertRaises(StoreFull):
            s.append("t1", [user("y" * 700)])
        with self.assertRaises(StoreFull):
            s.update("t1", {"big": "z" * 900})
        self.assertEqual((s.bytes, len(s.list_messages("t1")), s.get("t1")["metadata"]), (used, 1, {"k": "v"}))
        s.delete("t1")
        self.assertEqual((s.bytes, len(s)), (0, 0))


class SqliteThreadStoreTest(ThreadStoreTest):
    """Every test above, against ``sqlite_store.SqliteThreadStore`` on a fresh file."""

    def make(self, **kwargs):
        kwargs.setdefault("clock", lambda: 1700000000.9)
        kwargs.setdefault("new_id", support.FixedIds())
        directory = tempfile.mkdtemp(prefix="lb-mock-db-")
        self.addCleanup(shutil.rmtree, directory, True)
        store = SqliteThreadStore(os.path.join(directory, "threads.db"), **kwargs)
        self.addCleanup(store.close)
        return store

    def test_everything_survives_reopening(self):
        directory = tempfile.mkdtemp(prefix="lb-mock-db-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "threads.db")
        first = SqliteThreadStore(path, clock=lambda: 1700000000.0, new_id=support.FixedIds())
        first.create("t1", {"a": "1"}, [user("hi"), dict(user("there"), id="m-2", created_at=7)])
        first.record_run("t2", [user("x")], create_missing=True)
        first.update("t1", {"b": "2"})
        before = (first.get("t1"), first.list_messages("t1"), first.list_messages("t2"), len(first), first.bytes)
        first.close()
        second = SqliteThreadStore(path)
        self.addCleanup(second.close)
        self.assertEqual((second.get("t1"), second.list_messages("t1"), second.list_messages("t2"), len(second),
                          second.bytes), before)
        self.assertEqual(second.append_new("t1", [dict(user("again"), id="m-2")]), 0)


class InMemoryStoreTest(unittest.TestCase):
    """What only the in-memory store does: its memory per message."""

    def test_a_message_costs_about_its_json_in_memory(self):
        # Thread messages were a dict with strings and lists each (about 800 bytes for a
        # short one, in Python's small-object arenas, which keep their peak size); each is now
        # its compact JSON in one buffer per thread (about 190 bytes here).
        store = ThreadStore(max_messages=100_000)
        store.create("t1")
        batch = [user("Hello")] * 100
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(20):
                store.append("t1", batch)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        self.assertLess(grown / 2000, 300, "bytes per stored message")
        self.assertEqual([m["content"] for m in store.list_messages("t1")], ["Hello"] * 2000)


class ValidationTest(unittest.TestCase):
    def test_check_thread_id_accepts_uuid_and_thread_prefix(self):
        for ok in ("00000000-0000-4000-8000-000000000001", "thread_abc123", "a"):
            self.assertEqual(check_thread_id(ok), ok)

    def test_check_thread_id_rejects_header_breaking_values(self):
        for bad in ("", "a\r\nb", "a b", "-x", "x" * 129, "caf\u00e9", None, 3):
            with self.subTest(bad=bad), self.assertRaises(InvalidRequest):
                check_thread_id(bad)

    def test_parse_metadata_requires_string_values(self):
        self.assertEqual(parse_metadata({"a": "b"}), {"a": "b"})
        for bad in ([], {"a": 1}, "x"):
            with self.subTest(bad=bad), self.assertRaises(InvalidRequest):
                parse_metadata(bad)

    def test_parse_messages_thread_fields(self):
        (msg,) = parse_messages([{"role": "assistant", "content": None, "attachments": [{"x": 1}],
                                  "metadata": {"k": "v"}, "extra": 1,
                                  "tool_calls": [{"id": "c", "type": "function"}]}], thread=True)
        self.assertEqual(msg["attachments"], [{"x": 1}])
        self.assertEqual(msg["metadata"], {"k": "v"})
        self.assertNotIn("extra", msg)
        with self.assertRaises(InvalidRequest):
            parse_messages([{"role": "user", "content": "x", "metadata": {"k": 1}}], thread=True)
        with self.assertRaises(InvalidRequest):
            parse_messages([{"role": "user", "content": "x", "attachments": "no"}], thread=True)


class NewUuid4Test(unittest.TestCase):
    def test_ids_are_version_4_uuids_unique_across_threads_and_batches(self):
        import uuid
        import threads

        made = []

        def make():
            made.extend([threads.new_uuid4() for _ in range(700)])  # past two batches of 256 each

        workers = [threading.Thread(target=make) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(support.TIMEOUT)
        self.assertEqual(len(made), 2800)
        self.assertEqual(len(set(made)), 2800)
        for value in made:
            parsed = uuid.UUID(value)
            self.assertEqual((str(parsed), parsed.version, parsed.variant), (value, 4, uuid.RFC_4122))


class NewUuid4ForkTest(unittest.TestCase):
    @unittest.skipUnless(hasattr(os, "fork"), "needs os.fork")
    def test_a_forked_child_does_not_repeat_the_parents_ids(self):
        import threads

        threads.new_uuid4()  # the parent now holds a batch of random bytes
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():  # 3.12+: fork() in a process with threads warns
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: send its next id, and leave at once
            try:
                os.write(write_end, threads.new_uuid4().encode("ascii"))
            finally:
                os._exit(0)
        os.close(write_end)
        try:
            child_id = os.read(read_end, 64).decode("ascii")
        finally:
            os.close(read_end)
            os.waitpid(pid, 0)
        self.assertNotEqual(child_id, threads.new_uuid4())


if __name__ == "__main__":
    unittest.main()
