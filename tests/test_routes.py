"""Routes without a socket: ``routes.dispatch`` and route functions called on ``api.Request``
values and an ``api.App`` built as ``main.Server`` builds it, asserting response values."""

import dataclasses
import json
import logging
import time
import unittest
from email.message import Message
from unittest import mock

from tests import support  # noqa: F401  (puts the project root on sys.path)
from tests.support import FixedIds, sse_data
import api
import formats
import main
import pipes
import routes
import routes.frontends
import routes.langbase
import routes.mock
import routes.openai
import stores
from steps import Close, Wait, Write
from threads import ThreadStore

HI = {"messages": [{"role": "user", "content": "Hi"}]}
REPLY = "Hello, world!"
UNKNOWN_THREAD = "00000000-0000-4000-8000-00000000abcd"


def make_app(open_streams=0, **settings):
    """An ``api.App`` as ``main.Server.__init__`` builds one, with fixed ids and clock."""
    settings.setdefault("delay", 0.0)
    settings.setdefault("replies", (REPLY,))
    config = dataclasses.replace(main.Settings(), port=0, **settings)
    clock = lambda: 1700000000.0  # noqa: E731
    new_id = FixedIds()
    store = ThreadStore(clock=clock, new_id=new_id, max_threads=config.max_threads,
                        max_messages=config.max_messages)
    app = api.App(config, store, pipes.RunLog(), formats.TokenBroker(time.monotonic), clock, new_id,
                  time.monotonic(), lambda: {"open_streams": open_streams, "connections": 0})
    app.pipes = stores.PipeStore(lambda: "pipe_" + new_id().replace("-", ""), config.max_pipes, config.max_pipe_bytes)
    app.traces = stores.TraceLog()
    return app


def make_request(method, path, body=None, headers=(), query=""):
    message = Message()
    for name, value in headers:
        message[name] = value
    if body is None:
        data = b""
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
        message["Content-Type"] = "application/json"
    return api.Request(method, path, query=query, headers=message, body=data, request_id="req-1",
                       client="127.0.0.1:1")


def plan_bytes(response):
    """Every ``Write`` of a stream's plan, joined; fails on a ``Close`` step or a non-step."""
    out = []
    for step in response.plan:
        if type(step) is Write:
            out.append(step.data)
        elif type(step) is Close:
            raise AssertionError("plan closed the connection")
        elif type(step) is not Wait:
            raise AssertionError("not a step: %r" % (step,))
    return b"".join(out)


def chunk_text(body):
    return "".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                   for d in sse_data(body) if d != "[DONE]")


class DispatchStatusTest(unittest.TestCase):
    def test_health_and_root(self):
        app = make_app(open_streams=7)
        response = routes.dispatch(app, make_request("GET", "/health"))
        self.assertIsInstance(response, api.JsonResponse)
        self.assertEqual(response.status, 200)
        self.assertFalse(response.close)
        body = response.body
        self.assertEqual((body["status"], body["service"], body["version"]), ("healthy", api.SERVICE, api.VERSION))
        self.assertEqual((body["open_streams"], body["threads"], body["generations"]), (7, 0, 0))
        self.assertNotIn("endpoints", body)
        root = routes.dispatch(app, make_request("GET", "/"))
        self.assertEqual(root.body["endpoints"], ["%s %s" % (r.method, r.path) for r in routes.ROUTES])
        self.assertIn("POST /v1/pipes/run", root.body["endpoints"])
        self.assertEqual(root.body["scenario"], {})
        root = routes.dispatch(make_app(mock=(("line_ending", "crlf"), ("event_ids", True))), make_request("GET", "/"))
        self.assertEqual(root.body["scenario"], {"line_ending": "crlf", "event_ids": True})

    def test_head_is_answered_by_the_get_route(self):
        response = routes.dispatch(make_app(), make_request("HEAD", "/health"))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body["status"], "healthy")

    def test_mock_settings_and_runs(self):
        app = make_app()
        settings = routes.dispatch(app, make_request("GET", "/mock/settings")).body
        self.assertEqual(settings["framing"]["default"], "event")
        self.assertEqual(routes.dispatch(app, make_request("GET", "/mock/runs")).body, {"runs": []})
        missing = routes.dispatch(app, make_request("GET", "/mock/runs/nope"))
        self.assertEqual(missing.status, 404)
        self.assertEqual(missing.body["error"]["code"], "NOT_FOUND")


