"""The route table and dispatch: which function answers a request, with which auth and error shape.

Job: hold every endpoint as data (``api.Route`` records gathered from one module per area:
``langbase``, ``memory``, ``tools``, ``openai``, ``frontends`` for the other chat backends' wire
formats, ``mock`` for the mock's own endpoints, ``contract`` for ``GET /openapi.json`` and
``playground`` for the browser page), find the route for a method and path, apply the route's auth
rule, call it, turn any error into a JSON response in the route's own error shape, and note
the request in the journal (``journal``). A run waiting for the upstream is answered with an
``api.DeferredResponse`` that calls the route again when the reply is in. No I/O:
``dispatch`` takes an ``api.Request`` and returns an ``api`` response value, so every route can
be exercised without a socket.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Optional, Tuple

import upstream
from api import (
    DOMAIN_ERRORS, ApiError, App, DeferredResponse, Forbidden, JsonResponse, MethodNotAllowed, MockFault, NotFound,
    Request, Response, Route, StreamResponse, Unauthorized, domain_error,
)
from routes import contract, frontends, hosts, langbase, memory, mock, openai, playground, tools

__all__ = ["ROUTES", "resolve", "dispatch", "error_response", "error_style_for", "check_auth", "check_cross_site"]

log = logging.getLogger(__name__)

ROUTES: List[Route] = (mock.ROUTES + contract.ROUTES + langbase.ROUTES + memory.ROUTES + tools.ROUTES
                      + openai.ROUTES + frontends.ROUTES + playground.ROUTES)
"""Every endpoint, in matching order."""

_STATIC: Dict[Tuple[str, str], Route] = {}
for _route in ROUTES:  # paths without parameters are found by one dict lookup
    if "{" not in _route.path:
        _STATIC.setdefault((_route.method, _route.path), _route)

_FALLBACK_STYLES = (("/v1/chat/", "openai"), ("/v1/models", "openai"), ("/api/", "plain"))
"""Error shapes for paths no route matches (a 404), by prefix; anything else is Langbase's."""

_BEARER_RE = re.compile(r"Bearer ([^\s]+)")
_SIMPLE_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
"""The content types a browser sends cross-site without a CORS preflight (Fetch, "CORS-
safelisted request-header")."""


def _origin_key(scheme: str, hostport: str) -> str:
    """``scheme://host[:port]`` lower-cased, without the scheme's default port."""
    hostport = hostport.strip().lower()
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default and hostport.endswith(default):
        hostport = hostport[:-len(default)]
    return "%s://%s" % (scheme, hostport)


def _same_origin(origin: str, host: Optional[str]) -> bool:
    scheme, sep, rest = origin.partition("://")
    if not sep or host is None:
        return False
    return _origin_key(scheme.lower(), rest) == _origin_key(scheme.lower(), host)


def check_cross_site(request: Request, cors_origins: Tuple[str, ...]) -> None:
    """Refuse what a web page on another site can send to any address without asking (no
    CORS preflight): a POST, PUT or PATCH with a form, plain-text or missing ``Content-Type``
    and no header a script alone can set. Without this, any page a developer's browser opens
    could create threads and start runs on the mock.

    Passes: requests without ``Origin`` (curl, SDKs, servers); an ``Origin`` listed in
    ``cors_origins`` or equal to this server's (``Host``, default ports and case aside, or
    ``Sec-Fetch-Site: same-origin``, which survives a dev server's proxy); and requests the
    browser preflighted, so that CORS has already said yes: those with a JSON or other
    non-form type, with ``Authorization``, ``LB-LLM-Key``, ``LB-WEB-SEARCH-KEY``,
    ``LB-CRAWL-KEY`` or an ``X-`` header, or marked
    ``Sec-Fetch-Mode: cors``. With ``--cors-origins *`` (the default) that means any page may
    still send JSON; listing origins closes that too.

    Raises ``Forbidden`` with what to do instead."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return
    headers = request.headers
    origin = headers.get("Origin")
    if origin is None or origin in cors_origins:
        return
    if headers.get("Sec-Fetch-Site", "").lower() == "same-origin" or _same_origin(origin, headers.get("Host")):
        return
    mode = headers.get("Sec-Fetch-Mode", "").lower()
    if mode == "cors":
        return  # preflighted when it needed to be
    if not mode and any(name.lower() in _SCRIPT_ONLY or name.lower().startswith("x-") for name in headers.keys()):
        return  # a header only a script sets: the browser asked first
    content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type and content_type not in _SIMPLE_TYPES:
        return  # the browser asked first (a preflight), and CORS answered
    raise Forbidden("A cross-site %s from %r with a %s body is refused: any web page could send it "
                    "without asking. Send 'Content-Type: application/json', or start the server with "
                    "--cors-origins listing that origin." % (request.method, origin[:100], content_type or "missing"))


_SCRIPT_ONLY = ("authorization", "lb-llm-key", "lb-web-search-key", "lb-crawl-key")
"""Headers a browser sends only when a script set them, which makes it preflight the request."""

_UNSET_TOKENS = ("undefined", "null", "None")


def resolve(method: str, path: str) -> Tuple[Route, Dict[str, str]]:
    """Find the route for ``method`` and ``path`` (no query string); ``HEAD`` matches ``GET``
    routes. Returns ``(route, path parameters)``.

    Raises:
        NotFound: no route has this path.
        MethodNotAllowed: the path exists for other methods (``Allow`` header lists them).
    """
    wanted = "GET" if method == "HEAD" else method
    route = _STATIC.get((wanted, path))
    if route is not None:
        return route, {}
    allowed = set()
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match:
            if route.method == wanted:
                return route, match.groupdict()
            allowed.add(route.method)
    if allowed:
        if "GET" in allowed:
            allowed.add("HEAD")
        allow = ", ".join(sorted(allowed) + ["OPTIONS"])
        raise MethodNotAllowed(
            "Method %s is not allowed on %s; use %s." % (method, path, allow),
            headers=[("Allow", allow)],
        )
    raise NotFound("No route for %s %s; see GET / for the endpoints." % (method, path))


def error_style_for(path: str) -> str:
    """The error shape of ``path``'s routes (any method), for errors met before routing."""
    for route in ROUTES:
        if route.pattern.fullmatch(path):
            return route.error_style
    for prefix, style in _FALLBACK_STYLES:
        if path.startswith(prefix):
            return style
    return "langbase"


