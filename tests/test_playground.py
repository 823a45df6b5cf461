"""The playground's server side over real sockets: the static files under ``/playground``,
``GET /`` sending browsers there while programs keep the JSON, and the choices and bounds in
``GET /mock/settings`` that the page builds its scenario form from. (The page itself runs in
headless Chromium in ``tests/interop/test_playground_browser.py``.)"""

import os
import unittest
from unittest import mock

from tests import support
from tests.support import RunningServer, call
import main
import routes.playground
import scenario

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


class StaticFilesTest(unittest.TestCase):
    def test_page_and_files_with_their_content_types_and_headers(self):
        expected = {"/playground": ("index.html", "text/html; charset=utf-8"),
                    "/playground/": ("index.html", "text/html; charset=utf-8"),
                    "/playground/app.js": ("app.js", "text/javascript; charset=utf-8"),
                    "/playground/style.css": ("style.css", "text/css; charset=utf-8")}
        with RunningServer() as s:
            for path, (name, content_type) in expected.items():
                with self.subTest(path=path):
                    r = call(s.port, "GET", path)
                    self.assertEqual(r.status, 200)
                    self.assertEqual(r.header("Content-Type"), content_type)
                    self.assertEqual(r.header("Cache-Control"), "no-cache")
                    self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
                    with open(os.path.join(support.ROOT, "playground", name), "rb") as f:
                        data = f.read()
                    self.assertEqual(r.body, data)
                    self.assertEqual(r.header("Content-Length"), str(len(data)))
            page = call(s.port, "GET", "/playground")
            script = call(s.port, "GET", "/playground/app.js")
        policy = page.header("Content-Security-Policy")
        self.assertIn("default-src 'self'", policy)
        self.assertIn("script-src 'self'", policy)
        self.assertIsNone(script.header("Content-Security-Policy"))

    def test_the_page_loads_nothing_from_another_host(self):
        for name in sorted(routes.playground.FILES):
            with open(os.path.join(routes.playground.DIRECTORY, name), encoding="utf-8") as f:
                text = f.read()
            with self.subTest(name=name):
                self.assertNotRegex(text, r"(?:src|href)=\"(?:https?:)?//")
                self.assertNotIn("@import", text)

    def test_unknown_files_and_traversal_are_404(self):
        with RunningServer() as s:
            for path in ("/playground/nope.js", "/playground/..%2Fmain.py", "/playground/%2e%2e%2fmain.py",
                         "/playground/../main.py", "/playground/app.js/x", "/playground/.hidden.js",
                         "/playground/App.js", "/playground/index.html%00.js"):
                with self.subTest(path=path):
                    r = call(s.port, "GET", path)
                    self.assertEqual(r.status, 404)
                    self.assertEqual(r.json()["error"]["code"], "NOT_FOUND")

    def test_head_and_wrong_method(self):
        with RunningServer() as s:
            head = call(s.port, "HEAD", "/playground/style.css")
            post = call(s.port, "POST", "/playground", b"{}", {"Content-Type": "application/json"})
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("Content-Type"), "text/css; charset=utf-8")
        self.assertEqual(head.body, b"")
        self.assertEqual(post.status, 405)

    def test_a_file_over_the_size_bound_is_refused_not_sent(self):
        with RunningServer() as s, mock.patch.object(routes.playground, "MAX_FILE_BYTES", 100):
            r = call(s.port, "GET", "/playground/app.js")
        self.assertEqual(r.status, 500)
        self.assertIn("over 100 bytes", r.json()["error"]["message"])


class RootNegotiationTest(unittest.TestCase):
    def test_a_browser_is_sent_to_the_playground(self):
        with RunningServer() as s:
            r = call(s.port, "GET", "/", headers={"Accept": BROWSER_ACCEPT})
        self.assertEqual(r.status, 303)
        self.assertEqual(r.header("Location"), "/playground")
        self.assertEqual(r.header("Vary"), "Accept")

    def test_programs_keep_the_json(self):
        with RunningServer() as s:
            for accept in (None, "*/*", "application/json", "application/json, text/html;q=0.5",
                           "text/html;q=0", "text/html;q=bad"):
                with self.subTest(accept=accept):
                    r = call(s.port, "GET", "/", headers={"Accept": accept} if accept else None)
                    self.assertEqual(r.status, 200)
                    self.assertEqual(r.header("Vary"), "Accept")
                    body = r.json()
                    self.assertEqual(body["status"], "healthy")
                    self.assertIn("GET /playground", body["endpoints"])
            health = call(s.port, "GET", "/health", headers={"Accept": BROWSER_ACCEPT})
        self.assertEqual(health.status, 200)  # only / is negotiated
        self.assertEqual(health.json()["status"], "healthy")


class SettingsForTheFormTest(unittest.TestCase):
    def test_choices_and_bounds(self):
        with RunningServer() as s:
            settings = call(s.port, "GET", "/mock/settings").json()
        self.assertEqual(set(settings), set(scenario.SETTINGS))
        self.assertEqual(settings["line_ending"]["choices"], ["lf", "crlf", "cr", "mixed"])
        self.assertIsNone(settings["line_ending"]["min"])
        self.assertEqual((settings["delay"]["min"], settings["delay"]["max"], settings["delay"]["nullable"]),
                         (0, 60, True))
        self.assertEqual(settings["reply_text"]["max"], 20000)
        self.assertIsNone(settings["bom"]["choices"])
        for name, s in scenario.SETTINGS.items():
            self.assertEqual(settings[name]["choices"], list(s.choices) if s.kind == "enum" else None, name)


class BannerTest(unittest.TestCase):
    def test_banner_prints_the_playground_url(self):
        with RunningServer() as s:
            text = main.banner(s.server)
        self.assertIn("playground: http://127.0.0.1:%d/playground" % s.port, text)


if __name__ == "__main__":
    unittest.main()
