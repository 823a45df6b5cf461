"""``GET /openapi.json``: an OpenAPI 3.1 document of every route, generated at request time from
the route table (``routes.ROUTES``: method, path template, error style, auth), the scenario
settings table (``scenario.SETTINGS``: the ``X-Mock-*`` headers and the body's ``mock`` object)
and the request and response schemas below, so it cannot drift from what is served.

Schemas are JSON Schema 2020-12 (what OpenAPI 3.1 uses). A route with no entry in ``SCHEMAS``
still appears, with any JSON body and any JSON answer, so a route added elsewhere is described
at once and can be made precise later by adding its entry here. Error bodies are described per
error style (``api.ApiError.body``); ``4XX`` and ``5XX`` answers carry the route's style, and a
503 or 429 may carry ``Retry-After``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import fixtures
import journal
import memory
import scenario
import stores
from routes import frontends, playground, tools
from api import SERVICE, VERSION, App, JsonResponse, Request, Response, Route, route

__all__ = ["ROUTES", "SCHEMAS", "document"]

_ANY: Dict[str, Any] = {}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_OBJ = {"type": "object"}
_STR_MAP = {"type": "object", "additionalProperties": _STR}


def _obj(required: Tuple[str, ...] = (), **properties: Any) -> dict:
    """An object schema with ``properties``, of which ``required`` must be present; other keys
    allowed (the mock ignores unknown request keys, and answers may grow)."""
    out: Dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def _ref(name: str) -> dict:
    return {"$ref": "#/components/schemas/%s" % name}


_ARRAY_OF = lambda item: {"type": "array", "items": item}  # noqa: E731
_NULL_OR = lambda schema: {"anyOf": [schema, {"type": "null"}]}  # noqa: E731
_COUNT = {"type": "integer", "minimum": 0}
_NUMBER = {"type": "number"}
_BOOL = {"type": "boolean"}
_NAME_RULE = {"anyOf": [_STR, _ARRAY_OF(_STR)]}
_PIPE_FIELDS: Dict[str, Any] = {
    "description": _STR, "status": {"enum": ["public", "private"]}, "model": _STR, "stream": _BOOL,
    "json": _BOOL, "store": _BOOL, "moderate": _BOOL, "top_p": _NUMBER, "max_tokens": _INT,
    "temperature": _NUMBER, "presence_penalty": _NUMBER, "frequency_penalty": _NUMBER, "stop": _ARRAY_OF(_STR),
    "tool_choice": {"type": ["string", "object"]}, "parallel_tool_calls": _BOOL,
    "messages": _ARRAY_OF(_ref("Message")), "variables": _ARRAY_OF(_obj(("name", "value"), name=_STR, value=_STR)),
    "tools": _ARRAY_OF(_OBJ), "memory": _ARRAY_OF(_obj(("name",), name=_STR)),
}
"""A stored pipe's configuration fields (``stores.PIPE_DEFAULTS``) as ``GET /v1/pipes`` lists them."""
_PIPE_HEAD = dict(name=_STR, description=_STR, status={"enum": ["public", "private"]},
                  owner_login={"const": stores.OWNER_LOGIN}, url=_STR)
_FILE_HEADERS = {
    "Cache-Control": {"schema": {"const": "no-cache"}, "description": "Revalidate: an edited file shows on reload"},
    "X-Content-Type-Options": {"schema": {"const": "nosniff"}},
    "Content-Security-Policy": {"schema": {"const": playground.PAGE_POLICY}, "description": "HTML files only"},
}
"""Headers of a playground file (``routes.playground``)."""
_MEMORY_HEAD = dict(name=_STR, description=_STR, owner_login={"const": stores.OWNER_LOGIN}, url=_STR)