class ResolveTest(unittest.TestCase):
    def test_routes_and_path_parameters(self):
        route, params = routes.resolve("GET", "/v1/threads/abc")
        self.assertIs(route.function, routes.langbase.threads_get)
        self.assertEqual(params, {"threadId": "abc"})
        route, params = routes.resolve("GET", "/api/stream/s1/m1")
        self.assertIs(route.function, routes.frontends.token_stream)
        self.assertEqual(params, {"sessionId": "s1", "chatMessageId": "m1"})
        route, params = routes.resolve("HEAD", "/health")
        self.assertEqual((route.method, route.path), ("GET", "/health"))

    def test_unknown_path_404(self):
        for method, path in (("GET", "/nope"), ("GET", "/v1/thread"), ("GET", "/v1/threads/a/b/c"),
                             ("POST", "/v1/threads/"), ("GET", "/health/")):
            with self.subTest(path=path), self.assertRaises(api.NotFound):
                routes.resolve(method, path)

    def test_wrong_method_405_with_allow_including_head(self):
        with self.assertRaises(api.MethodNotAllowed) as ctx:
            routes.resolve("DELETE", "/health")
        self.assertEqual(ctx.exception.status, 405)
        self.assertEqual(ctx.exception.headers, [("Allow", "GET, HEAD, OPTIONS")])
        with self.assertRaises(api.MethodNotAllowed) as ctx:
            routes.resolve("PUT", "/v1/threads/abc")
        self.assertEqual(ctx.exception.headers, [("Allow", "DELETE, GET, HEAD, POST, OPTIONS")])
        with self.assertRaises(api.MethodNotAllowed) as ctx:
            routes.resolve("GET", "/v1/pipes/run")
        self.assertEqual(ctx.exception.headers, [("Allow", "POST, OPTIONS")])  # no GET, so no HEAD

    def test_dispatch_answers_404_and_405_in_the_path_style(self):
        app = make_app()
        response = routes.dispatch(app, make_request("DELETE", "/health"))
        self.assertEqual((response.status, response.headers), (405, [("Allow", "GET, HEAD, OPTIONS")]))
        self.assertEqual(response.body["error"]["code"], "METHOD_NOT_ALLOWED")
        openai_404 = routes.dispatch(app, make_request("GET", "/v1/chat/nope"))
        self.assertEqual(openai_404.status, 404)
        self.assertEqual(set(openai_404.body["error"]), {"message", "type", "param", "code"})
        self.assertIn(("x-request-id", "req-1"), openai_404.headers)
        plain_404 = routes.dispatch(app, make_request("GET", "/api/nope"))
        self.assertEqual(plain_404.status, 404)
        self.assertEqual(list(plain_404.body), ["error"])
        self.assertIsInstance(plain_404.body["error"], str)
        langbase_404 = routes.dispatch(app, make_request("GET", "/v2/nope"))
        self.assertEqual(langbase_404.body["error"]["code"], "NOT_FOUND")
        self.assertEqual(langbase_404.body["error"]["status"], 404)


