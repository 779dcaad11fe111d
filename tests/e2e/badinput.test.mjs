// The black-box bad-input suite for kiln serve: each kind of hostile or broken input gets the
// right status and an OpenAI-shaped error body, and a normal request still works after it.
// The same cases run against kiln serve directly and through a kiln gateway in front of it.
// Standard library only (node:net for bytes no HTTP client would send).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { waitFor } from './gwutil.mjs';
import { startServer, stopServer, postJson, haveStories, stories } from './serverutil.mjs';
import { needs } from './prereq.mjs';
import { startGateway, cleanup } from './gwreal.mjs';

const skip = needs(haveStories, 'needs ../shared/models/stories260K.gguf');
const MAX_BODY = 1 << 20;

// Sends raw bytes on a new connection and reads until the server closes it (or timeoutMs).
function raw(port, chunks, { timeoutMs = 10000, gapMs = 0 } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const bufs = [];
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      sock.destroy();
      const text = Buffer.concat(bufs).toString('latin1');
      const m = text.match(/^HTTP\/1\.[01] (\d{3})/);
      const body = text.includes('\r\n\r\n') ? text.slice(text.indexOf('\r\n\r\n') + 4) : '';
      resolve({ status: m ? Number(m[1]) : 0, text, body, closed });
    };
    sock.on('data', (d) => bufs.push(d));
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
    setTimeout(() => finish(false), timeoutMs);
    (async () => {
      for (const c of [].concat(chunks)) {
        if (sock.destroyed) return;
        sock.write(c);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
    })();
  });
}

function errorBody(r) {
  const j = typeof r.json !== 'undefined' ? r.json : (() => { try { return JSON.parse(r.body); } catch { return null; } })();
  assert.ok(j && j.error && typeof j.error.message === 'string' && j.error.message.length > 0,
    `not an OpenAI error body: ${r.text || r.body}`);
  assert.equal(j.error.code, r.status);
  return j.error;
}

