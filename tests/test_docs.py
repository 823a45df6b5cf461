"""The documentation runs: every ```sh block of README.md and docs/*.md is executed.

For each file, a fresh server with the default settings (port 0) is started, and each of its
``sh`` blocks is run in file order (files side by side, up to four at once) with ``bash -euo pipefail`` from the repository root, after
``127.0.0.1:8000`` / ``localhost:8000`` is rewritten to that server's address. A block passes
when it exits 0 within ``BLOCK_TIMEOUT`` seconds (curl blocks use ``--fail-with-body``, so an
HTTP error fails them). Blocks marked ``<!-- docs-test: skip (reason) -->`` are counted, not
run; the Python and JavaScript blocks are run by tests/interop/test_docs_snippets.py. The test
prints how many blocks it ran and skipped per file. See tests/docs_blocks.py for the rules.
"""

import concurrent.futures
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from typing import List, Tuple

import main
from tests import docs_blocks
from tests.support import ROOT, RunningServer

BLOCK_TIMEOUT = 30.0
"""Seconds a block may take."""


def run_sh(code: str, url: str) -> subprocess.CompletedProcess:
    """Run one block with ``bash -euo pipefail`` against ``url``; output captured as text."""
    return subprocess.run(["bash", "-euo", "pipefail", "-c", docs_blocks.rewrite(code, url)], cwd=ROOT,
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT, stdin=subprocess.DEVNULL)


def run_file(path: str) -> Tuple[List[Tuple[docs_blocks.Block, object]], int]:
    """Run the sh blocks of one file, in order, against a fresh server with the settings
    ``python3 main.py`` has. Returns ``([(block, CompletedProcess or TimeoutExpired)], skipped)``."""
    results, skipped = [], 0
    with RunningServer(delay=main.Settings().delay, log_level="error") as server:
        for block in docs_blocks.blocks(path):
            if block.kind != "sh":
                continue
            if block.skip:
                skipped += 1
                continue
            try:
                results.append((block, run_sh(block.code, server.url)))
            except subprocess.TimeoutExpired as exc:
                results.append((block, exc))
    return results, skipped


@unittest.skipUnless(shutil.which("bash") and shutil.which("curl"), "the docs' shell blocks need bash and curl")
class ShellBlocksTest(unittest.TestCase):
    def test_every_sh_block_of_every_doc_file_runs(self):
        # Files run side by side (their blocks mostly wait on paced streams), each on its own
        # server, blocks in file order; the results are checked here, on the test's thread.
        paths = docs_blocks.doc_files()
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            outcomes = list(pool.map(run_file, paths))
        counts = []
        for path, (results, skipped) in zip(paths, outcomes):
            for block, done in results:
                with self.subTest(block=block.where):
                    if isinstance(done, subprocess.TimeoutExpired):
                        self.fail("%s: still running after %g s:\n%s" % (block.where, BLOCK_TIMEOUT, block.code))
                    self.assertEqual(done.returncode, 0, "%s exited %d:\n%s\n--- stdout:\n%s\n--- stderr:\n%s"
                                     % (block.where, done.returncode, block.code, done.stdout[-2000:],
                                        done.stderr[-2000:]))
            others = sum(1 for b in docs_blocks.blocks(path) if b.kind in ("python", "js"))
            counts.append("docs test: %s: %d sh blocks run, %d skipped (marked); %d python/js blocks for "
                          "the interop suite" % (path, len(results), skipped, others))
        sys.stderr.write("\n" + "\n".join(counts) + "\n")

    def test_docs_have_no_commands_outside_run_blocks(self):
        for path in docs_blocks.doc_files():
            with self.subTest(path=path):
                self.assertEqual(docs_blocks.unfenced_commands(path), [],
                                 "indented commands are never run: fence them as ```sh (or ```text)")


class ContributingTest(unittest.TestCase):
    def test_layout_names_every_module(self):
        layout = docs_blocks.blocks("CONTRIBUTING.md")[0].code  # the first block: the layout
        names = {line.split()[0] for line in layout.splitlines() if line.strip()}
        modules = [os.path.relpath(p, ROOT).replace(os.sep, "/")
                   for p in glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "routes", "*.py"))]
        self.assertEqual([m for m in sorted(modules) if m not in names], [])


class BlockParserTest(unittest.TestCase):
    """The parser the docs tests rely on, on a sample file."""

    SAMPLE = (
        "# T\n\n```sh\ncurl -sS http://127.0.0.1:8000/health\n```\n\n"
        "<!-- docs-test: skip (starts the server) -->\n\n```sh\npython3 main.py\n```\n\n"
        "  ```js\n  const a = 1;\n  ```\n\n````text\n```sh\nnot a block\n```\n````\n"
        "    curl http://localhost:8000/\n"
    )

    def setUp(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp, True)
        self.path = os.path.join(tmp, "sample.md")  # absolute: blocks() joins it to ROOT unchanged

    def write(self, text):
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    def test_blocks_languages_skip_markers_and_nested_fences(self):
        self.write(self.SAMPLE)
        found = docs_blocks.blocks(self.path)
        self.assertEqual([(b.line, b.language, b.kind, b.skip) for b in found],
                         [(3, "sh", "sh", None), (9, "sh", "sh", "starts the server"), (13, "js", "js", None),
                          (17, "text", None, None)])
        self.assertEqual(found[0].code, "curl -sS http://127.0.0.1:8000/health\n")
        self.assertEqual(found[2].code, "const a = 1;\n")
        self.assertEqual(found[3].code, "```sh\nnot a block\n```\n")
        self.assertEqual(docs_blocks.unfenced_commands(self.path),
                         ["%s:22: curl http://localhost:8000/" % self.path])

    def test_unclosed_fence_and_stray_marker_are_errors(self):
        for text in ("```sh\ncurl x\n", "<!-- docs-test: skip (why) -->\ntext\n", "<!-- docs-test: skip (why) -->\n"):
            with self.subTest(text=text):
                self.write(text)
                with self.assertRaises(ValueError):
                    docs_blocks.blocks(self.path)

    def test_rewrite_points_the_default_address_at_the_test_server(self):
        self.assertEqual(docs_blocks.rewrite("curl http://127.0.0.1:8000/x localhost:8000/y 127.0.0.1:80001",
                                             "http://127.0.0.1:4321"),
                         "curl http://127.0.0.1:4321/x 127.0.0.1:4321/y 127.0.0.1:80001")

    def test_a_failing_block_fails(self):
        with RunningServer() as server:
            self.assertNotEqual(run_sh("curl -sS --fail-with-body http://127.0.0.1:8000/nope\n", server.url).returncode, 0)
            self.assertNotEqual(run_sh("echo $UNDEFINED_IN_BLOCK\n", server.url).returncode, 0)
            self.assertEqual(run_sh("curl -sS --fail-with-body http://127.0.0.1:8000/health\n", server.url).returncode, 0)


if __name__ == "__main__":
    unittest.main()
