// langbase-mock playground: vanilla JavaScript, no dependencies, served by the mock itself.
//
// It sends chat requests to the mock with fetch(), keeps every network read's bytes, and parses
// them twice: with an event-stream parser that follows the WHATWG HTML standard ("Server-sent
// events", section 9.2.6) and with the naive split("\n\n") + JSON.parse code many clients
// start with. Both reassemble the reply, which is compared with the run's ground truth from
// GET /mock/runs/{id}. See docs/playground.md.
'use strict';

const $ = (id) => document.getElementById(id);
const MAX_READS_KEPT = 5000;          // reads kept for display; later ones are parsed, not kept
const MAX_BYTES_KEPT = 4 * 1024 * 1024;
const MAX_THREADS_KEPT = 50;
const THREADS_KEY = 'langbase-mock.playground.threads';
const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather', description: 'Get the current weather for a location',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  },
};
const PRESETS = [
  ['CRLF line endings + random byte framing', { line_ending: 'crlf', framing: 'random' }],
  ['One byte per write (splits UTF-8 characters)', { framing: 'byte' }],
  ['Slow: 0.3 s between chunks', { delay: 0.3 }],
  ['Disconnect after 3 events', { fault: 'disconnect', fault_after: 3 }],
  ['In-band error after 3 events', { fault: 'error_frame', fault_after: 3 }],
  ['HTTP 429 with Retry-After', { fault: 'http_error', fault_status: 429 }],
  ['Multi-line data, no space after data:', { multiline_data: true, data_spacing: 'none' }],
  ['Byte order mark + keep-alive comments', { bom: true, keepalive_between: true }],
  ['No [DONE] at the end', { ending: 'no_done' }],
];

// --- the routes: how to ask each one, and how to read its events ---------------------------

const history = () => state.history.map((m) => Object.assign({}, m));

const ROUTES = {
  pipes: {
    label: 'POST /v1/pipes/run (Langbase pipe: chat.completion.chunk + [DONE])', kind: 'chunks',
    help: 'Langbase pipe run. Keeps the conversation in a thread: the reply\'s lb-thread-id is sent back as threadId.',
    streamOption: true, toolsOption: true, auth: true, method: 'POST', path: '/v1/pipes/run',
    body(c) {
      // the thread holds the conversation: send only what it has not seen (tool results, the new message)
      const body = { stream: c.stream, messages: c.threadId ? c.unsent.concat([c.user]) : c.messages };
      if (c.threadId) body.threadId = c.threadId;
      if (c.tools) body.tools = [WEATHER_TOOL];
      return body;
    },
  },
  agent: {
    label: 'POST /v1/agent/run (Langbase agent)', kind: 'chunks',
    help: 'Langbase agent run: model and input (the whole conversation); no thread.',
    streamOption: true, toolsOption: true, auth: true, method: 'POST', path: '/v1/agent/run',
    body(c) {
      const body = { model: 'openai:gpt-4o-mini', input: c.messages, stream: c.stream };
      if (c.tools) body.tools = [WEATHER_TOOL];
      return body;
    },
  },
  openai: {
    label: 'POST /v1/chat/completions (OpenAI Chat Completions)', kind: 'chunks',
    help: 'OpenAI Chat Completions, with stream_options.include_usage so the last chunk carries the usage.',
    streamOption: true, toolsOption: true, auth: true, method: 'POST', path: '/v1/chat/completions',
    body(c) {
      const body = { model: 'gpt-4o-mini', messages: c.messages, stream: c.stream };
      if (c.stream) body.stream_options = { include_usage: true };
      if (c.tools) body.tools = [WEATHER_TOOL];
      return body;
    },
  },
  lobe: {
    label: 'POST /api/chat (Lobe Chat: named events text, tool_calls, stop, usage)', kind: 'lobe',
    help: 'Lobe Chat\'s stream protocol: every event has a name and the completion id; there is no end sentinel.',
    streamOption: false, toolsOption: true, auth: false, method: 'POST', path: '/api/chat',
    body(c) {
      const body = { model: 'gpt-4o-mini', stream: true, messages: c.messages };
      if (c.tools) body.tools = [WEATHER_TOOL];
      return body;
    },
  },
  lifecycle: {
    label: 'POST /api/stream (message lifecycle: message-start, -chunk, -complete)', kind: 'lifecycle',
    help: 'Message-lifecycle events; the conversation is stored under chatId (shown as the thread).',
    streamOption: false, toolsOption: false, auth: false, method: 'POST', path: '/api/stream',
    body(c) {
      return {
        model: 'llama2', chatId: c.chatId,
        messages: c.messages.map((m, i) => Object.assign({ id: 'msg-' + (i + 1), timestamp: m.timestamp }, m)),
      };
    },
  },
  events_openai: {
    label: 'GET /api/events (EventSource: id, retry, chat.completion.chunk + [DONE])', kind: 'chunks',
    help: 'The EventSource route with OpenAI chunks, read here with fetch so the bytes show. The prompt and the scenario go in the query string.',
    streamOption: false, toolsOption: false, auth: false, method: 'GET', path: '/api/events',
  },
  events_json: {
    label: 'GET /events (EventSource: JSON messages token, finish)', kind: 'events-json',
    help: 'The Flask/EventSource design: a JSON object per message, then the server closes.',
    streamOption: false, toolsOption: false, auth: false, method: 'GET', path: '/events',
  },
  hello: {
    label: 'GET /hello (EventSource: as /events)', kind: 'events-json',
    help: 'The same stream as /events under the design\'s other path.',
    streamOption: false, toolsOption: false, auth: false, method: 'GET', path: '/hello',
  },
  tokens: {
    label: 'POST /api/generate + GET /api/stream/{sessionId}/{chatMessageId} (resumable tokens)', kind: 'tokens',
    help: 'Starts a generation (202), then subscribes to its token stream, which ends with data: __END__.',
    streamOption: false, toolsOption: false, auth: false, method: 'POST', path: '/api/generate',
    body(c) { return { sessionId: c.sessionId, chatMessageId: c.chatMessageId, prompt: c.text }; },
  },
};

// --- state --------------------------------------------------------------------------------

const state = {
  settings: {},          // GET /mock/settings
  history: [],           // the conversation as chat messages
  threadId: null,        // lb-thread-id (pipes) or chatId (lifecycle)
  unsent: [],            // messages of the conversation the thread has not been sent yet (tool results)
  controller: null,      // AbortController of the run in progress
  run: null,             // the run being shown (see newRun)
  turn: 0,
};

function newRun() {
  return {
    reads: [], keptBytes: 0, dropped: 0, totalBytes: 0, started: performance.now(), firstByte: null,
    correct: new EventStreamParser(), naive: new NaiveParser(),
    correctEvents: [], naiveEvents: [], readsShownFor: null,
    correctOut: newOutput(), naiveOut: newOutput(), requests: [],
    runId: null, seed: null, status: 'sending', http: '', ended: false,
  };
}

