"""Tests of the event loop over real socket pairs: delivery, fairness, hang-ups, back-pressure,
timers and shutdown. A tiny protocol (``OnePlan``) runs one plan per connection and then closes it."""

import socket
import threading
import time
import unittest

from tests import support
from pacer import Pacer
from steps import Wait, Write


def wait_until(predicate, timeout=support.TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in %s s" % timeout)
        time.sleep(0.005)


class OnePlan:
    """Protocol: run ``plan`` as a stream as soon as the loop takes the connection, then close."""

    def __init__(self, conn, plan):
        self.conn = conn
        conn.loop.call_at(conn.loop.clock(), lambda: conn.run_plan(plan, streaming=True))

    def data_received(self, data):
        pass

    def eof_received(self):
        pass

    def plan_done(self):
        self.conn.close("complete")

    def connection_lost(self, outcome):
        pass


def submit(pacer, sock, plan):
    """Hand ``sock`` to the loop (from any thread) to run ``plan`` on it."""
    pacer.call_soon_threadsafe(lambda: pacer.adopt(sock, ("test", 0), lambda conn: OnePlan(conn, plan)))


class PacerTest(unittest.TestCase):
    def setUp(self):
        self.pacer = Pacer(write_timeout=0.5)
        self.pacer.start()
        self.addCleanup(self.pacer.stop, 0.5)

    def pair(self):
        server, client = socket.socketpair()
        client.settimeout(support.TIMEOUT)
        self.addCleanup(client.close)
        return server, client

    def test_plan_bytes_delivered_in_order_then_closed(self):
        server, client = self.pair()
        plan = [Write(b"a"), Wait(0.001), Write(b"bc"), Write(b""), Wait(0), Write(b"d")]
        submit(self.pacer, server, iter(plan))
        self.assertEqual(support.read_all(client), b"abcd")
        wait_until(lambda: self.pacer.open_streams == 0)

    def test_many_streams_each_get_their_own_bytes(self):
        pairs = [self.pair() for _ in range(200)]
        def plan(i):
            for k in range(20):
                yield Write(b"%d:%d;" % (i, k)) if k % 2 == 0 else Wait(0.001)

        for i, (server, _) in enumerate(pairs):
            submit(self.pacer, server, plan(i))
        for i, (_, client) in enumerate(pairs):
            expected = b"".join(b"%d:%d;" % (i, k) for k in range(0, 20, 2))
            self.assertEqual(support.read_all(client), expected)

    def test_client_hang_up_ends_stream_quietly(self):
        server, client = self.pair()

        def endless():
            while True:
                yield Write(b"x" * 100)
                yield Wait(0.001)

        submit(self.pacer, server, endless())
        self.assertTrue(client.recv(100))
        client.close()
        wait_until(lambda: self.pacer.open_streams == 0)

    def test_unread_output_stops_the_plan_then_slow_client_dropped(self):
        server, client = self.pair()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        pulled = []

        def endless():
            while True:
                pulled.append(1)
                yield Write(b"y" * 16384)

        submit(self.pacer, server, endless())
        wait_until(lambda: len(pulled) > 0)
        time.sleep(0.05)
        stalled_at = len(pulled)
        time.sleep(0.05)
        # The plan does not advance while the client reads nothing: memory stays bounded.
        self.assertEqual(len(pulled), stalled_at)
        self.assertLess(stalled_at, 200)
        # After write_timeout (0.5 s) of no reading, the pacer drops the client.
        wait_until(lambda: self.pacer.open_streams == 0)

    def test_failing_plan_closes_only_its_stream(self):
        bad_server, bad_client = self.pair()
        good_server, good_client = self.pair()

        def broken():
            yield Write(b"partial")
            raise RuntimeError("bug in a plan")

        with self.assertLogs("pacer", level="ERROR"):
            submit(self.pacer, bad_server, broken())
            self.assertEqual(support.read_all(bad_client), b"partial")
        submit(self.pacer, good_server, iter([Write(b"fine")]))
        self.assertEqual(support.read_all(good_client), b"fine")

    def test_zero_delay_byte_stream_does_not_starve_a_paced_one(self):
        # 20,000 one-byte writes with Wait(0) between them: each is due "now" again, yet the
        # loop moves on to other sockets between turns.
        hog_server, hog_client = self.pair()
        paced_server, paced_client = self.pair()

        def hog():
            for _ in range(20000):
                yield Write(b"x")
                yield Wait(0)

        submit(self.pacer, hog_server, hog())
        self.assertEqual(hog_client.recv(1), b"x")
        started = time.monotonic()
        submit(self.pacer, paced_server, iter([Wait(0.01), Write(b"first"), Wait(0.01), Write(b"second")]))
        self.assertEqual(paced_client.recv(5), b"first")
        self.assertLess(time.monotonic() - started, 1.0)
        received = len(b"".join(iter(lambda: hog_client.recv(65536), b"")))
        self.assertEqual(received, 19999)

    def test_a_slow_reader_keeps_one_write_timer_not_thousands(self):
        server, client = self.pair()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

        def endless():
            while True:
                yield Write(b"x" * 8192)
                yield Wait(0.0005)

        submit(self.pacer, server, endless())
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # slower than the plan: back-pressure on and off
            client.recv(8192)
            time.sleep(0.0005)
        self.assertLess(sum(len(bucket) for bucket in list(self.pacer._buckets.values())), 50)

    def test_timers_run_in_order_and_cancelled_ones_never(self):
        ran = []
        done = threading.Event()

        def schedule():
            now = self.pacer.clock()
            self.pacer.call_at(now + 0.03, lambda: (ran.append("late"), done.set()))
            self.pacer.call_at(now + 0.01, lambda: ran.append("early"))
            self.pacer.call_at(now + 0.02, lambda: ran.append("cancelled")).cancel()

        self.pacer.call_soon_threadsafe(schedule)
        self.assertTrue(done.wait(support.TIMEOUT))
        self.assertEqual(ran, ["early", "late"])

    def test_timers_run_at_most_slack_early_and_in_the_order_of_their_buckets(self):
        # Timers are kept in buckets ``slack`` wide: none may run more than ``slack`` before
        # its time, and one set for a later bucket never runs before one set for an earlier.
        ran = []
        done = threading.Event()
        pacer, slack = self.pacer, self.pacer.slack

        def schedule():
            now = pacer.clock()
            offsets = [((i * 7919) % 400) / 10000 for i in range(400)]  # 0 to 39.9 ms, shuffled
            for offset in offsets:
                when = now + offset
                pacer.call_at(when, lambda when=when: ran.append((when, pacer.clock())))
            pacer.call_at(now + 0.05, done.set)

        pacer.call_soon_threadsafe(schedule)
        self.assertTrue(done.wait(support.TIMEOUT))
        self.assertEqual(len(ran), 400)
        early = [when - at for when, at in ran if at < when - slack]
        self.assertEqual(early, [], "timers ran more than the slack early")
        buckets = [int(when * pacer._per_second) for when, _ in ran]  # the pacer's bucket numbers
        self.assertEqual(buckets, sorted(buckets))

    def test_slack_must_be_positive(self):
        with self.assertRaises(ValueError):
            Pacer(slack=0)

    def test_bad_step_closes_only_its_stream(self):
        bad_server, bad_client = self.pair()
        good_server, good_client = self.pair()
        with self.assertLogs("pacer", level="ERROR"):
            submit(self.pacer, bad_server, iter([Write(None)]))
            self.assertEqual(support.read_all(bad_client), b"")
        submit(self.pacer, good_server, iter([Write(b"still here")]))
        self.assertEqual(support.read_all(good_client), b"still here")


class PacerWakeTest(unittest.TestCase):
    def test_calls_from_many_threads_are_all_taken(self):
        # Regression: the wake flag was cleared before the wake socket was drained, so a submit
        # landing in between left the flag set forever and later submits were never picked up.
        pacer = Pacer()
        pacer.start()
        self.addCleanup(pacer.stop, 0.5)
        threads, per_thread = 16, 100
        clients = []
        lock = threading.Lock()

        def submit_many():
            for _ in range(per_thread):
                server, client = socket.socketpair()
                client.settimeout(support.TIMEOUT)
                with lock:
                    clients.append(client)
                submit(pacer, server, iter([Write(b"ok")]))

        workers = [threading.Thread(target=submit_many) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        try:
            for client in clients:
                self.assertEqual(support.read_all(client), b"ok")
            # And the pacer still wakes up for a submit after everything went quiet.
            server, client = socket.socketpair()
            client.settimeout(support.TIMEOUT)
            clients.append(client)
            submit(pacer, server, iter([Write(b"late")]))
            self.assertEqual(support.read_all(client), b"late")
        finally:
            for client in clients:
                client.close()


class PacerStopTest(unittest.TestCase):
    def test_stop_finishes_open_streams_skipping_waits(self):
        pacer = Pacer()
        pacer.start()
        server, client = socket.socketpair()
        client.settimeout(support.TIMEOUT)
        with client:
            submit(pacer, server, iter([Write(b"1"), Wait(3600), Write(b"2"), Wait(3600), Write(b"3")]))
            self.assertEqual(client.recv(1), b"1")
            pacer.stop(timeout=2.0)
            self.assertEqual(support.read_all(client), b"23")
        self.assertEqual(pacer.open_streams, 0)

    def test_stop_is_not_held_up_by_a_long_batch_of_requests(self):
        # A burst of new requests is answered one after another from one select; a stop()
        # (SIGTERM) asked meanwhile must not wait for the whole batch: 100 clients whose
        # requests take 20 ms each to answer make a 2 s batch.
        pacer = Pacer(read_budget=0.002)
        started = threading.Event()

        class Slow:
            def __init__(self, conn):
                self.conn = conn

            def data_received(self, data):
                started.set()
                time.sleep(0.02)  # answering this request takes a while

            def eof_received(self):
                pass

            def plan_done(self):
                pass

            def connection_lost(self, outcome):
                pass

        pairs = [socket.socketpair() for _ in range(100)]
        try:
            for _, client in pairs:
                client.sendall(b"a request")
            pacer.start()
            pacer.call_soon_threadsafe(lambda: [pacer.adopt(server, ("test", 0), Slow) for server, _ in pairs])
            self.assertTrue(started.wait(support.TIMEOUT))
            began = time.monotonic()
            pacer.stop(timeout=0.1)
            took = time.monotonic() - began
            self.assertFalse(pacer._thread.is_alive(), "the loop was still answering the batch")
            self.assertLess(took, 0.5)
        finally:
            for server, client in pairs:
                server.close()
                client.close()


if __name__ == "__main__":
    unittest.main()