COMPONENTS: Dict[str, Any] = {
    "Message": _obj(("role",), role={"enum": ["system", "user", "assistant", "tool"]},
                    content={"type": ["string", "array", "null"]}, name={"type": ["string", "null"]},
                    tool_call_id={"type": ["string", "null"]}, tool_calls=_ARRAY_OF(_OBJ)),
    "Thread": _obj(("id", "object", "created_at", "metadata"), id=_STR, object={"const": "thread"},
                   created_at=_INT, metadata=_STR_MAP),
    "ThreadMessage": _obj(("id", "created_at", "thread_id", "role", "content"), id=_STR, created_at=_INT,
                          thread_id=_STR, role=_STR, content={"type": ["string", "array", "null"]},
                          name={"type": ["string", "null"]}, tool_call_id={"type": ["string", "null"]},
                          tool_calls=_ARRAY_OF(_OBJ), attachments={"type": "array"}, metadata=_STR_MAP),
    "Health": _obj(("status", "service", "version", "timestamp", "uptime_seconds", "threads", "open_streams",
                    "connections"), status={"const": "healthy"}, service={"const": SERVICE}, version=_STR,
                   timestamp=_STR, uptime_seconds={"type": "number"}, threads=_INT, open_streams=_INT,
                   connections=_INT, generations=_INT, endpoints=_ARRAY_OF(_STR)),
    "Success": _obj(("success",), success={"const": True}),
    "LangbaseError": _obj(("error",), error=_obj(("code", "status", "message"), code=_STR, status=_INT,
                                                 message=_STR, docs=_STR)),
    "OpenAIError": _obj(("error",), error=_obj(("message", "type"), message=_STR, type=_STR,
                                               param={"type": ["string", "null"]},
                                               code={"type": ["string", "null"]})),
    "LobeError": _obj(("errorType",), errorType=_STR, body=_ANY),
    "PlainError": _obj(("error",), error=_STR),
    "Usage": _obj(("prompt_tokens", "completion_tokens", "total_tokens"), prompt_tokens=_COUNT,
                  completion_tokens=_COUNT, total_tokens=_COUNT),
    "ToolCall": _obj(("id", "type", "function"), id=_STR, type={"const": "function"},
                     function=_obj(("name", "arguments"), name=_STR, arguments=_STR)),
    "ChatCompletion": _obj(("id", "object", "created", "model", "choices", "usage"), id=_STR,
                           object={"const": "chat.completion"}, created=_INT, model=_STR,
                           system_fingerprint={"type": "null"},
                           choices={"type": "array", "minItems": 1, "items": _obj(
                               ("index", "message", "finish_reason"), index=_INT, logprobs={"type": "null"},
                               finish_reason={"enum": ["stop", "tool_calls"]},
                               message=_obj(("role", "content"), role={"const": "assistant"},
                                            content={"type": ["string", "null"]},
                                            tool_calls=_ARRAY_OF(_ref("ToolCall"))))},
                           usage=_ref("Usage")),
    "Pipe": _obj(tuple(dict.fromkeys(("name", "description", "status", "owner_login", "url")
                                     + tuple(stores.PIPE_DEFAULTS))),
                 **dict(_PIPE_HEAD, **_PIPE_FIELDS), response_format=_OBJ),
    "PipeSummary": _obj(("name", "description", "status", "owner_login", "url", "type", "api_key"), **_PIPE_HEAD,
                        type={"const": "chat"}, api_key={"type": "string", "pattern": "^pipe_[0-9a-f]{32}$"}),
    "FixtureRules": {"type": "object", "additionalProperties": False, "properties": dict(
        {key: _STR for key in ("user", "user_contains", "user_regex", "system", "system_contains", "system_regex",
                               "pipe", "model")},
        wire={"anyOf": [{"enum": list(fixtures.WIRES)}, _ARRAY_OF({"enum": list(fixtures.WIRES)})]},
        route=_NAME_RULE, variables=_STR_MAP, tools=_BOOL, tool_result=_BOOL,
        turn={"type": "integer", "minimum": 1}, nth={"type": "integer", "minimum": 1})},
    "FixtureResponse": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "description": "At most one of text, chunks, tool_calls, error; delays only with chunks",
        "properties": {
            "text": _STR,
            "chunks": _ARRAY_OF({"type": "string", "minLength": 1}),
            "delays": _ARRAY_OF({"type": "number", "minimum": 0, "maximum": fixtures.MAX_DELAY_SECONDS}),
            "tool_calls": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1}, "id": _STR,
                               "arguments": {"type": ["object", "string"]}}}},
            "error": {"type": "object", "additionalProperties": False, "required": ["status"],
                      "properties": {"status": {"type": "integer", "minimum": 400, "maximum": 599},
                                     "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,63}$"},
                                     "message": _STR}},
            "mock": {"$ref": "#/components/schemas/Scenario", "type": "object"}}},
    "Fixture": {"type": "object", "additionalProperties": False, "required": ["response"],
                "properties": {"name": _STR, "match": _ref("FixtureRules"), "response": _ref("FixtureResponse")}},
    "FixtureSummary": _obj(("name", "source", "matched", "match", "response"), name=_STR, source=_STR,
                           matched=_COUNT, match=_ref("FixtureRules"), response=_ref("FixtureResponse")),
    "JournalEntry": _obj(("seq", "time", "method", "path", "query", "headers", "body", "body_truncated", "status",
                          "run_id", "fixture", "request_id"),
                         seq={"type": "integer", "minimum": 1}, time=_NUMBER, method=_STR, path=_STR, query=_STR,
                         headers=_ARRAY_OF({"type": "array", "prefixItems": [_STR, _STR], "items": False,
                                            "minItems": 2}),
                         body=_ANY, body_truncated=_BOOL, status=_INT, run_id={"type": ["string", "null"]},
                         fixture={"type": ["string", "null"]}, request_id=_STR),
    "Deleted": _obj(("deleted",), deleted=_COUNT),
    "Model": _obj(("id", "object", "created", "owned_by"), id=_STR, object={"const": "model"}, created=_INT,
                  owned_by=_STR),
    "RunRecord": _obj(("run_id", "format", "seed", "stream", "thread_id", "id", "created", "model", "text", "deltas",
                       "tool_calls", "usage", "finish_reason", "fault", "scenario", "fixture"),
                      run_id=_STR, format={"enum": list(fixtures.WIRES)}, seed=_INT, stream=_BOOL,
                      thread_id={"type": ["string", "null"]}, id=_STR, created=_INT, model=_STR,
                      text={"type": ["string", "null"]}, deltas=_ARRAY_OF(_STR), tool_calls=_ARRAY_OF(_ref("ToolCall")),
                      usage=_ref("Usage"), finish_reason={"enum": ["stop", "tool_calls", None]},
                      fault={"type": ["string", "null"]},
                      scenario={"$ref": "#/components/schemas/Scenario", "type": "object",
                                "required": list(scenario.SETTINGS)},
                      fixture={"type": ["string", "null"]}, message_id=_STR,
                      error=_obj(("status", "code", "message"), status=_INT, code=_STR, message=_STR)),
}
"""Shared schemas (``#/components/schemas/<name>``); the mock ``Scenario`` object is added from
``scenario.SETTINGS`` by ``document``."""