function newOutput() {
  return { text: '', calls: [], usage: null, finish: null, errors: [], done: false, parseErrors: 0 };
}

// --- the WHATWG event-stream parser, over bytes so that boundaries have byte offsets ---------

const CR = 13, LF = 10;

class EventStreamParser {
  // Feed it reads with push(bytes); it returns the events dispatched, each
  // {type, data, id, retry, comment, end} where `end` is the byte offset just after the blank
  // line that dispatched it (comments and retry-only blocks are reported too, as they are on
  // the wire). Lines end at CRLF, LF or CR; a leading UTF-8 BOM is skipped; data lines are
  // joined with "\n"; one space after the colon is removed; an event without data is not
  // dispatched; an unfinished event at the end of the stream is discarded (finish()).
  constructor() {
    this.line = [];            // bytes of the line so far (arrays of Uint8Array slices)
    this.lineLength = 0;
    this.skipLF = false;       // the last byte was a CR: an LF right after it is the same line end
    this.offset = 0;           // absolute offset of the next byte
    this.bomChecked = false;
    this.pendingBom = [];
    this.data = null; this.type = ''; this.lastId = ''; this.fields = 0;
    this.decoder = new TextDecoder('utf-8', { ignoreBOM: true });  // keep U+FEFF inside lines
  }

  push(bytes) {
    const out = [];
    const base = this.offset;
    this.offset += bytes.length;
    let start = 0;
    if (!this.bomChecked) {
      // The stream's first three bytes may be a BOM, possibly split over reads.
      while (start < bytes.length && this.pendingBom.length < 3) this.pendingBom.push(bytes[start++]);
      if (this.pendingBom.length < 3) return out;
      this.bomChecked = true;
      const p = this.pendingBom;
      if (!(p[0] === 0xef && p[1] === 0xbb && p[2] === 0xbf)) this.feed(Uint8Array.from(p), 0, out);
    }
    this.feed(bytes.subarray(start), base + start, out);
    return out;
  }

  feed(bytes, base, out) {
    let from = 0;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === LF && this.skipLF) { this.skipLF = false; from = i + 1; continue; }
      this.skipLF = false;
      if (b === CR || b === LF) {
        this.addToLine(bytes.subarray(from, i));
        this.skipLF = b === CR;
        this.endLine(base + i + 1, out);
        from = i + 1;
      }
    }
    if (from < bytes.length) this.addToLine(bytes.subarray(from));
  }

  addToLine(part) {
    if (part.length) { this.line.push(part.slice()); this.lineLength += part.length; }
  }

  endLine(end, out) {
    const bytes = new Uint8Array(this.lineLength);
    let at = 0;
    for (const part of this.line) { bytes.set(part, at); at += part.length; }
    this.line = []; this.lineLength = 0;
    const line = this.decoder.decode(bytes);
    if (line === '') { this.dispatch(end, out); return; }
    if (line[0] === ':') { out.push({ comment: line.slice(1), end }); return; }
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    this.fields++;
    if (name === 'event') this.type = value;
    else if (name === 'data') this.data = (this.data === null ? '' : this.data + '\n') + value;
    else if (name === 'id') { if (!value.includes('\0')) this.lastId = value; }
    else if (name === 'retry') { if (/^[0-9]+$/.test(value)) this.retry = Number(value); }
  }

  dispatch(end, out) {
    const retry = this.retry;
    const fields = this.fields;
    this.retry = undefined; this.fields = 0;
    if (this.data === null) {          // no data: no event (a retry-only block still shows)
      this.type = '';
      if (retry !== undefined) out.push({ retryOnly: retry, end });
      else if (fields) out.push({ empty: true, end });
      return;
    }
    out.push({ type: this.type || 'message', data: this.data, id: this.lastId, retry, end });
    this.data = null; this.type = '';
  }

  finish() {
    // What was left unfinished when the stream ended: an event without its blank line.
    return this.data !== null || this.lineLength > 0 || (!this.bomChecked && this.pendingBom.length > 0);
  }
}

// --- the naive parser: what a lot of first attempts look like ------------------------------
//
//   buffer += decoder.decode(value, {stream: true});
//   const parts = buffer.split('\n\n');
//   buffer = parts.pop();
//   for (const part of parts) for (const line of part.split('\n'))
//     if (line.startsWith('data: ')) handle(JSON.parse(line.slice(6)));
//
// (it also reads 'event: ' lines, so that named events can be told apart). It runs on bytes so
// that its boundaries get byte offsets; the "\n\n" it looks for is the same in bytes and text.

class NaiveParser {
  constructor() { this.buffer = new Uint8Array(0); this.offset = 0; this.first = true; }

  push(bytes) {
    const joined = new Uint8Array(this.buffer.length + bytes.length);
    joined.set(this.buffer); joined.set(bytes, this.buffer.length);
    const base = this.offset - this.buffer.length;
    this.offset += bytes.length;
    const out = [];
    let from = 0;
    for (let i = 0; i + 1 < joined.length; i++) {
      if (joined[i] === LF && joined[i + 1] === LF) {
        out.push(this.block(joined.subarray(from, i), base + i + 2));
        from = i + 2; i++;
      }
    }
    this.buffer = joined.slice(from);
    return out;
  }

  block(bytes, end) {
    // one decoder over the whole stream drops the stream's leading BOM, and only that one
    const text = new TextDecoder('utf-8', { ignoreBOM: !this.first }).decode(bytes);
    this.first = false;
    let type = 'message', data = null;
    for (const line of text.split('\n')) {
      if (line.startsWith('event: ')) type = line.slice(7);
      if (line.startsWith('data: ')) data = line.slice(6);
    }
    return { type, data, end, naive: true };
  }

  finish() { return this.buffer.length > 0; }
}

// --- reading events into a reply ----------------------------------------------------------

function parseJson(event, out) {
  try { return JSON.parse(event.data); } catch (e) {
    out.parseErrors++;
    event.failed = 'JSON.parse threw: ' + e.message;
    return undefined;
  }
}

function addCall(out, index, id, name, args) {
  let call = out.calls.find((c) => c.index === index);
  if (!call) { call = { index, id: id || '', name: '', arguments: '' }; out.calls.push(call); }
  if (id) call.id = id;
  if (name) call.name += name;
  if (args) call.arguments += args;
}

function errorText(value) {
  if (value === null || value === undefined) return 'error';
  if (typeof value === 'string') return value;
  if (typeof value.message === 'string') {
    const code = value.code || value.type || value.status;
    return (code ? code + ': ' : '') + value.message;
  }
  if (value.error !== undefined) return errorText(value.error);
  if (value.body !== undefined) return errorText(value.body);
  return JSON.stringify(value);
}

