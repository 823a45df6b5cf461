"""Langbase routes: ``POST /v1/pipes/run``, ``POST /v1/agent/run``, the Pipes API
(``/v1/pipes``), ``POST /v1/traces`` and the Threads API (``/v1/threads``), as the Langbase API
and the official SDKs' types document them (request bodies, ``{completion, raw}`` and
``{output, raw}``, the chunk stream with ``lb-thread-id``, pipe, thread and message objects).
Every ``/v1`` route here requires the bearer key rules of ``--api-key`` and answers errors in
Langbase's envelope; ``GET /mock/traces`` reads back the traces kept (no auth)."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import pipes
import runs
from api import (
    App, BadRequest, Conflict, JsonResponse, NotFound, Request, Response, Route, json_body, json_text_response,
    object_body, path_thread_id, route,
)
from stores import Pipe, PipeExists, PipeNotFound, check_model, check_pipe_name, parse_pipe_fields
from threads import InvalidRequest, check_thread_id, parse_messages, parse_metadata

__all__ = ["ROUTES", "parse_agent_request"]


def _named_pipe(request: Request, app: App, data: dict) -> Optional[Pipe]:
    """The stored pipe a run names: by ``name`` in the body, else by its ``api_key`` sent as
    the bearer key (as the SDKs send a pipe key). None when neither names a stored pipe."""
    name = data.get("name")
    if isinstance(name, str):
        return app.pipes.get(name)
    header = request.headers.get("Authorization") or ""
    if header.startswith("Bearer ") and len(app.pipes):
        return app.pipes.by_key(header[7:].strip())
    return None


def pipes_run(request: Request, app: App) -> Response:
    """``POST /v1/pipes/run``: a reply as JSON or as an SSE stream, shaped by the scenario,
    stored in a thread, and recorded as ground truth under its run id.

    A run that names a stored pipe (``name``, or the pipe's ``api_key`` as bearer key) gets
    that pipe's ``model`` in its chunks, its ``messages`` before the run's (they count in
    ``usage`` and the reply choice, and are not stored in the thread), its ``variables`` as
    defaults, its ``tools`` and ``tool_choice`` when the run sends no ``tools``, and its
    ``stream`` when the run sends no ``stream``. Any other ``name`` runs the built-in pipe."""
    data = object_body(request)
    pipe = _named_pipe(request, app, data)
    model = app.settings.model
    if pipe is not None:
        config, model = pipe.config, pipe.config["model"]
        data = dict(data)
        if data.get("tools") is None:
            data["tools"], data["tool_choice"] = config["tools"], data.get("tool_choice") or config["tool_choice"]
        if data.get("stream") is None:
            data["stream"] = config["stream"]
    run_request = pipes.parse_run_request(data)
    reply_request = run_request
    if pipe is not None:
        messages, variables = pipe.prompt()
        reply_request = run_request._replace(messages=messages + run_request.messages,
                                             variables=dict(variables, **run_request.variables))
    run = runs.prepare(app, request, reply_request, data.get("mock"), model=model,
                       pipe=pipe.config["name"] if pipe is not None else data.get("name"), live=True)
    thread_id = runs.store_run(app, run, run_request.thread_id, run_request.messages,
                               not app.settings.strict_threads)
    runs.publish(app, run)
    headers = [("lb-thread-id", thread_id)]
    encoder = pipes.ChunkEncoder(run.reply.id, app.created, model)
    if run_request.stream:
        return runs.stream(run, encoder, pipes.reply_events(run.reply), headers=headers)
    return JsonResponse(200, pipes.completion_body(run.reply, encoder), headers + run.headers)


def parse_agent_request(body: Any) -> Tuple[pipes.RunRequest, str]:
    """Validate a ``POST /v1/agent/run`` body (the SDKs' ``AgentRunOptions``) and return
    ``(run request, model)``.

    ``model`` (``stores.check_model``: ``"provider:model-id"``) and ``input`` (a string, taken as
    one ``user`` message, or a non-empty array of messages) are required; ``instructions``
    (string or null) becomes a ``system`` message before the input; ``stream``, ``tools`` and
    ``tool_choice`` are checked as on ``POST /v1/pipes/run``. Everything else (``apiKey``,
    sampling fields, ``parallel_tool_calls``, ``response_format``, ``mcp_servers``…) is
    accepted and ignored, and nothing of the body is kept. Runs have no thread: the SDKs'
    agent options carry no ``threadId``.

    Raises:
        InvalidRequest: naming the first bad field.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise InvalidRequest("model is required: \"provider:model-id\", e.g. \"openai:gpt-4o-mini\"", "model")
    check_model(model)
    value = body.get("input")
    if value is None:
        raise InvalidRequest("input is required: a string or an array of messages", "input")
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    elif not isinstance(value, list) or not value:
        raise InvalidRequest("input must be a string or a non-empty array of messages", "input")
    messages = parse_messages(value, "input")
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("instructions must be a string", "instructions")
        messages = parse_messages([{"role": "system", "content": instructions}]) + messages
    request = pipes.parse_run_request({"messages": messages, "stream": body.get("stream"),
                                       "tools": body.get("tools"), "tool_choice": body.get("tool_choice")})
    return request, model


def agent_run(request: Request, app: App) -> Response:
    """``POST /v1/agent/run``: the same reply, scenario and faults as ``POST /v1/pipes/run``,
    with the request's ``model`` in the chunks; the stream is the same chunk SSE (no
    ``lb-thread-id``: nothing is stored), the JSON answer ``{"output": str, "raw":
    chat.completion}`` (``output`` is ``""`` for a tool call). The LLM key (``apiKey``,
    header ``LB-LLM-Key``) is neither checked, kept nor sent back."""
    data = object_body(request)
    run_request, model = parse_agent_request(data)
    run = runs.prepare(app, request, run_request, data.get("mock"), wire="agent", model=model, live=True)
    runs.publish(app, run)
    encoder = pipes.ChunkEncoder(run.reply.id, app.created, model)
    if run_request.stream:
        return runs.stream(run, encoder, pipes.reply_events(run.reply))
    return JsonResponse(200, {"output": run.reply.text or "", "raw": encoder.completion(run.reply)}, run.headers)


def _pipe_error(exc: Exception) -> Exception:
    """``PipeExists`` as 409 ``CONFLICT``, ``PipeNotFound`` as 404 ``NOT_FOUND``."""
    return Conflict(str(exc)) if isinstance(exc, PipeExists) else NotFound(str(exc))


def pipes_list(request: Request, app: App) -> Response:
    """``GET /v1/pipes``: every pipe's full configuration (``PipeListResponse``), oldest first
    (joined from kept JSON texts, see ``stores.PipeStore.listing_json``)."""
    return json_text_response(app.pipes.listing_json())


def pipes_create(request: Request, app: App) -> Response:
    """``POST /v1/pipes``: ``{name, upsert?, ...configuration}`` → ``{name, description,
    status, owner_login, url, type, api_key}``; an existing ``name`` is a 409 ``CONFLICT``
    unless ``upsert`` is true, which updates it."""
    data = object_body(request)
    if data.get("name") is None:
        raise BadRequest("name is required (the pipe's name).", param="name")
    name = check_pipe_name(data["name"])
    upsert = data.get("upsert", False)
    if not isinstance(upsert, bool):
        raise BadRequest("upsert must be a boolean.", param="upsert")
    current = app.pipes.get(name) if upsert else None
    fields = parse_pipe_fields(data, current.config if current else None)
    try:
        return JsonResponse(200, app.pipes.create(name, fields, upsert).summary())
    except PipeExists as exc:
        raise _pipe_error(exc) from None


def pipes_update(request: Request, app: App) -> Response:
    """``POST /v1/pipes/{name}``: the configuration fields sent are set (a different ``name``
    in the body renames the pipe) → ``{name, description, status, owner_login, url, type,
    api_key}``; an unknown pipe is a 404 ``NOT_FOUND``."""
    data = object_body(request)
    name = request.params["name"]
    current = app.pipes.get(name)
    if current is None:
        raise _pipe_error(PipeNotFound(name))
    new_name = check_pipe_name(data["name"]) if data.get("name") is not None else None
    fields = parse_pipe_fields(data, current.config)
    try:
        return JsonResponse(200, app.pipes.update(name, fields, new_name).summary())
    except (PipeExists, PipeNotFound) as exc:
        raise _pipe_error(exc) from None


TRACE_KINDS = ("workflow", "agent", "chunk", "memory", "parse", "embed")
"""The trace kinds the JS SDK's ``TraceManager`` builds: a trace is ``{<kind>: {...}}``."""


def traces_create(request: Request, app: App) -> Response:
    """``POST /v1/traces``: a trace as the JS SDK's ``workflow().end()`` posts it (``{workflow:
    {id, name, createdAt, startTime, endTime, duration, agentWorkflowId, steps}, entityAuthId}``,
    or another kind of ``TRACE_KINDS``) → ``{"success": true, "id": <the trace's id>}``. The
    trace is kept, with the last ones (``GET /mock/traces``)."""
    data = object_body(request)
    kinds = [kind for kind in TRACE_KINDS if isinstance(data.get(kind), dict)]
    if len(kinds) != 1:
        raise BadRequest("A trace is an object with exactly one of %s holding an object, e.g. "
                         "{\"workflow\": {\"id\": ..., \"steps\": [...]}}." % ", ".join(TRACE_KINDS))
    trace_id = data[kinds[0]].get("id")
    if not isinstance(trace_id, str) or not trace_id:
        trace_id = app.new_id()
    app.traces.add({"id": trace_id, "received_at": int(app.clock()), "trace": data})
    return JsonResponse(200, {"success": True, "id": trace_id})


def mock_traces(request: Request, app: App) -> Response:
    """``GET /mock/traces``: ``{"traces": [{id, received_at, trace}, ...]}``, newest first
    (joined from the kept JSON texts, see ``stores.TraceLog``)."""
    return json_text_response(app.traces.recent_json())


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
    route("POST", "/v1/agent/run", agent_run, auth=True),
    route("GET", "/v1/pipes", pipes_list, auth=True),
    route("POST", "/v1/pipes", pipes_create, auth=True),
    route("POST", "/v1/pipes/{name}", pipes_update, auth=True),
    route("POST", "/v1/traces", traces_create, auth=True),
    route("GET", "/mock/traces", mock_traces),
    route("POST", "/v1/threads", threads_create, auth=True),
    route("GET", "/v1/threads/{threadId}", threads_get, auth=True),
    route("POST", "/v1/threads/{threadId}", threads_update, auth=True),
    route("DELETE", "/v1/threads/{threadId}", threads_delete, auth=True),
    route("GET", "/v1/threads/{threadId}/messages", messages_list, auth=True),
    route("POST", "/v1/threads/{threadId}/messages", messages_append, auth=True),
]
"""The Langbase endpoints, each with the ``--api-key`` rules and Langbase's error envelope
(``/mock/traces`` without auth, as the mock's other ``/mock`` routes)."""
