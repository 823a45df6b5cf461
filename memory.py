"""Memory (Langbase's retrieval store) and the text utilities it is built from: the chunker,
the lexical ranking, the hashed embeddings, metadata filters and text extraction.

Job: keep memories and their documents in process memory and answer what the Langbase
``/v1/memory``, ``/v1/chunker`` and ``/v1/embed`` endpoints answer, with no I/O: the routes
(``routes/memory.py``, ``routes/tools.py``) parse HTTP and call this. It has its own room because
it is a small search engine, not a chat concern: chunking, BM25 ranking, embedding vectors and
filter evaluation are pure functions tested by value, and the store needs its own lock and
bounds, independent of the thread store.

Retrieval is real but lexical: each uploaded text document is split into chunks as
``chunk_text`` does (the ``/v1/chunker`` algorithm, with the memory's ``chunk_size`` and
``chunk_overlap``) and indexed once, at upload (``ChunkIndex``: the text kept once, word
postings per chunk), and ``POST /v1/memory/retrieve`` ranks the chunks of completed documents by
BM25 over lower-cased words (k1 = 1.2, b = 0.75), so the same query over the same documents
always gives the same order.

Everything here runs on the server's one event-loop thread, so every input is bounded before
the work it costs: queries (``query_words``), filters (``parse_filters``), the search itself
(``MAX_POSTINGS_READ``), and text extraction runs in linear time (``_html_text``). The store's
byte bound counts an estimate of the memory documents occupy (``_Document``), not the bytes
uploaded. Document processing is simulated from timestamps: a document is
``queued`` for the first third of ``processing_seconds`` after its upload, ``in_progress`` until
``processing_seconds``, then ``completed`` (or ``failed`` when it is not a text format).

Field names and shapes follow the Langbase API as the official SDKs type it (npm ``langbase``
1.2.4 ``MemoryCreateResponse``, ``MemoryListResponse``, ``MemoryListDocResponse``,
``MemoryRetrieveResponse``, ``MemoryFilters``; PyPI ``langbase`` 0.0.5 ``langbase/types.py``).
Errors are ``threads.InvalidRequest`` (a bad field), ``threads.StoreFull`` (a bound), and this
module's ``Missing`` and ``Exists``. Standard library only; no imports from the HTTP side.
"""

from __future__ import annotations

import codecs
import collections
import heapq
import math
import mimetypes
import re
import sys
import threading
import zlib
from array import array
from html import unescape as html_unescape
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from threads import InvalidRequest, StoreFull

__all__ = [
    "EMBEDDING_DIMENSIONS", "DEFAULT_EMBEDDING_MODEL", "TEXT_TYPES", "Missing", "Exists", "MemoryStore",
    "chunk_text", "chunk_spans", "check_chunking", "default_overlap", "embed", "embed_buckets",
    "parse_embedding_model", "parse_filters", "filter_matches", "ChunkIndex", "bm25_search", "query_words", "words",
    "extract_text", "text_type", "check_name", "check_document_name", "check_meta", "OWNER_LOGIN",
    "UPLOAD_URL_SECONDS",
]

EMBEDDING_DIMENSIONS: Dict[str, int] = {
    "openai:text-embedding-3-large": 3072,
    "cohere:embed-multilingual-v3.0": 1024,
    "cohere:embed-multilingual-light-v3.0": 384,
    "google:text-embedding-004": 768,
}
"""The embedding models the SDKs accept (their ``EmbeddingModels`` type), with the length of the
vectors each real model returns; ``embed`` returns vectors of that length."""

DEFAULT_EMBEDDING_MODEL = "openai:text-embedding-3-large"
OWNER_LOGIN = "mock-user"
"""The ``owner_login`` of every memory and document."""

CHUNK_MAX_LENGTH = (1024, 30000)
"""Allowed ``chunkMaxLength`` / ``chunk_size`` (characters, inclusive), as the SDKs document."""
MIN_CHUNK_OVERLAP = 256
"""Smallest ``chunkOverlap`` / ``chunk_overlap`` (characters), as the SDKs document."""
MEMORY_DEFAULTS = {"top_k": 10, "chunk_size": 10000, "chunk_overlap": 2048}
"""A new memory's settings when the request leaves them out (``chunk_overlap``: for the default
``chunk_size``; see ``default_overlap``)."""