// Apply one parsed event of a route's `kind` to `out` (text, calls, usage, finish, errors, done).
function apply(kind, event, out) {
  if (event.data === undefined || event.data === null) return;
  if (kind === 'chunks') {
    if (event.data === '[DONE]') { out.done = true; return; }
    const chunk = parseJson(event, out);
    if (chunk === undefined) return;
    if (chunk && chunk.error) { out.errors.push(errorText(chunk.error)); return; }
    const choice = chunk && chunk.choices && chunk.choices[0];
    if (choice) {
      const delta = choice.delta || {};
      if (typeof delta.content === 'string') out.text += delta.content;
      for (const tc of delta.tool_calls || []) {
        addCall(out, tc.index, tc.id, tc.function && tc.function.name, tc.function && tc.function.arguments);
      }
      if (choice.finish_reason) out.finish = choice.finish_reason;
    }
    if (chunk && chunk.usage) out.usage = chunk.usage;
  } else if (kind === 'lobe') {
    const data = parseJson(event, out);
    if (data === undefined) return;
    if (event.type === 'text') out.text += data;
    else if (event.type === 'tool_calls') for (const tc of data) addCall(out, tc.index, tc.id, tc.function.name, tc.function.arguments);
    else if (event.type === 'stop') { out.finish = data; out.done = true; }
    else if (event.type === 'usage') out.usage = data;
    else if (event.type === 'error') out.errors.push(errorText(data));
  } else if (kind === 'lifecycle') {
    const data = parseJson(event, out);
    if (data === undefined) return;
    if (event.type === 'message-chunk') out.text += data.content;
    else if (event.type === 'message-complete') { out.done = true; out.finish = 'complete'; }
    else if (event.type === 'error') out.errors.push(errorText(data));
  } else if (kind === 'events-json') {
    const data = parseJson(event, out);
    if (data === undefined) return;
    if (data.event === 'token') out.text += data.data;
    else if (data.event === 'finish') { out.finish = data.data; out.usage = data.usage; out.done = true; }
    else if (data.event === 'error') out.errors.push(errorText(data));
  } else if (kind === 'tokens') {
    if (event.data === '__END__') { out.done = true; return; }
    const data = parseJson(event, out);
    if (data === undefined) return;
    if (data.error !== undefined) out.errors.push(errorText(data));
    else if (typeof data.token === 'string') out.text += data.token;
  }
}

// A whole JSON answer (stream off): pipes {completion, raw}, agent {output, raw}, chat.completion.
function applyJson(body, out) {
  const raw = body.raw || body;
  const message = raw.choices && raw.choices[0] && raw.choices[0].message;
  out.text = body.completion ?? body.output ?? (message && message.content) ?? '';
  (message && message.tool_calls || []).forEach((tc, i) => addCall(out, i, tc.id, tc.function.name, tc.function.arguments));
  out.usage = raw.usage || null;
  out.finish = raw.choices && raw.choices[0] && raw.choices[0].finish_reason;
  out.done = true;
}

// --- escaping bytes for display -----------------------------------------------------------

function hex(b) { return '\\x' + b.toString(16).toUpperCase().padStart(2, '0'); }

function utf8Length(b) {
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

// Render `bytes` (which start at absolute offset `base`) into `node`: printable text as is,
// \r \n \t as visible escapes (a real line break follows \n), other control bytes and invalid
// UTF-8 as \xNN, the BOM as <BOM>, pieces of a character cut by the read's edge as underlined
// \xNN, and a ┃ where an event ended (offsets in `ends`).
function renderBytes(node, bytes, base, ends) {
  let text = '';
  const flush = () => { if (text) { node.append(text); text = ''; } };
  const mark = (cls, label, title) => {
    flush();
    const span = document.createElement('span');
    span.className = cls; span.textContent = label;
    if (title) span.title = title;
    node.append(span);
  };
  let i = 0;
  const boundaryAt = (pos) => { if (ends.has(base + pos)) mark('boundary', '┃', 'an event ends here'); };
  while (i < bytes.length) {
    const b = bytes[i];
    if (b === CR) { mark('ctl', '\\r'); i++; }
    else if (b === LF) { mark('ctl', '\\n'); text += '\n'; i++; }
    else if (b === 9) { mark('ctl', '\\t'); i++; }
    else if (b < 0x20 || b === 0x7f) { mark('ctl', hex(b)); i++; }
    else if (b < 0x80) { text += String.fromCharCode(b); i++; }
    else if (b >= 0x80 && b <= 0xbf) {
      // a continuation byte: the rest of a character cut by the previous read, or invalid
      mark(i === 0 || bytes[i - 1] >= 0x80 ? 'partial' : 'bad', hex(b), 'part of a UTF-8 character split across reads');
      i++;
    } else {
      const n = utf8Length(b);
      if (!n) { mark('bad', hex(b), 'not UTF-8'); i++; }
      else if (i + n > bytes.length) {
        let label = '';
        for (let k = i; k < bytes.length; k++) label += hex(bytes[k]);
        mark('partial', label, 'the start of a UTF-8 character the next read completes');
        for (let k = i; k < bytes.length; k++) boundaryAt(k + 1);
        i = bytes.length;
        continue;
      } else {
        const char = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(bytes.subarray(i, i + n));
        if (char === '\uFEFF') mark('ctl', '<BOM>', 'a byte order mark (EF BB BF)');
        else if (char.includes('\uFFFD')) mark('bad', Array.from(bytes.subarray(i, i + n), hex).join(''), 'not UTF-8');
        else text += char;
        i += n;
      }
    }
    boundaryAt(i);
  }
  flush();
}

// --- DOM helpers ---------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function setText(id, value) {
  const node = $(id);
  node.textContent = value === null || value === undefined || value === '' ? '—' : String(value);
  if (node.tagName === 'DD') node.title = node.textContent;  // a value cut at phone width shows whole on hover
}

function parserShown() { return $('parser-naive').checked ? 'naive' : 'whatwg'; }

// --- the scenario form, generated from GET /mock/settings ----------------------------------

function settingControl(name, s) {
  const id = 'mock-' + name;
  const def = s.default === null ? 'see below' : String(s.default);
  let control;
  if (s.type === 'enum' || s.type === 'bool') {
    const choices = s.type === 'bool' ? ['true', 'false'] : s.choices;
    control = el('select', { id });
    control.append(el('option', { value: '' }, 'default (' + def + ')'));
    for (const c of choices) control.append(el('option', { value: c }, c));
  } else if (s.type === 'int' || s.type === 'float') {
    control = el('input', { id, type: 'number', inputmode: s.type === 'int' ? 'numeric' : 'decimal',
      step: s.type === 'int' ? '1' : 'any', min: String(s.min), placeholder: 'default: ' + def });
    if (s.max < 1e15) control.setAttribute('max', String(s.max));
  } else {
    control = el('input', { id, type: 'text', maxlength: String(s.max), placeholder: 'default: ' + def, spellcheck: 'false' });
  }
  control.dataset.setting = name;
  control.setAttribute('aria-describedby', id + '-help');
  control.addEventListener('input', onScenarioChange);
  control.addEventListener('change', onScenarioChange);
  return el('div', { class: 'setting', id: 'setting-' + name },
    el('label', { for: id }, name), control,
    el('span', { class: 'help', id: id + '-help' }, s.help + ' (' + s.allowed + ')'));
}

