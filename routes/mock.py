"""The mock's own routes: ``GET /`` and ``GET /health`` (status; ``/`` sends a browser to the
playground), ``GET /mock/settings`` (every scenario setting) and ``GET /mock/runs`` (the ground
truth of recent runs). No auth; errors in Langbase's envelope."""

from __future__ import annotations

import datetime
import time
from typing import List

import routes
import scenario
from api import SERVICE, VERSION, App, EmptyResponse, JsonResponse, NotFound, Request, Response, Route, route

__all__ = ["ROUTES"]


def wants_html(request: Request) -> bool:
    """True if the ``Accept`` header ranks ``text/html`` above ``application/json`` (RFC 9110
    12.5.1 quality values; a browser navigating), false for programs (``*/*``, none, JSON)."""
    ranks = {}
    for item in (request.headers.get("Accept") or "").split(","):
        media, _, params = item.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranks[media.strip().lower()] = quality
    return ranks.get("text/html", 0.0) > ranks.get("application/json", 0.0)


def status(request: Request, app: App) -> Response:
    """``GET /`` and ``GET /health``: ``{status, service, version, timestamp, uptime_seconds,
    threads, open_streams, connections, generations}`` (``timestamp``: the server's clock, ISO 8601 UTC with
    seconds); ``/`` adds ``endpoints`` (``"METHOD /path/{param}"``), or, for a browser
    (``wants_html``), is a 303 redirect to ``/playground``."""
    if request.path == "/" and wants_html(request):
        return EmptyResponse(303, [("Location", "/playground"), ("Vary", "Accept")])
    body = {
        "status": "healthy",
        "service": SERVICE,
        "version": VERSION,
        "timestamp": datetime.datetime.fromtimestamp(int(app.clock()), datetime.timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "uptime_seconds": round(time.monotonic() - app.started, 3),
        "threads": len(app.store),
        **app.load(),
        "generations": len(app.tokens),
    }
    if request.path == "/":
        body["endpoints"] = ["%s %s" % (r.method, r.path) for r in routes.ROUTES]
        return JsonResponse(200, body, [("Vary", "Accept")])
    return JsonResponse(200, body)


def mock_settings(request: Request, app: App) -> Response:
    """``GET /mock/settings``: every scenario setting, by name: ``{type, default, allowed
    (text), help, nullable (bool), choices (list of strings for an enum, else null), min, max
    (numbers; for a string the most characters; null for bool and enum)}``."""
    return JsonResponse(200, {
        name: {"type": s.kind, "default": s.default, "allowed": s.allowed(), "help": s.help,
               "nullable": s.nullable, "choices": list(s.choices) if s.kind == "enum" else None,
               "min": s.low if s.kind in ("int", "float", "str") else None,
               "max": s.high if s.kind in ("int", "float", "str") else None}
        for name, s in scenario.SETTINGS.items()
    })


def mock_runs(request: Request, app: App) -> Response:
    """``GET /mock/runs``: ``{"runs": [run ids, newest first]}``."""
    return JsonResponse(200, {"runs": app.runs.recent()})


def mock_run(request: Request, app: App) -> Response:
    """``GET /mock/runs/{runId}``: what that run's stream encoded (ground truth)."""
    run_id = request.params["runId"]
    record = app.runs.get(run_id)
    if record is None:
        raise NotFound("No run %r; the server keeps the last %d runs." % (run_id, app.runs.limit))
    return JsonResponse(200, dict(record, scenario=record["scenario"].as_dict()))


ROUTES: List[Route] = [
    route("GET", "/", status),
    route("GET", "/health", status),
    route("GET", "/mock/settings", mock_settings),
    route("GET", "/mock/runs", mock_runs),
    route("GET", "/mock/runs/{runId}", mock_run),
]
"""The mock's own endpoints: no auth, Langbase's error envelope."""
