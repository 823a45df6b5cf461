"""Real requests that exercise every route of the mock, for the contract tests (a success and
errors in each error style): ``CALLS`` and ``setup``, which creates what they name."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from tests.support import call

HI = [{"role": "user", "content": "Hi"}]
TOOL_FIXTURE = {"name": "tool", "match": {"user": "Use the tool", "wire": ["langbase", "openai"]},
                "response": {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}}
FORM = ("--b\r\nContent-Disposition: form-data; name=\"document\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n"
        "hello\r\n--b\r\nContent-Disposition: form-data; name=\"documentName\"\r\n\r\na.txt\r\n--b--\r\n").encode()

# (method, route template, concrete path, body, extra headers, expected status)
Call = Tuple[str, str, str, Any, Optional[Dict[str, str]], int]

CALLS: List[Call] = [
    ("GET", "/", "/", None, None, 200),
    ("GET", "/", "/", None, {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, 303),
    ("GET", "/health", "/health", None, None, 200),
    ("GET", "/openapi.json", "/openapi.json", None, None, 200),
    ("GET", "/mock/settings", "/mock/settings", None, None, 200),
    ("GET", "/mock/runs", "/mock/runs", None, None, 200),
    ("GET", "/mock/runs/{runId}", "/mock/runs/{runId}", None, None, 200),
    ("GET", "/mock/runs/{runId}", "/mock/runs/nope", None, None, 404),
    ("POST", "/v1/pipes/run", "/v1/pipes/run", {"messages": HI, "threadId": "t1"}, None, 200),
    ("POST", "/mock/fixtures", "/mock/fixtures", {"fixtures": [TOOL_FIXTURE]}, None, 201),
    ("POST", "/mock/fixtures", "/mock/fixtures", [{"response": {"text": "a", "chunks": ["b"]}}], None, 400),
    ("POST", "/v1/pipes/run", "/v1/pipes/run", {"messages": [{"role": "user", "content": "Use the tool"}]}, None, 200),
    ("POST", "/v1/chat/completions", "/v1/chat/completions",
     {"model": "m", "messages": [{"role": "user", "content": "Use the tool"}]}, None, 200),
    ("GET", "/mock/fixtures", "/mock/fixtures", None, None, 200),
    ("DELETE", "/mock/fixtures", "/mock/fixtures", None, None, 200),
    ("POST", "/v1/pipes/run", "/v1/pipes/run", {"messages": HI, "stream": True}, {"X-Mock-Chunking": "char"}, 200),
    ("POST", "/v1/pipes/run", "/v1/pipes/run", {"messages": "x"}, None, 400),
    ("POST", "/v1/pipes/run", "/v1/pipes/run", {"messages": HI}, {"X-Mock-Fault": "http_error", "X-Mock-Fault-Status": "503"}, 503),
    ("POST", "/v1/agent/run", "/v1/agent/run", {"model": "openai:gpt-4o-mini", "input": "Hi"}, None, 200),
    ("POST", "/v1/agent/run", "/v1/agent/run", {"model": "openai:gpt-4o-mini", "input": "Hi", "stream": True}, None, 200),
    ("POST", "/v1/agent/run", "/v1/agent/run", {"input": "Hi"}, None, 400),
    ("GET", "/v1/pipes", "/v1/pipes", None, None, 200),
    ("POST", "/v1/pipes", "/v1/pipes", {"name": "p2"}, None, 200),
    ("POST", "/v1/pipes", "/v1/pipes", {"name": 5}, None, 400),
    ("POST", "/v1/pipes/{name}", "/v1/pipes/p1", {"description": "d"}, None, 200),
    ("POST", "/v1/traces", "/v1/traces", {"workflow": {"id": "w"}}, None, 200),
    ("POST", "/v1/traces", "/v1/traces", {}, None, 400),
    ("GET", "/mock/traces", "/mock/traces", None, None, 200),
    ("POST", "/v1/threads", "/v1/threads", {"metadata": {"a": "b"}, "messages": HI}, None, 200),
    ("POST", "/v1/threads", "/v1/threads", {"threadId": "t1"}, None, 409),
    ("GET", "/v1/threads/{threadId}", "/v1/threads/t1", None, None, 200),
    ("GET", "/v1/threads/{threadId}", "/v1/threads/missing", None, None, 404),
    ("POST", "/v1/threads/{threadId}", "/v1/threads/t1", {"metadata": {"k": "v"}}, None, 200),
    ("POST", "/v1/threads/{threadId}/messages", "/v1/threads/t1/messages", HI, None, 200),
    ("GET", "/v1/threads/{threadId}/messages", "/v1/threads/t1/messages", None, None, 200),
    ("DELETE", "/v1/threads/{threadId}", "/v1/threads/t2", None, None, 200),
    ("POST", "/v1/memory", "/v1/memory", {"name": "m2"}, None, 200),
    ("GET", "/v1/memory", "/v1/memory", None, None, 200),
    ("POST", "/v1/memory/retrieve", "/v1/memory/retrieve", {"query": "hello", "memory": [{"name": "m"}]}, None, 200),
    ("POST", "/v1/memory/documents", "/v1/memory/documents", {"memoryName": "m", "fileName": "b.txt"}, None, 200),
    ("PUT", "/v1/memory/uploads/{token}", "/v1/memory/uploads/{token}", b"hello", {"Content-Type": "text/plain"}, 200),
    ("PUT", "/v1/memory/uploads/{token}", "/v1/memory/uploads/guess", b"x", {"Content-Type": "text/plain"}, 403),
    ("GET", "/v1/memory/{name}/documents", "/v1/memory/m/documents", None, None, 200),
    ("GET", "/v1/memory/{name}/documents/{documentName}/embeddings/retry",
     "/v1/memory/m/documents/a.txt/embeddings/retry", None, None, 200),
    ("DELETE", "/v1/memory/{name}/documents/{documentName}", "/v1/memory/m/documents/a.txt", None, None, 200),
    ("DELETE", "/v1/memory/{name}", "/v1/memory/m2", None, None, 200),
    ("POST", "/v1/chunker", "/v1/chunker", {"content": "Some text. " * 50}, None, 200),
    ("POST", "/v1/embed", "/v1/embed", {"chunks": ["a b"]}, None, 200),
    ("POST", "/v1/parser", "/v1/parser", FORM, {"Content-Type": "multipart/form-data; boundary=b"}, 200),
    ("POST", "/v1/tools/web-search", "/v1/tools/web-search", {"query": "q"}, None, 200),
    ("POST", "/v1/tools/crawl", "/v1/tools/crawl", {"url": ["https://example.com"]}, None, 200),
    ("POST", "/v1/images", "/v1/images", {"prompt": "a cat", "model": "openai:gpt-image-1"}, None, 200),
    ("POST", "/v1/chat/completions", "/v1/chat/completions", {"model": "m", "messages": HI}, None, 200),
    ("POST", "/v1/chat/completions", "/v1/chat/completions", {"model": "m", "messages": HI, "stream": True}, None, 200),
    ("POST", "/v1/chat/completions", "/v1/chat/completions", {"messages": HI}, None, 400),
    ("GET", "/v1/models", "/v1/models", None, None, 200),
    ("GET", "/v1/models/{model}", "/v1/models/gpt-4o-mini", None, None, 200),
    ("GET", "/v1/models/{model}", "/v1/models/nope", None, None, 404),
    ("POST", "/api/chat", "/api/chat", {"messages": HI}, None, 200),
    ("POST", "/api/chat", "/api/chat", {"messages": 5}, None, 400),
    ("POST", "/api/stream", "/api/stream", {"model": "llama2", "messages": HI}, None, 200),
    ("POST", "/api/stream", "/api/stream", [], None, 400),
    ("GET", "/api/events", "/api/events?prompt=Hi", None, None, 200),
    ("GET", "/events", "/events", None, None, 200),
    ("GET", "/hello", "/hello", None, None, 200),
    ("POST", "/api/generate", "/api/generate", {"sessionId": "s", "chatMessageId": "c", "prompt": "Hi"}, None, 202),
    ("GET", "/api/stream/{sessionId}/{chatMessageId}", "/api/stream/s/c", None, None, 200),
    ("GET", "/playground", "/playground", None, None, 200),
    ("GET", "/playground/", "/playground/", None, None, 200),
    ("GET", "/playground/{file}", "/playground/app.js", None, None, 200),
    ("GET", "/playground/{file}", "/playground/style.css", None, None, 200),
    ("GET", "/playground/{file}", "/playground/secret.txt", None, None, 404),
    ("GET", "/mock/requests", "/mock/requests", None, None, 200),
    ("GET", "/mock/requests", "/mock/requests?method=post&path_prefix=/v1/&status=200&limit=3", None, None, 200),
    ("GET", "/mock/requests", "/mock/requests?colour=red", None, None, 400),
    ("GET", "/mock/requests", "/mock/requests?limit=-1", None, None, 400),
    ("DELETE", "/mock/requests", "/mock/requests", None, None, 200),
    ("POST", "/mock/reset", "/mock/reset", None, None, 200),
]
"""Requests covering every route, in an order where each finds what it needs (after ``setup``);
``POST /mock/reset`` comes last, as it empties every store."""


def setup(port: int) -> Dict[str, str]:
    """Create thread ``t1`` and ``t2``, pipe ``p1``, memory ``m`` with document ``a.txt``, and a
    run; returns the values to put in paths: ``{runId}`` and an unused upload ``{token}``."""
    for thread in ("t1", "t2"):
        call(port, "POST", "/v1/threads", {"threadId": thread})
    call(port, "POST", "/v1/pipes", {"name": "p1"})
    call(port, "POST", "/v1/memory", {"name": "m"})
    url = call(port, "POST", "/v1/memory/documents", {"memoryName": "m", "fileName": "a.txt"}).json()["signedUrl"]
    call(port, "PUT", url.split("127.0.0.1", 1)[1], b"hello world", {"Content-Type": "text/plain"})
    url = call(port, "POST", "/v1/memory/documents", {"memoryName": "m", "fileName": "c.txt"}).json()["signedUrl"]
    call(port, "POST", "/v1/pipes/run", {"messages": HI})
    run_id = call(port, "GET", "/mock/runs").json()["runs"][0]
    return {"{runId}": run_id, "{token}": url.rsplit("/", 1)[1]}


def concrete(path: str, values: Dict[str, str]) -> str:
    for key, value in values.items():
        path = path.replace(key, value)
    return path
