"""Langbase routes: ``POST /v1/pipes/run`` and the Threads API (``/v1/threads``), as the
Langbase API documents them (request bodies, ``{completion, raw}``, the chunk stream with
``lb-thread-id``, thread and message objects). Every route here requires the bearer key rules
of ``--api-key`` and answers errors in Langbase's envelope."""

from __future__ import annotations

from typing import List

import pipes
import runs
from api import (
    App, BadRequest, JsonResponse, Request, Response, Route, json_body, object_body, path_thread_id, route,
)
from threads import check_thread_id, parse_messages, parse_metadata

__all__ = ["ROUTES"]


def pipes_run(request: Request, app: App) -> Response:
    """``POST /v1/pipes/run``: a reply as JSON or as an SSE stream, shaped by the scenario,
    stored in a thread, and recorded as ground truth under its run id."""
    data = object_body(request)
    run_request = pipes.parse_run_request(data)
    run = runs.prepare(app, request, run_request, data.get("mock"))
    thread_id = runs.store_run(app, run, run_request.thread_id, run_request.messages,
                               not app.settings.strict_threads)
    runs.publish(app, run)
    headers = [("lb-thread-id", thread_id)]
    encoder = pipes.ChunkEncoder(run.reply.id, app.created, app.settings.model)
    if run_request.stream:
        return runs.stream(run, encoder, pipes.reply_events(run.reply), headers=headers)
    return JsonResponse(200, pipes.completion_body(run.reply, encoder), headers + run.headers)


def threads_create(request: Request, app: App) -> Response:
    """``POST /v1/threads``: ``{threadId?, metadata?, messages?}`` → thread object."""
    data = object_body(request)
    thread_id = data.get("threadId")
    if thread_id is not None:
        check_thread_id(thread_id)
    metadata = parse_metadata(data["metadata"]) if data.get("metadata") is not None else {}
    messages = parse_messages(data["messages"], thread=True) if data.get("messages") is not None else []
    return JsonResponse(200, app.store.create(thread_id, metadata, messages))


def threads_get(request: Request, app: App) -> Response:
    """``GET /v1/threads/{threadId}`` → thread object."""
    return JsonResponse(200, app.store.get(path_thread_id(request.params["threadId"])))


def threads_update(request: Request, app: App) -> Response:
    """``POST /v1/threads/{threadId}`` with ``{metadata}`` → updated thread object."""
    data = object_body(request)
    if "metadata" not in data:
        raise BadRequest("metadata is required (an object of string values).")
    metadata = parse_metadata(data["metadata"])
    return JsonResponse(200, app.store.update(path_thread_id(request.params["threadId"]), metadata))


def threads_delete(request: Request, app: App) -> Response:
    """``DELETE /v1/threads/{threadId}`` → ``{"success": true}``."""
    app.store.delete(path_thread_id(request.params["threadId"]))
    return JsonResponse(200, {"success": True})


def messages_append(request: Request, app: App) -> Response:
    """``POST /v1/threads/{threadId}/messages`` with a bare array or ``{messages}``."""
    # An empty body appends nothing: the Python SDK sends no body for an empty list.
    data = json_body(request) if request.body.strip() else []
    if isinstance(data, dict):
        if "messages" not in data:
            raise BadRequest("Send a JSON array of messages, or an object {\"messages\": [...]}.")
        data = data["messages"]
    messages = parse_messages(data, thread=True)
    return JsonResponse(200, app.store.append(path_thread_id(request.params["threadId"]), messages))


def messages_list(request: Request, app: App) -> Response:
    """``GET /v1/threads/{threadId}/messages`` → message objects, oldest first."""
    return JsonResponse(200, app.store.list_messages(path_thread_id(request.params["threadId"])))


ROUTES: List[Route] = [
    route("POST", "/v1/pipes/run", pipes_run, auth=True),
    route("POST", "/v1/threads", threads_create, auth=True),
    route("GET", "/v1/threads/{threadId}", threads_get, auth=True),
    route("POST", "/v1/threads/{threadId}", threads_update, auth=True),
    route("DELETE", "/v1/threads/{threadId}", threads_delete, auth=True),
    route("GET", "/v1/threads/{threadId}/messages", messages_list, auth=True),
    route("POST", "/v1/threads/{threadId}/messages", messages_append, auth=True),
]
"""The Langbase endpoints, each with the ``--api-key`` rules and Langbase's error envelope."""
