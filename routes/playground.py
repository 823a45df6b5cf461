"""The browser playground: ``GET /playground`` and the static files beside it.

Job: serve the files of the repository's ``playground/`` directory (an HTML page, its script and
its style sheet; no build step, nothing from another host) so that a browser pointed at the mock
can try every route and watch the bytes on the wire. Only files whose names are listed in
``playground/`` when the server starts are served (a fixed name pattern, a fixed table of
content types, at most ``MAX_FILE_BYTES`` each), so no request can reach another file; they are
read on each request, so an edited page shows on reload. No auth; errors in Langbase's envelope.

The page itself is described in ``docs/playground.md``.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List

from api import ApiError, NotFound, Request, Response, Route, StreamResponse, App, route
from steps import Write

__all__ = ["ROUTES", "DIRECTORY", "CONTENT_TYPES", "MAX_FILE_BYTES", "PAGE_POLICY"]

DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "playground")
"""Where the playground's files live: ``playground/`` at the repository root."""

CONTENT_TYPES: Dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
"""``Content-Type`` by file extension: the only kinds of file served."""

MAX_FILE_BYTES = 1024 * 1024
"""Largest file served (bytes); a bigger one is refused rather than read whole."""

PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
"""``Content-Security-Policy`` of the page: everything from this server, nothing inline, no
other host (so the page demonstrably works offline)."""

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.(?:html|js|css|svg|png)")


def _listing() -> frozenset:
    try:
        names = os.listdir(DIRECTORY)
    except OSError:
        return frozenset()
    return frozenset(n for n in names if _NAME.fullmatch(n) and os.path.isfile(os.path.join(DIRECTORY, n)))


FILES = _listing()
"""The names served: files of ``DIRECTORY`` matching a plain lower-case name pattern, as listed
when the module was imported."""


def _serve(name: str) -> Response:
    """``name`` (one of ``FILES``) as a buffered body with its content type,
    ``Cache-Control: no-cache`` (the stream response's: revalidate every time, so an edited file
    shows on reload), ``X-Content-Type-Options: nosniff`` and, for HTML, ``PAGE_POLICY``.
    Raises ``NotFound`` for a name not in ``FILES`` and ``ApiError`` (500) for a file that is
    too large or unreadable."""
    if name not in FILES:
        raise NotFound("No playground file %r; open /playground." % name[:80])
    path = os.path.join(DIRECTORY, name)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ApiError("The playground file %r cannot be read: %s." % (name, exc.strerror)) from None
    if len(data) > MAX_FILE_BYTES:
        raise ApiError("The playground file %r is over %d bytes." % (name, MAX_FILE_BYTES))
    extension = os.path.splitext(name)[1]
    headers = [("X-Content-Type-Options", "nosniff")]
    if extension == ".html":
        headers.append(("Content-Security-Policy", PAGE_POLICY))
    return StreamResponse(iter([Write(data)]), headers, "buffered", CONTENT_TYPES[extension])


def page(request: Request, app: App) -> Response:
    """``GET /playground`` and ``GET /playground/``: the page (``index.html``)."""
    return _serve("index.html")


def asset(request: Request, app: App) -> Response:
    """``GET /playground/{file}``: one of the page's files (``app.js``, ``style.css``, ...)."""
    return _serve(request.params["file"])


ROUTES: List[Route] = [
    route("GET", "/playground", page),
    route("GET", "/playground/", page),
    route("GET", "/playground/{file}", asset),
]
"""The playground's endpoints: no auth, Langbase's error envelope."""