function buildScenarioForm(settings) {
  const box = $('scenario-fields');
  box.textContent = '';
  for (const [name, s] of Object.entries(settings)) box.append(settingControl(name, s));
  const preset = $('preset');
  preset.textContent = '';
  preset.append(el('option', { value: '' }, 'choose a preset…'));
  PRESETS.forEach(([label, values], i) => {
    if (Object.keys(values).every((k) => k in settings)) preset.append(el('option', { value: String(i) }, label));
  });
}

function scenario() {
  // The settings changed from their defaults, typed as the mock expects them.
  const out = {};
  for (const control of document.querySelectorAll('[data-setting]')) {
    const raw = control.value.trim();
    if (raw === '') continue;
    const s = state.settings[control.dataset.setting];
    if (s.type === 'bool') out[control.dataset.setting] = raw === 'true';
    else if (s.type === 'int' || s.type === 'float') out[control.dataset.setting] = Number(raw);
    else out[control.dataset.setting] = raw;
  }
  return out;
}

function onScenarioChange() {
  const values = scenario();
  for (const control of document.querySelectorAll('[data-setting]')) {
    control.closest('.setting').classList.toggle('changed', control.dataset.setting in values);
  }
  const n = Object.keys(values).length;
  $('scenario-count').textContent = n ? '(' + n + ' set: ' + Object.entries(values).map(([k, v]) => k + '=' + v).join(', ') + ')' : '(all defaults)';
  updateCode();
}

function setScenario(values) {
  for (const control of document.querySelectorAll('[data-setting]')) {
    const v = values[control.dataset.setting];
    control.value = v === undefined ? '' : String(v);
  }
  onScenarioChange();
}

// --- building a request ----------------------------------------------------------------------

function uuid() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
}

function mockHeaderName(name) {
  return 'X-Mock-' + name.split('_').map((w) => w[0].toUpperCase() + w.slice(1)).join('-');
}

// The request the page sends for the message `text`: {route, method, url, headers, body (object
// or null), mock (the scenario), followUp (for the token route)}. `preview` leaves the page's
// state alone (for the code snippets).
function buildRequest(text, preview) {
  const route = ROUTES[$('route').value];
  const mock = scenario();
  const user = { role: 'user', content: text };
  if (route.kind === 'lifecycle') user.timestamp = new Date().toISOString();
  const c = {
    text, user, messages: history().concat([user]), unsent: state.unsent.slice(), stream: route.streamOption ? $('stream').checked : true,
    tools: route.toolsOption && $('tools').checked,
    threadId: state.threadId, chatId: state.threadId || (preview ? 'chat-playground' : uuid()),
    sessionId: 'playground', chatMessageId: 'm' + Date.now().toString(36),
  };
  const headers = {};
  const key = $('api-key').value.trim();
  if (route.auth && key) headers.Authorization = 'Bearer ' + key;
  let url = route.path, body = null, followUp = null;
  if (route.method === 'GET') {
    const query = new URLSearchParams({ prompt: text });
    for (const [k, v] of Object.entries(mock)) query.set(k, String(v));
    url += '?' + query.toString();
  } else {
    headers['Content-Type'] = 'application/json';
    body = route.body(c);
    if (route.kind === 'tokens') {
      followUp = '/api/stream/' + encodeURIComponent(c.sessionId) + '/' + encodeURIComponent(c.chatMessageId);
    }
  }
  return { route, method: route.method, url, headers, body, mock, followUp, context: c };
}

// --- sending and reading -----------------------------------------------------------------------

function addMessage(role, text) {
  const who = el('span', { class: 'who' }, role === 'user' ? 'you' : 'assistant');
  const body = el('span', { class: 'text' }, text);
  const node = el('div', { class: 'msg ' + role }, who, body);
  $('transcript').append(node);
  $('transcript').scrollTop = $('transcript').scrollHeight;
  return node;
}

function showCalls(node, calls) {
  node.querySelectorAll('.call').forEach((n) => n.remove());
  for (const call of calls) {
    node.append(el('span', { class: 'call', 'data-name': call.name },
      'tool call ' + (call.id || '#' + call.index) + ': ' + call.name + '(' + call.arguments + ')'));
  }
}

function showError(node, message) {
  node.append(el('span', { class: 'error', role: 'alert' }, message));
}

function showNote(node, message) {
  node.append(el('span', { class: 'note' }, message));
}

function setBusy(busy) {
  $('send').disabled = busy;
  $('stop').disabled = !busy;
  $('route').disabled = busy;
}

function resetWire() {
  $('reads').textContent = '';
  $('events').textContent = '';
  for (const which of ['whatwg', 'naive']) {
    const p = $('verdict-' + which);
    p.dataset.result = 'pending';
    p.textContent = (which === 'whatwg' ? 'WHATWG parser' : 'Naive parser') + ': waiting for the run…';
  }
  for (const id of ['run-http', 'run-thread', 'run-id', 'run-seed', 'run-usage', 'run-finish', 'run-reads', 'run-time']) setText(id, '');
}

function showRequest(run, method, url, response) {
  const headers = [];
  response.headers.forEach((v, k) => headers.push(k + ': ' + v));
  const item = el('li', { class: 'request' },
    el('span', { class: 'meta' }, method + ' ' + url + ' → ' + response.status + ' ' + response.statusText),
    headers.join('\n'));
  run.requests.push(item);
  $('reads').append(item);
}

function recordRead(run, bytes) {
  const base = run.totalBytes;
  run.totalBytes += bytes.length;
  if (run.firstByte === null) run.firstByte = performance.now();
  const correct = run.correct.push(bytes);
  const naive = run.naive.push(bytes);
  run.correctEvents.push(...correct);
  run.naiveEvents.push(...naive);
  const kind = run.kind;
  for (const e of correct) apply(kind, e, run.correctOut);
  for (const e of naive) apply(kind, e, run.naiveOut);
  let read = null;
  if (run.reads.length < MAX_READS_KEPT && run.keptBytes + bytes.length <= MAX_BYTES_KEPT) {
    read = { bytes, base, at: performance.now() - run.started, n: run.reads.length + run.dropped + 1 };
    run.reads.push(read);
    run.keptBytes += bytes.length;
  } else {
    run.dropped++;
  }
  return { read, correct, naive };
}

