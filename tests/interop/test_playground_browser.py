"""Interop: the playground page (``GET /playground``) driven in real headless Chromium.

The browser is Debian's ``chromium`` (``.ci/run`` installs it), driven from Python with the
``playwright`` package (``tests/interop/requirements.txt``) pointed at that executable: no
browser is downloaded. Each test loads the page from a server started for it, works the page
as a user does (clicks, typing, keyboard) and checks what the page shows against the server's
own record: the run's ground truth (``GET /mock/runs/{id}``), ``GET /health`` and the Threads
API. Every test also fails on any console error or uncaught exception in the page.

Skips with a message when ``playwright`` is not installed or Chromium is missing or cannot
start. ``PLAYGROUND_SCREENSHOT=docs/playground.png`` saves the screenshot taken after the
CRLF + random framing stream to that path (how ``docs/playground.png`` was made); otherwise it
goes to a temporary directory.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from tests.interop import node_sdk
from tests.interop.test_browser_eventsource import CHROMIUM, SKIP_REASON
from tests.support import RunningServer, call

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
except ImportError:  # the suite skips
    sync_playwright = None

SKIP = (SKIP_REASON if not CHROMIUM else
        "playwright not installed: pip install -r tests/interop/requirements.txt" if sync_playwright is None else None)
TERMINAL = ", ".join("#run-status[data-status=%s]" % s for s in ("done", "error", "stopped"))
TIMEOUT_MS = 30000
ROUTES = ["pipes", "agent", "openai", "lobe", "lifecycle", "events_openai", "events_json", "hello", "tokens"]


@unittest.skipIf(SKIP, SKIP)
class PlaygroundBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # playwright runs an asyncio loop; under -X dev, asyncio logs every slow step of it
        asyncio_log = logging.getLogger("asyncio")
        cls.addClassCleanup(asyncio_log.setLevel, asyncio_log.level)
        asyncio_log.setLevel(logging.ERROR)
        cls.playwright = sync_playwright().start()
        try:
            cls.browser = cls.playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], timeout=60000)
        except PlaywrightError as exc:
            cls.playwright.stop()
            raise unittest.SkipTest("Chromium did not start under playwright: %s" % str(exc)[:300])

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.playwright.stop()

    def setUp(self):
        self.server = RunningServer()
        self.server.__enter__()
        self.addCleanup(self.server.__exit__, None, None, None)
        self.problems = []
        self.expected_problems = []

    def open(self, width=1280, height=900, scheme="light"):
        """A fresh browser context on the playground, reached through ``GET /`` as a user would."""
        context = self.browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
        self.addCleanup(context.close)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: m.type == "error" and self.problems.append("console: " + m.text))
        page.on("pageerror", lambda e: self.problems.append("page error: %s" % e))
        page.goto(self.server.url + "/")
        self.assertEqual(page.url, self.server.url + "/playground")
        page.wait_for_selector("body[data-ready=true]")
        self.page = page
        return page

    def tearDown(self):
        unexpected = [p for p in self.problems if not any(e in p for e in self.expected_problems)]
        self.assertEqual(unexpected, [], "the page logged errors")

    def send(self, text="Hello!", route=None):
        """Send ``text`` (on ``route``) with the Send button and wait for the run and its verdict."""
        page = self.page
        if route is not None:
            page.select_option("#route", route)
        page.fill("#message", text)
        page.click("#send")
        page.wait_for_selector(TERMINAL)
        page.wait_for_selector("#verdict-whatwg:not([data-result=pending])")
        return page.text_content("#run-id")

    def truth(self, run_id):
        response = call(self.server.port, "GET", "/mock/runs/" + run_id)
        self.assertEqual(response.status, 200, run_id)
        return response.json()

    def reply_shown(self):
        return self.page.locator("#transcript .msg.assistant .text").last.text_content()

    def scenario(self, preset=None, **values):
        page = self.page
        if not page.is_visible("#scenario-fields"):
            page.click("#scenario summary")
        if preset:
            page.select_option("#preset", label=preset)
        for name, value in values.items():
            if page.eval_on_selector("#mock-" + name, "e => e.tagName") == "SELECT":
                page.select_option("#mock-" + name, str(value))
            else:
                page.fill("#mock-" + name, str(value))

    # --- the tests ----------------------------------------------------------------------------

    def test_first_view_then_a_streamed_reply_equals_the_ground_truth(self):
        page = self.open()
        self.assertEqual(page.title(), "langbase-mock playground")
        self.assertEqual(page.locator("#route option").count(), len(ROUTES))
        self.assertEqual(page.input_value("#route"), "pipes")
        self.assertEqual(page.input_value("#message"), "Hello!")
        self.assertEqual(page.locator("[data-setting]").count(),
                         len(call(self.server.port, "GET", "/mock/settings").json()))
        self.assertEqual(page.text_content("#run-status"), "idle")
        self.assertIn("langbase-mock", page.text_content("#server-status"))

        run_id = self.send("Hello!")
        truth = self.truth(run_id)
        self.assertEqual(page.text_content("#run-status"), "done")
        self.assertEqual(self.reply_shown(), truth["text"])
        self.assertEqual(page.text_content("#run-thread"), truth["thread_id"])
        self.assertEqual(page.text_content("#run-seed"), str(truth["scenario"]["seed"]))
        self.assertEqual(page.text_content("#run-finish"), truth["finish_reason"])
        self.assertIn("total_tokens %d" % truth["usage"]["total_tokens"], page.text_content("#run-usage"))
        self.assertEqual(page.get_attribute("#verdict-whatwg", "data-result"), "match")
        self.assertEqual(page.get_attribute("#verdict-naive", "data-result"), "match")
        # every data event is marked where it ends in the raw bytes, [DONE] included
        self.assertEqual(page.locator("#reads .boundary").count(), len(truth["deltas"]) + 3)
        self.assertEqual(page.locator("#events li").count(), len(truth["deltas"]) + 3)

    def test_stop_aborts_the_request_and_the_server_sees_the_hang_up(self):
        page = self.open()
        self.scenario(delay=0.5)
        page.fill("#message", "Hello!")
        with self.assertLogs("pacer", logging.DEBUG) as logs:
            started = time.monotonic()
            page.click("#send")
            page.wait_for_selector("#transcript .msg.assistant .text:not(:empty)")
            self.assertEqual(call(self.server.port, "GET", "/health").json()["open_streams"], 1)
            page.click("#stop")
            page.wait_for_selector("#run-status[data-status=stopped]")
            deadline = time.monotonic() + 5
            while call(self.server.port, "GET", "/health").json()["open_streams"] and time.monotonic() < deadline:
                time.sleep(0.05)
            closed = time.monotonic() - started
        run_id = page.text_content("#run-id")
        truth = self.truth(run_id)
        self.assertEqual(call(self.server.port, "GET", "/health").json()["open_streams"], 0)
        self.assertLess(closed, 6.0)
        self.assertGreater(0.5 * len(truth["deltas"]), 10.0)  # the stream had far longer to go
        self.assertTrue(any("client hung up" in line for line in logs.output), logs.output)
        self.assertTrue(truth["text"].startswith(self.reply_shown()))
        self.assertLess(len(self.reply_shown()), len(truth["text"]))
        self.assertTrue(page.is_enabled("#send"))
        self.assertFalse(page.is_enabled("#stop"))
        page.click("#send")  # Escape stops too
        page.wait_for_selector("#run-status[data-status=streaming]")
        page.keyboard.press("Escape")
        page.wait_for_selector("#run-status[data-status=stopped]")

    def test_crlf_with_random_framing_breaks_only_the_naive_parser(self):
        page = self.open(height=1000)
        self.scenario(preset="CRLF line endings + random byte framing", delay=0.005)
        run_id = self.send("Hello!")
        truth = self.truth(run_id)
        self.assertEqual(truth["scenario"]["line_ending"], "crlf")
        self.assertEqual(truth["scenario"]["framing"], "random")
        self.assertEqual(self.reply_shown(), truth["text"])
        self.assertEqual(page.get_attribute("#verdict-whatwg", "data-result"), "match")
        self.assertEqual(page.get_attribute("#verdict-naive", "data-result"), "differ")
        self.assertIn("\\r", page.text_content("#reads"))
        events = page.locator("#events li").count()
        self.assertEqual(events, len(truth["deltas"]) + 3)
        self.assertEqual(page.locator("#reads .boundary").count(), events)
        self.assertGreater(page.locator("#reads li.read").count(), 1)
        page.click("#scenario summary")  # fold the form away and show the page from the top
        page.evaluate("() => window.scrollTo(0, 0)")
        with tempfile.TemporaryDirectory() as scratch:
            path = os.environ.get("PLAYGROUND_SCREENSHOT") or os.path.join(scratch, "playground.png")
            page.screenshot(path=path)
            self.assertGreater(os.path.getsize(path), 10000)
        page.check("#parser-naive")  # the naive view: CRLF has no "\n\n", so it finds no event
        self.assertEqual(page.locator("#reads .boundary").count(), 0)
        self.assertEqual(page.locator("#events li").count(), 0)
        page.check("#parser-whatwg")
        self.assertEqual(page.locator("#events li").count(), events)

    def test_every_route_gets_a_reply(self):
        page = self.open()
        offered = page.eval_on_selector_all("#route option", "options => options.map(o => o.value)")
        self.assertEqual(offered, ROUTES)
        for route in ROUTES:
            with self.subTest(route=route):
                run_id = self.send("Hi from the playground", route=route)
                self.assertEqual(page.text_content("#run-status"), "done")
                truth = self.truth(run_id)
                self.assertTrue(truth["text"])
                self.assertEqual(self.reply_shown(), truth["text"])
                self.assertEqual(page.get_attribute("#verdict-whatwg", "data-result"), "match")
        self.assertEqual(page.locator("#transcript .msg.assistant .error").count(), 0)

    def test_a_json_answer_a_tool_call_and_errors_are_shown_as_such(self):
        page = self.open()
        page.uncheck("#stream")
        run_id = self.send("Hello!")
        self.assertEqual(self.reply_shown(), self.truth(run_id)["text"])
        self.assertIn("application/json", page.text_content("#run-http"))
        page.check("#stream")
        page.check("#tools")
        run_id = self.send("Weather in Paris?")
        truth = self.truth(run_id)
        (tool_call,) = truth["tool_calls"]
        shown = page.locator("#transcript .msg.assistant").last.locator(".call")
        self.assertEqual(shown.get_attribute("data-name"), "get_weather")
        self.assertIn(tool_call["function"]["arguments"], shown.text_content())
        self.assertEqual(page.get_attribute("#verdict-whatwg", "data-result"), "match")
        self.send("Thanks")  # the stand-in tool result goes to the thread first
        self.assertEqual(page.text_content("#run-status"), "done")
        stored = call(self.server.port, "GET", "/v1/threads/%s/messages" % truth["thread_id"]).json()
        self.assertEqual([m["role"] for m in stored][-4:], ["assistant", "tool", "user", "assistant"])
        self.assertEqual(stored[-3]["tool_call_id"], tool_call["id"])

        page.uncheck("#tools")
        self.expected_problems.append("status of 429")  # Chromium logs every failed fetch
        self.scenario(preset="HTTP 429 with Retry-After")
        self.send("Hello!")
        self.assertEqual(page.text_content("#run-status"), "error")
        error = page.locator("#transcript .msg.assistant").last.locator(".error[role=alert]")
        self.assertIn("HTTP 429", error.text_content())
        self.assertIn("RATE_LIMITED", error.text_content())

        self.scenario(preset="In-band error after 3 events")
        self.send("Hello!")
        self.assertEqual(page.text_content("#run-status"), "error")
        error = page.locator("#transcript .msg.assistant").last.locator(".error[role=alert]")
        self.assertIn("in-band error", error.text_content())

    def test_threads_panel_finds_continues_and_deletes_the_conversation(self):
        page = self.open()
        first = self.truth(self.send("Hello!"))
        thread_id = page.text_content("#run-thread")
        self.assertEqual(thread_id, first["thread_id"])
        item = page.locator("#threads li[data-thread='%s']" % thread_id)
        item.wait_for()
        item.get_by_role("button", name="Show the messages of thread").click()
        page.wait_for_selector("#thread-messages .msg >> nth=1")
        shown = page.text_content("#thread-messages")
        self.assertIn("Hello!", shown)
        self.assertIn(first["text"], shown)

        page.click("#new-chat")
        self.assertEqual(page.text_content("#transcript"), "")
        item.get_by_role("button", name="Continue thread").click()
        page.wait_for_selector("#transcript .msg.assistant")
        self.send("And then?")
        self.assertEqual(page.text_content("#run-thread"), thread_id)
        stored = call(self.server.port, "GET", "/v1/threads/%s/messages" % thread_id).json()
        self.assertEqual([m["role"] for m in stored], ["user", "assistant", "user", "assistant"])

        item.get_by_role("button", name="Delete thread").click()
        page.wait_for_selector("#threads li[data-thread='%s']" % thread_id, state="detached")
        self.assertEqual(call(self.server.port, "GET", "/v1/threads/" + thread_id).status, 404)

    def run_snippets(self, page, route):
        """Run the page's curl, Python and JavaScript code for ``route`` (each where its client is
        installed) and return what each printed."""
        page.select_option("#route", route)
        curl, python, js = (page.text_content(s) for s in ("#code-curl", "#code-python", "#code-js"))
        printed = {}
        out = subprocess.run(["bash", "-c", curl], capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, (curl, out.stderr))
        printed["curl"] = out.stdout
        module = {"pipes": "langbase", "agent": "langbase", "openai": "openai"}.get(route)
        if module is None or importlib.util.find_spec(module):
            out = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, (python, out.stderr))
            printed["python"] = out.stdout
        if node_sdk.skip_reason() is None or (route not in ("pipes", "agent") and shutil.which("node")):
            out = subprocess.run(["node", "--input-type=module"], input=js, capture_output=True, text=True,
                                 timeout=60, cwd=node_sdk.INTEROP_DIR)
            self.assertEqual(out.returncode, 0, (js, out.stderr))
            printed["js"] = out.stdout
        return printed

    def test_copied_code_runs_for_every_route_with_the_scenario(self):
        page = self.open()
        self.scenario(line_ending="crlf")
        page.fill("#message", "Copy me")
        page.click("#code summary")
        self.assertIn("-H 'X-Mock-Line-Ending: crlf'", page.text_content("#code-curl"))
        self.assertIn('mock={"line_ending": "crlf"}', page.text_content("#code-python"))
        self.assertIn('"mock":{"line_ending":"crlf"}', page.text_content("#code-js"))
        for route in ROUTES:
            with self.subTest(route=route):
                printed = self.run_snippets(page, route)
                self.assertIn(b"\r\n\r\n", printed["curl"])  # the scenario went along
        reply = self.truth(self.send("Copy me", route="pipes"))["text"]
        self.assertEqual(self.reply_shown(), reply)
        page.click("#new-chat")
        printed = self.run_snippets(page, "pipes")
        if "python" in printed:  # the SDK's text, then the thread id
            self.assertEqual(printed["python"].rsplit("\n", 2)[0], reply)
        if "js" in printed:
            self.assertEqual(printed["js"], reply + "\n")

    def test_keyboard_phone_width_dark_mode_and_no_layout_jump(self):
        page = self.open(width=390, height=844, scheme="dark")
        before = [page.locator(s).bounding_box() for s in ("#send", "#reads", "#events", "#threads-panel")]
        page.focus("#message")
        page.keyboard.press("Control+A")
        page.keyboard.type("Typed, then Ctrl+Enter")
        page.keyboard.press("Control+Enter")
        page.wait_for_selector(TERMINAL)
        page.wait_for_selector("#verdict-whatwg:not([data-result=pending])")
        self.assertEqual(self.reply_shown(), self.truth(page.text_content("#run-id"))["text"])
        after = [page.locator(s).bounding_box() for s in ("#send", "#reads", "#events", "#threads-panel")]
        self.assertEqual(before[:3], after[:3])  # the threads list below may grow; nothing above moves
        width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        self.assertLessEqual(width[0], width[1])
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        self.assertEqual(background, "rgb(13, 17, 23)")
        page.focus("#message")
        page.keyboard.press("Tab")
        self.assertEqual(page.evaluate("() => document.activeElement.id"), "send")
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => !e.labels.length && !e.closest('label')).map(e => e.id)""")
        self.assertEqual(unlabelled, [])


if __name__ == "__main__":
    unittest.main()