ERROR_SCHEMAS = {"langbase": "LangbaseError", "openai": "OpenAIError", "lobe": "LobeError", "plain": "PlainError"}
"""Each route error style's body schema (``api.ApiError.body``)."""

_RUN_BODY = _obj(messages=_ARRAY_OF(_ref("Message")), stream={"type": "boolean"}, threadId=_STR, thread_id=_STR,
                 name=_STR, variables={"type": ["object", "array"]}, tools=_ARRAY_OF(_OBJ),
                 tool_choice={"type": ["string", "object"]}, mock=_ref("Scenario"))
_CHAT_BODY = _obj(("messages",), model={"type": "string", "minLength": 1, "maxLength": 256},
                  messages=_ARRAY_OF(_ref("Message")), stream={"type": "boolean"}, tools=_ARRAY_OF(_OBJ),
                  mock=_ref("Scenario"))

SCHEMAS: Dict[Tuple[str, str], Dict[str, Any]] = {
    ("GET", "/"): {"summary": "Status and the list of endpoints", "200": _ref("Health"),
                   "303": "A browser (Accept ranks text/html above JSON) is sent to /playground"},
    ("GET", "/health"): {"summary": "Status", "200": _ref("Health")},
    ("GET", "/openapi.json"): {"summary": "This document (OpenAPI 3.1)",
                               "200": _obj(("openapi", "info", "paths", "components"), openapi={"const": "3.1.0"},
                                           info=_obj(("title", "version"), title=_STR, version=_STR),
                                           paths=_OBJ, components=_OBJ)},
    ("GET", "/mock/settings"): {"summary": "Every scenario setting: type, default, allowed values",
                                "200": {"type": "object", "additionalProperties": _obj(
                                    ("type", "default", "allowed", "help", "nullable", "choices", "min", "max"),
                                    type={"enum": ["float", "int", "bool", "enum", "str"]}, allowed=_STR, help=_STR,
                                    nullable=_BOOL, choices={"type": ["array", "null"], "items": _STR},
                                    min={"type": ["number", "null"]}, max={"type": ["number", "null"]})}},
    ("GET", "/mock/runs"): {"summary": "Recent run ids, newest first", "200": _obj(("runs",), runs=_ARRAY_OF(_STR))},
    ("GET", "/mock/runs/{runId}"): {"summary": "A run's ground truth", "200": _ref("RunRecord")},
    ("GET", "/mock/fixtures"): {"summary": "The fixtures in force, in matching order (pushed first)",
                                "200": _obj(("path", "strict", "fixtures"), path={"type": ["string", "null"]},
                                            strict=_BOOL, fixtures=_ARRAY_OF(_ref("FixtureSummary")))},
    ("POST", "/mock/fixtures"): {"summary": "Push fixtures (before the file's); 400 names the line and column of "
                                            "the first problem, 403 past the bounds, nothing added",
                                 "status": "201",
                                 "body": {"oneOf": [_ref("Fixture"), {"type": "array", "items": _ref("Fixture"),
                                                                      "maxItems": fixtures.MAX_PUSHED},
                                                    {"type": "object", "additionalProperties": False,
                                                     "required": ["fixtures"],
                                                     "properties": {"fixtures": {"type": "array",
                                                                                 "items": _ref("Fixture"),
                                                                                 "maxItems": fixtures.MAX_PUSHED}}}]},
                                 "200": _obj(("added", "fixtures"), added=_COUNT,
                                             fixtures=_ARRAY_OF(_ref("FixtureSummary")))},
    ("DELETE", "/mock/fixtures"): {"summary": "Drop the pushed fixtures and restart every nth count",
                                   "200": _ref("Deleted")},
    ("GET", "/mock/requests"): {"summary": "The request journal, newest first, secrets masked; 400 for an unknown "
                                           "filter or a status or limit that is not a whole number",
                                "filters": True, "200": _obj(("requests",), requests=_ARRAY_OF(_ref("JournalEntry")))},
    ("DELETE", "/mock/requests"): {"summary": "Empty the request journal", "200": _ref("Deleted")},
    ("POST", "/mock/reset"): {"summary": "Forget everything tests create (settings and fixture files stay)",
                              "no_body": True,
                              "200": _obj(("reset",), reset=_obj(
                                  ("threads", "runs", "requests", "fixtures", "pipes", "memories", "traces",
                                   "generations"), **{name: _COUNT for name in (
                                       "threads", "runs", "requests", "fixtures", "pipes", "memories", "traces",
                                       "generations")}))},
    ("GET", "/playground"): {"summary": "The browser playground (HTML)", "media": ["text/html"],
                             "headers": _FILE_HEADERS},
    ("GET", "/playground/"): {"summary": "The browser playground (HTML)", "media": ["text/html"],
                              "headers": _FILE_HEADERS},
    ("GET", "/playground/{file}"): {"summary": "One of the playground's files (app.js, style.css, ...)",
                                    "media": sorted(set(c.split(";")[0] for c in playground.CONTENT_TYPES.values())),
                                    "headers": _FILE_HEADERS},
    ("POST", "/v1/pipes/run"): {"summary": "Run a pipe: JSON {completion, raw} or an SSE chunk stream",
                                "body": _RUN_BODY, "stream": True, "scenario": True, "thread_header": True,
                                "200": _obj(("completion", "raw"), completion=_STR, raw=_ref("ChatCompletion"))},
    ("POST", "/v1/agent/run"): {"summary": "Run an agent: JSON {output, raw} or an SSE chunk stream",
                                "body": _obj(("model", "input"), model={"type": "string", "minLength": 1,
                                                                        "maxLength": 256},
                                             input={"type": ["string", "array"]}, stream={"type": "boolean"},
                                             mock=_ref("Scenario")),
                                "stream": True, "scenario": True,
                                "200": _obj(("output", "raw"), output={"type": ["string", "null"]},
                                            raw=_ref("ChatCompletion"))},
    ("GET", "/v1/pipes"): {"summary": "Pipes kept, oldest first", "200": _ARRAY_OF(_ref("Pipe"))},
    ("POST", "/v1/pipes"): {"summary": "Create a pipe (upsert: update it if it exists)",
                            "body": _obj(("name",), name={"type": "string", "pattern": stores.PIPE_NAME_RE.pattern},
                                         upsert=_BOOL, **_PIPE_FIELDS, response_format=_OBJ),
                            "200": _ref("PipeSummary")},
    ("POST", "/v1/pipes/{name}"): {"summary": "Update a pipe (a new name renames it)",
                                   "body": _obj(name={"type": "string", "pattern": stores.PIPE_NAME_RE.pattern},
                                                **_PIPE_FIELDS, response_format=_OBJ),
                                   "200": _ref("PipeSummary")},
    ("POST", "/v1/threads"): {"summary": "Create a thread", "body": _obj(
        threadId=_STR, metadata=_STR_MAP, messages=_ARRAY_OF(_ref("Message"))), "200": _ref("Thread")},
    ("GET", "/v1/threads/{threadId}"): {"summary": "A thread", "200": _ref("Thread")},
    ("POST", "/v1/threads/{threadId}"): {"summary": "Merge metadata into a thread",
                                         "body": _obj(("metadata",), metadata=_STR_MAP), "200": _ref("Thread")},
    ("DELETE", "/v1/threads/{threadId}"): {"summary": "Delete a thread", "200": _ref("Success")},
    ("GET", "/v1/threads/{threadId}/messages"): {"summary": "A thread's messages, oldest first",
                                                 "200": _ARRAY_OF(_ref("ThreadMessage"))},
    ("POST", "/v1/threads/{threadId}/messages"): {"summary": "Append messages",
                                                  "body": {"type": ["array", "object"]},
                                                  "200": _ARRAY_OF(_ref("ThreadMessage"))},
    ("POST", "/v1/memory"): {"summary": "Create a memory",
                             "body": _obj(("name",), name=_STR, description={"type": "string", "maxLength": 1000},
                                          embedding_model=_STR, top_k={"type": "integer",
                                                                       "minimum": memory.RETRIEVE_TOP_K[0],
                                                                       "maximum": memory.RETRIEVE_TOP_K[1]},
                                          chunk_size=_INT, chunk_overlap=_INT),
                             "200": _obj(("name", "description", "owner_login", "url", "chunk_size", "chunk_overlap",
                                          "embedding_model"), **_MEMORY_HEAD, chunk_size=_INT, chunk_overlap=_INT,
                                         embedding_model=_STR)},
    ("GET", "/v1/memory"): {"summary": "Memories, oldest first", "200": _ARRAY_OF(_obj(
        ("name", "description", "owner_login", "url", "embedding_model", "embeddingModel"), **_MEMORY_HEAD,
        embedding_model=_STR, embeddingModel=_STR))},
    ("POST", "/v1/memory/retrieve"): {"summary": "Best chunks for a query", "200": _ARRAY_OF(
        _obj(("text", "similarity", "meta"), text=_STR, similarity={"type": "number"}, meta=_STR_MAP))},
    ("POST", "/v1/memory/documents"): {"summary": "A signed URL to PUT a document to",
                                       "body": _obj(("memoryName", "fileName"), memoryName=_STR, fileName=_STR,
                                                    meta=_STR_MAP),
                                       "200": _obj(("signedUrl",), signedUrl=_STR)},
    ("PUT", "/v1/memory/uploads/{token}"): {"summary": "Upload a document's bytes (the signed URL)",
                                            "body_type": "application/octet-stream", "200": None},
    ("DELETE", "/v1/memory/{name}"): {"summary": "Delete a memory", "200": _ref("Success")},
    ("GET", "/v1/memory/{name}/documents"): {"summary": "A memory's documents, in upload order", "200": _ARRAY_OF(
        _obj(("name", "status", "status_message", "metadata", "enabled", "chunk_size", "chunk_overlap",
              "owner_login"), name=_STR, status={"enum": ["queued", "in_progress", "completed", "failed"]},
             status_message={"type": ["string", "null"]},
             metadata=_obj(("size", "type"), size=_COUNT, type=_STR), enabled=_BOOL, chunk_size=_INT,
             chunk_overlap=_INT, owner_login={"const": stores.OWNER_LOGIN}))},
    ("DELETE", "/v1/memory/{name}/documents/{documentName}"): {"summary": "Delete a document",
                                                               "200": _ref("Success")},
    ("GET", "/v1/memory/{name}/documents/{documentName}/embeddings/retry"): {"summary": "Process a document again",
                                                                            "200": _ref("Success")},
    ("POST", "/v1/chunker"): {"summary": "Split text into chunks", "body": _obj(("content",), content=_STR),
                              "200": _ARRAY_OF(_STR)},
    ("POST", "/v1/embed"): {"summary": "One unit vector per chunk", "body": _obj(("chunks",), chunks=_ARRAY_OF(_STR)),
                            "200": _ARRAY_OF(_ARRAY_OF({"type": "number"}))},
    ("POST", "/v1/parser"): {"summary": "The text of an uploaded file", "body_type": "multipart/form-data",
                             "200": _obj(("documentName", "content"), documentName=_STR, content=_STR)},
    ("POST", "/v1/tools/web-search"): {"summary": "Made-up search results", "body": _obj(("query",), query=_STR),
                                       "200": _ARRAY_OF(_obj(("url", "content"), url=_STR, content=_STR))},
    ("POST", "/v1/tools/crawl"): {"summary": "Made-up crawled pages", "body": _obj(("url",), url=_ARRAY_OF(_STR)),
                                  "200": _ARRAY_OF(_obj(("url", "content"), url=_STR, content=_STR))},
    ("POST", "/v1/images"): {"summary": "Generated PNG images as data URLs",
                             "body": _obj(("prompt", "model"), prompt=_STR, model=_STR,
                                          width={"type": "integer", "minimum": 1, "maximum": 8192},
                                          height={"type": "integer", "minimum": 1, "maximum": 8192},
                                          n={"type": "integer", "minimum": 1, "maximum": tools.MAX_IMAGES}),
                             "200": _obj(("id", "provider", "model", "object", "created", "choices", "usage"),
                                         id=_STR, provider=_STR, model=_STR, object={"const": "chat.completion"},
                                         created=_INT, usage=_ref("Usage"), choices={
                                             "type": "array", "minItems": 1, "maxItems": 1, "items": _obj(
                                                 ("index", "finish_reason", "message"), index=_INT,
                                                 finish_reason={"const": "stop"}, message=_obj(
                                                     ("role", "content", "images"), role={"const": "assistant"},
                                                     content=_STR, images={
                                                         "type": "array", "minItems": 1,
                                                         "maxItems": tools.MAX_IMAGES, "items": _obj(
                                                             ("type", "image_url", "index"),
                                                             type={"const": "image_url"}, index=_INT,
                                                             image_url=_obj(("url",), url={
                                                                 "type": "string",
                                                                 "pattern": "^data:image/png;base64,"}))}))})},
    ("POST", "/v1/chat/completions"): {"summary": "OpenAI Chat Completions: JSON or chunk stream",
                                       "body": _CHAT_BODY, "stream": True, "scenario": True,
                                       "200": _ref("ChatCompletion")},
    ("GET", "/v1/models"): {"summary": "The mock's model", "200": _obj(("object", "data"), object={"const": "list"},
                                                                       data=_ARRAY_OF(_ref("Model")))},
    ("GET", "/v1/models/{model}"): {"summary": "A model", "200": _ref("Model")},
    ("POST", "/api/chat"): {"summary": "Lobe Chat's stream protocol", "body": _CHAT_BODY, "stream": True,
                            "scenario": True},
    ("POST", "/api/stream"): {"summary": "Message-lifecycle events", "stream": True, "scenario": True},
    ("GET", "/api/events"): {"summary": "EventSource stream with resume", "stream": True, "scenario": True,
                             "204": True, "query": True},
    ("GET", "/events"): {"summary": "EventSource message stream", "stream": True, "scenario": True, "204": True,
                         "query": True},
    ("GET", "/hello"): {"summary": "EventSource message stream", "stream": True, "scenario": True, "204": True,
                        "query": True},
    ("POST", "/api/generate"): {"summary": "Start a resumable token generation", "scenario": True, "status": "202",
                                "body": _obj(("sessionId", "chatMessageId"), sessionId=_STR, chatMessageId=_STR),
                                "200": _obj(("sessionId", "chatMessageId", "status", "stream", "runId"),
                                            sessionId=_STR, chatMessageId=_STR, status={"const": "started"},
                                            stream=_STR, runId=_STR)},
    ("POST", "/v1/traces"): {"summary": "Keep a trace (as the JS SDK posts one)", "body": _OBJ,
                             "200": _obj(("success", "id"), success={"const": True}, id=_STR)},
    ("GET", "/mock/traces"): {"summary": "Traces kept, newest first", "200": _obj(("traces",), traces=_ARRAY_OF(
        _obj(("id", "received_at", "trace"), id=_STR, received_at=_INT, trace=_OBJ)))},
    ("GET", "/api/stream/{sessionId}/{chatMessageId}"): {"summary": "Follow a token generation", "stream": True,
                                                         "scenario": True},
}
"""Per route (``(method, path template)``): ``summary``; ``body`` (request JSON schema) or
``body_type`` (another media type); ``200`` (the JSON answer's schema; ``None``: an empty body;
absent: any JSON), answered with ``status`` (default ``"200"``); ``media`` (the answer is a
file of one of these media types instead of JSON); ``no_body`` (true: a POST that reads no
body); ``filters`` (true: the ``journal.FILTERS`` query parameters); ``204`` (true: may also
answer 204, no body: a stream already delivered in full); ``303`` (a description: may answer a
303 redirect with ``Location``); ``stream`` (true: may answer ``text/event-stream`` instead, e.g. with
``stream: true``); ``scenario`` (true: ``X-Mock-*`` headers apply); ``thread_header`` (the answer
carries ``lb-thread-id``); ``headers`` (more response headers: OpenAPI header objects); ``query`` (an ``EventSource`` route: ``prompt``, ``payload`` and every
scenario setting may come in the query string, as a browser's ``EventSource`` cannot send
headers)."""


