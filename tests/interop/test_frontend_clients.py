"""Interop: the client code of each chat backend the mock stands in for, run unchanged against it.

Each backend's published design comes with its own frontend code: ``fetch`` readers, a
``SSEChatClient`` with callbacks, ``EventSource`` handlers. That code is kept here verbatim (the
constants below) and run for real: ``fetch`` clients as ES modules in Node 20 (``node``, which
has ``fetch``), ``EventSource`` clients in headless Chromium (the helpers of
``test_browser_eventsource``). The only edits are the ones that code needs to run at all, each
named where it is made: the server's address in place of the one it was written for, the
helpers it calls without defining, and TypeScript annotations removed. Each test checks what the
code printed against the run's ground truth (``GET /mock/runs/{id}``).

Skips with a message when ``node`` (20 or newer) or Chromium is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import scenario
from tests.interop.test_browser_eventsource import CHROMIUM, SKIP_REASON, load_page
from tests.support import RunningServer, call


def _node() -> str:
    path = shutil.which("node")
    if not path:
        return ""
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.match(r"v(\d+)\.", version)
    return path if match and int(match.group(1)) >= 20 else ""


NODE = _node()
NODE_SKIP = "no Node 20 or newer on PATH (it runs the fetch-based clients): install nodejs"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

# --- the designs' client code, verbatim -------------------------------------------------------

# Frontend for the original Langbase mock design: its browser example (fetch + reader).
LANGBASE_FETCH = r"""
const response = await fetch('http://localhost:8000/v1/pipes/run', {
  method: 'POST',
  headers: {
    'Content-Type': 'application/json',
  },
  body: JSON.stringify({
    messages: [
      {
        role: 'user',
        content: 'Hello!'
      }
    ],
    stream: true
  })
});

const reader = response.body.getReader();
const decoder = new TextDecoder();

while (true) {
  const { done, value } = await reader.read();
  if (done) break;

  const chunk = decoder.decode(value);
  const lines = chunk.split('\n');

  for (const line of lines) {
    if (line.startsWith('data: ')) {
      const data = line.slice(6);
      if (data === '[DONE]') {
        console.log('Stream finished');
        break;
      }
      try {
        const parsed = JSON.parse(data);
        console.log('Chunk:', parsed);
      } catch (e) {
        // Skip invalid JSON
      }
    }
  }
}
"""

# Frontend for the Lobe Chat streaming design: its request and its stream consumption, in order.
# Edit: the page-relative '/api/chat' is given the server's origin (Node has no page to resolve
# it against).
LOBE_FETCH = r"""
const response = await fetch('/api/chat', {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({
    messages: conversationHistory,
    model: 'gpt-4o-mini',
    stream: true
  })
});
const reader = response.body.getReader();
const decoder = new TextDecoder();

while (true) {
  const { done, value } = await reader.read();
  if (done) break;
  
  // Parse SSE format and handle events
  const lines = decoder.decode(value).split('\n');
  for (const line of lines) {
    if (line.startsWith('data: ')) {
      const data = JSON.parse(line.substring(6));
      handleStreamEvent(event, data);
    }
  }
}
"""

# Frontend for the message-lifecycle design: its client-side example. Edits: its two imports
# (the SSEChatClient it imports is defined in SSE_CHAT_CLIENT below, and ChatMessage is a type)
# and the TypeScript annotation ": ChatMessage[]" are removed.
LIFECYCLE_CLIENT = r"""
const client = new SSEChatClient();

const messages = [
  {
    id: "msg-1",
    role: "user",
    content: "Hello, how are you?",
    timestamp: new Date(),
  }
];

await client.sendMessage(
  {
    messages,
    model: "llama2", // or any Ollama model
    chatId: "chat-123", // optional
    systemPrompt: "You are a helpful assistant", // optional
  },
  {
    onStart: (data) => {
      console.log("Message started:", data.messageId);
    },
    onChunk: (chunk) => {
      console.log("Received chunk:", chunk.content);
      // Update UI with streaming content
    },
    onComplete: (message) => {
      console.log("Complete message:", message.fullContent);
      // Finalize UI
    },
    onError: (error) => {
      console.error("Error:", error.message);
      // Show error to user
    },
  }
);
"""

# The SSEChatClient that design describes but does not show (it lives in its
# src/lib/client/sseClient.ts): POST the request to /api/stream, parse the SSE stream across
# reads, call onStart / onChunk / onComplete / onError with each event's JSON data; a non-2xx
# answer or a network failure goes to onError.
SSE_CHAT_CLIENT = r"""
class SSEChatClient {
  constructor(baseUrl = BASE_URL) { this.baseUrl = baseUrl; }