function readItem(run, read, ends) {
  const pre = el('span', { class: 'bytes' });
  renderBytes(pre, read.bytes, read.base, ends);
  return el('li', { class: 'read', 'data-read': String(read.n) },
    el('span', { class: 'meta' }, 'read ' + read.n + ' · ' + read.bytes.length + ' bytes · +' + read.at.toFixed(0) + ' ms'),
    pre);
}

function eventItem(e, n) {
  if (e.comment !== undefined) return el('li', { class: 'comment' }, el('span', { class: 'meta' }, '#' + n + ' comment'), ':' + e.comment);
  if (e.retryOnly !== undefined) return el('li', { class: 'comment' }, el('span', { class: 'meta' }, '#' + n + ' retry only'), 'retry: ' + e.retryOnly);
  if (e.empty) return el('li', { class: 'comment' }, el('span', { class: 'meta' }, '#' + n + ' fields without data: no event'));
  const meta = ['#' + n, 'event: ' + e.type];
  if (e.id) meta.push('id: ' + e.id);
  if (e.retry !== undefined) meta.push('retry: ' + e.retry);
  const item = el('li', { class: e.failed ? 'failed' : '' }, el('span', { class: 'meta' }, meta.join(' · ')),
    e.data === null ? '(no data: line)' : e.data);
  if (e.failed) item.append(el('span', { class: 'meta' }, e.failed));
  return item;
}

function boundaries(run, which) {
  return new Set((which === 'naive' ? run.naiveEvents : run.correctEvents).map((e) => e.end));
}

function renderWire(run) {
  // Whole re-render (after a toggle or at the end of a run).
  const which = parserShown();
  const ends = boundaries(run, which);
  const reads = $('reads');
  reads.textContent = '';
  for (const r of run.requests) reads.append(r);
  for (const read of run.reads) reads.append(readItem(run, read, ends));
  if (run.dropped) reads.append(el('li', { class: 'comment' }, run.dropped + ' more reads, parsed but not shown (over ' + MAX_READS_KEPT + ' reads or ' + MAX_BYTES_KEPT + ' bytes).'));
  const events = $('events');
  events.textContent = '';
  const list = which === 'naive' ? run.naiveEvents : run.correctEvents;
  list.slice(0, MAX_READS_KEPT).forEach((e, i) => events.append(eventItem(e, i + 1)));
  run.readsShownFor = which;
}

function updateRunInfo(run, node) {
  const out = run.correctOut;
  node.querySelector('.text').textContent = out.text;
  showCalls(node, out.calls);
  if (out.usage) setText('run-usage', Object.entries(out.usage).map(([k, v]) => k + ' ' + v).join(', '));
  if (out.finish) setText('run-finish', out.finish);
  setText('run-reads', (run.reads.length + run.dropped) + ' reads, ' + run.totalBytes + ' bytes');
  const ttfb = run.firstByte === null ? '' : 'first byte ' + (run.firstByte - run.started).toFixed(0) + ' ms, ';
  setText('run-time', ttfb + 'total ' + (performance.now() - run.started).toFixed(0) + ' ms');
}

function setStatus(run, status) {
  run.status = status;
  $('run-status').textContent = status;
  $('run-status').dataset.status = status;
}

async function readBody(run, response, node, signal) {
  const reader = response.body.getReader();
  let scheduled = false;
  const which = () => parserShown();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const { read, correct, naive } = recordRead(run, value);
    if (read) {
      const shown = which();
      const ends = boundaries(run, shown);
      $('reads').append(readItem(run, read, ends));
      const fresh = shown === 'naive' ? naive : correct;
      const total = shown === 'naive' ? run.naiveEvents.length : run.correctEvents.length;
      fresh.forEach((e, i) => $('events').append(eventItem(e, total - fresh.length + i + 1)));
    }
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(() => { scheduled = false; updateRunInfo(run, node); });
    }
    if (signal.aborted) break;
  }
}

async function send(event) {
  if (event) event.preventDefault();
  if (state.controller) return;
  const text = $('message').value.trim();
  if (!text) { $('message').focus(); return; }
  const request = buildRequest(text, false);
  const run = newRun();
  run.kind = request.route.kind;
  run.stream = request.context.stream;
  state.run = run;
  resetWire();
  setStatus(run, 'sending');
  setBusy(true);
  addMessage('user', text);
  const node = addMessage('assistant', '');
  const controller = new AbortController();
  state.controller = controller;
  const signal = controller.signal;
  let failure = null;
  try {
    let url = request.url;
    let response = await fetch(url, {
      method: request.method, headers: request.headers, signal,
      body: request.body === null ? undefined : JSON.stringify(Object.keys(request.mock).length ? Object.assign({}, request.body, { mock: request.mock }) : request.body),
      cache: 'no-store',
    });
    if (request.followUp && response.ok) {
      const started = await response.json();
      showRequest(run, request.method, url, response);
      run.runId = started.runId;
      url = request.followUp;
      response = await fetch(url, { signal, cache: 'no-store' });
    }
    showRequest(run, request.followUp ? 'GET' : request.method, url, response);
    run.http = response.status + ' ' + (response.headers.get('content-type') || '');
    setText('run-http', run.http);
    run.runId = response.headers.get('lb-mock-run-id') || run.runId;
    run.seed = response.headers.get('lb-mock-seed');
    setText('run-id', run.runId);
    setText('run-seed', run.seed);
    const threadId = response.headers.get('lb-thread-id') || (request.route.kind === 'lifecycle' ? request.context.chatId : null);
    if (threadId) { state.threadId = threadId; rememberThread(threadId); }
    setText('run-thread', request.route.kind === 'lifecycle' ? (threadId ? threadId + ' (chatId)' : '') : response.headers.get('lb-thread-id'));
    setStatus(run, 'streaming');
    if (!response.ok) {
      const raw = await response.text();
      recordRead(run, new TextEncoder().encode(raw));
      let message = raw;
      try { message = errorText(JSON.parse(raw)); } catch (e) { /* not JSON: show as sent */ }
      failure = 'HTTP ' + response.status + ': ' + message;
    } else if (!run.stream) {
      await readBody(run, response, node, signal);
      const all = new Uint8Array(run.totalBytes);
      let at = 0;
      for (const r of run.reads) { all.set(r.bytes, at); at += r.bytes.length; }
      try {
        applyJson(JSON.parse(new TextDecoder().decode(all)), run.correctOut);
        applyJson(JSON.parse(new TextDecoder().decode(all)), run.naiveOut);
      } catch (e) {
        failure = 'the JSON answer could not be read: ' + e.message;
      }
      run.jsonAnswer = true;
    } else {
      await readBody(run, response, node, signal);
    }
  } catch (e) {
    if (signal.aborted) {
      failure = null;
    } else {
      failure = 'the connection failed before the stream ended (' + e.message + ')';
    }
  }
  state.controller = null;
  finishRun(run, node, request, signal.aborted, failure);
}