_JOURNAL_FILTERS: Dict[str, Any] = {
    "method": dict(_STR, description="HTTP method, any case"), "path": dict(_STR, description="Exact path"),
    "path_prefix": dict(_STR, description="Path starts with"), "status": {"type": "integer", "minimum": 0, "maximum": 999999999, "description": "HTTP status"},
    "run_id": dict(_STR, description="The run's id (GET /mock/runs)"),
    "fixture": dict(_STR, description="The name of the fixture that answered"),
    "limit": {"type": "integer", "minimum": 0, "maximum": 999999999, "description": "Most entries returned"},
}
"""``GET /mock/requests`` query parameters (``journal.FILTERS``, ``journal.Journal.select``)."""


def setting_schema(setting: scenario.Setting, header: bool = False) -> dict:
    """The JSON schema of one scenario setting's value (``scenario.Setting``); as a header
    (``header``) a value is text, so numbers and booleans are given as strings of that form."""
    if setting.kind == "enum":
        schema: Dict[str, Any] = {"enum": list(setting.choices)}
    elif setting.kind == "bool":
        schema = {"enum": ["true", "false"]} if header else {"type": "boolean"}
    elif setting.kind == "str":
        schema = {"type": "string", "maxLength": int(setting.high)}
    else:
        schema = {"type": "integer" if setting.kind == "int" else "number",
                  "minimum": setting.least or setting.low, "maximum": setting.high}
        if setting.least:  # 0 (off), or from least up
            schema = {"anyOf": [{"type": schema["type"], "enum": [0]}, schema]}
    if setting.nullable:
        schema = {"anyOf": [schema, {"enum": ["null", "none"]} if header else {"type": "null"}]}
    schema["description"] = setting.help
    if setting.default is not None:
        schema["default"] = setting.default
    return schema