class PipesRunTest(unittest.TestCase):
    def test_json_reply_with_thread_and_run_recorded(self):
        app = make_app()
        response = routes.dispatch(app, make_request("POST", "/v1/pipes/run", HI))
        self.assertIsInstance(response, api.JsonResponse)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body["completion"], REPLY)
        self.assertEqual(response.body["raw"]["choices"][0]["message"], {"role": "assistant", "content": REPLY})
        headers = dict(response.headers)
        thread_id = headers["lb-thread-id"]
        run_id = headers["lb-mock-run-id"]
        self.assertEqual(headers["lb-mock-seed"], "0")
        self.assertEqual(app.runs.recent(), [run_id])
        record = app.runs.get(run_id)
        self.assertEqual((record["thread_id"], record["text"], record["stream"]), (thread_id, REPLY, False))
        messages = app.store.list_messages(thread_id)
        self.assertEqual([(m["role"], m["content"]) for m in messages], [("user", "Hi"), ("assistant", REPLY)])

    def test_stream_plan_is_chunk_frames_ending_in_done(self):
        app = make_app(delay=0.25)
        response = routes.langbase.pipes_run(make_request("POST", "/v1/pipes/run", dict(HI, stream=True)), app)
        self.assertIsInstance(response, api.StreamResponse)
        self.assertEqual((response.mode, response.content_type), ("chunked", "text/event-stream; charset=utf-8"))
        headers = dict(response.headers)
        self.assertIn("lb-thread-id", headers)
        self.assertEqual(app.runs.recent(), [headers["lb-mock-run-id"]])
        steps = list(response.plan)
        self.assertTrue(all(type(s) in (Write, Wait) for s in steps))
        self.assertIn(Wait(0.25), steps)
        body = b"".join(s.data for s in steps if type(s) is Write)
        frames = sse_data(body)
        self.assertEqual(frames[-1], "[DONE]")
        chunks = [json.loads(f) for f in frames[:-1]]
        self.assertEqual({c["object"] for c in chunks}, {"chat.completion.chunk"})
        self.assertEqual(chunks[0]["choices"][0]["delta"], {"role": "assistant", "content": ""})
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "stop")
        self.assertEqual(chunks[0]["created"], 1700000000)
        self.assertEqual(chunk_text(body), REPLY)

    def test_same_request_same_bytes(self):
        bodies = []
        for _ in range(2):
            app = make_app()
            response = routes.dispatch(app, make_request("POST", "/v1/pipes/run", dict(HI, stream=True)))
            bodies.append(plan_bytes(response))
        self.assertEqual(bodies[0], bodies[1])

    def test_scenario_headers_and_body_mock_shape_the_plan(self):
        app = make_app()
        request = make_request("POST", "/v1/pipes/run", dict(HI, stream=True, mock={"line_ending": "crlf"}),
                               headers=[("X-Mock-Body", "close"), ("X-Mock-Event-Ids", "true")])
        response = routes.dispatch(app, request)
        self.assertEqual(response.mode, "close")
        body = plan_bytes(response)
        self.assertTrue(body.startswith(b"id: 1\r\ndata: "), body[:40])
        self.assertTrue(body.endswith(b"data: [DONE]\r\n\r\n"))

    def test_route_function_raises_dispatch_answers_langbase_envelope(self):
        app = make_app()
        for body in (b"{not json", b"[1]", json.dumps({"messages": "nope"}).encode()):
            with self.subTest(body=body):
                request = make_request("POST", "/v1/pipes/run", body)
                with self.assertRaises((api.ApiError,) + api.DOMAIN_ERRORS):
                    routes.langbase.pipes_run(request, app)
                response = routes.dispatch(app, request)
                self.assertIsInstance(response, api.JsonResponse)
                self.assertEqual(response.status, 400)
                error = response.body["error"]
                self.assertEqual(set(error), {"code", "status", "message", "docs"})
                self.assertEqual((error["code"], error["status"]), ("BAD_REQUEST", 400))
                self.assertFalse(response.close)
        self.assertEqual(app.runs.recent(), [])
        self.assertEqual(len(app.store), 0)

    def test_bad_scenario_header_is_400(self):
        app = make_app()
        response = routes.dispatch(app, make_request("POST", "/v1/pipes/run", dict(HI, stream=True),
                                                     headers=[("X-Mock-Framing", "zigzag")]))
        self.assertEqual(response.status, 400)
        self.assertIn("framing", response.body["error"]["message"])
        self.assertEqual(app.runs.recent(), [])

    def test_strict_threads_unknown_thread_404_leaves_no_run_and_no_thread(self):
        app = make_app(strict_threads=True)
        for stream in (True, False):
            with self.subTest(stream=stream):
                response = routes.dispatch(app, make_request(
                    "POST", "/v1/pipes/run", dict(HI, stream=stream, threadId=UNKNOWN_THREAD)))
                self.assertIsInstance(response, api.JsonResponse)
                self.assertEqual(response.status, 404)
                self.assertEqual(response.body["error"]["code"], "NOT_FOUND")
                self.assertEqual(app.runs.recent(), [])
                self.assertEqual(len(app.store), 0)
        # Without --strict-threads the same run creates the thread.
        lenient = make_app()
        response = routes.dispatch(lenient, make_request("POST", "/v1/pipes/run", dict(HI, threadId=UNKNOWN_THREAD)))
        self.assertEqual(dict(response.headers)["lb-thread-id"], UNKNOWN_THREAD)
        self.assertEqual(len(lenient.runs.recent()), 1)

    def test_http_error_fault_published_nothing_stored(self):
        app = make_app()
        response = routes.dispatch(app, make_request(
            "POST", "/v1/pipes/run", dict(HI, stream=True, mock={"fault": "http_error", "fault_status": 429})))
        self.assertEqual(response.status, 429)
        self.assertEqual(response.body["error"]["code"], "RATE_LIMITED")
        headers = dict(response.headers)
        self.assertEqual(headers["Retry-After"], "1")
        self.assertEqual(app.runs.recent(), [headers["lb-mock-run-id"]])
        self.assertEqual(app.runs.get(headers["lb-mock-run-id"])["fault"], "http_error")
        self.assertEqual(len(app.store), 0)


