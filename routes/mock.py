"""The mock's own routes: ``GET /`` and ``GET /health`` (status), ``GET /mock/settings`` (every
scenario setting) and ``GET /mock/runs`` (the ground truth of recent runs). No auth; errors in
Langbase's envelope."""

from __future__ import annotations

import datetime
import time
from typing import List

import routes
import scenario
from api import SERVICE, VERSION, App, JsonResponse, NotFound, Request, Response, Route, route

__all__ = ["ROUTES"]


def status(request: Request, app: App) -> Response:
    """``GET /`` and ``GET /health``: ``{status, service, version, timestamp, uptime_seconds,
    threads, open_streams, connections, generations}`` (``timestamp``: the server's clock, ISO 8601 UTC with
    seconds); ``/`` adds ``scenario`` (the server-wide settings from ``--mock``, ``{name: value}``,
empty when none are set) and ``endpoints`` (``"METHOD /path/{param}"``)."""
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
        body["scenario"] = dict(app.settings.mock)
        body["endpoints"] = ["%s %s" % (r.method, r.path) for r in routes.ROUTES]
    return JsonResponse(200, body)


def mock_settings(request: Request, app: App) -> Response:
    """``GET /mock/settings``: every scenario setting with its type, default and allowed values."""
    return JsonResponse(200, {
        name: {"type": s.kind, "default": s.default, "allowed": s.allowed(), "help": s.help}
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
