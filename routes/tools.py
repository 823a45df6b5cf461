"""Langbase utility routes: ``POST /v1/chunker``, ``/v1/embed``, ``/v1/parser``,
``/v1/tools/web-search``, ``/v1/tools/crawl`` and ``/v1/images``, with the request and response
shapes of the official SDKs (npm ``langbase`` 1.2.4: ``ChunkOptions``, ``EmbedOptions``,
``ParseResponse``, ``ToolWebSearchOptions``, ``ToolCrawlOptions``, ``ImageGenerationResponse``;
PyPI ``langbase`` 0.0.5 ``langbase/primitives/*.py``).

Everything is offline and deterministic: chunks and vectors come from ``memory``; search and
crawl results are made up from the request and say so in their text ("mock content"); images
are a small PNG drawn from the prompt. Provider keys (``LB-WEB-SEARCH-KEY``, ``LB-CRAWL-KEY``,
``LB-LLM-Key``, an ``apiKey`` body field) are accepted, never required, used, stored or echoed.
Every route requires the bearer key rules of ``--api-key``; errors use Langbase's envelope.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote, urlsplit

import memory
from api import App, BadRequest, JsonResponse, Request, Response, Route, json_text_response, object_body, route
from digests import sha256

__all__ = ["ROUTES", "png", "parse_form"]

MAX_EMBED_CHUNKS = 100
MAX_EMBED_CHARS = 50_000
"""Most characters over all chunks of one embed request: hashing their features is Python work
per character (measured: 200,000 characters took 0.1-0.25 s, 50,000 about 25-60 ms on a loaded
2-core machine), done on the event-loop thread."""
MAX_QUERY_CHARS = 2000
MAX_RESULTS = 20
MAX_URLS = 20
MAX_URL_CHARS = 2048
MAX_FORM_PARTS = 10
MAX_PART_HEADER_LINES = 16
"""Most header lines in one form part (a browser sends two or three)."""
IMAGE_SIDE = 64
"""Width and height in pixels of every generated image, whatever size is asked for."""
MAX_IMAGES = 4
MOCK_NOTE = "(mock content: langbase-mock made this up offline; no web request was made.)"

_DOMAIN_RE = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def _int_field(data: Dict[str, Any], name: str, low: int, high: int, default: Optional[int]) -> Optional[int]:
    value = data.get(name)
    if value is None:
        return default
    if type(value) is not int or not low <= value <= high:
        raise BadRequest("%s must be a whole number from %d to %d." % (name, low, high), param=name)
    return value


def _text_field(data: Dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise BadRequest("%s must be a non-empty string of at most %d characters." % (name, limit), param=name)
    return value


def chunker(request: Request, app: App) -> Response:
    """``POST /v1/chunker``: ``{content, chunkMaxLength?: 1024-30000 (default 1024),
    chunkOverlap?: >= 256 and < chunkMaxLength (default 256)}`` → ``string[]`` (see
    ``memory.chunk_text``)."""
    data = object_body(request)
    content = data.get("content")
    if not isinstance(content, str):
        raise BadRequest("content must be a string.", param="content")
    max_length, overlap = memory.check_chunking(data.get("chunkMaxLength", 1024), data.get("chunkOverlap", 256))
    return JsonResponse(200, memory.chunk_text(content, max_length, overlap))


def embed(request: Request, app: App) -> Response:
    """``POST /v1/embed``: ``{chunks: string[] (1-100, non-empty, at most ``MAX_EMBED_CHARS``
    characters in all), embeddingModel?}`` → one
    unit-length vector per chunk (JSON written by ``_vector_json``), as long as the named model's (``memory.EMBEDDING_DIMENSIONS``;
    default ``openai:text-embedding-3-large``, 3072 numbers). See ``memory.embed``."""
    data = object_body(request)
    chunks = data.get("chunks")
    if (not isinstance(chunks, list) or not 0 < len(chunks) <= MAX_EMBED_CHUNKS
            or not all(isinstance(c, str) and c for c in chunks)):
        raise BadRequest("chunks must be an array of 1-%d non-empty strings." % MAX_EMBED_CHUNKS, param="chunks")
    if sum(len(c) for c in chunks) > MAX_EMBED_CHARS:
        raise BadRequest("chunks hold more than %d characters in all; send fewer at a time." % MAX_EMBED_CHARS,
                         param="chunks")
    model = memory.parse_embedding_model(data.get("embeddingModel"))
    dimensions = memory.EMBEDDING_DIMENSIONS[model]
    hashes: Dict[str, int] = {}
    return json_text_response("[%s]" % ",".join(_vector_json(memory.embed_buckets(c, dimensions, hashes), dimensions)
                                        for c in chunks))


def _vector_json(buckets: Dict[int, float], dimensions: int) -> str:
    """``memory.embed``'s vector as JSON text, built from its non-zero ``buckets``: the zeros are
    one shared ``"0.0"`` string, joined in C, and each value is written as ``json`` writes a
    float (``float.__repr__``). ``json`` itself formats every one of the 307,200 numbers of a
    100-chunk reply (40-50 ms); this takes about 5 ms."""
    parts = ["0.0"] * dimensions
    for bucket, value in buckets.items():
        parts[bucket] = repr(value)
    return "[%s]" % ",".join(parts)


_FORM_MALFORMED = "The multipart/form-data body is malformed (check its boundary)."
_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_DELIMITER_END_RE = re.compile(rb"[ \t]*\r?\n")
_NESTED_RE = re.compile(rb"^content-type:[ \t]*multipart/", re.IGNORECASE | re.MULTILINE)


def parse_form(content_type: str, body: bytes) -> List[Tuple[str, Optional[str], Optional[str], bytes]]:
    """The parts of a ``multipart/form-data`` body (RFC 7578, framed as RFC 2046 section 5.1.1):
    ``[(field name, file name or None, media type or None, bytes)]`` in order.

    The body is split on its boundary's delimiter lines by one regular expression (at most
    ``MAX_FORM_PARTS`` + 1 splits) and each part's header block is read with the ``email``
    package's parser; a part's content is taken as sent (``base64`` and ``quoted-printable``
    transfer encodings decoded). So the time is linear in the body and every limit is checked
    before a part is parsed: the ``email`` parser given the whole body takes time growing with
    its lines, parts and nested parts (1 MB of short lines took 0.26 s).

    Raises ``BadRequest`` when the body is not such a form (no boundary, no closing delimiter,
    a part without the blank line after its headers), has more than ``MAX_FORM_PARTS`` parts,
    a part with more than ``MAX_PART_HEADER_LINES`` header lines or without a named
    ``Content-Disposition``, a part header parameter in a charset that cannot be decoded, or a
    part that is itself ``multipart/*`` (not read)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadRequest("Send the document as multipart/form-data (fields 'document' and 'documentName').")
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_boundary()
    if not boundary:
        raise BadRequest(_FORM_MALFORMED)
    delimiter = re.compile(rb"\r?\n--" + re.escape(boundary.encode("latin-1", "replace"))
                           + rb"(?=--|[ \t]*\r?\n)")
    pieces = delimiter.split(b"\r\n" + body, MAX_FORM_PARTS + 1)  # preamble, parts, closing delimiter
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            return parts
        if len(parts) == MAX_FORM_PARTS:
            raise BadRequest("A form may have at most %d parts." % MAX_FORM_PARTS)
        parts.append(_form_part(piece))
    raise BadRequest(_FORM_MALFORMED)


def _form_part(piece: bytes) -> Tuple[str, Optional[str], Optional[str], bytes]:
    """One part for ``parse_form``: ``piece`` runs from just after its delimiter to just before
    the next one. Raises ``BadRequest``."""
    line_end = _DELIMITER_END_RE.match(piece)
    if line_end is None:
        raise BadRequest(_FORM_MALFORMED)
    rest = piece[line_end.end():]
    empty = _DELIMITER_END_RE.match(rest) if rest[:1] in (b"\r", b"\n") else None  # no header lines
    if empty is not None:
        head, content = b"", rest[empty.end():]
    else:
        blank = _BLANK_LINE_RE.search(rest)
        if blank is None:
            raise BadRequest(_FORM_MALFORMED)
        head, content = rest[:blank.start()], rest[blank.end():]
    if head.count(b"\n") >= MAX_PART_HEADER_LINES:
        raise BadRequest("A form part may have at most %d header lines." % MAX_PART_HEADER_LINES)
    if _NESTED_RE.search(head):
        raise BadRequest("A form part may not be multipart itself (nested multipart is not read).")
    part = BytesParser(policy=policy.HTTP).parsebytes(head + b"\r\n\r\n", headersonly=True)
    try:
        name = part.get_param("name", header="content-disposition")
        file_name = part.get_filename()
        media_type = part.get_content_type() if part.get("Content-Type") else None
    except ValueError:  # UnicodeError: an RFC 2231 or 2047 parameter whose charset the email package fails on
        raise BadRequest("A form part's header has a parameter in a charset that cannot be decoded.") from None
    if not isinstance(name, str):
        raise BadRequest("Every form part needs a Content-Disposition with a name.")
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    try:
        if encoding == "base64":
            content = binascii.a2b_base64(content)
        elif encoding == "quoted-printable":
            content = binascii.a2b_qp(content)
    except binascii.Error:
        raise BadRequest("A form part's %s content is malformed." % encoding) from None
    return name, file_name, media_type, content


def parser(request: Request, app: App) -> Response:
    """``POST /v1/parser``: a multipart form with a file part ``document`` and a field
    ``documentName`` → ``{documentName, content}`` (the text of a txt, md, csv, json or html
    file; see ``memory.extract_text``). Other formats are a 400 saying so."""
    fields = parse_form(request.headers.get("Content-Type") or "", request.body)
    document = next((p for p in fields if p[0] == "document"), None)
    if document is None:
        raise BadRequest("The form has no 'document' file part.", param="document")
    named = next((p for p in fields if p[0] == "documentName"), None)
    name = named[3].decode("utf-8", "replace") if named else (document[1] or "")
    name = memory.check_document_name(name, "documentName") if name else "document"
    media_type = memory.text_type(document[2], document[1] or name)
    try:
        content = memory.extract_text(document[3], media_type)
    except ValueError as exc:
        raise BadRequest(str(exc), param="document") from None
    return JsonResponse(200, {"documentName": name, "content": content})


def _slug(text: str) -> str:
    return quote("-".join(memory.words(text))[:60] or "query", safe="-")


def web_search(request: Request, app: App) -> Response:
    """``POST /v1/tools/web-search``: ``{query, service?: "exa", totalResults?: 1-20 (default
    5), domains?: host names}`` → ``[{url, content}]``, made up from the query (URLs cycle
    through ``domains``, else ``example.com``) and marked as mock content."""
    data = object_body(request)
    query = _text_field(data, "query", MAX_QUERY_CHARS)
    if data.get("service", "exa") != "exa":
        raise BadRequest("service must be \"exa\".", param="service")
    total = _int_field(data, "totalResults", 1, MAX_RESULTS, 5)
    domains = data.get("domains")
    if domains is None or domains == []:
        domains = ["example.com"]
    if (not isinstance(domains, list) or len(domains) > MAX_RESULTS
            or not all(isinstance(d, str) and _DOMAIN_RE.fullmatch(d) for d in domains)):
        raise BadRequest("domains must be an array of at most %d host names, such as \"example.com\"."
                         % MAX_RESULTS, param="domains")
    slug = _slug(query)
    return JsonResponse(200, [
        {"url": "https://%s/mock-search/%s/%d" % (domains[i % len(domains)].lower(), slug, i + 1),
         "content": "Result %d of %d for \"%s\". %s" % (i + 1, total, query, MOCK_NOTE)}
        for i in range(total)
    ])


def crawl(request: Request, app: App) -> Response:
    """``POST /v1/tools/crawl``: ``{url: string[] (1-20 http(s) URLs), maxPages?: 1-100,
    service?: "spider"|"firecrawl"}`` → one ``{url, content}`` per URL, in order, its content
    made up from the URL and marked as mock content."""
    data = object_body(request)
    urls = data.get("url")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not 0 < len(urls) <= MAX_URLS or not all(_web_url(u) for u in urls):
        raise BadRequest("url must be an array of 1-%d http(s) URLs of at most %d characters."
                         % (MAX_URLS, MAX_URL_CHARS), param="url")
    _int_field(data, "maxPages", 1, 100, None)
    if data.get("service", "spider") not in ("spider", "firecrawl"):
        raise BadRequest("service must be \"spider\" or \"firecrawl\".", param="service")
    return JsonResponse(200, [
        {"url": u, "content": "# %s\n\nThe page at %s, crawled offline. %s"
         % (urlsplit(u).hostname, u, MOCK_NOTE)}
        for u in urls
    ])


def _web_url(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # raises ValueError for a port out of 0-65535
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def png(width: int, height: int, pixel: Any) -> bytes:
    """A truecolour 8-bit PNG (ISO/IEC 15948) of ``width`` x ``height`` pixels, where
    ``pixel(x, y)`` returns ``(r, g, b)`` bytes values; written with ``struct`` and ``zlib``."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in pixel(x, y)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def _image_url(seed: bytes) -> str:
    """A data URL of a ``IMAGE_SIDE``-pixel square PNG: a gradient whose colours come from
    ``seed``'s hash."""
    r, g, b = sha256(seed).digest()[:3]
    image = png(IMAGE_SIDE, IMAGE_SIDE, lambda x, y: ((r + 3 * x) % 256, (g + 3 * y) % 256, b))
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def images(request: Request, app: App) -> Response:
    """``POST /v1/images``: ``{prompt, model ("provider:model"), width?, height?, n?: 1-4,
    ...}`` → ``{id, provider, model, object, created, choices: [{logprobs, finish_reason,
    native_finish_reason, index, message: {role, content, images: [{type: "image_url",
    image_url: {url: "data:image/png;base64,..."}, index}]}}], usage}``; the images are
    ``IMAGE_SIDE``-pixel squares, the same for the same prompt, model and index."""
    data = object_body(request)
    prompt = _text_field(data, "prompt", 32000)
    model = _text_field(data, "model", 200)
    for name in ("width", "height"):
        _int_field(data, name, 1, 8192, None)
    count = _int_field(data, "n", 1, MAX_IMAGES, 1)
    provider = model.split(":", 1)[0] if ":" in model else "langbase-mock"
    pictures = [{"type": "image_url", "image_url": {"url": _image_url(("%s\0%s\0%d" % (model, prompt, i))
                                                                      .encode("utf-8", "surrogatepass"))},
                 "index": i} for i in range(count)]
    prompt_tokens = len(memory.words(prompt))
    return JsonResponse(200, {
        "id": "gen-" + app.new_id(), "provider": provider, "model": model, "object": "chat.completion",
        "created": int(app.clock()),
        "choices": [{"logprobs": None, "finish_reason": "stop", "native_finish_reason": "stop", "index": 0,
                     "message": {"role": "assistant", "content": "", "images": pictures}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens,
                  "prompt_tokens_details": {"cached_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0}},
    })


ROUTES: List[Route] = [
    route("POST", "/v1/chunker", chunker, auth=True),
    route("POST", "/v1/embed", embed, auth=True),
    route("POST", "/v1/parser", parser, auth=True),
    route("POST", "/v1/tools/web-search", web_search, auth=True),
    route("POST", "/v1/tools/crawl", crawl, auth=True),
    route("POST", "/v1/images", images, auth=True),
]
"""The utility endpoints, Langbase's error envelope."""
