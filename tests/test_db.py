"""``--db FILE`` (``sqlite_store``) over real sockets and real processes: threads survive a
restart, ``SIGKILL`` in the middle of heavy writes loses no acknowledged write, and two server
processes on one file lose no update. (The store's behaviour against the in-memory one:
``tests/test_threads.py``.)

Bounds: writers stop after ``WRITE_SECONDS`` or ``MAX_WRITES`` each; every socket has the
support timeout; every process is killed on cleanup."""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import main
from tests import support
from tests.support import RunningServer, call

WRITE_SECONDS = 1.5
MAX_WRITES = 400


def user(text):
    return [{"role": "user", "content": text}]


class DbTest(unittest.TestCase):
    def setUp(self):
        directory = tempfile.mkdtemp(prefix="lb-mock-db-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "threads.db")

    def start(self):
        """``python3 main.py --port 0 --db <file>``; returns ``(process, port)``."""
        proc = subprocess.Popen(
            [sys.executable, os.path.join(support.ROOT, "main.py"), "--port", "0", "--db", self.path,
             "--delay", "0", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.addCleanup(proc.stdout.close)
        self.addCleanup(proc.stderr.close)
        first = proc.stdout.readline()
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", first)
        self.assertTrue(match, first + proc.stderr.read() if not match else first)
        return proc, int(match.group(1))

    def writers(self, ports, count, work):
        """Run ``work(port, worker, i)`` from ``count`` threads per port until the time or count
        bound; returns what the calls returned that is not None, in no order."""
        done, lock, deadline = [], threading.Lock(), time.monotonic() + WRITE_SECONDS

        def loop(port, worker):
            for i in range(MAX_WRITES):
                if time.monotonic() > deadline:
                    return
                try:
                    result = work(port, worker, i)
                except OSError:
                    return  # the server was killed
                if result is not None:
                    with lock:
                        done.append(result)

        threads = [threading.Thread(target=loop, args=(port, "%d-%d" % (p, w)))
                   for p, port in enumerate(ports) for w in range(count)]
        for t in threads:
            t.start()
        return threads, done

    def test_threads_survive_a_restart(self):
        with RunningServer(db=self.path) as s:
            self.assertEqual(call(s.port, "POST", "/v1/threads", {"threadId": "t1", "metadata": {"a": "b"},
                                                                  "messages": user("hi")}).status, 200)
            run = call(s.port, "POST", "/v1/pipes/run", {"threadId": "t1", "messages": user("more")})
            self.assertEqual(run.status, 200)
            before = call(s.port, "GET", "/v1/threads/t1/messages").json()
        with RunningServer(db=self.path) as s:
            self.assertEqual(call(s.port, "GET", "/v1/threads/t1/messages").json(), before)
            self.assertEqual(call(s.port, "GET", "/v1/threads/t1").json()["metadata"], {"a": "b"})
            self.assertEqual(call(s.port, "GET", "/health").json()["threads"], 1)
            self.assertEqual([m["content"] for m in before][-1], run.json()["completion"])

    def test_sigkill_during_heavy_writes_loses_no_acknowledged_write(self):
        proc, port = self.start()
        self.assertEqual(call(port, "POST", "/v1/threads", {"threadId": "t"}).status, 200)

        def append(port, worker, i):
            text = "%s-%d" % (worker, i)
            r = call(port, "POST", "/v1/threads/t/messages", user(text))
            return text if r.status == 200 else None

        threads, acknowledged = self.writers([port], 4, append)
        time.sleep(WRITE_SECONDS / 2)
        proc.send_signal(signal.SIGKILL)
        for t in threads:
            t.join(support.TIMEOUT)
        proc.wait(support.TIMEOUT)
        self.assertGreater(len(acknowledged), 20)
        with RunningServer(db=self.path) as s:
            stored = [m["content"] for m in call(s.port, "GET", "/v1/threads/t/messages").json()]
        self.assertLessEqual(set(acknowledged), set(stored))
        self.assertEqual(len(stored), len(set(stored)))
        self.assertLessEqual(len(stored), len(acknowledged) + 4)  # at most one unanswered write per writer
        with sqlite3.connect(self.path) as db:  # the counters agree with the rows
            (count,), = db.execute("SELECT count FROM threads WHERE id = 't'")
            (total,), = db.execute("SELECT value FROM totals WHERE name = 'bytes'")
            (size,), = db.execute("SELECT sum(bytes) FROM threads")
        db.close()
        self.assertEqual((count, total), (len(stored), size))

    def test_two_processes_on_one_file_lose_no_update(self):
        (first, port_a), (second, port_b) = self.start(), self.start()
        self.assertEqual(call(port_a, "POST", "/v1/threads", {"threadId": "t"}).status, 200)
        self.assertEqual(call(port_b, "GET", "/v1/threads/t").status, 200)  # the other process sees it

        def write(port, worker, i):
            a = call(port, "POST", "/v1/threads/t/messages", user("%s-%d" % (worker, i)))
            b = call(port, "POST", "/v1/threads/t", {"metadata": {"%s-%d" % (worker, i): "x"}})
            self.assertEqual((a.status, b.status), (200, 200), a.body + b.body)
            return "%s-%d" % (worker, i)

        threads, written = self.writers([port_a, port_b], 3, write)
        for t in threads:
            t.join(support.TIMEOUT + WRITE_SECONDS)
        self.assertGreater(len(written), 20)
        for port in (port_a, port_b):
            messages = [m["content"] for m in call(port, "GET", "/v1/threads/t/messages").json()]
            self.assertEqual(sorted(messages), sorted(written))
            self.assertEqual(set(call(port, "GET", "/v1/threads/t").json()["metadata"]), set(written))
        for proc in (first, second):
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(support.TIMEOUT), 0)

    def test_flag_environment_and_a_file_that_cannot_be_used(self):
        self.assertEqual(main.parse_args(["--db", "x.db"], env={}).db, "x.db")
        self.assertEqual(main.parse_args([], env={"LB_MOCK_DB": "y.db"}).db, "y.db")
        self.assertIsNone(main.parse_args([], env={}).db)
        with open(self.path, "wb") as f:
            f.write(b"not a database" * 100)
        result = subprocess.run([sys.executable, os.path.join(support.ROOT, "main.py"), "--port", "0",
                                 "--db", self.path], capture_output=True, text=True, timeout=support.TIMEOUT)
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot use --db", result.stderr)


if __name__ == "__main__":
    unittest.main()
