"""Run a Node ES-module script that uses the npm ``langbase`` SDK against a test server.

The SDK is pinned in ``tests/interop/package.json`` (with its ``package-lock.json``) and
installed by ``npm ci --prefix tests/interop`` (``.ci/run`` does it when ``npm`` exists). A
script is fed to ``node --input-type=module`` on its standard input with ``tests/interop`` as
its working directory, so ``import … from 'langbase'`` finds that install; the server's URL
arrives in the environment variable ``LB_BASE_URL``. The script prints one JSON value as its
last line of output, which ``run_script`` returns.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any, Optional

__all__ = ["INTEROP_DIR", "NODE_TIMEOUT", "skip_reason", "run_script"]

INTEROP_DIR = os.path.dirname(os.path.abspath(__file__))
NODE_TIMEOUT = 30.0
"""Seconds a script may run before it is killed and its test fails."""
MIN_NODE = 18
"""The oldest Node with the global ``fetch`` the SDK calls."""


def _pinned_version() -> str:
    with open(os.path.join(INTEROP_DIR, "package.json"), encoding="utf-8") as f:
        return json.load(f)["dependencies"]["langbase"]


def skip_reason() -> Optional[str]:
    """Why the JS SDK suite cannot run here (no ``node``, one older than ``MIN_NODE``, or the
    pinned ``langbase`` package not installed), or None when it can."""
    node = shutil.which("node")
    if node is None:
        return "node not found: install Node.js %d or newer to run the JS SDK suite" % MIN_NODE
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=NODE_TIMEOUT).stdout
    major = re.match(r"v(\d+)\.", version)
    if not major or int(major.group(1)) < MIN_NODE:
        return "node %s is too old: the langbase SDK needs Node.js %d or newer" % (version.strip(), MIN_NODE)
    pinned = _pinned_version()
    try:
        with open(os.path.join(INTEROP_DIR, "node_modules", "langbase", "package.json"), encoding="utf-8") as f:
            installed = json.load(f)["version"]
    except OSError:
        return "npm langbase %s not installed: run npm ci --prefix tests/interop" % pinned
    if installed != pinned:
        return "npm langbase %s installed, %s pinned: run npm ci --prefix tests/interop" % (installed, pinned)
    return None


def run_script(source: str, base_url: str, timeout: float = NODE_TIMEOUT) -> Any:
    """Run ``source`` (an ES module) with ``LB_BASE_URL=base_url`` and return the JSON value on
    its last line of standard output.

    Raises:
        AssertionError: the script exited non-zero, printed no JSON last line, or ran past
            ``timeout`` seconds; the message holds its standard error.
    """
    env = dict(os.environ, LB_BASE_URL=base_url, NO_COLOR="1")
    try:
        done = subprocess.run(["node", "--input-type=module"], input=source, cwd=INTEROP_DIR, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("node script ran past %g s; stderr: %s" % (timeout, exc.stderr)) from None
    if done.returncode != 0:
        raise AssertionError("node script exited %d; stderr:\n%s" % (done.returncode, done.stderr))
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        raise AssertionError("node script printed no JSON last line; stdout:\n%s\nstderr:\n%s"
                             % (done.stdout, done.stderr)) from None
