"""``GET /openapi.json`` (``routes/contract.py``): it describes every route in the table, every
``X-Mock-*`` header of the settings table and every error style, and real answers of every route
have a status and media type the document lists. (Schema validation of the bodies, with
``jsonschema``, is in ``tests/interop/test_openapi_contract.py``.)"""

import json
import unittest

import fixtures
import journal
import routes
import scenario
import stores
from routes import contract, playground
from tests import contract_calls
from tests.support import RunningServer, call


def operation(doc, method, template):
    return doc["paths"][template][method.lower()]


def response_for(op, status):
    """The document's response object for ``status``: exact code, else its ``NXX`` range."""
    return op["responses"].get(str(status)) or op["responses"].get("%dXX" % (status // 100))


class DocumentTest(unittest.TestCase):
    def test_every_route_is_in_the_document_and_nothing_else(self):
        doc = contract.document()
        self.assertEqual(doc["openapi"], "3.1.0")
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        self.assertEqual(documented, {(r.method, r.path) for r in routes.ROUTES})
        self.assertLessEqual(set(contract.SCHEMAS), documented, "SCHEMAS names a route that does not exist")
        for r in routes.ROUTES:
            with self.subTest(route="%s %s" % (r.method, r.path)):
                op = operation(doc, r.method, r.path)
                self.assertEqual(op["x-error-style"], r.error_style)
                self.assertEqual("security" in op, r.auth)
                self.assertEqual([p["name"] for p in op.get("parameters", []) if p.get("in") == "path"],
                                 list(r.pattern.groupindex))
                error = op["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"]
                self.assertEqual(error, "#/components/schemas/" + contract.ERROR_SCHEMAS[r.error_style])

    def test_settings_headers_and_error_shapes_come_from_their_tables(self):
        doc = contract.document()
        headers = doc["components"]["parameters"]
        self.assertEqual(len(headers), len(scenario.SETTINGS))
        self.assertEqual(headers["X-Mock-Line-Ending"]["schema"]["enum"], list(scenario.SETTINGS["line_ending"].choices))
        self.assertEqual(set(doc["components"]["schemas"]["Scenario"]["properties"]), set(scenario.SETTINGS))
        run = operation(doc, "POST", "/v1/pipes/run")
        self.assertIn({"$ref": "#/components/parameters/X-Mock-Fault"}, run["parameters"])
        self.assertIn("lb-thread-id", run["responses"]["200"]["headers"])
        self.assertIn("Retry-After", run["responses"]["5XX"]["headers"])
        self.assertEqual(set(doc["components"]["headers"]), {"lb-request-id", "lb-thread-id", "Retry-After"})
        # Every $ref resolves.
        text = json.dumps(doc)
        for ref in set(part.split('"', 1)[0] for part in text.split('"$ref": "#/')[1:]):
            node = doc
            for key in ref.split("/"):
                node = node[key]

    def test_mock_and_playground_routes_follow_their_modules_tables(self):
        doc = contract.document()
        schemas = doc["components"]["schemas"]
        self.assertEqual(set(schemas["FixtureRules"]["properties"]), set(fixtures._MATCH_KEYS))
        self.assertEqual(set(schemas["FixtureResponse"]["properties"]), set(fixtures._RESPONSE_KEYS))
        self.assertEqual(schemas["RunRecord"]["properties"]["format"]["enum"], list(fixtures.WIRES))
        self.assertEqual(set(schemas["Pipe"]["required"]) - {"name", "owner_login", "url"}, set(stores.PIPE_DEFAULTS))
        journal_query = operation(doc, "GET", "/mock/requests")["parameters"]
        self.assertEqual([(p["name"], p["in"]) for p in journal_query], [(f, "query") for f in journal.FILTERS])
        push = operation(doc, "POST", "/mock/fixtures")
        self.assertEqual(set(push["responses"]), {"201", "4XX", "5XX"})
        self.assertNotIn("requestBody", operation(doc, "POST", "/mock/reset"))
        self.assertEqual(operation(doc, "GET", "/")["responses"]["303"]["headers"]["Location"],
                         {"schema": {"type": "string"}})
        self.assertEqual(set(operation(doc, "GET", "/playground/{file}")["responses"]["200"]["content"]),
                         {c.split(";")[0] for c in playground.CONTENT_TYPES.values()})
        self.assertEqual(set(operation(doc, "GET", "/playground")["responses"]["200"]["content"]), {"text/html"})

    def test_served_document_is_the_generated_one(self):
        with RunningServer() as s:
            r = call(s.port, "GET", "/openapi.json")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Content-Type"), "application/json")
            self.assertEqual(r.json(), json.loads(json.dumps(contract.document())))


class RealAnswersTest(unittest.TestCase):
    def test_every_route_answers_as_the_document_says(self):
        covered = {(m, t) for m, t, *_ in contract_calls.CALLS}
        self.assertEqual(covered, {(r.method, r.path) for r in routes.ROUTES}, "add a call for each new route")
        with RunningServer(memory_processing_seconds=0, token_wait=0.1) as s:
            doc = call(s.port, "GET", "/openapi.json").json()
            values = contract_calls.setup(s.port)
            for method, template, path, body, headers, status in contract_calls.CALLS:
                with self.subTest(call="%s %s %s" % (method, path, status)):
                    r = call(s.port, method, contract_calls.concrete(path, values), body, headers)
                    self.assertEqual(r.status, status, r.body[:300])
                    spec = response_for(operation(doc, method, template), r.status)
                    self.assertIsNotNone(spec, "status %d not in the document" % r.status)
                    media = (r.header("Content-Type") or "").split(";")[0]
                    if r.body:
                        self.assertIn(media, spec.get("content", {}))
                    for name, header in spec.get("headers", {}).items():
                        if "const" in header.get("schema", {}) and r.header(name) is not None:
                            self.assertEqual(r.header(name), header["schema"]["const"], name)
                    self.assertIsNotNone(r.header("lb-request-id"))


if __name__ == "__main__":
    unittest.main()
