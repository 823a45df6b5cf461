"""``stores.PipeStore`` and ``stores.TraceLog`` without a socket: the bounds that are costly to
reach over HTTP (bytes of traces), and the pipe-key index across updates and renames."""

import itertools
import json
import sys
import unittest

from tests import support  # noqa: F401  (puts the project root on sys.path)
import stores
from threads import StoreFull


def keys():
    counter = itertools.count(1)
    return lambda: "pipe_%032d" % next(counter)


class PipeStoreTest(unittest.TestCase):
    def test_the_key_follows_the_pipe_through_upsert_and_rename(self):
        store = stores.PipeStore(keys())
        key = store.create("a", {}).api_key
        store.create("a", {"description": "upserted"}, upsert=True)
        store.update("a", {}, new_name="b")
        self.assertEqual(store.by_key(key).config["name"], "b")
        self.assertIsNone(store.get("a"))
        self.assertIsNone(store.by_key("pipe_unknown"))
        self.assertEqual(len(store), 1)

    def test_bytes_are_counted_for_what_is_kept_and_freed_on_replace(self):
        store = stores.PipeStore(keys())
        first = store.create("a", {})
        self.assertEqual(store.bytes, first.size)
        second = store.update("a", {"description": "x" * 100})
        self.assertEqual(store.bytes, second.size)
        self.assertEqual(second.size - first.size, 200)  # in the parsed config and in the listing text

    def test_bytes_estimate_the_memory_a_config_holds_not_its_text(self):
        store = stores.PipeStore(keys(), max_bytes=1 << 20)
        nested = {"type": "json_schema", "lists": [[]] * 100000}  # 300 KB of JSON, ~6 MB of objects
        with self.assertRaises(StoreFull):
            store.create("a", {"response_format": nested})
        self.assertEqual((len(store), store.bytes), (0, 0))
        pipe = store.create("a", {"description": "x" * 100000})
        self.assertGreater(pipe.size, 100000)
        self.assertLess(pipe.size, 3 * 100000)
        self.assertEqual(json.loads(store.listing_json()), [pipe.listing()])

    def test_full_store_raises_and_keeps_what_it_had(self):
        store = stores.PipeStore(keys(), max_pipes=1)
        store.create("a", {})
        with self.assertRaises(StoreFull):
            store.create("b", {})
        self.assertEqual([p.config["name"] for p in store.list()], ["a"])


class TraceLogTest(unittest.TestCase):
    @staticmethod
    def entry(name, size):
        """An entry whose JSON text occupies ``size`` bytes (``sys.getsizeof``; ASCII)."""
        text = '{"id":"%s","pad":""}' % name
        return {"id": name, "pad": "x" * (size - sys.getsizeof(text))}

    def test_oldest_traces_go_first_past_the_byte_bound(self):
        log = stores.TraceLog(limit=10, max_bytes=250)
        for i in range(4):
            log.add(self.entry(str(i), 100))
        self.assertEqual([e["id"] for e in json.loads(log.recent_json())["traces"]], ["3", "2"])
        self.assertEqual(log.bytes, 200)

    def test_one_trace_larger_than_the_bound_is_still_kept_alone(self):
        log = stores.TraceLog(limit=10, max_bytes=100)
        log.add(self.entry("a", 60))
        log.add(self.entry("big", 200))
        self.assertEqual([e["id"] for e in json.loads(log.recent_json())["traces"]], ["big"])

    def test_bytes_count_the_kept_text_not_the_body(self):
        log = stores.TraceLog()
        log.add({"id": "w", "trace": {"workflow": {"steps": [[]] * 1000}}})
        text = log.recent_json()
        self.assertEqual(json.loads(text)["traces"][0]["trace"]["workflow"]["steps"], [[]] * 1000)
        self.assertLess(log.bytes, len(text) + 100)


if __name__ == "__main__":
    unittest.main()