class ThreadsRoutesTest(unittest.TestCase):
    def test_thread_lifecycle_through_dispatch(self):
        app = make_app()
        created = routes.dispatch(app, make_request("POST", "/v1/threads", {"metadata": {"a": "1"}}))
        self.assertEqual(created.status, 200)
        thread_id = created.body["id"]
        self.assertEqual((created.body["object"], created.body["metadata"]), ("thread", {"a": "1"}))
        path = "/v1/threads/%s" % thread_id
        self.assertEqual(routes.dispatch(app, make_request("GET", path)).body, created.body)
        updated = routes.dispatch(app, make_request("POST", path, {"metadata": {"b": "2"}}))
        self.assertEqual(updated.body["metadata"], {"a": "1", "b": "2"})  # merged
        appended = routes.dispatch(app, make_request("POST", path + "/messages", [{"role": "user", "content": "x"}]))
        self.assertEqual(appended.status, 200)
        listed = routes.dispatch(app, make_request("GET", path + "/messages"))
        self.assertEqual([m["content"] for m in listed.body], ["x"])
        self.assertEqual(routes.dispatch(app, make_request("DELETE", path)).body, {"success": True})
        gone = routes.dispatch(app, make_request("GET", path))
        self.assertEqual(gone.status, 404)
        self.assertEqual(gone.body["error"]["code"], "NOT_FOUND")

    def test_conflict_and_bad_id(self):
        app = make_app()
        first = routes.dispatch(app, make_request("POST", "/v1/threads", {"threadId": UNKNOWN_THREAD}))
        self.assertEqual(first.body["id"], UNKNOWN_THREAD)
        again = routes.dispatch(app, make_request("POST", "/v1/threads", {"threadId": UNKNOWN_THREAD}))
        self.assertEqual((again.status, again.body["error"]["code"]), (409, "CONFLICT"))
        bad = routes.dispatch(app, make_request("GET", "/v1/threads/not%20an%20id"))
        self.assertEqual(bad.status, 404)

    def test_store_full_is_403(self):
        app = make_app(max_threads=1)
        self.assertEqual(routes.dispatch(app, make_request("POST", "/v1/threads", {})).status, 200)
        full = routes.dispatch(app, make_request("POST", "/v1/threads", {}))
        self.assertEqual((full.status, full.body["error"]["code"]), (403, "USAGE_EXCEEDED"))


