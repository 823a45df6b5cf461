"""Tests of the pacer over real socket pairs: delivery, hang-ups, back-pressure, shutdown."""

import socket
import threading
import time
import unittest

from tests import support
from pacer import Pacer
from pipes import Wait, Write


def wait_until(predicate, timeout=support.TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in %s s" % timeout)
        time.sleep(0.005)


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
        self.pacer.submit(server, iter(plan))
        self.assertEqual(support.read_all(client), b"abcd")
        wait_until(lambda: self.pacer.open_streams == 0)

    def test_many_streams_each_get_their_own_bytes(self):
        pairs = [self.pair() for _ in range(200)]
        def plan(i):
            for k in range(20):
                yield Write(b"%d:%d;" % (i, k)) if k % 2 == 0 else Wait(0.001)

        for i, (server, _) in enumerate(pairs):
            self.pacer.submit(server, plan(i))
        for i, (_, client) in enumerate(pairs):
            expected = b"".join(b"%d:%d;" % (i, k) for k in range(0, 20, 2))
            self.assertEqual(support.read_all(client), expected)

    def test_client_hang_up_ends_stream_quietly(self):
        server, client = self.pair()

        def endless():
            while True:
                yield Write(b"x" * 100)
                yield Wait(0.001)

        self.pacer.submit(server, endless())
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

        self.pacer.submit(server, endless())
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
            self.pacer.submit(bad_server, broken())
            self.assertEqual(support.read_all(bad_client), b"partial")
        self.pacer.submit(good_server, iter([Write(b"fine")]))
        self.assertEqual(support.read_all(good_client), b"fine")

    def test_bad_step_closes_only_its_stream(self):
        bad_server, bad_client = self.pair()
        good_server, good_client = self.pair()
        with self.assertLogs("pacer", level="ERROR"):
            self.pacer.submit(bad_server, iter([Write(None)]))
            self.assertEqual(support.read_all(bad_client), b"")
        self.pacer.submit(good_server, iter([Write(b"still here")]))
        self.assertEqual(support.read_all(good_client), b"still here")


class PacerWakeTest(unittest.TestCase):
    def test_submits_from_many_threads_are_all_taken(self):
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
                pacer.submit(server, iter([Write(b"ok")]))

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
            pacer.submit(server, iter([Write(b"late")]))
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
            pacer.submit(server, iter([Write(b"1"), Wait(3600), Write(b"2"), Wait(3600), Write(b"3")]))
            self.assertEqual(client.recv(1), b"1")
            pacer.stop(timeout=2.0)
            self.assertEqual(support.read_all(client), b"23")
        self.assertEqual(pacer.open_streams, 0)

    def test_submit_after_stop_closes_socket(self):
        pacer = Pacer()
        pacer.start()
        pacer.stop()
        server, client = socket.socketpair()
        client.settimeout(support.TIMEOUT)
        with client:
            pacer.submit(server, iter([Write(b"never")]))
            self.assertEqual(support.read_all(client), b"")


if __name__ == "__main__":
    unittest.main()
