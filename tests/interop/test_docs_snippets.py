"""The documentation's Python and JavaScript blocks run against the mock, with real clients.

Every ```python block of README.md and docs/*.md runs as a script under this interpreter, which
needs the SDKs of tests/interop/requirements.txt (``langbase``, ``openai``); every ```js block
runs as an ES module (a ``.mjs`` file) under ``node``, placed in tests/interop/ so that its
``import`` statements resolve in tests/interop/node_modules. As for the shell blocks
(tests/test_docs.py): a fresh server with the default settings per file, ``127.0.0.1:8000``
rewritten to its address, blocks marked ``<!-- docs-test: skip (reason) -->`` not run, and each
block must exit 0 within ``BLOCK_TIMEOUT`` seconds. Without the SDKs, without Node, or without
tests/interop/node_modules holding a block's packages, those blocks skip with a message.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import main
from tests import docs_blocks
from tests.support import RunningServer

BLOCK_TIMEOUT = 60.0
"""Seconds a block may take (the SDKs import slowly)."""

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_MODULES = os.path.join(HERE, "node_modules")
PYTHON_PACKAGES = ("langbase", "openai")
MISSING_PYTHON = [p for p in PYTHON_PACKAGES if importlib.util.find_spec(p) is None]
IMPORT = re.compile(r"""^\s*import\s[^'"]*?['"]([^'"./][^'"]*)['"]""", re.M)


def packages_of(code: str):
    """The npm package names a JS block imports (``'openai'``, ``'@scope/pkg/sub'`` -> ``@scope/pkg``);
    ``node:`` built-ins excluded."""
    out = []
    for spec in IMPORT.findall(code):
        if spec.startswith("node:"):
            continue
        parts = spec.split("/")
        out.append("/".join(parts[:2]) if spec.startswith("@") else parts[0])
    return out


class DocSnippetsTest(unittest.TestCase):
    def run_blocks(self, kind, runner):
        """Run every block of ``kind`` with ``runner(block, url) -> CompletedProcess or a skip
        message``; returns per-file counts for the closing message."""
        counts = []
        for path in docs_blocks.doc_files():
            blocks = [b for b in docs_blocks.blocks(path) if b.kind == kind]
            if not blocks:
                continue
            ran = skipped = 0
            with RunningServer(delay=main.Settings().delay, log_level="error") as server:
                for block in blocks:
                    if block.skip:
                        skipped += 1
                        continue
                    with self.subTest(block=block.where):
                        done = runner(block, server.url)
                        if isinstance(done, str):
                            skipped += 1
                            self.skipTest("%s: %s" % (block.where, done))
                        ran += 1
                        self.assertEqual(done.returncode, 0, "%s exited %d:\n%s\n--- stdout:\n%s\n--- stderr:\n%s"
                                         % (block.where, done.returncode, block.code, done.stdout[-2000:],
                                            done.stderr[-3000:]))
            counts.append("docs test: %s: %d %s blocks run, %d skipped" % (path, ran, kind, skipped))
        sys.stderr.write("\n" + "\n".join(counts) + "\n")

    @unittest.skipIf(MISSING_PYTHON, "the docs' Python blocks need %s: pip install -r tests/interop/requirements.txt"
                     % " and ".join(MISSING_PYTHON))
    def test_python_blocks_run_with_the_sdks(self):
        def runner(block, url):
            with tempfile.TemporaryDirectory() as tmp:
                script = os.path.join(tmp, "block.py")
                with open(script, "w", encoding="utf-8") as f:
                    f.write(docs_blocks.rewrite(block.code, url))
                try:
                    return subprocess.run([sys.executable, script], cwd=tmp, capture_output=True, text=True,
                                          timeout=BLOCK_TIMEOUT, stdin=subprocess.DEVNULL)
                except subprocess.TimeoutExpired:
                    self.fail("%s: still running after %g s" % (block.where, BLOCK_TIMEOUT))
        self.run_blocks("python", runner)

    @unittest.skipUnless(shutil.which("node"), "the docs' JavaScript blocks need Node.js (node on PATH)")
    def test_js_blocks_run_as_es_modules_with_node(self):
        def runner(block, url):
            missing = [p for p in packages_of(block.code) if not os.path.isdir(os.path.join(NODE_MODULES, p))]
            if missing:
                return ("needs the npm package(s) %s in tests/interop/node_modules (npm ci --prefix tests/interop)"
                        % ", ".join(missing))
            tmp = tempfile.mkdtemp(dir=HERE, prefix=".docs-block-")  # imports resolve from here up
            try:
                script = os.path.join(tmp, "block.mjs")
                with open(script, "w", encoding="utf-8") as f:
                    f.write(docs_blocks.rewrite(block.code, url))
                try:
                    return subprocess.run(["node", script], cwd=tmp, capture_output=True, text=True,
                                          timeout=BLOCK_TIMEOUT, stdin=subprocess.DEVNULL)
                except subprocess.TimeoutExpired:
                    self.fail("%s: still running after %g s" % (block.where, BLOCK_TIMEOUT))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        self.run_blocks("js", runner)

    def test_packages_of_reads_import_statements(self):
        code = ("import { Langbase } from 'langbase';\nimport OpenAI from \"openai\";\nimport x from '@ai-sdk/react/x';\n"
                "import fs from 'node:fs';\nimport './local.mjs';\n")
        self.assertEqual(packages_of(code), ["langbase", "openai", "@ai-sdk/react"])


if __name__ == "__main__":
    unittest.main()