for (const target of ['kiln serve', 'kiln gateway']) describe(`bad input: ${target}`, { skip }, () => {
  const viaGateway = target === 'kiln gateway';
  let s, gw, url, port;
  before(async () => {
    s = await startServer(['-m', stories, '-t', '2', '--ctx', '128', '--max-body', String(MAX_BODY),
      '--timeout', '3', '--max-seqs', '4', '--max-queue', '4', '--served-model-name', 'm']);
    url = s.url, port = s.port;
    if (viaGateway) {
      gw = await startGateway({ listen: { client_timeout_ms: 3000 }, // as the server's --timeout 3
        models: [{ name: 'm', pools: [{ endpoints: [{ url: s.url }] }] }] });
      url = gw.url, port = gw.port;
    }
  });
  after(async () => {
    if (gw) {
      const g = await gw.stop();
      assert.equal(g.code, 0, gw.log());
      assert.doesNotMatch(gw.log(), /ERROR: AddressSanitizer|LeakSanitizer|runtime error/);
      cleanup();
    }
    const r = await stopServer(s);
    assert.equal(r.code, 0, s.log());
    assert.doesNotMatch(s.log(), /ERROR: AddressSanitizer|LeakSanitizer|runtime error/);
  });

  // After every case: the server (and the gateway) still answer a normal request.
  async function stillServes() {
    const r = await postJson(`${url}/v1/completions`, { model: 'm', prompt: 'Once upon a time', max_tokens: 2, temperature: 0 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.usage.completion_tokens, 2);
  }

  const C = '/v1/completions', CHAT = '/v1/chat/completions';
  const cases = [
    // [name, path, body (string | object | Buffer), status, param (undefined: not checked)]
    ['malformed JSON', C, '{"prompt": "a"', 400, null],
    ['empty body', C, '', 400, null],
    ['JSON array body', C, '[1, 2]', 400, null],
    ['JSON string body', C, '"hello"', 400, null],
    ['trailing garbage', C, '{"prompt": "a"} xyz', 400, null],
    ['duplicate keys', C, '{"prompt": "a", "prompt": "b"}', 400, null],
    ['invalid UTF-8 in a string', C, Buffer.concat([Buffer.from('{"prompt": "a'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), 400, null],
    ['overlong UTF-8', C, Buffer.concat([Buffer.from('{"prompt": "'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]), 400, null],
    ['lone surrogate escape', C, '{"prompt": "\\ud800"}', 400, null],
    ['NUL escape in a string', C, '{"prompt": "a\\u0000b"}', 400, null],
    ['NaN temperature', C, '{"prompt": "a", "temperature": NaN}', 400, null],
    ['Infinity temperature', C, '{"prompt": "a", "temperature": Infinity}', 400, null],
    ['number overflow 1e999', C, '{"prompt": "a", "temperature": 1e999}', 400, null],
    ['integer overflow', C, '{"prompt": "a", "max_tokens": 99999999999999999999999}', 400, null],
    ['deeply nested JSON', C, '['.repeat(100000), 400, null],
    ['temperature as a string', C, { prompt: 'a', temperature: 'hot' }, 400, 'temperature'],
    ['negative temperature', C, { prompt: 'a', temperature: -1 }, 400, 'temperature'],
    ['huge temperature', C, { prompt: 'a', temperature: 1e308 }, 400, 'temperature'],
    ['n = 1e9', C, { prompt: 'a', n: 1e9 }, 400, 'n'],
    ['n = 0', C, { prompt: 'a', n: 0 }, 400, 'n'],
    ['n negative', C, { prompt: 'a', n: -3 }, 400, 'n'],
    ['n as a string', C, { prompt: 'a', n: '2' }, 400, 'n'],
    ['max_tokens negative', C, { prompt: 'a', max_tokens: -5 }, 400, 'max_tokens'],
    ['max_tokens zero', C, { prompt: 'a', max_tokens: 0 }, 400, 'max_tokens'],
    ['max_tokens fractional', C, { prompt: 'a', max_tokens: 1.5 }, 400, 'max_tokens'],
    ['max_tokens huge', C, { prompt: 'a', max_tokens: 1e15 }, 400, 'max_tokens'],
    ['top_p zero', C, { prompt: 'a', top_p: 0 }, 400, 'top_p'],
    ['top_p over 1', C, { prompt: 'a', top_p: 1.5 }, 400, 'top_p'],
    ['top_k below -1', C, { prompt: 'a', top_k: -7 }, 400, 'top_k'],
    ['presence_penalty out of range', C, { prompt: 'a', presence_penalty: 9 }, 400, 'presence_penalty'],
    ['repetition_penalty zero', C, { prompt: 'a', repetition_penalty: 0 }, 400, 'repetition_penalty'],
    ['seed as an object', C, { prompt: 'a', seed: {} }, 400, 'seed'],
    ['prompt missing', C, { max_tokens: 3 }, 400, 'prompt'],
    ['prompt a number', C, { prompt: 42 }, 400, 'prompt'],
    ['prompt empty list', C, { prompt: [] }, 400, 'prompt'],
    ['prompt token id out of vocab', C, { prompt: [1, 2, 1e6] }, 400, 'prompt'],
    ['prompt negative token id', C, { prompt: [-1] }, 400, 'prompt'],
    ['prompt mixed list', C, { prompt: ['a', [1, 2]] }, 400, 'prompt'],
    ['too many prompts', C, { prompt: Array(100).fill('a') }, 400, 'prompt'],
    ['prompt over the context', C, { prompt: 'Once upon a time there was a cat. '.repeat(40) }, 400, 'prompt'],
    ['prompt + max_tokens over the context', C, { prompt: 'Once upon a time', max_tokens: 1000 }, 400, 'max_tokens'],
    ['too many stop strings', C, { prompt: 'a', stop: Array(20).fill('x') }, 400, 'stop'],
    ['stop not strings', C, { prompt: 'a', stop: [1, 2] }, 400, 'stop'],
    ['stop string too long', C, { prompt: 'a', stop: 'x'.repeat(1000) }, 400, 'stop'],
    ['logit_bias key not a token id', C, { prompt: 'a', logit_bias: { hello: 1 } }, 400, 'logit_bias'],
    ['logit_bias key out of vocab', C, { prompt: 'a', logit_bias: { 999999: 1 } }, 400, 'logit_bias'],
    ['logit_bias value out of range', C, { prompt: 'a', logit_bias: { 5: 1e9 } }, 400, 'logit_bias'],
    ['logprobs too many', C, { prompt: 'a', logprobs: 100 }, 400, 'logprobs'],
    ['stream not a boolean', C, { prompt: 'a', stream: 'yes' }, 400, 'stream'],
    ['stream_options without stream', C, { prompt: 'a', stream_options: { include_usage: true } }, 400, 'stream_options'],
    ['model not a string', C, { prompt: 'a', model: ['m'] }, 400, 'model'],
    ['unknown model', C, { prompt: 'a', model: 'gpt-17' }, 404, 'model'],
    ['chat: messages missing', CHAT, { max_tokens: 2 }, 400, 'messages'],
    ['chat: messages not a list', CHAT, { messages: 'hi' }, 400, 'messages'],
    ['chat: empty messages', CHAT, { messages: [] }, 400, 'messages'],
    ['chat: message not an object', CHAT, { messages: [5] }, 400, 'messages'],
    ['chat: bad role', CHAT, { messages: [{ role: 'root', content: 'x' }] }, 400, 'messages[0].role'],
    ['chat: content a number', CHAT, { messages: [{ role: 'user', content: 7 }] }, 400, 'messages[0].content'],
    ['chat: image content part', CHAT, { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 400, 'messages[0].content'],
    ['chat: top_logprobs without logprobs', CHAT, { messages: [{ role: 'user', content: 'x' }], top_logprobs: 3 }, 400, 'top_logprobs'],
    ['chat: logprobs not a boolean', CHAT, { messages: [{ role: 'user', content: 'x' }], logprobs: 5 }, 400, 'logprobs'],
    ['chat: conversation over the context', CHAT, { messages: [{ role: 'user', content: 'Once upon a time. '.repeat(60) }] }, 400, 'messages'],
    ['chat: a tool name that is no identifier', CHAT, { messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'get weather', parameters: { type: 'object', properties: {} } } }] }, 400, 'tools'],
    ['chat: tool_choice without tools', CHAT, { messages: [{ role: 'user', content: 'x' }], tool_choice: 'auto' }, 400, 'tool_choice'],
    ['chat: functions (legacy)', CHAT, { messages: [{ role: 'user', content: 'x' }], functions: [{ name: 'f', parameters: {} }] }, 400, 'functions'],
    ['chat: function_call (legacy)', CHAT, { messages: [{ role: 'user', content: 'x' }], function_call: 'auto' }, 400, 'function_call'],
    ['chat: response_format of an unknown type', CHAT, { messages: [{ role: 'user', content: 'x' }], response_format: { type: 'yaml' } }, 400, 'response_format'],
    ['chat: response_format json_schema without a name', CHAT, { messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_schema', json_schema: { schema: { type: 'object' } } } }, 400, 'response_format'],
    ['chat: response_format json_schema with an unsupported keyword', CHAT, { messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'array', uniqueItems: true } } } }, 400, 'response_format'],
    ['completions: guided_regex with a backreference', '/v1/completions', { prompt: 'x', guided_regex: '(a)\\1' }, 400, 'guided_regex'],
    ['tokenize: no prompt', '/tokenize', { text: 'a' }, 400, 'prompt'],
    ['detokenize: ids out of vocab', '/detokenize', { tokens: [1, 2, 99999999] }, 400, 'tokens'],
    ['detokenize: tokens not a list', '/detokenize', { tokens: 'abc' }, 400, 'tokens'],
  ];

  for (const [name, path, body, status, param] of cases) {
    // the gateway routes the OpenAI API; kiln serve's own /tokenize and /detokenize are not it
    const gwSkip = viaGateway && !path.startsWith('/v1/') ? 'not routed by the gateway' : false;
    test(`${name} -> ${status}`, { skip: gwSkip }, async () => {
      // the model named, as a client of a gateway must (kiln serve alone takes it or not)
      const b = typeof body === 'object' && !Buffer.isBuffer(body) && !('model' in body) ? { model: 'm', ...body } : body;
      const r = await postJson(`${url}${path}`, b);
      assert.equal(r.status, status, r.text);
      const e = errorBody(r);
      if (param !== null) assert.equal(e.param, param, e.message);
      await stillServes();
    });
  }

  test('wrong method -> 405, unknown path -> 404', async () => {
    for (const [method, path, st] of [['GET', C, 405], ['PUT', C, 405], ['DELETE', '/v1/models', 405],
      ['POST', '/health', 405], ['GET', '/v2/everything', 404], ['POST', '/v1/audio/speech', 404]]) {
      const r = await fetch(`${url}${path}`, { method });
      const text = await r.text();
      assert.equal(r.status, st, `${method} ${path}`);
      if (st === 405) assert.equal(r.headers.get('allow'), path === C ? 'POST' : 'GET', `${method} ${path}`);
      errorBody({ status: st, json: JSON.parse(text), text });
    }
    await stillServes();
  });

  test('body over --max-body -> 413 JSON; 10 MB body -> 413', async () => {
    const big = JSON.stringify({ model: 'm', prompt: 'a'.repeat(MAX_BODY + 1000) });
    const r = await postJson(`${url}${C}`, big);
    assert.equal(r.status, 413);
    errorBody(r);
    const huge = await raw(port, [`POST ${C} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${10 * 1024 * 1024}\r\nConnection: close\r\n\r\n`, Buffer.alloc(64 * 1024, 97)]);
    assert.equal(huge.status, 413, huge.text.slice(0, 200));
    await stillServes();
  });

  // Framing that evhttp would accept, or read differently from a proxy in front: each is
  // refused before it reaches the server (or the gateway, which must never forward one)
  // with its status and a JSON error, and the connection is closed.
  const body5 = '{"a":1}'.slice(0, 5);
  const framing = [
    ['garbage request line', 'HELLO THERE\r\n\r\n', 501],
    ['Content-Length -5', `POST ${C} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n`, 400],
    ['Content-Length abc', `POST ${C} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n`, 400],
    ['bad chunk size', `POST ${C} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n`, 400],
    ['space before the colon', `POST ${C} HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n${body5}`, 400],
    ['Content-Length +5', `POST ${C} HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n${body5}`, 400],
    ['two different Content-Lengths', `POST ${C} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n${body5}xx`, 400],
    ['Content-Length and Transfer-Encoding', `POST ${C} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
    ['unknown Transfer-Encoding', `POST ${C} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501],
    ['bare LF', `GET /health HTTP/1.1\nHost: x\n\n`, 400],
    ['NUL in a header', `GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n`, 400],
    ['folded header', `GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n`, 400],
    ['HEAD with a body', `HEAD /health HTTP/1.1\r\nHost: x\r\nContent-Length: 27\r\n\r\nGET /v1/models HTTP/1.1\r\n\r\n`, 400],
    ['URI over 8 KiB', `GET /health?${'a'.repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414],
    ['100 KB of headers', `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100 * 1024)}\r\n\r\n`, 431],
  ];
  for (const [name, bytes, status] of framing) test(`framing: ${name} -> ${status}, closed`, async () => {
    const r = await raw(port, bytes, { timeoutMs: 5000 });
    assert.equal(r.status, status, `${JSON.stringify(bytes.slice(0, 120))} -> ${r.text.slice(0, 200)}`);
    assert.equal(errorBody(r).type, 'invalid_request_error');
    assert.match(r.text, /\r\nConnection: close\r\n/i);
    assert.ok(r.closed);
    await stillServes();
  });

  test('framing: pipelined requests are answered in order, up to the bad one', async () => {
    const r = await raw(port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n' +
      'GET /health HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 5000 });
    const statuses = [...r.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [200, 200, 400], r.text);
    assert.ok(r.closed);
  });

  test('a body that stalls -> 408 after --timeout, closed', async () => {
    const t0 = Date.now();
    const r = await raw(port, `POST ${C} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt": "a`,
      { timeoutMs: 12000 });
    assert.equal(r.status, 408, r.text.slice(0, 200));
    assert.equal(errorBody(r).code, 408);
    assert.ok(r.closed);
    assert.ok(Date.now() - t0 >= 2500, `after ${Date.now() - t0} ms`); // --timeout 3
    await stillServes();
  });

  test('slowloris: dribbled headers do not block others and are cut off after --timeout', async () => {
    const t0 = Date.now();
    // a header line every 400 ms: libevent's idle timer never fires, the request deadline does
    const lines = ['POST /v1/completions HTTP/1.1\r\n', ...Array.from({ length: 40 }, (_, i) => `X-h${i}: ${i}\r\n`)];
    const slow = Array.from({ length: 20 }, () => raw(port, lines, { gapMs: 400, timeoutMs: 15000 }));
    await stillServes();
    const stalled = await raw(port, 'POST /v1/completions HTTP/1.1\r\nHost: x\r\n', { timeoutMs: 12000 });
    assert.ok(stalled.closed, 'a client that stops mid-headers is disconnected');
    const rs = await Promise.all(slow);
    for (const r of rs) assert.ok(r.closed, 'a dribbling client is disconnected');
    assert.ok(Date.now() - t0 < 10000, `took ${Date.now() - t0} ms`);
    await stillServes();
  });

  test('1000 idle connections do not stop service', async () => {
    const socks = [];
    await Promise.all(Array.from({ length: 1000 }, () => new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', resolve);
      c.on('error', resolve);
      socks.push(c);
    })));
    await stillServes();
    const h = await fetch(`${url}/health`);
    assert.equal(h.status, 200);
    for (const c of socks) c.destroy();
    await stillServes();
  });

  test('disconnects mid-stream and before the first byte: requests aborted, nothing stuck', async () => {
    const one = (destroyAt) => new Promise((resolve) => {
      const req = http.request(`${url}${C}`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.once('data', () => { if (destroyAt === 'data') req.destroy(); });
        res.on('end', resolve);
        res.on('error', resolve);
      });
      req.on('error', resolve);
      req.on('close', resolve);
      req.end(JSON.stringify({ model: 'm', prompt: 'Once upon a time', max_tokens: 100, ignore_eos: true, stream: destroyAt === 'data' }));
      if (destroyAt === 'now') setTimeout(() => req.destroy(), 5);
    });
    await Promise.all([...Array(6)].map(() => one('data')).concat([...Array(6)].map(() => one('now'))));
    await waitFor(async () => {
      const m = await (await fetch(`${s.url}/metrics`)).text(); // the replica's own
      return /vllm:num_requests_running\{model_name="m"\} 0\n/.test(m) && /vllm:num_requests_waiting\{model_name="m"\} 0\n/.test(m) &&
        /kiln:requests_in_flight\{model_name="m"\} 0\n/.test(m);
    }, 15000);
    await stillServes();
  });

  test('a model name with a newline or quotes cannot forge a log line', async () => {
    const forged = 'x" status=200\n2030-01-01T00:00:00.000Z info serve: request id=forged status=200\ngateway request id=forged';
    const r = await postJson(`${url}${C}`, { model: forged, prompt: 'a' });
    assert.equal(r.status, 404, r.text);
    const logOf = () => (viaGateway ? gw : s).log();
    await waitFor(() => logOf().includes('2030-01-01'), 5000); // written just after the answer
    const log = logOf();
    // every line is one record: a timestamp, a level and the text; none was forged
    for (const line of log.split('\n').filter((l) => l.length))
      if (!/AddressSanitizer|^==|^ +#|^SUMMARY/.test(line))
        assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) /, line);
    assert.doesNotMatch(log, /^\S+ info (serve: request|gateway request) id=forged/m);
    const own = log.split('\n').find((l) => l.includes('2030-01-01'));
    assert.ok(own, 'the request is logged');
    assert.match(own, /(error|model)="[^"]*x\\" status=200\\n2030-01-01/); // quoted, escaped
    assert.doesNotMatch(own, / status=200 /);
    await stillServes();
  });

  test('a full queue -> 429 with Retry-After', async () => {
    const body = { model: 'm', prompt: 'Once upon a time', max_tokens: 100, ignore_eos: true };
    const rs = await Promise.all(Array.from({ length: 24 }, () => postJson(`${url}${C}`, body)));
    const busy = rs.filter((r) => r.status === 429);
    assert.ok(busy.length > 0, rs.map((r) => r.status).join(','));
    for (const r of busy) {
      assert.equal(r.headers.get('retry-after'), '1');
      assert.equal(errorBody(r).type, 'rate_limit_error');
    }
    for (const r of rs) assert.ok(r.status === 200 || r.status === 429);
    await stillServes();
  });
});

describe('connection limit', { skip }, () => {
  test('--max-conns: accepting pauses at the limit and resumes when clients leave', async () => {
    const s = await startServer(['-m', stories, '-t', '1', '--max-conns', '40', '--timeout', '30']);
    try {
      const socks = [];
      await Promise.all(Array.from({ length: 40 }, () => new Promise((resolve) => {
        const c = net.connect(s.port, '127.0.0.1', resolve);
        c.on('error', resolve);
        socks.push(c);
      })));
      await new Promise((r) => setTimeout(r, 300));
      const m0 = await raw(s.port, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { timeoutMs: 1000 });
      assert.equal(m0.status, 0, 'a 41st client waits while 40 are open');
      for (const c of socks) c.destroy();
      const t0 = Date.now();
      await waitFor(async () => (await fetch(`${s.url}/health`)).status === 200, 5000);
      assert.ok(Date.now() - t0 < 3000);
      assert.match(s.log(), /40 connections: not accepting more/);
    } finally {
      assert.equal((await stopServer(s)).code, 0, s.log());
    }
  });
});

// CPU seconds (user + system) the process has used so far.
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

// Opens n connections to port and holds them for holdMs.
async function flood(port, n, holdMs) {
  const socks = Array.from({ length: n }, () => {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    return c;
  });
  await new Promise((r) => setTimeout(r, holdMs));
  for (const c of socks) c.destroy();
}

describe('open-file limit', { skip }, () => {
  // Under `ulimit -n 70` with --max-conns far above it: the limit is clamped with a warning,
  // 300 clients neither make the process spin on accept() nor flood the log, and service
  // resumes once they leave. (Before: 100% CPU and about 160,000 log lines a second.)
  for (const target of ['kiln serve', 'kiln gateway']) test(`${target} at the limit stays idle and resumes`, async () => {
    const s = await startServer(['-m', stories, '-t', '1', '--max-conns', '5000', '--served-model-name', 'm'], { nofile: target === 'kiln serve' ? 70 : 0 });
    let gw = null, p = s;
    try {
      if (target === 'kiln gateway') {
        gw = await startGateway({ models: [{ name: 'm', pools: [{ endpoints: [{ url: s.url }] }] }] },
          { args: ['--max-conns', '5000'], nofile: 70 });
        p = { port: gw.port, url: gw.url, proc: gw.proc, log: gw.log };
      }
      const cpu0 = cpuSeconds(p.proc.pid), t0 = Date.now();
      await flood(p.port, 300, 2000);
      const cpu = cpuSeconds(p.proc.pid) - cpu0, wall = (Date.now() - t0) / 1000;
      const lines = p.log().split('\n').filter((l) => /connections|descriptors|accept/.test(l));
      assert.ok(lines.length <= 4, `${lines.length} log lines:\n${lines.slice(0, 5).join('\n')}`);
      assert.ok(cpu < wall / 2, `busy: ${cpu} s of CPU in ${wall} s`);
      await waitFor(async () => (await fetch(`${p.url}/health`)).status === 200, 5000);
      const r = await postJson(`${p.url}/v1/completions`, { model: 'm', prompt: 'Once', max_tokens: 2 });
      assert.equal(r.status, 200, r.text);
      assert.match(p.log(), /open-file limit \(70\) leaves room for \d+ client connections, not 5000/);
    } finally {
      if (gw) assert.equal((await gw.stop()).code, 0, gw.log());
      assert.equal((await stopServer(s)).code, 0, s.log());
    }
  });
});

describe('JSON logs and the metrics port', { skip }, () => {
  // --log-format json: every line is a JSON object (ts, level, msg and the request's fields),
  // a client-chosen value stays inside its string. --metrics-port: /metrics moves to its own
  // listener (the main port says 404 for it).
  for (const target of ['kiln serve', 'kiln gateway']) test(`${target}: --log-format json, --metrics-port`, async () => {
    const gwTarget = target === 'kiln gateway';
    const { freePort } = await import('./gwutil.mjs');
    const mport = await freePort();
    const s = await startServer(['-m', stories, '-t', '1', '--served-model-name', 'm',
      ...(gwTarget ? [] : ['--log-format', 'json', '--metrics-port', String(mport)])]);
    let gw = null, p = s;
    try {
      if (gwTarget) {
        gw = await startGateway({ models: [{ name: 'm', pools: [{ endpoints: [{ url: s.url }] }] }] },
          { args: ['--log-format', 'json', '--metrics-port', String(mport)] });
        p = gw;
      }
      const ok = await postJson(`${p.url}/v1/completions`, { model: 'm', prompt: 'Once', max_tokens: 2 });
      assert.equal(ok.status, 200, ok.text);
      const bad = await postJson(`${p.url}/v1/completions`, { model: 'a\n"b', prompt: 'Once' });
      assert.equal(bad.status, 404, bad.text);
      const recs = p.log().split('\n').filter((l) => l.length && !/^==|AddressSanitizer/.test(l)).map((l) => JSON.parse(l));
      for (const r of recs) {
        assert.match(r.ts, /^\d{4}-\d\d-\d\dT.*Z$/);
        assert.ok(['debug', 'info', 'warn', 'error'].includes(r.level), JSON.stringify(r));
        assert.equal(typeof r.msg, 'string');
      }
      const reqs = recs.filter((r) => r.msg === (gwTarget ? 'gateway request' : 'serve: request'));
      assert.ok(reqs.some((r) => r.status === 200 && typeof r.total_ms === 'number'), JSON.stringify(reqs));
      const r404 = reqs.find((r) => r.status === 404);
      assert.ok(r404, JSON.stringify(reqs));
      assert.ok((r404.model || '').includes('a\n"b') || (r404.error || '').includes('a\n"b'), JSON.stringify(r404));

      assert.equal((await fetch(`${p.url}/metrics`)).status, 404);
      const m = await fetch(`http://127.0.0.1:${mport}/metrics`);
      assert.equal(m.status, 200);
      assert.match(await m.text(), gwTarget ? /kiln_gateway_requests_total/ : /vllm:num_requests_running/);
      assert.equal((await fetch(`http://127.0.0.1:${mport}/v1/models`)).status, 404);
      assert.equal((await postJson(`http://127.0.0.1:${mport}/v1/completions`, { prompt: 'a' })).status, 404);
    } finally {
      if (gw) assert.equal((await gw.stop()).code, 0, gw.log());
      assert.equal((await stopServer(s)).code, 0, s.log());
    }
  });
});