class AuthTest(unittest.TestCase):
    def test_api_key_required_on_v1_routes_only(self):
        app = make_app(api_key="secret")
        cases = [((), 401), ((("Authorization", "Bearer wrong"),), 401), ((("Authorization", "Basic x"),), 401),
                 ((("Authorization", "Bearer secret"),), 200)]
        for headers, status in cases:
            with self.subTest(headers=headers):
                response = routes.dispatch(app, make_request("POST", "/v1/pipes/run", HI, headers=headers))
                self.assertEqual(response.status, status)
                if status == 401:
                    self.assertEqual(response.body["error"]["code"], "UNAUTHORIZED")
                    self.assertEqual(response.body["error"]["status"], 401)
        self.assertEqual(len(app.runs.recent()), 1)  # refused runs leave no record
        # Non-/v1 routes have no auth.
        self.assertEqual(routes.dispatch(app, make_request("GET", "/health")).status, 200)
        self.assertEqual(routes.dispatch(app, make_request("GET", "/api/events", query="prompt=hi")).mode, "chunked")
        # OpenAI routes answer 401 in OpenAI's shape.
        response = routes.dispatch(app, make_request("GET", "/v1/models"))
        self.assertEqual(response.status, 401)
        self.assertEqual(set(response.body["error"]), {"message", "type", "param", "code"})
        self.assertEqual(response.body["error"]["code"], "invalid_api_key")
        self.assertIn(("x-request-id", "req-1"), response.headers)

    def test_unset_token_refused_even_without_api_key(self):
        app = make_app()
        self.assertEqual(routes.dispatch(app, make_request("GET", "/v1/models")).status, 200)
        for token in ("undefined", "null", "None"):
            with self.subTest(token=token):
                response = routes.dispatch(app, make_request(
                    "POST", "/v1/threads", {}, headers=[("Authorization", "Bearer %s" % token)]))
                self.assertEqual(response.status, 401)
                self.assertIn(token, response.body["error"]["message"])
        self.assertEqual(len(app.store), 0)

    def test_check_auth_directly(self):
        routes.check_auth(make_request("GET", "/v1/models"), None)
        routes.check_auth(make_request("GET", "/v1/models", headers=[("Authorization", "Bearer k")]), "k")
        with self.assertRaises(api.Unauthorized):
            routes.check_auth(make_request("GET", "/v1/models"), "k")