def _header_name(name: str) -> str:
    return "X-Mock-" + "-".join(part.capitalize() for part in name.split("_"))


def _operation(r: Route, spec: Dict[str, Any]) -> dict:
    error = {"description": "An error, in this route's error shape (%s)" % r.error_style,
             "headers": {"lb-request-id": {"$ref": "#/components/headers/lb-request-id"},
                         "Retry-After": {"$ref": "#/components/headers/Retry-After"}},
             "content": {"application/json": {"schema": _ref(ERROR_SCHEMAS[r.error_style])}}}
    ok: Dict[str, Any] = {"description": spec.get("summary", "OK"),
                          "headers": {"lb-request-id": {"$ref": "#/components/headers/lb-request-id"}}}
    if spec.get("thread_header"):
        ok["headers"]["lb-thread-id"] = {"$ref": "#/components/headers/lb-thread-id"}
    ok["headers"].update(spec.get("headers", {}))
    content: Dict[str, Any] = {}
    if "media" in spec:  # a file, not JSON
        content = {media: {"schema": _STR} for media in spec["media"]}
    elif "200" not in spec or spec["200"] is not None:
        content["application/json"] = {"schema": spec.get("200", _ANY)}
    if spec.get("stream"):  # X-Mock-Content-Type may send a stream under another media type
        for media in ["text/event-stream"] + [c.split(";")[0] for c in scenario.SETTINGS["content_type"].choices]:
            content.setdefault(media, {"schema": _STR})
    if content:
        ok["content"] = content
    op: Dict[str, Any] = {
        "operationId": "%s %s" % (r.method, r.path),
        "summary": spec.get("summary", r.function.__doc__.strip().split("\n")[0] if r.function.__doc__ else r.path),
        "x-error-style": r.error_style,
        "responses": {spec.get("status", "200"): ok, "4XX": error, "5XX": error},
    }
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
              for name in r.pattern.groupindex]
    if spec.get("scenario"):
        params += [{"$ref": "#/components/parameters/%s" % _header_name(name)} for name in scenario.SETTINGS]
    if spec.get("filters"):
        params += [{"name": name, "in": "query", "schema": _JOURNAL_FILTERS[name]} for name in journal.FILTERS]
    if spec.get("query"):
        params += [{"name": "prompt", "in": "query", "schema": _STR},
                   {"name": "payload", "in": "query", "schema": {"enum": list(frontends.EVENTSOURCE_PAYLOADS)}}]
        params += [{"name": name, "in": "query", "schema": setting_schema(s, header=True)}
                   for name, s in scenario.SETTINGS.items()]
    if params:
        op["parameters"] = params
    if spec.get("204"):
        op["responses"]["204"] = {"description": "Already delivered in full (after Last-Event-ID)"}
    if spec.get("303"):
        op["responses"]["303"] = {"description": spec["303"], "headers": {
            "Location": {"schema": _STR}, "lb-request-id": {"$ref": "#/components/headers/lb-request-id"}}}
    if r.auth:
        op["security"] = [{"bearer": []}, {}]
    if "body_type" in spec:
        op["requestBody"] = {"content": {spec["body_type"]: {"schema": _ANY}}}
    elif r.method in ("POST", "PUT", "PATCH") and not spec.get("no_body"):
        op["requestBody"] = {"content": {"application/json": {"schema": spec.get("body", _ANY)}}}
    return op


