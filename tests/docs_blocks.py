"""The fenced code blocks of README.md, CONTRIBUTING.md and docs/*.md, for the tests that run them.

A block is a CommonMark fenced code block: a line of three or more backticks (or tildes) and an
info string whose first word is the language, the code, and a closing fence of the same kind.
Languages run by the tests (``RUN_LANGUAGES``): ``sh``/``bash``/``shell`` (tests/test_docs.py),
``python``/``py`` and ``js``/``javascript``/``mjs`` (tests/interop/test_docs_snippets.py). Any
other language (``text``, ``http``, ``json``, ``ts``...) is shown, never run. A run language
preceded by the line ``<!-- docs-test: skip (reason) -->`` (blank lines between are allowed) is
not run either; the reason is required and is reported.

Every block runs against a server the test started, on a port of its own: ``rewrite`` turns
``127.0.0.1:8000`` and ``localhost:8000`` into that server's address.
"""

from __future__ import annotations

import glob
import os
import re
from typing import List, NamedTuple, Optional

from tests.support import ROOT

RUN_LANGUAGES = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python", "py": "python",
                 "js": "js", "javascript": "js", "mjs": "js"}
"""Fence language -> the kind of runner that executes it."""

SKIP_MARKER = re.compile(r"^<!--\s*docs-test:\s*skip\s*\((.+)\)\s*-->\s*$")
FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^`\s]*)[^`]*$")
DEFAULT_ADDRESS = re.compile(r"\b(?:127\.0\.0\.1|localhost):8000\b")


class Block(NamedTuple):
    """One fenced block: ``path`` (relative to the repository root), ``line`` (1-based line of
    its opening fence), ``language`` (the info string's first word, lower case), ``kind``
    (``"sh"``, ``"python"``, ``"js"`` or None: not run), ``code`` (str), ``skip`` (the skip
    marker's reason, or None)."""

    path: str
    line: int
    language: str
    kind: Optional[str]
    code: str
    skip: Optional[str]

    @property
    def where(self) -> str:
        return "%s:%d" % (self.path, self.line)


def doc_files() -> List[str]:
    """README.md, CONTRIBUTING.md and every docs/*.md (found anew on each call), as paths
    relative to the repository root, in that order."""
    docs = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return ["README.md", "CONTRIBUTING.md"] + [os.path.relpath(p, ROOT).replace(os.sep, "/") for p in docs]


def blocks(path: str) -> List[Block]:
    """Every fenced block of ``path`` (relative to the root), in file order.

    Raises ``ValueError`` for a fence that is never closed, or a skip marker that is not
    followed by a fenced block."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        lines = f.read().split("\n")
    out: List[Block] = []
    skip: Optional[str] = None
    skip_line = 0
    i = 0
    while i < len(lines):
        marker = SKIP_MARKER.match(lines[i])
        fence = FENCE.match(lines[i])
        if marker:
            skip, skip_line = marker.group(1).strip(), i + 1
        elif fence:
            indent, ticks, language = fence.group(1), fence.group(2), fence.group(3).lower()
            end = i + 1
            while end < len(lines) and not re.match(r"^ {0,3}%s%s*\s*$" % (re.escape(ticks), ticks[0]), lines[end]):
                end += 1
            if end == len(lines):
                raise ValueError("%s:%d: a fenced block that is never closed" % (path, i + 1))
            code = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip(" ")
                             for line in lines[i + 1:end]) + "\n"
            out.append(Block(path, i + 1, language, RUN_LANGUAGES.get(language), code, skip))
            skip = None
            i = end
        elif lines[i].strip() and skip is not None:
            raise ValueError("%s:%d: a docs-test skip marker not followed by a fenced block" % (path, skip_line))
        i += 1
    if skip is not None:
        raise ValueError("%s:%d: a docs-test skip marker at the end of the file" % (path, skip_line))
    return out


def unfenced_commands(path: str) -> List[str]:
    """Lines of ``path`` outside fenced blocks that are indented code starting with a command
    (``curl``, ``python3``, ``npm``, ``node``, ``pip``...): commands the docs test would not see.
    Returns ``"path:line: text"`` strings."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        lines = f.read().split("\n")
    inside, found = None, []
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line)
        if inside is None and fence:
            inside = fence.group(2)
        elif inside is not None and re.match(r"^ {0,3}%s%s*\s*$" % (re.escape(inside), inside[0]), line):
            inside = None
        elif inside is None and re.match(r"^(    |\t)\s*(\$ )?(curl|python3?|npm|npx|node|pip|pipx|bash)\b", line):
            found.append("%s:%d: %s" % (path, number, line.strip()))
    return found


def rewrite(code: str, url: str) -> str:
    """``code`` with the default address (``127.0.0.1:8000``, ``localhost:8000``) replaced by
    the host and port of ``url`` (``http://127.0.0.1:PORT``)."""
    return DEFAULT_ADDRESS.sub(url.split("://", 1)[1], code)