class OtherStylesTest(unittest.TestCase):
    def test_openai_chat_completions(self):
        app = make_app()
        response = routes.dispatch(app, make_request("POST", "/v1/chat/completions",
                                                     dict(HI, model="gpt-x", stream=True)))
        self.assertIsInstance(response, api.StreamResponse)
        self.assertIn(("x-request-id", "req-1"), response.headers)
        body = plan_bytes(response)
        self.assertEqual(chunk_text(body), REPLY)
        self.assertEqual(json.loads(sse_data(body)[0])["model"], "gpt-x")
        plain = routes.openai.chat_completions(make_request("POST", "/v1/chat/completions", dict(HI, model="m")), app)
        self.assertEqual(plain.body["object"], "chat.completion")
        self.assertEqual(plain.body["choices"][0]["message"]["content"], REPLY)
        bad = routes.dispatch(app, make_request("POST", "/v1/chat/completions", {"model": "m", "messages": "x"}))
        self.assertEqual(bad.status, 400)
        self.assertEqual(bad.body["error"]["type"], "invalid_request_error")
        self.assertEqual(bad.body["error"]["param"], "messages")

    def test_openai_models(self):
        app = make_app()
        models = routes.dispatch(app, make_request("GET", "/v1/models"))
        self.assertEqual(models.body["data"], [{"id": app.settings.model, "object": "model",
                                                "created": 1700000000, "owned_by": api.SERVICE}])
        other = routes.dispatch(app, make_request("GET", "/v1/models/other"))
        self.assertEqual(other.status, 404)
        self.assertEqual(other.body["error"]["type"], "not_found_error")

    def test_lobe_chat_and_its_error_shape(self):
        app = make_app()
        response = routes.dispatch(app, make_request("POST", "/api/chat", HI))
        self.assertIsInstance(response, api.StreamResponse)
        self.assertIn(REPLY.split(",")[0].encode(), plan_bytes(response))
        bad = routes.dispatch(app, make_request("POST", "/api/chat", {"model": "x"}))
        self.assertEqual(bad.status, 400)
        self.assertEqual(bad.body["errorType"], "BadRequest")
        self.assertEqual((bad.body["body"]["code"], bad.body["body"]["status"]), ("BAD_REQUEST", 400))

    def test_plain_style_routes(self):
        app = make_app()
        bad = routes.dispatch(app, make_request("GET", "/api/events", query="payload=xml"))
        self.assertEqual(bad.status, 400)
        self.assertEqual(bad.body, {"error": "payload must be one of json, openai."})
        stream = routes.frontends.events(make_request("GET", "/api/events", query="prompt=hi"), app)
        self.assertIsInstance(stream, api.StreamResponse)
        self.assertIn(b"retry: 1000", plan_bytes(stream))
        done = routes.dispatch(app, make_request("GET", "/api/events", query="prompt=hi",
                                                 headers=[("Last-Event-ID", "999999")]))
        self.assertIsInstance(done, api.EmptyResponse)
        self.assertEqual(done.status, 204)
        bad_id = routes.dispatch(app, make_request("GET", "/api/events", query="prompt=hi",
                                                   headers=[("Last-Event-ID", "x")]))
        self.assertEqual(bad_id.status, 400)
        self.assertIsInstance(bad_id.body["error"], str)

    def test_generate_then_token_stream(self):
        app = make_app()
        key = {"sessionId": "s1", "chatMessageId": "m1", "prompt": "hi"}
        started = routes.dispatch(app, make_request("POST", "/api/generate", key))
        self.assertEqual(started.status, 202)
        self.assertEqual(started.body["stream"], "/api/stream/s1/m1")
        slow = dict(key, chatMessageId="slow", mock={"delay": 5})
        self.assertEqual(routes.dispatch(app, make_request("POST", "/api/generate", slow)).status, 202)
        again = routes.dispatch(app, make_request("POST", "/api/generate", slow))
        self.assertEqual((again.status, list(again.body)), (409, ["error"]))
        stream = routes.dispatch(app, make_request("GET", "/api/stream/s1/m1"))
        self.assertIsInstance(stream, api.StreamResponse)
        self.assertTrue(plan_bytes(stream))
        bad = routes.dispatch(app, make_request("GET", "/api/stream/s1/a%2Fb"))
        self.assertEqual(bad.status, 400)
        self.assertIsInstance(bad.body["error"], str)


class DispatchNeverRaisesTest(unittest.TestCase):
    def test_unexpected_error_is_500_in_route_style_and_logged(self):
        app = make_app()
        cases = (("/v1/pipes/run", "langbase"), ("/v1/chat/completions", "openai"), ("/api/chat", "lobe"))
        with mock.patch("pipes.reply_events", side_effect=RuntimeError("boom")), \
                mock.patch("formats.parse_chat_completion", side_effect=RuntimeError("boom")), \
                mock.patch("formats.parse_lobe_chat", side_effect=RuntimeError("boom")), \
                self.assertLogs("routes", logging.ERROR) as logs:
            responses = [routes.dispatch(app, make_request("POST", path, dict(HI, stream=True)))
                         for path, _ in cases]
        self.assertEqual(len(logs.records), 3)
        self.assertTrue(all(r.exc_info for r in logs.records))
        for (path, style), response in zip(cases, responses):
            with self.subTest(path=path):
                self.assertIsInstance(response, api.JsonResponse)
                self.assertEqual(response.status, 500)
                self.assertTrue(response.close)
                self.assertEqual(response.body, api.ApiError(
                    "The mock server failed unexpectedly; see its log for the traceback.").body(style))


if __name__ == "__main__":
    unittest.main()