def document(route_list: Optional[List[Route]] = None) -> dict:
    """The OpenAPI 3.1 document (a dict) of ``route_list`` (default ``routes.ROUTES``).

    Paths come from route templates; each operation has ``responses`` ``200`` (JSON and/or
    ``text/event-stream``, with ``lb-request-id`` and, on runs, ``lb-thread-id``), ``4XX`` and
    ``5XX`` (the route's error shape, with ``Retry-After``), ``x-error-style``, path parameters,
    ``X-Mock-*`` header parameters where a scenario applies, and ``security`` (bearer, optional
    unless ``--api-key``) on routes with auth."""
    if route_list is None:
        import routes  # the table imports this module
        route_list = routes.ROUTES
    paths: Dict[str, Dict[str, Any]] = {}
    for r in route_list:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, SCHEMAS.get((r.method, r.path), {}))
    settings = scenario.SETTINGS
    schemas = dict(COMPONENTS)
    schemas["Scenario"] = {"type": ["object", "null"], "additionalProperties": False,
                           "description": "Per-request scenario settings (GET /mock/settings)",
                           "properties": {name: setting_schema(s) for name, s in settings.items()}}
    return {
        "openapi": "3.1.0",
        "info": {"title": SERVICE, "version": VERSION,
                 "description": "A local mock of the Langbase API (and OpenAI Chat Completions, Lobe Chat and "
                                "other chat backends' wire formats). Generated from the server's route table."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": {_header_name(name): {"name": _header_name(name), "in": "header", "required": False,
                                                "schema": setting_schema(s, header=True)}
                           for name, s in settings.items()},
            "headers": {
                "lb-request-id": {"description": "This request's id", "schema": _STR},
                "lb-thread-id": {"description": "The thread the run was stored in", "schema": _STR},
                "Retry-After": {"description": "Seconds to wait before retrying (429 and 503)",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}},
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Any key, or exactly --api-key when the server has one"}},
        },
    }


def openapi(request: Request, app: App) -> Response:
    """``GET /openapi.json``: the OpenAPI 3.1 document of every route (``document``)."""
    return JsonResponse(200, document())


ROUTES: List[Route] = [route("GET", "/openapi.json", openapi)]
"""The contract endpoint: no auth, Langbase's error envelope."""
