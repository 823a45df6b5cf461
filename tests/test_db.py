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
from tests.test_frontends import lifecycle_body, stored

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

    def test_a_locked_file_never_stalls_running_streams(self):
        # Another process holds the file's write lock for a while: the requests that write wait
        # for it, off the loop thread, while a stream that is already running keeps its pace.
        with RunningServer(db=self.path, delay=0.05) as s, support.connect(s.port) as sock:
            body = json.dumps({"stream": True, "messages": user("hi"),
                               "mock": {"reply_text": "tick " * 30}}).encode()  # about 1.6 s
            sock.sendall(support.request_bytes("POST", "/v1/pipes/run", body=body,
                                               headers={"Content-Type": "application/json",
                                                        "Connection": "close"}))
            self.assertIn(b" 200 ", sock.recv(65536))  # running: stored, now paced on the loop
            holder = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            waiting = {}
            writer = threading.Thread(target=lambda: waiting.update(
                r=call(s.port, "POST", "/v1/threads", {"messages": user("later")})))
            writer.start()
            gaps, last = [], time.monotonic()
            release_at = last + 0.6
            while True:
                if holder is not None and time.monotonic() > release_at:
                    holder.execute("ROLLBACK")
                    holder.close()
                    holder = None
                data = sock.recv(65536)
                now = time.monotonic()
                if not data:
                    break
                gaps.append(now - last)
                last = now
            writer.join(10)
            if holder is not None:
                holder.close()
        self.assertLess(max(gaps), 0.5, gaps)  # no stall while the lock was held
        self.assertEqual(waiting["r"].status, 200, waiting["r"].body)  # the write went through once the lock went

    def test_a_lifecycle_reply_stored_at_the_end_of_its_stream(self):
        # The reply is written when the stream completes: on the store's worker thread.
        with RunningServer(db=self.path) as s:
            streamed = call(s.port, "POST", "/api/stream", lifecycle_body("chat-db"))
            after = stored(s, "chat-db")
        start = re.search(rb"event: message-start\ndata: (.*)\n", streamed.body)
        message_id = json.loads(start.group(1))["messageId"]
        self.assertEqual([(m["role"], m["id"]) for m in after], [("user", "u1"), ("assistant", message_id)])

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