async function finishRun(run, node, request, aborted, failure) {
  const out = run.correctOut;
  updateRunInfo(run, node);
  if (!run.jsonAnswer) {
    if (run.correct.finish()) showNote(node, 'The stream ended inside an event (no blank line after it): a correct parser discards it.');
  }
  for (const message of out.errors) showError(node, 'in-band error: ' + message);
  if (out.parseErrors) showError(node, out.parseErrors + ' event(s) carried data that is not JSON.');
  if (failure) showError(node, failure);
  if (aborted) showNote(node, 'Stopped: the request was aborted and the connection closed.');
  else if (!failure && !out.errors.length && !out.done && !run.jsonAnswer) {
    showNote(node, 'The stream ended without its end marker (' + endMarker(run.kind) + ').');
  }
  setStatus(run, aborted ? 'stopped' : (failure || out.errors.length) ? 'error' : 'done');
  setBusy(false);
  // the conversation goes on with what the user saw
  state.history.push(Object.assign({ role: 'user', content: request.context.text },
    request.context.user.timestamp ? { timestamp: request.context.user.timestamp } : {}));
  state.unsent = [];
  if (out.calls.length) {
    state.history.push({ role: 'assistant', content: out.text || null,
      tool_calls: out.calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })) });
    for (const c of out.calls) {
      const result = { role: 'tool', tool_call_id: c.id, name: c.name, content: '{"temperature": 21, "unit": "C"}' };
      state.history.push(result);
      state.unsent.push(result);
    }
  } else if (out.text) {
    state.history.push({ role: 'assistant', content: out.text });
  }
  renderWire(run);
  run.ended = true;
  await verdict(run);
  refreshHealth();
  refreshThreads();
  updateCode();
}

function endMarker(kind) {
  return { chunks: 'data: [DONE]', lobe: 'event: stop', lifecycle: 'event: message-complete',
    'events-json': 'a finish message', tokens: 'data: __END__' }[kind];
}

function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

function describe(out, truth) {
  const want = truth.text || '';
  const got = out.text;
  const calls = (truth.tool_calls || []).map((c) => c.function.name + c.function.arguments).join('|');
  const gotCalls = out.calls.map((c) => c.name + c.arguments).join('|');
  if (got === want && calls === gotCalls) {
    return ['match', 'matches the ground truth (' + [...want].length + ' characters' + (calls ? ', ' + truth.tool_calls.length + ' tool call(s)' : '') + ').'];
  }
  if (got === want) return ['differ', 'the text matches but the tool calls differ: got ' + (gotCalls || 'none') + ', expected ' + calls + '.'];
  const at = firstDifference(got, want);
  return ['differ', 'differs from the ground truth: ' + [...got].length + ' of ' + [...want].length +
    ' characters, first difference at character ' + at + ' (got ' + JSON.stringify(got.slice(at, at + 12)) +
    ', expected ' + JSON.stringify(want.slice(at, at + 12)) + ').'];
}

async function verdict(run) {
  const targets = [['whatwg', 'WHATWG parser', run.correctOut], ['naive', 'Naive parser', run.naiveOut]];
  if (!run.runId) {
    for (const [id, label] of targets) { $('verdict-' + id).dataset.result = 'none'; $('verdict-' + id).textContent = label + ': no run id, so no ground truth.'; }
    return;
  }
  let truth;
  try {
    const response = await fetch('/mock/runs/' + encodeURIComponent(run.runId), { cache: 'no-store' });
    if (!response.ok) throw new Error('HTTP ' + response.status);
    truth = await response.json();
  } catch (e) {
    for (const [id, label] of targets) { $('verdict-' + id).dataset.result = 'none'; $('verdict-' + id).textContent = label + ': the ground truth could not be read (' + e.message + ').'; }
    return;
  }
  run.truth = truth;
  const fault = truth.fault ? ' The run had fault=' + truth.fault + ' on purpose.' : '';
  const stopped = run.status === 'stopped' ? ' You stopped it.' : '';
  for (const [id, label, out] of targets) {
    let result, words;
    try { [result, words] = describe(out, truth); } catch (e) { [result, words] = ['none', 'could not be compared (' + e.message + ').']; }
    const p = $('verdict-' + id);
    p.dataset.result = result;
    p.textContent = label + ': ' + words + (result === 'differ' ? fault + stopped : '');
  }
}

function stop() {
  if (state.controller) state.controller.abort();
}

function newConversation() {
  if (state.controller) return;
  state.history = [];
  state.unsent = [];
  state.threadId = null;
  $('transcript').textContent = '';
  setText('run-thread', '');
  updateCode();
  $('message').focus();
}

// --- threads -------------------------------------------------------------------------------

function knownThreads() {
  try {
    const list = JSON.parse(localStorage.getItem(THREADS_KEY) || '[]');
    return Array.isArray(list) ? list.filter((t) => typeof t === 'string').slice(0, MAX_THREADS_KEPT) : [];
  } catch (e) { return []; }
}

function rememberThread(id) {
  const list = [id].concat(knownThreads().filter((t) => t !== id)).slice(0, MAX_THREADS_KEPT);
  try { localStorage.setItem(THREADS_KEY, JSON.stringify(list)); } catch (e) { /* storage off: list stays empty */ }
}

function forgetThread(id) {
  try { localStorage.setItem(THREADS_KEY, JSON.stringify(knownThreads().filter((t) => t !== id))); } catch (e) { /* ignore */ }
}

function authHeaders() {
  const key = $('api-key').value.trim();
  return key ? { Authorization: 'Bearer ' + key } : {};
}

async function refreshThreads() {
  const list = $('threads');
  const ids = knownThreads();
  const items = await Promise.all(ids.map(async (id) => {
    try {
      const r = await fetch('/v1/threads/' + encodeURIComponent(id), { headers: authHeaders(), cache: 'no-store' });
      return [id, r.ok ? await r.json() : null, r.status];
    } catch (e) { return [id, null, 0]; }
  }));
  list.textContent = '';
  if (!items.length) list.append(el('li', {}, 'No threads yet: send a message on /v1/pipes/run or /api/stream, or open one by id.'));
  for (const [id, thread, status] of items) {
    const when = thread ? new Date(thread.created_at * 1000).toLocaleTimeString() : (status === 404 ? 'deleted or never stored' : 'HTTP ' + status);
    const meta = thread && Object.keys(thread.metadata || {}).length ? ' ' + JSON.stringify(thread.metadata) : '';
    list.append(el('li', { 'data-thread': id },
      el('span', { class: 'tid' + (thread ? '' : ' gone') }, id),
      el('span', { class: 'help' }, when + meta),
      el('button', { type: 'button', onclick: () => openThread(id), 'aria-label': 'Show the messages of thread ' + id }, 'Messages'),
      el('button', { type: 'button', onclick: () => continueThread(id), 'aria-label': 'Continue thread ' + id + ' in the chat', disabled: thread ? undefined : 'disabled' }, 'Continue'),
      el('button', { type: 'button', onclick: () => deleteThread(id), 'aria-label': 'Delete thread ' + id }, thread ? 'Delete' : 'Forget')));
  }
}

