"""Interop tests: the official npm ``langbase`` SDK (1.2.4, pinned in ``tests/interop/package.json``)
against the mock, driven from ``unittest``.

Each test starts a real server on 127.0.0.1:0 and runs a Node ES-module script through
``tests.interop.node_sdk.run_script``: the script uses only the SDK (``agent.run`` with
``getRunner``, ``pipes.*``, ``workflow()``) and prints what it saw as one JSON line, which the
test checks. Without ``node`` or the installed package every test is skipped with a message
(``npm ci --prefix tests/interop`` installs it).
"""

from __future__ import annotations

import unittest

from tests.interop import node_sdk
from tests.support import RunningServer, call

SKIP = node_sdk.skip_reason()

HEAD = """
import { Langbase, getRunner, getToolsFromRunStream } from 'langbase';
const lb = new Langbase({ apiKey: 'js-interop-key', baseUrl: process.env.LB_BASE_URL });
const MODEL = 'openai:gpt-4o-mini';
const LLM_KEY = 'sk-js-llm-key';
async function collect(stream) {
  let text = '';
  const runner = getRunner(stream);
  runner.on('content', (delta) => { text += delta; });
  const final = await runner.finalChatCompletion();
  return { text, final };
}
"""


@unittest.skipIf(SKIP, SKIP)
class JsSdkTest(unittest.TestCase):
    def run_js(self, server: RunningServer, body: str):
        return node_sdk.run_script(HEAD + body, server.url)

    def test_agent_run_json_and_stream_with_get_runner(self):
        with RunningServer(head_timeout=5.0) as server:
            seen = self.run_js(server, """
const json = await lb.agent.run({ model: MODEL, apiKey: LLM_KEY, input: 'Hello!' });
const { stream, threadId } = await lb.agent.run({ model: MODEL, apiKey: LLM_KEY, input: 'Hello!', stream: true });
const { text, final } = await collect(stream);
const tools = await lb.agent.run({ model: MODEL, apiKey: LLM_KEY, input: 'Weather?', stream: true, tools: [
  { type: 'function', function: { name: 'get_weather', parameters: { type: 'object',
    properties: { location: { type: 'string' } } } } }] });
const calls = await getToolsFromRunStream(tools.stream);
console.log(JSON.stringify({ output: json.output, model: json.model, threadId, text, finalModel: final.model,
  finish: final.choices[0].finish_reason, calls }));
""")
        self.assertTrue(seen["output"])
        self.assertEqual(seen["text"], seen["output"])
        self.assertEqual((seen["model"], seen["finalModel"]), ("openai:gpt-4o-mini", "openai:gpt-4o-mini"))
        self.assertIsNone(seen["threadId"])
        self.assertEqual(seen["finish"], "stop")
        (tool_call,) = seen["calls"]
        self.assertEqual(tool_call["function"], {"name": "get_weather", "arguments": '{"location":"example"}'})

    def test_pipes_create_upsert_list_update_and_run_by_name(self):
        with RunningServer(head_timeout=5.0, replies=("Hi {{who}}!",)) as server:
            seen = self.run_js(server, """
const created = await lb.pipes.create({ name: 'js-pipe', model: 'openai:gpt-4o', stream: false,
  variables: [{ name: 'who', value: 'Ada' }] });
let conflict = null;
try { await lb.pipes.create({ name: 'js-pipe' }); } catch (err) { conflict = err.status; }
const upserted = await lb.pipes.create({ name: 'js-pipe', upsert: true, description: 'upserted' });
const updated = await lb.pipes.update({ name: 'js-pipe', temperature: 0.3 });
const listed = await lb.pipes.list();
const ran = await lb.pipes.run({ name: 'js-pipe', messages: [{ role: 'user', content: 'Hello' }] });
const streamed = await lb.pipes.run({ name: 'js-pipe', stream: true,
  messages: [{ role: 'user', content: 'Hello' }], variables: [{ name: 'who', value: 'Grace' }] });
const { text } = await collect(streamed.stream);
console.log(JSON.stringify({ created, conflict, upserted, updated, listed, completion: ran.completion,
  model: ran.model, threadId: ran.threadId, text, streamedThreadId: streamed.threadId }));
""")
        created = seen["created"]
        self.assertEqual(set(created), {"name", "description", "status", "owner_login", "url", "type", "api_key"})
        self.assertEqual(seen["conflict"], 409)
        self.assertEqual(seen["upserted"]["api_key"], created["api_key"])
        self.assertEqual(seen["updated"]["description"], "upserted")
        (pipe,) = seen["listed"]
        self.assertEqual((pipe["name"], pipe["model"], pipe["temperature"]), ("js-pipe", "openai:gpt-4o", 0.3))
        self.assertEqual((seen["completion"], seen["model"]), ("Hi Ada!", "openai:gpt-4o"))
        self.assertEqual(seen["text"], "Hi Grace!")
        self.assertTrue(seen["threadId"])
        self.assertTrue(seen["streamedThreadId"])

    def test_memories_upload_wait_and_retrieve_the_uploaded_passage_first(self):
        with RunningServer(head_timeout=5.0, memory_processing_seconds=0.3) as server:
            seen = self.run_js(server, """
const created = await lb.memories.create({ name: 'js-notes', description: 'JS SDK test' });
let conflict = null;
try { await lb.memories.create({ name: 'js-notes' }); } catch (err) { conflict = err.status; }
const upload = await lb.memories.documents.upload({ memoryName: 'js-notes', documentName: 'tides.txt',
  contentType: 'text/plain', meta: { topic: 'sea' },
  document: Buffer.from('Tides rise twice a day because the moon pulls the oceans.\\n\\n' +
    'Bread needs flour, water, salt and time to rise.') });
const statuses = [];
for (let i = 0; i < 50; i++) {
  const [doc] = await lb.memories.documents.list({ memoryName: 'js-notes' });
  if (statuses[statuses.length - 1] !== doc.status) statuses.push(doc.status);
  if (doc.status === 'completed' || doc.status === 'failed') break;
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const found = await lb.memories.retrieve({ query: 'why does the moon move the tides',
  memory: [{ name: 'js-notes', filters: ['topic', 'Eq', 'sea'] }], topK: 2 });
const missed = await lb.memories.retrieve({ query: 'moon tides',
  memory: [{ name: 'js-notes', filters: ['topic', 'Eq', 'baking'] }] });
const listed = (await lb.memories.list()).map((m) => m.name);
const deleted = await lb.memories.delete({ name: 'js-notes' });
console.log(JSON.stringify({ created: created.name, conflict, uploadStatus: upload.status, statuses,
  first: found[0].text, found: found.length, missed: missed.length, listed, deleted }));
""")
        self.assertEqual(seen["created"], "js-notes")
        self.assertEqual(seen["conflict"], 409)
        self.assertEqual(seen["uploadStatus"], 200)
        self.assertEqual(seen["statuses"][-1], "completed")
        self.assertIn("moon pulls the oceans", seen["first"])
        self.assertEqual(seen["missed"], 0)
        self.assertEqual(seen["listed"], ["js-notes"])
        self.assertEqual(seen["deleted"], {"success": True})

    def test_workflow_end_posts_its_trace_without_an_error(self):
        with RunningServer(head_timeout=5.0) as server:
            seen = self.run_js(server, """
const errors = [];
console.error = (...args) => { errors.push(args.map(String).join(' ')); };
const workflow = lb.workflow({ name: 'js-flow' });
const answer = await workflow.step({ id: 'ask', run: async () =>
  (await lb.agent.run({ model: MODEL, apiKey: LLM_KEY, input: 'Hello!' })).output });
await workflow.end();
console.log(JSON.stringify({ answer, errors }));
""")
            traces = call(server.port, "GET", "/mock/traces").json()["traces"]
        self.assertEqual(seen["errors"], [])
        (entry,) = traces
        workflow = entry["trace"]["workflow"]
        self.assertEqual(entry["id"], workflow["id"])
        self.assertEqual(workflow["name"], "js-flow")
        self.assertEqual([(s["name"], s["output"]) for s in workflow["steps"]], [("ask", seen["answer"])])
        self.assertEqual(workflow["duration"], workflow["endTime"] - workflow["startTime"])


if __name__ == "__main__":
    unittest.main()