def check_auth(request: Request, api_key: Optional[str]) -> None:
    """Apply ``--api-key``: without it any well-formed ``Authorization: Bearer <key>`` (or
    none) passes; with it exactly that key is required. A token such as ``undefined`` is always
    refused, since it means the client's key was never set.

    Raises ``Unauthorized`` with a message that says what to send."""
    header = request.headers.get("Authorization")
    if header is None:
        if api_key is None:
            return
        raise Unauthorized("Missing Authorization header; send 'Authorization: Bearer <key>'.")
    match = _BEARER_RE.fullmatch(header.strip())
    if not match:
        raise Unauthorized("Malformed Authorization header; expected 'Bearer <key>'.")
    token = match.group(1)
    if token in _UNSET_TOKENS:
        raise Unauthorized("Authorization carries the token %r: your client's API key is not set." % token)
    if api_key is not None:
        import hmac  # only with --api-key: it loads OpenSSL's libcrypto (see digests.py)
        if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"),
                                   api_key.encode("utf-8", "surrogateescape")):
            raise Unauthorized("Invalid API key.")


def error_response(error: ApiError, style: str, request: Optional[Request] = None) -> JsonResponse:
    """``error`` as a JSON response in ``style`` (see ``ApiError.body``), with its headers."""
    headers = list(error.headers)
    if style == "openai":
        if request is not None and request.request_id:
            headers.append(("x-request-id", request.request_id))
        if isinstance(error, MockFault):
            # The same request draws the same fault again, so an SDK retry cannot succeed.
            headers.append(("x-should-retry", "false"))
    return JsonResponse(error.status, error.body(style), headers, error.close)


def dispatch(app: App, request: Request) -> Response:
    """Answer ``request``: route it, check auth, call the route. Never raises: errors become
    JSON responses in the route's error shape, and an unexpected exception is logged with
    its traceback and answered 500. Every request outside ``/mock/`` is then kept in the
    request journal (``app.journal``, when the app has one) with its status, run id and the
    fixture that answered."""
    try:
        response = _answer(app, request)
    except upstream.UpstreamPending as pending:
        return _after_upstream(app, request, pending.job, pending.whole)
    book = app.journal
    if book is not None and not request.path.startswith("/mock/"):
        run_id = next((value for name, value in response.headers if name == "lb-mock-run-id"), None)
        fixture = request.fixture  # set when this request made the run
        if fixture is None and run_id is not None:  # one that follows a run made before (a token stream)
            record = app.runs.get(run_id)
            fixture = record.get("fixture") if record else None
        book.add(time=app.clock(), method=request.method, path=request.path, query=request.query,
                 headers=request.headers.raw_items(), body=request.body, status=getattr(response, "status", 200),
                 run_id=run_id, fixture=fixture, request_id=request.request_id)
    return response


def _after_upstream(app: App, request: Request, job: upstream.Job, whole: bool) -> DeferredResponse:
    """Answer once the upstream has answered (its stream begun, or the job done), or with
    ``whole`` once ``job`` is done: the route runs again with ``job`` waiting for it in
    ``app.upstream_results`` (``runs.prepare`` takes it from there); nothing was stored or
    published before. With a file store (``--db``) the route runs on the store's worker."""

    def again() -> Response:
        app.upstream_results[request.request_id] = job
        try:
            response = dispatch(app, request)
        finally:
            app.upstream_results.pop(request.request_id, None)
        if type(response) not in (StreamResponse, DeferredResponse):
            job.cancel()  # an error (or a fault) answered instead: the upstream's reply is not needed
        return response

    def cancel_both(future: Any) -> None:
        future.cancel()
        job.cancel()

    def poll() -> Optional[Response]:
        if not (job.done.is_set() or not whole and job.answered.is_set()):
            return None
        if app.worker is None:
            return again()
        future = app.worker.submit(again)
        return DeferredResponse(lambda: future.result() if future.done() else None, lambda: cancel_both(future))

    return DeferredResponse(poll, job.cancel)


def _answer(app: App, request: Request) -> Response:
    style = None
    try:
        hosts.check_host(request, app.settings.host, app.settings.allowed_hosts)
        route, params = resolve(request.method, request.path)
        style = route.error_style
        request.params = params
        check_cross_site(request, app.settings.cors_origins)
        if route.auth:
            check_auth(request, app.settings.api_key)
        response = route.function(request, app)
        if style == "openai":
            response = response._replace(headers=list(response.headers) + [("x-request-id", request.request_id)])
        return response
    except ApiError as exc:
        return error_response(exc, style or error_style_for(request.path), request)
    except DOMAIN_ERRORS as exc:
        return error_response(domain_error(exc), style or error_style_for(request.path), request)
    except upstream.UpstreamPending:
        raise
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(
            ApiError("The mock server failed unexpectedly; see its log for the traceback.", close=True),
            style or error_style_for(request.path), request)