async function openThread(id) {
  const box = $('thread-messages');
  box.textContent = 'Loading ' + id + '…';
  try {
    const r = await fetch('/v1/threads/' + encodeURIComponent(id) + '/messages', { headers: authHeaders(), cache: 'no-store' });
    const body = await r.json();
    box.textContent = '';
    if (!r.ok) { box.append(el('p', { class: 'msg assistant' }, el('span', { class: 'error', role: 'alert' }, 'HTTP ' + r.status + ': ' + errorText(body)))); return; }
    rememberThread(id);
    box.append(el('h3', {}, 'Thread ' + id + ' · ' + body.length + ' message(s)'));
    for (const m of body) {
      const node = el('div', { class: 'msg ' + (m.role === 'user' ? 'user' : 'assistant') },
        el('span', { class: 'who' }, m.role + ' · ' + m.id), typeof m.content === 'string' ? m.content : JSON.stringify(m.content));
      if (m.tool_calls) showCalls(node, m.tool_calls.map((c, i) => ({ index: i, id: c.id, name: c.function.name, arguments: c.function.arguments })));
      box.append(node);
    }
  } catch (e) {
    box.textContent = 'Could not read the thread: ' + e.message;
  }
}

async function continueThread(id) {
  if (state.controller) return;
  let messages = [];
  try {
    const r = await fetch('/v1/threads/' + encodeURIComponent(id) + '/messages', { headers: authHeaders(), cache: 'no-store' });
    if (r.ok) messages = await r.json();
  } catch (e) { /* an empty transcript then */ }
  state.threadId = id;
  state.unsent = [];
  state.history = messages.filter((m) => m.role === 'user' || m.role === 'assistant')
    .map((m) => ({ role: m.role, content: typeof m.content === 'string' ? m.content : '' }));
  $('transcript').textContent = '';
  for (const m of state.history) addMessage(m.role, m.content);
  if ($('route').value !== 'pipes' && $('route').value !== 'lifecycle') { $('route').value = 'pipes'; onRouteChange(); }
  setText('run-thread', id);
  updateCode();
  $('message').focus();
}

async function deleteThread(id) {
  try {
    await fetch('/v1/threads/' + encodeURIComponent(id), { method: 'DELETE', headers: authHeaders() });
  } catch (e) { /* forgotten below either way */ }
  forgetThread(id);
  if (state.threadId === id) newConversation();
  $('thread-messages').textContent = 'Thread ' + id + ' deleted.';
  refreshThreads();
}

// --- code for the current settings ---------------------------------------------------------