  async sendMessage(request, callbacks) {
    let response;
    try {
      response = await fetch(this.baseUrl + '/api/stream', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(request),
      });
    } catch (e) {
      callbacks.onError?.({ message: String(e) });
      return;
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      callbacks.onError?.({ message: body.error || 'HTTP ' + response.status });
      return;
    }
    const handlers = { 'message-start': callbacks.onStart, 'message-chunk': callbacks.onChunk,
                       'message-complete': callbacks.onComplete, 'error': callbacks.onError };
    const dispatch = (block) => {
      let name = 'message';
      const data = [];
      for (const line of block.split(/\r\n|\r|\n/)) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) handlers[name]?.(JSON.parse(data.join('\n')));
    };
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.search(/\r\n\r\n|\n\n|\r\r/)) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + (buffer.startsWith('\r\n\r\n', end) ? 4 : 2));
      }
    }
  }
}
"""

# Frontend for the Flask/EventSource design: its browser code "With EventStream".
FLASK_EVENTSOURCE = r"""
const  API_URL = 'http://127.0.0.1/hello'
const eventSource = new EventSource(API_URL); // Replace with your server endpoint

eventSource.onmessage = (event) => {
  // Process the received event
  const data = JSON.parse(event.data); // Assuming JSON data
  console.log(`Received event: ${data.event}`);
  console.log(`Data: ${data.data}`);

  // Update your UI or application based on the data
  // ...
};

eventSource.onerror = (error) => {
  console.error("Error:", error);
  // Handle connection errors or other issues
};

// Optionally, add event listeners for specific event types:
eventSource.addEventListener("data", (event) => {
  // Handle "new-message" events specifically
});
"""

# The same design's browser code "Without EventStream". Edits: two typos that stop it from
# parsing are fixed, the stray "}" in "fetch(API_URL})" and the try block that is never closed
# ("} finally { reader.releaseLock(); }" added at the end); getText and write, which it calls
# without defining, are defined in FLASK_FETCH_HELPERS.
FLASK_FETCH = r"""
const  API_URL = 'http://127.0.0.1/hello'
const response = await fetch(API_URL);

if (!response.ok) {
  const message = `An error has occurred: ${response.status}`;
  throw new Error(message);
}

const reader = response.body.getReader();
try {
while (true) {
  const { value, done } = await reader.read();
  if (done) break;
  const chunk = new TextDecoder().decode(value);
  text = getText(chunk)
  console.log("Received chunk: ", text);
  write(text)
}
} finally { reader.releaseLock(); }
"""

FLASK_FETCH_HELPERS = r"""
var text = '', written = '';
// The text of a raw chunk: the "data" of each JSON data message whose "event" is "token".
function getText(chunk) {
  return chunk.split('\n').filter((line) => line.startsWith('data: '))
    .map((line) => JSON.parse(line.slice(6))).filter((m) => m.event === 'token').map((m) => m.data).join('');
}
function write(piece) { written += piece; console.log('written:', JSON.stringify(written)); }
"""

# A frontend for the resumable token-stream design, which shows no client code: the usual
# EventSource subscriber of its documented stream (data: {"token"} ... data: __END__).
TOKEN_EVENTSOURCE = r"""
const es = new EventSource(STREAM_URL);
es.onmessage = (e) => {
  if (e.data === '__END__') { console.log('end'); es.close(); return; }
  const msg = JSON.parse(e.data);
  if (msg.error) { console.error('error', msg.error); es.close(); } else console.log('token', JSON.stringify(msg.token));
};
es.onerror = () => console.error('onerror', es.readyState);
"""

# --- harnesses ----------------------------------------------------------------------------------

_NODE_PREFIX = r"""
const __calls = [];
for (const level of ['log', 'error']) {
  const print = console[level].bind(console);
  console[level] = (...args) => { __calls.push([level, ...args]); print(...args); };
}
"""
_NODE_SUFFIX = r"""
process.stdout.write('\n__RESULT__' + JSON.stringify(__calls) + '\n');
"""


def run_node(test: unittest.TestCase, code: str) -> tuple:
    """Run ``code`` as an ES module in Node; returns (its stdout, the list of
    ``[level, ...console arguments]`` it logged)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "client.mjs")
        with open(path, "w", encoding="utf-8") as f:
            f.write(_NODE_PREFIX + code + _NODE_SUFFIX)
        out = subprocess.run([NODE, path], capture_output=True, text=True, timeout=60, cwd=tmp)
    test.assertEqual(out.returncode, 0, out.stderr[-2000:])
    printed, _, result = out.stdout.rpartition("\n__RESULT__")
    return printed, json.loads(result)