def default_overlap(chunk_size: int) -> int:
    """The ``chunk_overlap`` of a memory created without one: a quarter of ``chunk_size``, at
    least ``MIN_CHUNK_OVERLAP`` and at most 2048 (so 2048 for the default ``chunk_size`` and
    256 for 1024, always less than any allowed ``chunk_size``)."""
    return max(MIN_CHUNK_OVERLAP, min(MEMORY_DEFAULTS["chunk_overlap"], chunk_size // 4))
RETRIEVE_TOP_K = (1, 100, 20)
"""``topK`` of a retrieve: (minimum, maximum, default)."""

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""Memory names: 1-100 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit
(they appear in URL paths)."""
MAX_DOCUMENT_NAME = 255
MAX_META_ITEMS = 64
MAX_META_CHARS = 1024
MAX_FILTER_DEPTH = 8
MAX_FILTER_CONDITIONS = 64
"""Most ``[field, op, value]`` conditions in one memory's ``filters``, over all nesting."""
MAX_FILTER_VALUES = 100
"""Most values of one ``In`` or ``NotIn`` condition."""
UPLOAD_URL_SECONDS = 600.0
"""How long a signed upload URL is valid after ``POST /v1/memory/documents``."""

TEXT_TYPES = {
    "text/plain": "text", "text/markdown": "text", "text/x-markdown": "text", "text/csv": "text",
    "application/json": "text", "text/html": "html", "application/xhtml+xml": "html",
}
"""Content types indexed (their text read as UTF-8; HTML reduced to its text); any other type is
stored and ends ``failed``."""

_EXTENSION_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv",
                    ".json": "application/json", ".txt": "text/plain", ".html": "text/html", ".htm": "text/html"}

_WORD_RE = re.compile(r"\w+")
_ASCII_WORD_RE = re.compile(r"\w+", re.ASCII)
_SPACE_RE = re.compile(r"\s+")
_BREAKS = ("\n\n", "\n", ". ", "! ", "? ", "; ", ", ", " ")
"""Where ``chunk_text`` prefers to end a chunk, best first."""


class Missing(LookupError):
    """A named memory or document does not exist; ``message`` says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Exists(ValueError):
    """A memory with that name exists already; ``message`` says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- text utilities ---------------------------------------------------------------------------


def words(text: str) -> List[str]:
    """The lower-cased words (Unicode ``\\w+`` runs) of ``text``, in order. ASCII text is read
    with the ASCII form of the pattern, the same words found in half the time."""
    lowered = text.lower()
    return (_ASCII_WORD_RE if lowered.isascii() else _WORD_RE).findall(lowered)


def check_chunking(max_length: Any, overlap: Any, names: Tuple[str, str] = ("chunkMaxLength", "chunkOverlap")) -> Tuple[int, int]:
    """Validate a chunk length and overlap in characters: ``max_length`` in ``CHUNK_MAX_LENGTH``,
    ``overlap`` at least ``MIN_CHUNK_OVERLAP`` and less than ``max_length``. ``names`` are the
    request fields, for the message. Returns ``(max_length, overlap)``; raises
    ``InvalidRequest``."""
    low, high = CHUNK_MAX_LENGTH
    if type(max_length) is not int or not low <= max_length <= high:
        raise InvalidRequest("%s must be a whole number from %d to %d" % (names[0], low, high), names[0])
    if type(overlap) is not int or not MIN_CHUNK_OVERLAP <= overlap < max_length:
        raise InvalidRequest("%s must be a whole number >= %d and less than %s (%d)"
                             % (names[1], MIN_CHUNK_OVERLAP, names[0], max_length), names[1])
    return max_length, overlap


def _break_point(text: str, start: int, end: int) -> int:
    """Where to end a chunk of ``text[start:end]``: just after the best separator in its second
    half, else ``end``."""
    floor = start + (end - start) // 2
    for sep in _BREAKS:
        at = text.rfind(sep, floor, end)
        if at >= 0:
            return at + len(sep)
    return end


def chunk_text(text: str, max_length: int, overlap: int) -> List[str]:
    """Split ``text`` into chunks of at most ``max_length`` characters, each ending at the best
    boundary in its second half (a blank line, a line end, a sentence end, a space, else
    anywhere); each chunk after the first starts at most ``overlap`` characters (and at most half
    a chunk) before the previous one ended, at a word start. Chunks are stripped of surrounding
    white space; white space alone gives no chunk. Returns the chunks in order (``[]`` for blank
    text). Arguments are trusted (see ``check_chunking``)."""
    return [text[start:end] for start, end in chunk_spans(text, max_length, overlap)]


def chunk_spans(text: str, max_length: int, overlap: int) -> List[Tuple[int, int]]:
    """The chunks of ``chunk_text`` as ``(start, end)`` offsets into ``text``."""
    spans: List[Tuple[int, int]] = []
    n = len(text)
    start = 0
    while start < n:
        while start < n and text[start].isspace():
            start += 1
        if start >= n:
            break
        end = min(start + max_length, n)
        if end < n:
            end = _break_point(text, start, end)
        kept = end
        while kept > start and text[kept - 1].isspace():
            kept -= 1
        spans.append((start, kept))
        if end >= n:
            break
        next_start = end - min(overlap, (end - start) // 2)
        if next_start < end and not text[next_start - 1].isspace():  # mid-word: go to the next word
            space = _SPACE_RE.search(text, next_start, end)
            if space:
                next_start = space.end()
        start = max(next_start, start + 1)
    return spans


def parse_embedding_model(value: Any, param: str = "embeddingModel") -> str:
    """``value`` if it names a model of ``EMBEDDING_DIMENSIONS`` (``None``: the default).
    Raises ``InvalidRequest`` listing the models."""
    if value is None:
        return DEFAULT_EMBEDDING_MODEL
    if not isinstance(value, str) or value not in EMBEDDING_DIMENSIONS:
        raise InvalidRequest("%s must be one of %s" % (param, ", ".join(EMBEDDING_DIMENSIONS)), param)
    return value


def embed(text: str, dimensions: int) -> List[float]:
    """A deterministic embedding of ``text``: ``dimensions`` floats of unit length (L2, each
    rounded to 6 decimals), the values of ``embed_buckets`` with 0.0 elsewhere."""
    vector = [0.0] * dimensions
    for bucket, value in embed_buckets(text, dimensions).items():
        vector[bucket] = value
    return vector


def embed_buckets(text: str, dimensions: int, hashes: Optional[Dict[str, int]] = None) -> Dict[int, float]:
    """The non-zero values of ``embed(text, dimensions)`` as ``{position: value}``: hashed
    features counted into buckets (lower-cased words, pairs of adjacent words, and character
    trigrams of the white-space-collapsed lower-cased text with ``^``/``$`` marking its ends;
    white space alone gives the one feature ``^$``), divided by the L2 norm and rounded to 6
    decimals. Equal texts give equal vectors; texts sharing words and spellings have a high
    cosine similarity. No model is run: the numbers mean nothing else. Features are hashed with
    CRC-32 (``zlib.crc32``), stable across processes and fast; ``hashes``, a dict shared by the
    calls of one request with the same ``dimensions``, remembers each feature's bucket (features
    repeat from text to text). Time grows with
    the length of ``text``, not with ``dimensions``."""
    tokens = words(text)
    flat = "^" + " ".join(text.lower().split()) + "$"
    features = collections.Counter(tokens)
    features.update(a + " " + b for a, b in zip(tokens, tokens[1:]))
    features.update(flat[i:i + 3] for i in range(max(1, len(flat) - 2)))  # blank text: "^$"
    if hashes is None:
        hashes = {}
    buckets: Dict[int, int] = {}
    for feature, count in features.items():
        bucket = hashes.get(feature)
        if bucket is None:
            bucket = hashes[feature] = zlib.crc32(feature.encode("utf-8", "surrogatepass")) % dimensions
        buckets[bucket] = buckets.get(bucket, 0) + count
    norm = math.sqrt(sum(c * c for c in buckets.values()))  # > 0: there is always a feature
    return {bucket: round(count / norm, 6) for bucket, count in buckets.items()}


_TAG_REST = r"""[^>"']*(?:(?:"[^"]*(?:"|\Z)|'[^']*(?:'|\Z))[^>"']*)*(?:>|\Z)"""
"""The rest of a tag after its name: attributes (a quoted value may hold ``>``) up to ``>``. It
cannot fail once started (a tag left open runs to the end of the file), so a search with it never
rescans the text: linear time."""
_HTML_HIDDEN_RE = re.compile(
    r"<!--.*?(?:-->|\Z)|<[!?][^>]*(?:>|\Z)|</(?![A-Za-z])[^>]*(?:>|\Z)"
    r"|<(script|style|title|textarea|template|noscript)(?=[\s/>]|\Z)" + _TAG_REST + r".*?(?:</\1(?=[\s/>])"
    + _TAG_REST + r"|\Z)", re.IGNORECASE | re.DOTALL)
"""What is not page text: comments (``<!--...-->``), bogus comments (``<!DOCTYPE ...>``,
``<![CDATA[...]>``, ``<?...>``), and elements whose content is not text (scripts, styles, the title,
templates...). Each runs to its end, else to the end of the file, as in the HTML tokenizer."""
_HTML_BLOCK_RE = re.compile(r"</?(?:p|div|br|li|tr|h[1-6]|section|article|header|footer|blockquote|pre|table|ul|ol"
                            r"|hr|dt|dd)(?=[\s/>]|\Z)" + _TAG_REST, re.IGNORECASE)
"""Tags of elements that start and end a line of text."""
_HTML_TAG_RE = re.compile(r"</?[A-Za-z]" + _TAG_REST)


def _html_text(html: str) -> str:
    """The text of an HTML page, in time linear in its length (three regular-expression passes
    that never rescan): comments, scripts, styles and the like dropped (``_HTML_HIDDEN_RE``), a
    line break for each block tag, other tags dropped, character references decoded with
    ``html.unescape``. A ``<`` that starts no tag is text, as in the HTML tokenizer. ``html.parser``
    is not used: it takes time quadratic in the length of some malformed input (unclosed tags)
    and raises on some markup declarations."""
    text = _HTML_HIDDEN_RE.sub("", html)
    text = _HTML_BLOCK_RE.sub("\n", text)
    return html_unescape(_HTML_TAG_RE.sub("", text))


def text_type(content_type: Optional[str], file_name: str) -> str:
    """The media type to index a file as: ``content_type`` (without parameters, lower-cased) when
    given and not ``application/octet-stream``, else a guess from ``file_name``'s extension."""
    if content_type and content_type != "application/octet-stream":
        return content_type
    ext = file_name[file_name.rfind("."):].lower() if "." in file_name else ""
    return _EXTENSION_TYPES.get(ext) or mimetypes.guess_type(file_name)[0] or "application/octet-stream"


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def extract_text(data: bytes, media_type: str, charset: Optional[str] = None) -> str:
    """The text of a file of ``media_type``, decoded as ``charset`` (the ``Content-Type``'s
    parameter; default UTF-8, a BOM dropped) for ``TEXT_TYPES``, HTML reduced to its text by
    ``_html_text`` (scripts and styles dropped, blank lines squeezed), in time linear in its
    length.

    Raises ``ValueError`` with a sentence for users: the type is not a text format, the charset
    is unknown, or the bytes are not text in it (a lone surrogate, which codecs such as
    ``unicode_escape`` or ``utf-7`` can decode to, included)."""
    kind = TEXT_TYPES.get(media_type)
    if kind is None:
        raise ValueError("The mock reads text files only (%s); this %s file is kept but not indexed."
                         % (", ".join(sorted(set(TEXT_TYPES))), media_type))
    encoding = "utf-8-sig"
    if charset:
        try:
            encoding = codecs.lookup(charset).name
        except LookupError:
            raise ValueError("The file's charset %r is unknown." % charset[:100]) from None
        if encoding == "utf-8":
            encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except LookupError:  # a codec that is not a text encoding, such as "rot13"
        raise ValueError("The file's charset %r is unknown." % charset) from None
    except UnicodeDecodeError as exc:
        raise ValueError("The file is not valid %s text (byte %d)." % ("UTF-8" if encoding == "utf-8-sig" else encoding,
                                                                       exc.start)) from None
    if encoding != "utf-8-sig" and _SURROGATE_RE.search(text):  # unicode_escape, utf-7... can make one
        raise ValueError("The file's %s text holds a lone UTF-16 surrogate, which no answer could carry as "
                         "UTF-8." % encoding)
    if kind == "html":
        lines = (" ".join(line.split()) for line in _html_text(text).splitlines())
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text


# --- filters and ranking ------------------------------------------------------------------------

_OPERATORS = ("Eq", "NotEq", "In", "NotIn")
_CONNECTIVES = ("And", "Or")
_FILTER_SHAPE = "[field, 'Eq'|'NotEq'|'In'|'NotIn', value] or ['And'|'Or', [filters...]]"


def parse_filters(value: Any, param: str = "filters") -> tuple:
    """Validate Langbase memory ``filters`` (the SDKs' ``MemoryFilters``): a condition
    ``[field, op, value]`` (``Eq``/``NotEq`` take a string, ``In``/``NotIn`` a string or an
    array of at most ``MAX_FILTER_VALUES`` strings) or ``[connective, [filters...]]``
    (``And``/``Or``, at least one), nested at most ``MAX_FILTER_DEPTH`` deep, with at most
    ``MAX_FILTER_CONDITIONS`` conditions in all (checked while reading, so a huge filter is
    refused early). Returns the filter as nested tuples (``In`` values as a frozenset); raises
    ``InvalidRequest`` naming the offending part."""
    return _parse_filter(value, param, 1, [0])


def _parse_filter(value: Any, param: str, depth: int, conditions: List[int]) -> tuple:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidRequest("%s nests deeper than %d" % (param, MAX_FILTER_DEPTH), param)
    if isinstance(value, list) and len(value) == 2 and value[0] in _CONNECTIVES:
        parts = value[1]
        if not isinstance(parts, list) or not parts:
            raise InvalidRequest("%s[1] must be a non-empty array of filters" % param, param)
        return (value[0], tuple(_parse_filter(p, "%s[1][%d]" % (param, i), depth + 1, conditions)
                                for i, p in enumerate(parts)))
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and value[1] in _OPERATORS):
        raise InvalidRequest("%s must be %s" % (param, _FILTER_SHAPE), param)
    conditions[0] += 1
    if conditions[0] > MAX_FILTER_CONDITIONS:
        raise InvalidRequest("filters may hold at most %d conditions in all" % MAX_FILTER_CONDITIONS, param)
    field, op, operand = value
    if op in ("Eq", "NotEq"):
        if not isinstance(operand, str):
            raise InvalidRequest("%s[2] must be a string for %s" % (param, op), param)
        return (field, op, operand)
    if isinstance(operand, str):
        operand = [operand]
    if (not isinstance(operand, list) or len(operand) > MAX_FILTER_VALUES
            or not all(isinstance(v, str) for v in operand)):
        raise InvalidRequest("%s[2] must be a string or an array of at most %d strings for %s"
                             % (param, MAX_FILTER_VALUES, op), param)
    return (field, op, frozenset(operand))


def filter_matches(parsed: tuple, meta: Dict[str, str]) -> bool:
    """Whether document metadata ``meta`` passes a filter from ``parse_filters``. A field the
    document lacks fails ``Eq`` and ``In`` and passes ``NotEq`` and ``NotIn``."""
    if len(parsed) == 2:
        results = (filter_matches(p, meta) for p in parsed[1])
        return all(results) if parsed[0] == "And" else any(results)
    field, op, operand = parsed
    value = meta.get(field)
    if op == "Eq":
        return value == operand
    if op == "NotEq":
        return value != operand
    if op == "In":
        return value in operand
    return value not in operand


class ChunkIndex:
    """One document's text split by ``chunk_spans`` with an inverted index of its chunks, built
    once at upload so that a search touches only the chunks holding a query word.

    Attributes: ``text`` (str, kept once: chunks are slices of it, overlaps not copied),
    ``spans`` (``array('L')`` of start, end offsets, two per chunk), ``lengths``
    (``array('L')``: words per chunk), ``words`` (int: words over all chunks), ``postings``
    (``{word: array('L') of chunk number, count in that chunk, ...}``, chunks in order) and
    ``held`` (int: an estimate of the bytes all this occupies in process memory, from
    ``sys.getsizeof`` of the text, the arrays, the dict and its keys)."""

    __slots__ = ("text", "spans", "lengths", "words", "postings", "held")

    def __init__(self, text: str, max_length: int, overlap: int) -> None:
        self.text = text
        self.spans = array("L")
        self.lengths = array("L")
        postings: Dict[str, "array[int]"] = {}
        total = 0
        for number, (start, end) in enumerate(chunk_spans(text, max_length, overlap)):
            self.spans.append(start)
            self.spans.append(end)
            tokens = words(text[start:end])
            self.lengths.append(len(tokens))
            total += len(tokens)
            for word, count in collections.Counter(tokens).items():
                posting = postings.get(word)
                if posting is None:
                    posting = postings[word] = array("L")
                posting.append(number)
                posting.append(count)
        self.words, self.postings = total, postings
        self.held = (sys.getsizeof(text) + sys.getsizeof(self.spans) + sys.getsizeof(self.lengths)
                     + sys.getsizeof(postings) + sum(sys.getsizeof(w) + sys.getsizeof(p) for w, p in postings.items()))

    def __len__(self) -> int:
        return len(self.lengths)

    def chunk(self, number: int) -> str:
        """The text of chunk ``number``."""
        return self.text[self.spans[2 * number]:self.spans[2 * number + 1]]


MAX_QUERY_CHARS = 2000
MAX_QUERY_WORDS = 64
"""Bounds of a retrieval query: characters, and distinct words (each word costs a pass over the
chunks that hold it)."""


def query_words(query: Any, param: str = "query") -> List[str]:
    """The distinct lower-cased words of a retrieval ``query``, sorted: a non-empty string of at
    most ``MAX_QUERY_CHARS`` characters and ``MAX_QUERY_WORDS`` distinct words. Raises
    ``InvalidRequest``."""
    if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest("%s must be a non-empty string of at most %d characters" % (param, MAX_QUERY_CHARS), param)
    terms = sorted(set(words(query)))
    if len(terms) > MAX_QUERY_WORDS:
        raise InvalidRequest("%s has %d distinct words; at most %d are searched" % (param, len(terms), MAX_QUERY_WORDS),
                             param)
    return terms


MAX_POSTINGS_READ = 100_000
"""Most (word, chunk) postings one search reads: its words are read rarest first, and a word
whose postings would pass this is left out with the commoner ones. Keeps a search over a full
store to tens of milliseconds; only words found in most chunks of a large memory are skipped,
which count least in BM25 anyway."""


def bm25_search(terms: Sequence[str], indexes: Sequence[ChunkIndex], top_k: int, k1: float = 1.2,
                b: float = 0.75) -> List[Tuple[float, int, int]]:
    """The ``top_k`` best chunks of ``indexes`` for the query words ``terms`` by Okapi BM25,
    the collection being every chunk of ``indexes``: IDF is ``ln(1 + (N - df + 0.5) / (df +
    0.5))`` (never negative), each distinct word counts once, chunks sharing no word with the
    query are left out. Time grows with the postings read (at most ``MAX_POSTINGS_READ``, rarest
    words first) and the chunks of the documents holding a word, never with the whole store.
    Returns ``[(score, index position, chunk number)]``, best first; equal scores keep index and
    chunk order."""
    count = sum(len(ix) for ix in indexes)
    if not count or not terms:
        return []
    average = sum(ix.words for ix in indexes) / count or 1.0
    found = []
    for term in terms:
        hits = [(pos, ix.postings[term]) for pos, ix in enumerate(indexes) if term in ix.postings]
        if hits:
            found.append((sum(len(p) for _, p in hits) // 2, term, hits))
    found.sort(key=lambda item: item[:2])
    scores: Dict[int, List[float]] = {}
    norms: Dict[int, List[float]] = {}
    budget = MAX_POSTINGS_READ
    for df, _, hits in found:
        budget -= df
        if budget < 0:
            break
        weight = math.log(1.0 + (count - df + 0.5) / (df + 0.5)) * (k1 + 1)
        for pos, posting in hits:
            norm = norms.get(pos)
            if norm is None:
                norm = norms[pos] = [k1 * (1 - b + b * length / average) for length in indexes[pos].lengths]
                scores[pos] = [0.0] * len(norm)
            score = scores[pos]
            for number, tf in zip(posting[0::2], posting[1::2]):
                score[number] += weight * tf / (tf + norm[number])
    ranked = ((-value, pos, number) for pos, score in scores.items() for number, value in enumerate(score) if value)
    return [(-negative, pos, number) for negative, pos, number in heapq.nsmallest(top_k, ranked)]


# --- the store ----------------------------------------------------------------------------------


DOCUMENT_OVERHEAD = 1024
"""Bytes counted for a document besides its index and metadata: its record, name, type and
status message (an estimate)."""


class _Document:
    """A stored document. ``held`` is an estimate of the bytes it occupies in process memory
    (what ``MemoryStore.max_bytes`` bounds): ``ChunkIndex.held``, the metadata's strings and
    ``DOCUMENT_OVERHEAD``; a failed document keeps no text, only this record."""

    __slots__ = ("name", "media_type", "size", "meta", "uploaded_at", "failure", "index", "held")

    def __init__(self, name: str, media_type: str, size: int, meta: Dict[str, str], uploaded_at: float,
                 failure: Optional[str], index: Optional[ChunkIndex]) -> None:
        self.name, self.media_type, self.size, self.meta = name, media_type, size, meta
        self.uploaded_at, self.failure, self.index = uploaded_at, failure, index
        self.held = (DOCUMENT_OVERHEAD + (index.held if index is not None else 0) + sys.getsizeof(meta)
                     + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in meta.items()))


class _Memory:
    __slots__ = ("name", "description", "embedding_model", "top_k", "chunk_size", "chunk_overlap", "documents")

    def __init__(self, name: str, description: str, embedding_model: str, top_k: int, chunk_size: int,
                 chunk_overlap: int) -> None:
        self.name, self.description, self.embedding_model = name, description, embedding_model
        self.top_k, self.chunk_size, self.chunk_overlap = top_k, chunk_size, chunk_overlap
        self.documents: Dict[str, _Document] = {}


def check_name(value: Any, param: str) -> str:
    """A memory name (see ``NAME_RE``); raises ``InvalidRequest``."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InvalidRequest("%s must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
                             % param, param)
    return value


def check_document_name(value: Any, param: str) -> str:
    """A document name: 1-255 characters, no ``/``, ``\\``, ``?``, ``#``, ``%`` or control
    characters, no surrounding spaces. It appears in URL paths, where both SDKs put it as it is:
    ``?`` or ``#`` would end the path there and ``%`` would be read as an escape, so such a
    document could not be deleted or retried through an SDK. Raises ``InvalidRequest``."""
    if (not isinstance(value, str) or not 0 < len(value) <= MAX_DOCUMENT_NAME
            or re.search(r"[/\\?#%\x00-\x1f\x7f]", value) or value.strip() != value):
        raise InvalidRequest("%s must be 1-%d characters without '/', '\\', '?', '#', '%%', control characters "
                             "or surrounding spaces" % (param, MAX_DOCUMENT_NAME), param)
    return value


def check_meta(value: Any, param: str = "meta") -> Dict[str, str]:
    """Document metadata: an object of at most ``MAX_META_ITEMS`` string values, keys and
    values at most ``MAX_META_CHARS`` characters (``None``: empty); raises ``InvalidRequest``."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_META_ITEMS:
        raise InvalidRequest("%s must be an object of at most %d string values" % (param, MAX_META_ITEMS), param)
    for key, item in value.items():
        if not isinstance(item, str) or len(item) > MAX_META_CHARS or len(key) > MAX_META_CHARS:
            raise InvalidRequest("%s.%s must be a string of at most %d characters" % (param, key[:50], MAX_META_CHARS),
                                 param)
    return dict(value)


def _new_token() -> str:
    """The unguessable part of a signed upload URL. ``secrets`` is imported here, at the first
    upload, not with the module: it imports ``hmac``, which loads OpenSSL's libcrypto (see
    ``digests``)."""
    import secrets
    return secrets.token_urlsafe(32)


class MemoryStore:
    """Memories, their documents and pending signed uploads, in process memory.

    Thread-safe: every public method takes the store's lock once and returns new objects.
    ``clock`` gives wall-clock seconds (statuses are computed from it); ``processing_seconds``
    is how long a document takes to become ``completed``; ``max_memories``, ``max_documents``
    (over all memories, pending uploads included) and ``max_bytes`` bound it: past them
    ``StoreFull``, nothing changed. ``max_bytes`` bounds an estimate of the process memory the
    documents occupy (``bytes_held``: each document's text once, its word index and metadata,
    measured with ``sys.getsizeof`` when it is stored), not the bytes uploaded: an index of
    English prose takes about 3-5 times the text, one of short distinct words up to 45 times. ``new_token`` makes the
    unguessable part of a signed upload URL.
    """

    def __init__(self, clock: Callable[[], float], processing_seconds: float, max_memories: int,
                 max_documents: int, max_bytes: int,
                 new_token: Callable[[], str] = _new_token) -> None:
        self._clock = clock
        self._processing = processing_seconds
        self.max_memories, self.max_documents, self.max_bytes = max_memories, max_documents, max_bytes
        self._new_token = new_token
        self._lock = threading.Lock()
        self._memories: Dict[str, _Memory] = {}
        self._uploads: "collections.OrderedDict[str, Tuple[str, str, Dict[str, str], float]]" = collections.OrderedDict()
        self._documents = 0
        self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._memories)

    def clear(self) -> int:
        """Forget every memory, document and pending upload (``POST /mock/reset``); returns
        how many memories were dropped."""
        with self._lock:
            count = len(self._memories)
            self._memories.clear()
            self._uploads.clear()
            self._documents = 0
            self._bytes = 0
            return count

    @property
    def bytes_held(self) -> int:
        """The estimated bytes all documents occupy (see ``_Document.held``)."""
        with self._lock:
            return self._bytes

    def _memory(self, name: str) -> _Memory:
        memory = self._memories.get(name)
        if memory is None:
            raise Missing("Memory %r not found." % name)
        return memory

    @staticmethod
    def _public(memory: _Memory) -> Dict[str, Any]:
        return {"name": memory.name, "description": memory.description, "owner_login": OWNER_LOGIN,
                "url": "https://langbase.com/memorysets/%s/%s" % (OWNER_LOGIN, memory.name)}

    def create(self, data: Dict[str, Any]) -> Dict[str, Any]:
        """Create a memory from a ``POST /v1/memory`` body ``{name, description?,
        embedding_model?, top_k?, chunk_size?, chunk_overlap? (default: ``default_overlap``)}``. Returns ``{name, description,
        owner_login, url, chunk_size, chunk_overlap, embedding_model}``. Raises
        ``InvalidRequest``, ``Exists`` or ``StoreFull``."""
        name = check_name(data.get("name"), "name")
        description = data.get("description")
        if description is None:
            description = ""
        if not isinstance(description, str) or len(description) > 1000:
            raise InvalidRequest("description must be a string of at most 1000 characters", "description")
        model = parse_embedding_model(data.get("embedding_model"), "embedding_model")
        top_k = data.get("top_k", MEMORY_DEFAULTS["top_k"])
        if type(top_k) is not int or not RETRIEVE_TOP_K[0] <= top_k <= RETRIEVE_TOP_K[1]:
            raise InvalidRequest("top_k must be a whole number from %d to %d" % RETRIEVE_TOP_K[:2], "top_k")
        size = data.get("chunk_size", MEMORY_DEFAULTS["chunk_size"])
        overlap = data.get("chunk_overlap")
        if overlap is None:
            overlap = default_overlap(size) if type(size) is int else MEMORY_DEFAULTS["chunk_overlap"]
        size, overlap = check_chunking(size, overlap, ("chunk_size", "chunk_overlap"))
        with self._lock:
            if name in self._memories:
                raise Exists("A memory named %r exists already." % name)
            if len(self._memories) >= self.max_memories:
                raise StoreFull("The mock holds at most %d memories (--max-memories); delete one first."
                                % self.max_memories)
            memory = self._memories[name] = _Memory(name, description, model, top_k, size, overlap)
            return dict(self._public(memory), chunk_size=size, chunk_overlap=overlap, embedding_model=model)

    def list(self) -> List[Dict[str, Any]]:
        """Every memory, oldest first: ``{name, description, owner_login, url, embedding_model,
        embeddingModel}`` (the Python SDK types the snake-case name, the JS SDK the camel-case
        one: both are sent)."""
        with self._lock:
            return [dict(self._public(m), embedding_model=m.embedding_model, embeddingModel=m.embedding_model)
                    for m in self._memories.values()]

    def delete(self, name: str) -> None:
        """Delete a memory with its documents and pending uploads. Raises ``Missing``."""
        with self._lock:
            memory = self._memory(name)
            self._documents -= len(memory.documents)
            self._bytes -= sum(d.held for d in memory.documents.values())
            del self._memories[name]
            for token in [t for t, upload in self._uploads.items() if upload[0] == name]:
                del self._uploads[token]
                self._documents -= 1

    def _expire_uploads(self, now: float) -> None:
        for token in [t for t, upload in self._uploads.items() if upload[3] <= now]:
            del self._uploads[token]
            self._documents -= 1

    def new_upload(self, memory_name: str, document_name: str, meta: Dict[str, str]) -> Tuple[str, float]:
        """Reserve an upload of ``document_name`` into ``memory_name`` with ``meta`` (checked
        by the caller). Returns ``(token, expires_at)``: the token is valid for
        ``UPLOAD_URL_SECONDS`` and counts as a document until then. Raises ``Missing`` or
        ``StoreFull``."""
        with self._lock:
            now = self._clock()
            self._expire_uploads(now)
            self._memory(memory_name)
            if self._documents >= self.max_documents:
                raise StoreFull("The mock holds at most %d documents, pending uploads included "
                                "(--max-documents); delete one first." % self.max_documents)
            token = self._new_token()
            expires = now + UPLOAD_URL_SECONDS
            self._uploads[token] = (memory_name, document_name, meta, expires)
            self._documents += 1
            return token, expires

    def put_upload(self, token: str, data: bytes, content_type: Optional[str], charset: Optional[str] = None) -> None:
        """Store the file ``data`` PUT to a signed upload URL (``content_type``: its media type
        or None, then the name's extension decides; ``charset``: see ``extract_text``): text is
        extracted and chunked now
        (with the memory's ``chunk_size`` and ``chunk_overlap``); a file that cannot be read
        as text is kept and will end ``failed``. A document of the same name is replaced. The
        token is then spent.

        Raises ``Missing`` (unknown, spent or expired token; memory deleted since) or
        ``StoreFull`` (``max_bytes``: checked first against the file's size, a cheap lower
        bound for a text file, before it is read; then against the document's ``held``
        estimate)."""
        with self._lock:
            now = self._clock()
            self._expire_uploads(now)
            upload = self._uploads.get(token)
            if upload is None:
                raise Missing("This upload URL is unknown, used or expired (they last %d seconds); "
                              "ask POST /v1/memory/documents for a new one." % UPLOAD_URL_SECONDS)
            memory_name, document_name, meta, _ = upload
            memory = self._memory(memory_name)
            old = memory.documents.get(document_name)
            room = self.max_bytes - self._bytes + (old.held if old else 0)
            if len(data) > room:
                raise StoreFull("Storing this %d-byte file would pass the %d bytes of memory the mock keeps for "
                                "documents (--max-memory-bytes); delete documents first." % (len(data), self.max_bytes))
            media_type = text_type(content_type, document_name)
            failure, index = None, None
            try:
                index = ChunkIndex(extract_text(data, media_type, charset), memory.chunk_size, memory.chunk_overlap)
                if not len(index):
                    failure, index = "The file holds no text to index.", None
            except ValueError as exc:
                failure = str(exc)
            document = _Document(document_name, media_type, len(data), meta, now, failure, index)
            if document.held > room:
                raise StoreFull("This %d-byte file takes about %d bytes of memory once indexed, more than the %d "
                                "bytes left of --max-memory-bytes; delete documents first."
                                % (len(data), document.held, max(room, 0)))
            del self._uploads[token]
            if old is not None:
                self._documents -= 1
                self._bytes -= old.held
                del memory.documents[document_name]  # re-added last, as a new upload
            memory.documents[document_name] = document
            self._bytes += document.held

    def _status(self, document: _Document, now: float) -> str:
        elapsed = now - document.uploaded_at
        if elapsed < self._processing / 3:
            return "queued"
        if elapsed < self._processing:
            return "in_progress"
        return "failed" if document.failure else "completed"

    def list_documents(self, memory_name: str) -> List[Dict[str, Any]]:
        """A memory's documents, in upload order: ``{name, status, status_message, metadata:
        {size, type}, enabled, chunk_size, chunk_overlap, owner_login}``; ``status`` is
        ``queued``, ``in_progress``, ``completed`` or ``failed`` (then ``status_message`` says
        why; else it is null). Raises ``Missing``."""
        with self._lock:
            now = self._clock()
            memory = self._memory(memory_name)
            out = []
            for doc in memory.documents.values():
                status = self._status(doc, now)
                out.append({"name": doc.name, "status": status,
                            "status_message": doc.failure if status == "failed" else None,
                            "metadata": {"size": doc.size, "type": doc.media_type}, "enabled": True,
                            "chunk_size": memory.chunk_size, "chunk_overlap": memory.chunk_overlap,
                            "owner_login": OWNER_LOGIN})
            return out

    def _document(self, memory_name: str, document_name: str) -> Tuple[_Memory, _Document]:
        memory = self._memory(memory_name)
        document = memory.documents.get(document_name)
        if document is None:
            raise Missing("Document %r not found in memory %r." % (document_name, memory_name))
        return memory, document

    def delete_document(self, memory_name: str, document_name: str) -> None:
        """Delete one document. Raises ``Missing``."""
        with self._lock:
            memory, document = self._document(memory_name, document_name)
            del memory.documents[document_name]
            self._documents -= 1
            self._bytes -= document.held

    def retry_document(self, memory_name: str, document_name: str) -> None:
        """Process a document again (its status restarts at ``queued``; a file that failed
        fails again). Raises ``Missing``."""
        with self._lock:
            self._document(memory_name, document_name)[1].uploaded_at = self._clock()

    def retrieve(self, query: str, selections: Sequence[Tuple[str, Optional[tuple]]], top_k: int) -> List[Dict[str, Any]]:
        """The ``top_k`` chunks best matching ``query`` (see ``query_words``) among the completed
        documents of the memories in ``selections`` (``(memory name, parsed filter or None)``;
        the filter applies to each document's metadata; a memory named more than once is
        searched once, for the documents that pass any of its filters). Ranked by
        ``bm25_search`` over those documents' chunks; chunks sharing no word with the query are
        left out; ties keep memory, document and chunk order. Returns ``[{text, similarity,
        meta}]``: ``similarity`` is ``score / (score + 1)`` (0-1, 6 decimals), ``meta`` the
        document's metadata with ``documentName`` added unless set. Raises ``InvalidRequest``
        for a query past its bounds, ``Missing`` for an unknown memory."""
        terms = query_words(query)
        chosen: Dict[str, List[Optional[tuple]]] = {}
        for name, parsed in selections:
            chosen.setdefault(name, []).append(parsed)
        with self._lock:
            now = self._clock()
            indexes, metas = [], []
            for name, filters in chosen.items():
                for doc in self._memory(name).documents.values():
                    if doc.index is None or self._status(doc, now) != "completed":
                        continue
                    meta = dict({"documentName": doc.name}, **doc.meta)
                    if None in filters or any(filter_matches(f, meta) for f in filters):
                        indexes.append(doc.index)
                        metas.append(meta)
            best = bm25_search(terms, indexes, top_k)
        return [{"text": indexes[pos].chunk(number), "similarity": round(score / (score + 1.0), 6),
                 "meta": dict(metas[pos])} for score, pos, number in best]
