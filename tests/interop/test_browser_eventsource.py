"""Interop: a real browser's ``EventSource`` (headless Chromium) against ``GET /api/events``.

The page is served from its own ``http://127.0.0.1`` origin (Chromium refuses requests from an
opaque ``data:`` origin to localhost), so the stream is a cross-origin request that also checks
the mock's CORS headers. ``--dump-dom`` with a virtual time budget runs the page, including
``EventSource``'s own reconnects, then prints the DOM, where the page wrote what it saw.

Skips with a message when no Chromium is installed (``apt-get install chromium``; ``.ci/run``
installs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support import RunningServer, call

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
SKIP_REASON = "no Chromium installed: apt-get install chromium"

PAGE = """<html><body><div id=o>pending</div><script>
const o = document.getElementById('o');
const es = new EventSource(%(url)s);
let text = '', ids = [], opens = 0, errors = 0, finished = false;
const show = (done) => { finished = finished || done;
  o.textContent = JSON.stringify({done: finished, text, ids, opens, errors, state: es.readyState}); };
es.onopen = () => { opens++; show(false); };
es.onerror = () => { errors++; show(false); };
es.onmessage = (e) => {
  ids.push(e.lastEventId);
  if (e.data === '[DONE]') { if (%(close)s) es.close(); show(true); return; }
  text += JSON.parse(e.data).choices[0]?.delta?.content ?? '';
  show(false);
};
</script></body></html>"""


class _Page(BaseHTTPRequestHandler):
    html = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.html)))
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, *args) -> None:
        pass


def load_page(test: unittest.TestCase, html: str) -> dict:
    """Serve ``html`` from its own ``http://127.0.0.1`` origin, let headless Chromium run it for
    up to 15 s of virtual time, and return the JSON the page wrote into ``<div id=o>``."""
    handler = type("Page", (_Page,), {"html": html.encode("utf-8")})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with tempfile.TemporaryDirectory() as profile:
            out = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--user-data-dir=" + profile, "--virtual-time-budget=15000", "--dump-dom",
                 "http://127.0.0.1:%d/" % server.server_address[1]],
                capture_output=True, text=True, timeout=90, env=dict(os.environ, HOME=profile))
    finally:
        server.shutdown()
        server.server_close()
    match = re.search(r'<div id="o">(.*?)</div>', out.stdout, re.S)
    test.assertTrue(match, out.stdout[-500:] + out.stderr[-500:])
    test.assertNotEqual(match.group(1), "pending", "the page saw nothing")
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&")
                      .replace("&lt;", "<").replace("&gt;", ">"))


@unittest.skipUnless(CHROMIUM, SKIP_REASON)
class BrowserEventSourceTest(unittest.TestCase):
    def run_page(self, mock_url: str, close_on_done: bool) -> dict:
        return load_page(self, PAGE % {"url": json.dumps(mock_url), "close": "true" if close_on_done else "false"})

    def test_eventsource_dropped_mid_stream_resumes_with_nothing_lost_or_repeated(self):
        with RunningServer(delay=0.005) as s:
            full = call(s.port, "GET", "/api/events?prompt=Hello").body.decode()
            expected = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content", "")
                               for line in full.split("\n") if line.startswith("data: {"))
            seen = self.run_page(s.url + "/api/events?prompt=Hello&fault=disconnect&fault_after=3", True)
        self.assertTrue(seen["done"])
        self.assertEqual(seen["text"], expected)
        self.assertEqual(seen["ids"], [str(i) for i in range(1, len(seen["ids"]) + 1)])
        self.assertEqual(seen["opens"], 2)  # the browser reconnected by itself, once

    def test_eventsource_reconnecting_after_the_end_gets_204_and_stops(self):
        with RunningServer(delay=0.005) as s:
            seen = self.run_page(s.url + "/api/events?prompt=Hello", False)
            runs = call(s.port, "GET", "/mock/runs").json()["runs"]
        self.assertTrue(seen["done"])
        self.assertEqual(seen["state"], 2)  # EventSource.CLOSED: the 204 stopped the reconnects
        self.assertEqual(seen["opens"], 1)
        self.assertEqual(len(runs), 2)  # the stream, then one reconnect answered 204, no more


if __name__ == "__main__":
    unittest.main()