_PAGE = """<html><body><div id=o>pending</div><script>
const __out = document.getElementById('o'), __log = [];
const __show = () => { __out.textContent = JSON.stringify(__log); };
for (const level of ['log', 'error']) {
  console[level] = (...args) => {
    __log.push([level, args.map((a) => a instanceof Event ? 'Event(' + a.type + ')' : String(a)).join(' ')]);
    __show();
  };
}
window.addEventListener('error', (e) => { __log.push(['uncaught', e.message]); __show(); });
window.addEventListener('unhandledrejection', (e) => { __log.push(['uncaught', String(e.reason)]); __show(); });
__HELPERS__
</script><script __TYPE__>
__CODE__
</script></body></html>"""


def run_page(test: unittest.TestCase, code: str, helpers: str = "", module: bool = False) -> list:
    """Run ``code`` in headless Chromium on a page of its own origin; returns the
    ``[level, text]`` of every ``console.log``/``console.error`` call and uncaught error."""
    page = (_PAGE.replace("__HELPERS__", helpers).replace("__TYPE__", 'type="module"' if module else "")
            .replace("__CODE__", code))
    return load_page(test, page)


def truth_of(s, run_id: str) -> dict:
    return call(s.port, "GET", "/mock/runs/" + run_id).json()


def only_run(test: unittest.TestCase, s) -> dict:
    runs = call(s.port, "GET", "/mock/runs").json()["runs"]
    test.assertEqual(len(runs), 1, runs)
    return truth_of(s, runs[0])


def server_mock(**settings) -> tuple:
    """A server-wide scenario (the ``--mock`` flags), for client code that cannot send one."""
    return tuple(scenario.parse_layer({k: str(v) for k, v in settings.items()}, "--mock", from_text=True).items())


@unittest.skipUnless(NODE, NODE_SKIP)
class NodeFetchClientsTest(unittest.TestCase):
    def test_langbase_fetch_reader(self):
        with RunningServer(delay=0.005) as s:
            printed, calls = run_node(self, LANGBASE_FETCH.replace("http://localhost:8000", s.url))
            t = only_run(self, s)
        chunks = [c[2] for c in calls if c[1] == "Chunk:"]
        self.assertEqual("".join(c["choices"][0]["delta"].get("content") or "" for c in chunks), t["text"])
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "stop")
        self.assertEqual(calls[-1], ["log", "Stream finished"])
        self.assertIn("Stream finished", printed)

    def test_lobe_chat_fetch_reader(self):
        helpers = ("const conversationHistory = [{ role: 'user', content: 'Hello!' }];\n"
                   "var event;  // the code passes a variable it never sets; in a browser that is window.event\n"
                   "const handleStreamEvent = (event, data) => console.log('event', data);\n")
        with RunningServer(delay=0.005) as s:
            code = helpers + LOBE_FETCH.replace("fetch('/api/chat'", "fetch('%s/api/chat'" % s.url)
            printed, calls = run_node(self, code)
            t = only_run(self, s)
        data = [c[2] for c in calls if c[1] == "event"]
        self.assertEqual(data[:-2], list(t["deltas"]))  # the text events, then stop and usage
        self.assertEqual(data[-2], "stop")
        self.assertEqual(data[-1]["totalTokens"], t["usage"]["total_tokens"])

    def lifecycle(self, **server) -> tuple:
        with RunningServer(delay=0.005, **server) as s:
            code = "const BASE_URL = %s;\n" % json.dumps(s.url) + SSE_CHAT_CLIENT + LIFECYCLE_CLIENT
            printed, calls = run_node(self, code)
            t = only_run(self, s)
            stored = call(s.port, "GET", "/v1/threads/chat-123/messages").json()
        return printed, calls, t, stored

    def test_lifecycle_sse_chat_client_callbacks_and_what_is_stored(self):
        printed, calls, t, stored = self.lifecycle()
        started = [c[2] for c in calls if c[1] == "Message started:"]
        self.assertEqual(len(started), 1)
        self.assertRegex(started[0], UUID4)
        self.assertEqual([c[2] for c in calls if c[1] == "Received chunk:"], list(t["deltas"]))
        self.assertEqual([c[2] for c in calls if c[1] == "Complete message:"], [t["text"]])
        self.assertFalse([c for c in calls if c[0] == "error"])
        self.assertEqual([(m["id"], m["role"], m["content"]) for m in stored],
                         [("msg-1", "user", "Hello, how are you?"), (started[0], "assistant", t["text"])])
        self.assertTrue(stored[0]["metadata"]["timestamp"].endswith("Z"))  # new Date() as JSON sends it

    def test_lifecycle_sse_chat_client_on_an_error_ended_stream(self):
        printed, calls, t, stored = self.lifecycle(mock=server_mock(fault="error_frame", fault_after=3))
        self.assertEqual([c[2] for c in calls if c[1] == "Received chunk:"], list(t["deltas"][:2]))
        self.assertEqual(calls[-1], ["error", "Error:", "Mock fault: in-band error after 3 events (fault=error_frame)."])
        self.assertFalse([c for c in calls if c[1] == "Complete message:"])
        self.assertEqual([m["role"] for m in stored], ["user"])  # no reply is stored for a failed stream


