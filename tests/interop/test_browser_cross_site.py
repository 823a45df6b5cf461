"""Interop: what a web page on another origin can do to the mock, in a real browser (headless
Chromium).

The page, served from its own ``http://127.0.0.1:<other port>`` origin, sends two ``POST
/v1/threads``: a plain-text one with ``mode: 'no-cors'`` (what any page can send to any address
without asking), and a JSON one (the browser asks first with a CORS preflight). The first must
change nothing; the second must work, as it does for a frontend under development.

Skips with a message when no Chromium is installed (``apt-get install chromium``; ``.ci/run``
installs it).
"""

from __future__ import annotations

import json
import unittest

from tests.interop.test_browser_eventsource import CHROMIUM, SKIP_REASON, load_page
from tests.support import RunningServer, call

PAGE = """<html><body><div id=o>pending</div><script>
const out = {};
(async () => {
  try {
    await fetch(%(url)s, {method: 'POST', mode: 'no-cors', headers: {'Content-Type': 'text/plain'},
                          body: '{"metadata": {"via": "no-cors"}}'});
    out.simple = 'sent';
  } catch (e) { out.simple = 'failed: ' + e; }
  try {
    const r = await fetch(%(url)s, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                    body: '{"metadata": {"via": "json"}}'});
    out.json = r.status;
    out.thread = r.headers.get('lb-request-id') ? (await r.json()).metadata : null;
  } catch (e) { out.json = 'failed: ' + e; }
  document.getElementById('o').textContent = JSON.stringify(out);
})();
</script></body></html>"""


@unittest.skipUnless(CHROMIUM, SKIP_REASON)
class BrowserCrossSiteTest(unittest.TestCase):
    def test_a_no_cors_post_changes_nothing_and_a_json_post_works(self):
        with RunningServer() as s:
            seen = load_page(self, PAGE % {"url": json.dumps(s.url + "/v1/threads")})
            threads = call(s.port, "GET", "/health").json()["threads"]
        self.assertEqual(seen["simple"], "sent")  # the browser sent it; the mock refused it
        self.assertEqual(seen["json"], 200)
        self.assertEqual(seen["thread"], {"via": "json"})
        self.assertEqual(threads, 1)  # only the JSON one


if __name__ == "__main__":
    unittest.main()
