"""Langbase memory routes: memories, their documents (with the two-step signed upload) and
retrieval, as the Langbase API and its SDKs (npm ``langbase`` 1.2.4, PyPI ``langbase`` 0.0.5)
call them. The work is done by ``memory.MemoryStore`` (``app.memory``); these functions read
requests and shape answers.

Every route requires the bearer key rules of ``--api-key`` except the signed upload URL
(``PUT /v1/memory/uploads/{token}``), where the unguessable token, valid for
``memory.UPLOAD_URL_SECONDS``, is the credential, as with a real signed URL: the SDKs send
``Authorization`` there too, and it is accepted. Errors use Langbase's envelope.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator, List, Optional, Tuple
from urllib.parse import unquote

import memory
from routes import hosts
from api import (
    App, BadRequest, Conflict, EmptyResponse, Forbidden, JsonResponse, NotFound, Request, Response, Route,
    object_body, route,
)

__all__ = ["ROUTES"]

MAX_RETRIEVE_MEMORIES = 10
_MEDIA_TYPE_RE = re.compile(r"\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*(?:;|$)")
"""A ``Content-Type`` that names a media type (``type/subtype``, RFC 9110 tokens); the ``email``
parser reads anything else as ``text/plain``."""


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Map ``memory.Missing`` to 404 and ``memory.Exists`` to 409 (the store's other errors,
    ``InvalidRequest`` and ``StoreFull``, are mapped by dispatch)."""
    try:
        yield
    except memory.Missing as exc:
        raise NotFound(exc.message) from None
    except memory.Exists as exc:
        raise Conflict(exc.message) from None


def _path(request: Request, name: str) -> str:
    """A path parameter, percent-decoded as UTF-8 (the SDKs put names in paths as they are,
    and their HTTP clients percent-encode what a path cannot hold). Raises ``NotFound`` for
    escapes that are not UTF-8: no memory or document can have such a name."""
    try:
        return unquote(request.params[name], errors="strict")
    except UnicodeDecodeError:
        raise NotFound("No memory or document is named %r." % request.params[name][:200]) from None


def memory_create(request: Request, app: App) -> Response:
    """``POST /v1/memory``: ``{name, description?, embedding_model?, top_k?, chunk_size?,
    chunk_overlap?}`` → ``{name, description, owner_login, url, chunk_size, chunk_overlap,
    embedding_model}``; 409 if the name is taken."""
    with _store_errors():
        return JsonResponse(200, app.memory.create(object_body(request)))


def memory_list(request: Request, app: App) -> Response:
    """``GET /v1/memory`` → ``[{name, description, owner_login, url, embedding_model,
    embeddingModel}]``."""
    return JsonResponse(200, app.memory.list())


def memory_delete(request: Request, app: App) -> Response:
    """``DELETE /v1/memory/{name}`` → ``{"success": true}``."""
    with _store_errors():
        app.memory.delete(_path(request, "name"))
    return JsonResponse(200, {"success": True})


def documents_upload_url(request: Request, app: App) -> Response:
    """``POST /v1/memory/documents``: ``{memoryName, fileName, meta?}`` → ``{"signedUrl":
    "http://<Host>/v1/memory/uploads/<token>"}``, to which the file is then PUT. The URL is
    built from the request's ``Host`` header (HTTP/1.1 requires one)."""
    data = object_body(request)
    memory_name = memory.check_name(data.get("memoryName"), "memoryName")
    file_name = memory.check_document_name(data.get("fileName"), "fileName")
    meta = memory.check_meta(data.get("meta"))
    host = (request.headers.get("Host") or "").strip()
    if not hosts.HOST_RE.fullmatch(host):  # the same reading as the Host check
        raise BadRequest("A Host header naming this server is required to build the upload URL.")
    with _store_errors():
        token, _ = app.memory.new_upload(memory_name, file_name, meta)
    return JsonResponse(200, {"signedUrl": "http://%s/v1/memory/uploads/%s" % (host, token)})


