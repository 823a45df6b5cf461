"""OpenAI Chat Completions routes: ``POST /v1/chat/completions`` (``chat.completion`` or its
``chat.completion.chunk`` stream) and ``GET /v1/models``, in OpenAI's API reference shapes, with
OpenAI's error body ``{"error": {"message", "type", "param", "code"}}`` and ``x-request-id``."""

from __future__ import annotations

from typing import List

import formats
import pipes
import runs
from api import SERVICE, App, JsonResponse, NotFound, Request, Response, Route, object_body, route

__all__ = ["ROUTES"]


def chat_completions(request: Request, app: App) -> Response:
    """``POST /v1/chat/completions``: OpenAI's ``chat.completion`` or its chunk stream."""
    data = object_body(request)
    run_request, model, include_usage = formats.parse_chat_completion(data)
    run = runs.prepare(app, request, run_request, data.get("mock"), wire="openai", model=model, live=True)
    runs.publish(app, run)
    encoder = formats.OpenAIChunkEncoder(run.reply.id, app.created, model, include_usage)
    if run_request.stream:
        return runs.stream(run, encoder, pipes.reply_events(run.reply))
    return JsonResponse(200, encoder.completion(run.reply), run.headers)


def _model_object(app: App) -> dict:
    return {"id": app.settings.model, "object": "model", "created": app.created, "owned_by": SERVICE}


def models(request: Request, app: App) -> Response:
    """``GET /v1/models``: ``{"object": "list", "data": [model objects]}`` with the mock's
    model (``{"id", "object": "model", "created", "owned_by"}``)."""
    return JsonResponse(200, {"object": "list", "data": [_model_object(app)]})


def model(request: Request, app: App) -> Response:
    """``GET /v1/models/{model}``: the model object, or 404 for another name."""
    name = request.params["model"]
    if name != app.settings.model:
        raise NotFound("The model %r does not exist; this mock serves %r (see --model)."
                       % (name, app.settings.model))
    return JsonResponse(200, _model_object(app))


ROUTES: List[Route] = [
    route("POST", "/v1/chat/completions", chat_completions, "openai", auth=True),
    route("GET", "/v1/models", models, "openai", auth=True),
    route("GET", "/v1/models/{model}", model, "openai", auth=True),
]
"""The OpenAI endpoints, with the ``--api-key`` rules and OpenAI's error body."""