@unittest.skipUnless(CHROMIUM, SKIP_REASON)
class BrowserEventSourceClientsTest(unittest.TestCase):
    def test_flask_eventsource_handlers(self):
        with RunningServer(delay=0.005) as s:
            log = run_page(self, FLASK_EVENTSOURCE.replace("http://127.0.0.1/hello", s.url + "/hello"))
            runs = call(s.port, "GET", "/mock/runs").json()["runs"]
            t = truth_of(s, runs[-1])
        self.assertFalse([entry for entry in log if entry[0] == "uncaught"], log)
        messages = [entry[1] for entry in log if entry[0] == "log"]
        expected = []
        for piece in t["deltas"]:
            expected += ["Received event: token", "Data: " + piece]
        self.assertEqual(messages, expected + ["Received event: finish", "Data: stop"])
        # The server closed; EventSource reconnected once with Last-Event-ID, got 204 and stopped.
        self.assertEqual(log[-2:], [["error", "Error: Event(error)"]] * 2)
        self.assertEqual(len(runs), 2)

    def test_flask_fetch_reader(self):
        # No delay: headless Chromium's virtual time does not wait for a fetch body's later reads.
        with RunningServer(delay=0) as s:
            code = FLASK_FETCH.replace("http://127.0.0.1/hello", s.url + "/hello")
            log = run_page(self, code, FLASK_FETCH_HELPERS, module=True)
            t = only_run(self, s)
        self.assertFalse([entry for entry in log if entry[0] in ("uncaught", "error")], log)
        received = "".join(entry[1][len("Received chunk:  "):] for entry in log if entry[1].startswith("Received chunk: "))
        self.assertEqual(received, t["text"])
        self.assertEqual(log[-1], ["log", "written: " + json.dumps(t["text"], ensure_ascii=False)])

    def token_page(self, s, path: str) -> list:
        return run_page(self, "const STREAM_URL = %s;\n" % json.dumps(s.url + path) + TOKEN_EVENTSOURCE)

    def test_token_stream_subscriber_alone(self):
        with RunningServer(delay=0.005, token_wait=0.3) as s:
            log = self.token_page(s, "/api/stream/user%40example.com/m1")
            t = only_run(self, s)
        self.assertEqual(log, [["log", "token " + json.dumps(p, ensure_ascii=False)] for p in t["deltas"]] + [["log", "end"]])

    def test_token_stream_subscriber_then_publish(self):
        with RunningServer(delay=0.005, token_wait=20) as s:
            published = {}

            def publish():
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and call(s.port, "GET", "/health").json()["open_streams"] < 1:
                    time.sleep(0.02)
                published["r"] = call(s.port, "POST", "/api/generate",
                                      {"sessionId": "user@example.com", "chatMessageId": "m1", "prompt": "Hello!"})

            producer = threading.Thread(target=publish)
            producer.start()
            try:
                log = self.token_page(s, "/api/stream/user%40example.com/m1")
            finally:
                producer.join(30)
            t = truth_of(s, published["r"].json()["runId"])
            runs = call(s.port, "GET", "/mock/runs").json()["runs"]
        self.assertEqual(log, [["log", "token " + json.dumps(p, ensure_ascii=False)] for p in t["deltas"]] + [["log", "end"]])
        self.assertEqual(len(runs), 1)  # the published generation, nothing generated by the mock


if __name__ == "__main__":
    unittest.main()