def documents_put(request: Request, app: App) -> Response:
    """``PUT /v1/memory/uploads/{token}``: the file's raw bytes, typed by ``Content-Type`` and
    decoded with its ``charset`` (a missing or invalid type, such as ``pdf``: by the file name's
    extension) → 200 with an empty body. An unknown, spent or expired URL is a
    403, as a storage service answers an expired signed URL."""
    content_type, charset = None, None
    if _MEDIA_TYPE_RE.match(request.headers.get("Content-Type") or ""):
        content_type = request.headers.get_content_type()
        charset = request.headers.get_content_charset()
    try:
        app.memory.put_upload(request.params["token"], request.body, content_type, charset)
    except memory.Missing as exc:
        raise Forbidden(exc.message) from None
    return EmptyResponse(200)


def documents_list(request: Request, app: App) -> Response:
    """``GET /v1/memory/{name}/documents`` → ``[{name, status, status_message, metadata: {size,
    type}, enabled, chunk_size, chunk_overlap, owner_login}]``."""
    with _store_errors():
        return JsonResponse(200, app.memory.list_documents(_path(request, "name")))


def document_delete(request: Request, app: App) -> Response:
    """``DELETE /v1/memory/{name}/documents/{documentName}`` → ``{"success": true}``."""
    with _store_errors():
        app.memory.delete_document(_path(request, "name"), _path(request, "documentName"))
    return JsonResponse(200, {"success": True})


def document_retry(request: Request, app: App) -> Response:
    """``GET /v1/memory/{name}/documents/{documentName}/embeddings/retry`` → ``{"success":
    true}``; the document is processed again."""
    with _store_errors():
        app.memory.retry_document(_path(request, "name"), _path(request, "documentName"))
    return JsonResponse(200, {"success": True})


def memory_retrieve(request: Request, app: App) -> Response:
    """``POST /v1/memory/retrieve``: ``{query, memory: [{name, filters?}], topK?}`` →
    ``[{text, similarity, meta}]``, best first (see ``memory.MemoryStore.retrieve``)."""
    data = object_body(request)
    query = data.get("query")
    memory.query_words(query)  # bounded before anything else is read
    selected = data.get("memory")
    if not isinstance(selected, list) or not 0 < len(selected) <= MAX_RETRIEVE_MEMORIES:
        raise BadRequest("memory must be an array of 1-%d objects {name, filters?}." % MAX_RETRIEVE_MEMORIES,
                         param="memory")
    selections: List[Tuple[str, Optional[tuple]]] = []
    for i, item in enumerate(selected):
        where = "memory[%d]" % i
        if not isinstance(item, dict):
            raise BadRequest("%s must be an object {name, filters?}." % where, param=where)
        name = memory.check_name(item.get("name"), where + ".name")
        filters = item.get("filters")
        selections.append((name, None if filters is None else memory.parse_filters(filters, where + ".filters")))
    low, high, default = memory.RETRIEVE_TOP_K
    top_k = data.get("topK", default)
    if type(top_k) is not int or not low <= top_k <= high:
        raise BadRequest("topK must be a whole number from %d to %d." % (low, high), param="topK")
    with _store_errors():
        return JsonResponse(200, app.memory.retrieve(query, selections, top_k))


ROUTES: List[Route] = [
    route("POST", "/v1/memory", memory_create, auth=True),
    route("GET", "/v1/memory", memory_list, auth=True),
    route("POST", "/v1/memory/retrieve", memory_retrieve, auth=True),
    route("POST", "/v1/memory/documents", documents_upload_url, auth=True),
    route("PUT", "/v1/memory/uploads/{token}", documents_put),
    route("DELETE", "/v1/memory/{name}", memory_delete, auth=True),
    route("GET", "/v1/memory/{name}/documents", documents_list, auth=True),
    route("DELETE", "/v1/memory/{name}/documents/{documentName}", document_delete, auth=True),
    route("GET", "/v1/memory/{name}/documents/{documentName}/embeddings/retry", document_retry, auth=True),
]
"""The memory endpoints, Langbase's error envelope."""