function sq(text) { return "'" + String(text).replace(/'/g, "'\\''") + "'"; }

function py(value) {
  // A JSON value written as a Python literal (JSON string escapes are valid in Python strings).
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (Array.isArray(value)) return '[' + value.map(py).join(', ') + ']';
  if (typeof value === 'object') return '{' + Object.entries(value).map(([k, v]) => JSON.stringify(k) + ': ' + py(v)).join(', ') + '}';
  return JSON.stringify(value);
}

function pyArgs(obj) {
  return Object.entries(obj).map(([k, v]) => k + '=' + py(v)).join(', ');
}

function curlFor(req, base) {
  const mockHeaders = Object.entries(req.mock).map(([k, v]) => ' -H ' + sq(mockHeaderName(k) + ': ' + v)).join('');
  const auth = req.headers.Authorization ? ' -H ' + sq('Authorization: ' + req.headers.Authorization) : '';
  if (req.method === 'GET') {
    const url = base + req.route.path + '?' + new URLSearchParams({ prompt: req.context.text }).toString();
    return 'curl -sS -N ' + sq(url) + mockHeaders;
  }
  const post = 'curl -sS -N ' + base + req.route.path + " -H 'Content-Type: application/json'" + auth + mockHeaders + ' \\\n  -d ' + sq(JSON.stringify(req.body));
  if (req.followUp) return post.replace('curl -sS -N', 'curl -sS --fail-with-body') + ' \\\n  && curl -sS -N ' + base + req.followUp;
  return post;
}

function pythonFor(req, base) {
  const r = $('route').value;
  const key = req.headers.Authorization ? req.headers.Authorization.slice(7) : 'any-key';
  const mock = Object.keys(req.mock).length ? req.mock : null;
  const b = req.body || {};
  if (r === 'pipes' || r === 'agent') {
    const args = r === 'pipes'
      ? Object.assign({ name: 'playground', messages: b.messages, stream: b.stream }, b.threadId ? { thread_id: b.threadId } : {})
      : { model: b.model, input: b.input, api_key: 'sk-any-llm-key', stream: b.stream };
    if (b.tools) args.tools = b.tools;
    // pipes.run() passes extra keys through to the body; the Python SDK's agent.run() does not
    const note = mock && r === 'agent'
      ? '# agent.run() in the Python SDK sends no extra keys, so the scenario (' +
        Object.entries(mock).map(([k, v]) => k + '=' + v).join(', ') + ') is left out: use curl or the JS SDK for it.\n'
      : '';
    if (mock && r === 'pipes') args.mock = mock;
    const call = 'lb.' + (r === 'pipes' ? 'pipes' : 'agent') + '.run(' + pyArgs(args) + ')';
    const read = b.stream
      ? 'print(get_runner(res).collect_text())'
      : 'print(res["' + (r === 'pipes' ? 'completion' : 'output') + '"])';
    return 'from langbase import Langbase\nfrom langbase.helper import get_runner\n\n' +
      'lb = Langbase(api_key=' + py(key) + ', base_url=' + py(base) + ')\n' + note +
      'res = ' + call + '\n' + read + (r === 'pipes' ? '\nprint(res["thread_id"])' : '') + '\n';
  }
  if (r === 'openai') {
    const args = { model: b.model, messages: b.messages, stream: b.stream };
    if (b.tools) args.tools = b.tools;
    if (mock) args.extra_body = { mock };
    const read = b.stream
      ? 'for chunk in res:\n    if chunk.choices:\n        print(chunk.choices[0].delta.content or "", end="")\nprint()'
      : 'print(res.choices[0].message.content)';
    return 'from openai import OpenAI\n\nclient = OpenAI(api_key=' + py(key) + ', base_url=' + py(base + '/v1') + ')\n' +
      'res = client.chat.completions.create(' + pyArgs(args) + ')\n' + read + '\n';
  }
  // no SDK for these: the standard library, printing the stream's lines as they come
  const headers = Object.fromEntries(Object.entries(req.mock).map(([k, v]) => [mockHeaderName(k), String(v)]));
  if (req.method === 'GET') {
    const url = base + req.route.path + '?' + new URLSearchParams({ prompt: req.context.text }).toString();
    return 'import urllib.request\n\nreq = urllib.request.Request(' + py(url) + ', headers=' + py(headers) + ')\n' +
      'with urllib.request.urlopen(req) as res:\n    for line in res:\n        print(line.decode("utf-8").rstrip("\\r\\n"))\n';
  }
  const start = 'import json\nimport urllib.request\n\nbody = ' + py(b) + '\n' +
    'req = urllib.request.Request(' + py(base + req.route.path) + ', data=json.dumps(body).encode("utf-8"),\n' +
    '                             headers=' + py(Object.assign({ 'Content-Type': 'application/json' }, headers)) + ')\n';
  const stream = (url) => 'with urllib.request.urlopen(' + url + ') as res:\n    for line in res:\n        print(line.decode("utf-8").rstrip("\\r\\n"))\n';
  if (req.followUp) return start + 'with urllib.request.urlopen(req) as res:\n    started = json.load(res)\n' + stream(py(base) + ' + started["stream"]');
  return start + stream('req');
}

function jsFor(req, base) {
  const r = $('route').value;
  const key = req.headers.Authorization ? req.headers.Authorization.slice(7) : 'any-key';
  const mock = Object.keys(req.mock).length ? req.mock : null;
  const b = req.body || {};
  const j = (v) => JSON.stringify(v);
  if (r === 'pipes' || r === 'agent') {
    const opts = r === 'pipes'
      ? Object.assign({ name: 'playground', stream: b.stream, messages: b.messages }, b.threadId ? { threadId: b.threadId } : {})
      : { model: b.model, apiKey: 'sk-any-llm-key', input: b.input, stream: b.stream };
    if (b.tools) opts.tools = b.tools;
    if (mock) opts.mock = mock;
    const call = 'await lb.' + (r === 'pipes' ? 'pipes' : 'agent') + '.run(' + j(opts) + ')';
    const read = b.stream
      ? 'const { stream } = ' + call + ';\nconst runner = getRunner(stream);\nrunner.on(\'content\', (text) => process.stdout.write(text));\nawait runner.finalChatCompletion();\nconsole.log();'
      : 'const res = ' + call + ';\nconsole.log(res.' + (r === 'pipes' ? 'completion' : 'output') + ');';
    return "import { Langbase, getRunner } from 'langbase';\n\n" +
      'const lb = new Langbase({ apiKey: ' + j(key) + ', baseUrl: ' + j(base) + ' });\n' + read + '\n';
  }
  const headers = Object.fromEntries(Object.entries(req.mock).map(([k, v]) => [mockHeaderName(k), String(v)]));
  if (req.headers.Authorization) headers.Authorization = req.headers.Authorization;
  const print = 'const decoder = new TextDecoder();\nfor await (const bytes of res.body) process.stdout.write(decoder.decode(bytes, { stream: true }));\n';
  if (req.method === 'GET') {
    const url = base + req.route.path + '?' + new URLSearchParams({ prompt: req.context.text }).toString();
    return 'const res = await fetch(' + j(url) + ', { headers: ' + j(headers) + ' });\n' + print;
  }
  const post = 'await fetch(' + j(base + req.route.path) + ', {\n  method: \'POST\',\n  headers: ' +
    j(Object.assign({ 'Content-Type': 'application/json' }, headers)) + ',\n  body: JSON.stringify(' + j(b) + '),\n})';
  if (req.followUp) return 'const started = await (' + post + ').json();\nconst res = await fetch(' + j(base) + ' + started.stream);\n' + print;
  return 'const res = ' + post + ';\n' + print;
}

function updateCode() {
  if (!Object.keys(state.settings).length) return;
  const text = $('message').value.trim() || 'Hello!';
  const req = buildRequest(text, true);
  const base = location.origin;
  $('code-curl').textContent = curlFor(req, base);
  $('code-python').textContent = pythonFor(req, base);
  $('code-js').textContent = jsFor(req, base);
}

async function copy(id) {
  const text = $(id).textContent;
  let ok = false;
  try { await navigator.clipboard.writeText(text); ok = true; } catch (e) { ok = false; }
  if (!ok) {
    const range = document.createRange();
    range.selectNodeContents($(id));
    const selection = getSelection();
    selection.removeAllRanges(); selection.addRange(range);
  }
  $('copy-status').textContent = ok ? 'Copied to the clipboard.' : 'The clipboard is not available here: the text is selected, press Ctrl+C.';
}

// --- start ---------------------------------------------------------------------------------

function onRouteChange() {
  const route = ROUTES[$('route').value];
  $('route-help').textContent = route.help;
  $('stream').disabled = !route.streamOption;
  if (!route.streamOption) $('stream').checked = true;
  $('tools').disabled = !route.toolsOption;
  if (!route.toolsOption) $('tools').checked = false;
  updateCode();
}

async function refreshHealth() {
  try {
    const r = await fetch('/health', { cache: 'no-store' });
    const h = await r.json();
    $('server-status').textContent = h.service + ' ' + h.version + ' at ' + location.host + ' · ' + h.threads + ' thread(s) · ' +
      h.open_streams + ' open stream(s) · up ' + Math.round(h.uptime_seconds) + ' s';
  } catch (e) {
    $('server-status').textContent = 'The mock at ' + location.host + ' does not answer: ' + e.message;
  }
}

async function start() {
  for (const [key, route] of Object.entries(ROUTES)) $('route').append(el('option', { value: key }, route.label));
  $('route').addEventListener('change', onRouteChange);
  for (const id of ['stream', 'tools', 'message', 'api-key']) $(id).addEventListener('input', updateCode);
  $('chat-form').addEventListener('submit', send);
  $('message').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) send(e);
  });
  $('stop').addEventListener('click', stop);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && state.controller) stop(); });
  $('new-chat').addEventListener('click', newConversation);
  $('scenario-reset').addEventListener('click', () => { $('preset').value = ''; setScenario({}); });
  $('preset').addEventListener('change', () => {
    const preset = PRESETS[Number($('preset').value)];
    if ($('preset').value !== '' && preset) setScenario(preset[1]);
  });
  for (const radio of document.querySelectorAll('input[name=parser]')) {
    radio.addEventListener('change', () => { if (state.run) renderWire(state.run); });
  }
  for (const button of document.querySelectorAll('button.copy')) button.addEventListener('click', () => copy(button.dataset.copy));
  $('thread-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const id = $('thread-open').value.trim();
    if (id) openThread(id).then(refreshThreads);
  });
  $('threads-refresh').addEventListener('click', refreshThreads);
  onRouteChange();
  refreshHealth();
  refreshThreads();
  try {
    const r = await fetch('/mock/settings', { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    state.settings = await r.json();
    buildScenarioForm(state.settings);
    onScenarioChange();
    document.body.dataset.ready = 'true';
  } catch (e) {
    $('scenario-fields').textContent = 'The scenario settings could not be loaded: ' + e.message;
  }
}

start();
