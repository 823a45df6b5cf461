"""The installable command: ``pip install <checkout>`` into a fresh venv gives ``langbase-mock``
(and ``python -m langbase_mock``), which prints its version and serves.

The build backend is setuptools (``pyproject.toml``): a venv whose own setuptools is new enough
(61+, with a ``bdist_wheel``) builds offline with ``--no-build-isolation --no-index``; otherwise pip fetches setuptools
from its configured index, and the test skips with a message when it cannot.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

from tests import support
from api import VERSION

PIP_TIMEOUT = 300
NOT_SHIPPED = shutil.ignore_patterns(".git", ".venv", ".ci-venv", "tests", "bench", "build", "*.egg-info",
                                     "__pycache__", "node_modules")

OFFLINE_BUILD_CHECK = """
import importlib.util, setuptools
v = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
assert v >= (61, 0) and (v >= (70, 1) or importlib.util.find_spec("wheel"))
"""


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="langbase-mock-install-")
        # A copy, so the build's own files (build/, *.egg-info) never land in the checkout.
        src = os.path.join(cls.tmp, "src")
        shutil.copytree(support.ROOT, src, ignore=NOT_SHIPPED)
        venv = os.path.join(cls.tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=PIP_TIMEOUT,
                       stdout=subprocess.DEVNULL)
        bindir = os.path.join(venv, "Scripts" if os.name == "nt" else "bin")
        cls.python = os.path.join(bindir, "python")
        cls.command = os.path.join(bindir, "langbase-mock")
        # Building offline needs setuptools 61+ and its bdist_wheel (built in from 70.1, else
        # the wheel package) already in the venv.
        offline = subprocess.run([cls.python, "-c", OFFLINE_BUILD_CHECK], timeout=60,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        args = ["--no-build-isolation", "--no-index"] if offline else []
        done = subprocess.run([cls.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               *args, src], capture_output=True, text=True, timeout=PIP_TIMEOUT)
        cls.install_output = done.stdout + done.stderr
        cls.install_status = done.returncode
        cls.no_backend = (not offline and done.returncode != 0
                          and re.search(r"(No matching distribution|Could not find a version) .*setuptools",
                                        cls.install_output) is not None)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        if self.no_backend:
            self.skipTest("setuptools>=61 (the build backend) is neither in a fresh venv of %s nor "
                          "reachable through pip's index" % sys.executable)
        self.assertEqual(self.install_status, 0, self.install_output)

    def test_command_and_module_print_the_version(self):
        for argv in ([self.command, "--version"], [self.python, "-m", "langbase_mock", "--version"]):
            with self.subTest(argv=argv[1:]):
                done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=self.tmp)
                self.assertEqual((done.returncode, done.stdout, done.stderr), (0, "langbase-mock %s\n" % VERSION, ""))

    def test_installed_command_serves_and_names_itself_in_errors(self):
        done = subprocess.run([self.command, "--delay", "abc"], capture_output=True, text=True, timeout=60,
                              cwd=self.tmp)
        self.assertEqual(done.returncode, 2)
        self.assertIn("langbase-mock: error: argument --delay: 'abc'", done.stderr)
        # Run from a directory without the checkout's modules: the installed ones must be used
        # (including its pipes.py, not the standard library's pipes on Python < 3.13).
        proc = subprocess.Popen([self.command, "--port", "0", "--log-level", "warning"], cwd=self.tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.addCleanup(proc.stdout.close)
        self.addCleanup(proc.stderr.close)
        first = proc.stdout.readline()
        match = re.search(r"^langbase-mock %s listening on http://127\.0\.0\.1:(\d+)$" % re.escape(VERSION),
                          first.strip())
        self.assertTrue(match, first + proc.stderr.read() if proc.poll() is not None else first)
        port = int(match.group(1))
        reply = support.call(port, "POST", "/v1/pipes/run", {"messages": [{"role": "user", "content": "Hi"}]})
        self.assertEqual(reply.status, 200)
        self.assertTrue(reply.json()["completion"])
        for path in ("/playground", "/playground/app.js"):  # the page ships with the command
            with self.subTest(path=path):
                self.assertEqual(support.call(port, "GET", path).status, 200)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=10), 0)


if __name__ == "__main__":
    unittest.main()
