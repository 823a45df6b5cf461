#!/usr/bin/env node
// Reference peer for bench/compare.py: a plain Node.js `http` server (no dependencies, Node 18+)
// that answers POST /v1/pipes/run with the same Langbase-format SSE stream as main.py.
//
// Per request: read and discard the body, then send status 200 with
//   Content-Type: text/event-stream; charset=utf-8, Cache-Control: no-cache,
//   lb-thread-id: <UUIDv4>, Transfer-Encoding: chunked
// and the frames (OpenAI chat.completion.chunk JSON, one `data: {...}\n\n` each):
//   1. delta {role: "assistant", content: ""}
//   2. --chunks K frames with delta {content: "<word> "}
//   3. delta {} with finish_reason "stop" and a usage object, written together with
//   4. data: [DONE]
// --delay D seconds apart (0: as fast as the socket takes them).
//
// Frame text is prebuilt at startup; a request only adds its id and timestamp in front.
// A paced stream costs one interval timer, cleared when the stream ends or the client hangs up.

import http from "node:http";
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";

const USAGE = `usage: node bench/peer_node.mjs [--host H] [--port P] [--delay D] [--chunks K] [--backlog B]

Streams Langbase-format SSE for POST /v1/pipes/run: a role frame, K word frames, a final
frame (finish_reason "stop" + usage) and data: [DONE], D seconds apart.

options (environment fallback, default):
  --host H      listen address (HOST, 127.0.0.1)
  --port P      listen port, 0 for any free port (PORT, 8124)
  --delay D     seconds between frames, 0 = as fast as possible (CHUNK_DELAY, 0.05)
  --chunks K    word frames per stream (CHUNKS, 20)
  --backlog B   listen backlog; the kernel caps it at net.core.somaxconn (BACKLOG, 65535)
  -h, --help    print this help and exit`;

function fail(msg) {
  process.stderr.write(`peer_node: ${msg}\n\n${USAGE}\n`);
  process.exit(2);
}

let opts;
try {
  opts = parseArgs({
    options: {
      host: { type: "string" },
      port: { type: "string" },
      delay: { type: "string" },
      chunks: { type: "string" },
      backlog: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  }).values;
} catch (err) {
  fail(err.message);
}
if (opts.help) {
  process.stdout.write(USAGE + "\n");
  process.exit(0);
}

function num(name, flag, env, dflt, { integer = false, min = 0, max = Infinity } = {}) {
  const raw = flag ?? process.env[env] ?? String(dflt);
  const v = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    fail(`bad --${name} (or ${env}): ${JSON.stringify(raw)}`);
  }
  return v;
}

const HOST = opts.host ?? process.env.HOST ?? "127.0.0.1";
const PORT = num("port", opts.port, "PORT", 8124, { integer: true, max: 65535 });
const DELAY_MS = num("delay", opts.delay, "CHUNK_DELAY", 0.05) * 1000;
const CHUNKS = num("chunks", opts.chunks, "CHUNKS", 20, { integer: true });
const BACKLOG = num("backlog", opts.backlog, "BACKLOG", 65535, { integer: true, min: 1 });

const MODEL = "gpt-4o-mini";
const WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november " +
  "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split(" ");

// Everything after `"delta":` in each frame; a request prepends HEAD_A + id + HEAD_B + created + HEAD_C.
const HEAD_A = 'data: {"id":"chatcmpl-';
const HEAD_B = '","object":"chat.completion.chunk","created":';
const HEAD_C = `,"model":${JSON.stringify(MODEL)},"system_fingerprint":null,"choices":[{"index":0,"delta":`;
const tail = (delta, finish, usage) =>
  `${JSON.stringify(delta)},"logprobs":null,"finish_reason":${JSON.stringify(finish)}}]` +
  (usage ? `,"usage":${JSON.stringify(usage)}` : "") + "}\n\n";

const ROLE_TAIL = tail({ role: "assistant", content: "" }, null);
const WORD_TAILS = Array.from({ length: CHUNKS }, (_, i) => tail({ content: WORDS[i % WORDS.length] + " " }, null));
const FINAL_TAIL = tail({}, "stop", { prompt_tokens: 1, completion_tokens: CHUNKS, total_tokens: CHUNKS + 1 }) +
  "data: [DONE]\n\n";

function stream(res) {
  res.writeHead(200, {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "lb-thread-id": randomUUID(),
  });
  const head = HEAD_A + randomUUID().replaceAll("-", "") + HEAD_B + Math.floor(Date.now() / 1000) + HEAD_C;
  res.write(head + ROLE_TAIL);
  let i = 0;

  if (DELAY_MS > 0) {
    const timer = setInterval(() => {
      if (i < CHUNKS) {
        res.write(head + WORD_TAILS[i++]);
      } else {
        clearInterval(timer);
        res.end(head + FINAL_TAIL);
      }
    }, DELAY_MS);
    res.on("close", () => clearInterval(timer)); // also fires when the client hangs up
    return;
  }

  // No delay: write until the socket buffer is full, wait for 'drain', repeat. Corking
  // lets each batch leave in one writev.
  let closed = false;
  res.on("close", () => { closed = true; });
  const pump = () => {
    if (closed) return;
    res.cork();
    let more = true;
    while (more && i < CHUNKS) more = res.write(head + WORD_TAILS[i++]);
    if (i === CHUNKS && more) res.end(head + FINAL_TAIL);
    res.uncork();
    if (!more) res.once("drain", pump);
  };
  pump();
}

const server = http.createServer((req, res) => {
  const path = req.url.split("?", 1)[0];
  if (path !== "/v1/pipes/run") {
    req.resume();
    res.writeHead(404, { "Content-Type": "application/json" });
    res.end('{"error":{"message":"not found"}}');
    return;
  }
  if (req.method !== "POST") {
    req.resume();
    res.writeHead(405, { "Content-Type": "application/json", Allow: "POST" });
    res.end('{"error":{"message":"method not allowed"}}');
    return;
  }
  req.on("error", () => {}); // a client that hangs up mid-body: nothing to answer
  req.on("end", () => { if (!res.destroyed) stream(res); });
  req.resume(); // read and discard the body
});

server.on("clientError", (err, socket) => {
  if (socket.writable && err.code !== "ECONNRESET") socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
  else socket.destroy();
});

server.listen({ host: HOST, port: PORT, backlog: BACKLOG }, () => {
  const { address, port } = server.address();
  const shown = address.includes(":") ? `[${address}]` : address;
  process.stdout.write(`peer_node listening on http://${shown}:${port} ` +
    `(delay ${DELAY_MS / 1000}s, ${CHUNKS} word frames, backlog ${BACKLOG}, node ${process.version})\n`);
});

for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