describe('a client that stops reading', { skip }, () => {
  // It asks for a long stream (16 choices with 20 logprobs each: about 40 MB) and never reads:
  // once more than --max-unsent bytes wait for it, it is cut and its request aborted (its KV
  // blocks freed); the server, or the gateway in front, does not buffer the rest. Before, the
  // whole answer was generated and held in memory.
  for (const target of ['kiln serve', 'kiln gateway']) test(`${target}: cut, request aborted`, async () => {
    // the one under test gets the small cap (the replica behind a gateway keeps its default:
    // a burst of chunks to a reading gateway can exceed 64 KiB for a moment)
    const gwTarget = target === 'kiln gateway';
    const s = await startServer(['-m', stories, '-t', '1', '--served-model-name', 'm', ...(gwTarget ? [] : ['--max-unsent', '65536'])]);
    let gw = null, p = s;
    try {
      if (gwTarget) {
        gw = await startGateway({ listen: { max_unsent: 65536 }, models: [{ name: 'm', pools: [{ endpoints: [{ url: s.url }] }] }] });
        p = gw;
      }
      const body = JSON.stringify({ model: 'm', prompt: 'Once', max_tokens: 1900, ignore_eos: true, stream: true, logprobs: 20, n: 16 });
      const sock = net.connect(p.port, '127.0.0.1', () => {
        sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        sock.pause(); // and never read
      });
      sock.on('error', () => {});
      await waitFor(() => /serve: request id=\S+ model=m endpoint=completions/.test(s.log()), 120000);
      const line = s.log().split('\n').find((l) => /serve: request id=\S+ model=m endpoint=completions/.test(l));
      assert.match(line, / finish=abort status=499$/, line);
      assert.ok(Number(line.match(/completion_tokens=(\d+)/)[1]) < 16 * 1900, line);
      await waitFor(() => /cut 1 clients that stopped reading \(over 65536 bytes unsent\)/.test(p.log()), 5000);
      await waitFor(async () => {
        const m = await (await fetch(`${s.url}/metrics`)).text();
        return /vllm:num_requests_running\{model_name="m"\} 0\n/.test(m) && /vllm:kv_cache_usage_perc\{model_name="m"\} 0\n/.test(m);
      }, 10000);
      sock.destroy();
      const ok = await postJson(`${p.url}/v1/completions`, { model: 'm', prompt: 'Once', max_tokens: 2 });
      assert.equal(ok.status, 200, ok.text);
    } finally {
      if (gw) assert.equal((await gw.stop()).code, 0, gw.log());
      assert.equal((await stopServer(s)).code, 0, s.log());
    }
  });
});
