// The gateway against replicas that fail in ways a real `kiln serve` cannot be made to:
// dying or hanging mid-stream, hanging before the headers, garbage bytes, 500s. The gateway
// is the real binary; the replicas are tests/e2e/fake_replica.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor, sseEvents, metricSum, expositionProblems } from './gwutil.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const kiln = process.env.KILN_BIN || path.join(here, '../../kiln');
const dir = mkdtempSync(path.join(tmpdir(), 'kiln-gw-'));
const procs = [];
let gwPort, gwProc, fakes = [];

function start(cmd, args) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  p.stderrText = '';
  p.stderr.on('data', (d) => (p.stderrText += d));
  procs.push(p);
  return p;
}

async function admin(port, o) {
  await fetch(`http://127.0.0.1:${port}/admin`, { method: 'POST', body: JSON.stringify(o) });
}

async function post(body, headers = {}) {
  return fetch(`http://127.0.0.1:${gwPort}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function metrics() {
  return (await fetch(`http://127.0.0.1:${gwPort}/metrics`)).text();
}

before(async () => {
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    start('node', [path.join(here, 'fake_replica.mjs'), String(port)]);
    fakes.push(port);
  }
  gwPort = await freePort();
  const cfg = {
    listen: { port: gwPort },
    health: { interval_ms: 100, timeout_ms: 300 },
    retry: { idle_timeout_ms: 600, first_byte_timeout_ms: 600, attempts: 3 },
    models: [{ name: 'm', pools: [{ endpoints: fakes.map((p) => ({ url: `http://127.0.0.1:${p}` })) }] }],
  };
  writeFileSync(path.join(dir, 'gw.json'), JSON.stringify(cfg));
  gwProc = start(kiln, ['gateway', '-c', path.join(dir, 'gw.json')]);
  await waitFor(async () => {
    const r = await fetch(`http://127.0.0.1:${gwPort}/health`).catch(() => null);
    return r && (await r.json()).endpoints_up === 2;
  });
});

after(() => {
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

async function allMode(mode) {
  for (const p of fakes) await admin(p, { mode });
}

test('a replica dying mid-stream ends the stream with an SSE error and no [DONE]', async () => {
  await allMode('die-mid-stream');
  const r = await post({ model: 'm', prompt: 'hi', stream: true });
  assert.equal(r.status, 200);
  const events = sseEvents(await r.text());
  assert.ok(events.length >= 2);
  assert.match(events.at(-1), /"error"/);
  assert.ok(!events.includes('[DONE]'));
  // the error names no internal address (issue 14, item 16)
  const err = JSON.parse(events.at(-1)).error;
  assert.equal(err.code, 502);
  for (const p of fakes) assert.ok(!events.at(-1).includes(String(p)), events.at(-1));
  assert.ok(!/127\.0\.0\.1|http:/.test(events.at(-1)), events.at(-1));
  await allMode('ok');
});

test('a replica hanging mid-stream is cut by the idle timeout with an SSE error', async () => {
  await allMode('hang-mid-stream');
  const t0 = Date.now();
  const r = await post({ model: 'm', prompt: 'hi', stream: true });
  const events = sseEvents(await r.text());
  assert.match(events.at(-1), /"error"/);
  assert.ok(Date.now() - t0 < 5000);
  await allMode('ok');
});

test('failures before the first byte are retried on another replica', async () => {
  for (const mode of ['hang-headers', 'garbage', '500']) {
    await admin(fakes[0], { mode });
    await admin(fakes[1], { mode: 'ok' });
    /* the healthy replica may still be in its ejection backoff from the tests before */
    await waitFor(async () => (await metrics()).includes(`endpoint_up{endpoint="http://127.0.0.1:${fakes[1]}"} 1`));
    for (let i = 0; i < 4; i++) {
      const r = await post({ model: 'm', prompt: `retry ${mode} ${i}` });
      assert.equal(r.status, 200, mode);
      const j = await r.json();
      assert.equal(j.system_fingerprint, `fake-${fakes[1]}`, mode);
    }
  }
  await allMode('ok');
  await waitFor(async () => (await metrics()).includes(`endpoint_up{endpoint="http://127.0.0.1:${fakes[0]}"} 1`));
});

test('all replicas failing gives a clear error; none healthy gives 503', async () => {
  await allMode('500');
  let r = await post({ model: 'm', prompt: 'x' });
  assert.equal(r.status, 502);
  assert.match((await r.json()).error.message, /every endpoint tried failed/);
  await allMode('ok');
});

test('a client that goes away before the first byte cancels the upstream request', async () => {
  await allMode('hang-headers');
  const ac = new AbortController();
  const p = post({ model: 'm', prompt: 'cancel me', stream: true }).catch(() => null);
  setTimeout(() => ac.abort(), 200);
  await fetch(`http://127.0.0.1:${gwPort}/v1/completions`, {
    method: 'POST', body: JSON.stringify({ model: 'm', prompt: 'c', stream: true }), signal: ac.signal,
  }).catch(() => null);
  await waitFor(async () => (await metrics()).includes('kiln_gateway_client_cancels_total'));
  await allMode('ok');
  await p;
  await waitFor(async () => /kiln_gateway_inflight 0/.test(await metrics()));
});

test('bad requests get OpenAI-style errors and the gateway keeps serving', async () => {
  const cases = [
    ['{not json', 400], ['[]', 400], [JSON.stringify({ model: null, prompt: 'x' }), 400],
    [JSON.stringify({ model: 7 }), 400], [JSON.stringify({ model: 'nope', prompt: 'x' }), 404],
  ];
  for (const [body, status] of cases) {
    const r = await post(body);
    assert.equal(r.status, status, body.slice(0, 40));
    if (status !== 413) assert.ok((await r.json()).error.message);
  }
  // A body over the limit is refused from its Content-Length, before it is read.
  const head = await new Promise((resolve, reject) => {
    const s = net.connect(gwPort, '127.0.0.1', () => {
      s.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
              `Content-Length: ${64 * 1024 * 1024}\r\n\r\n{"model":`);
    });
    let got = '';
    s.on('data', (d) => { got += d; if (got.includes('\r\n')) { s.destroy(); resolve(got); } });
    s.on('error', reject);
  });
  assert.match(head, /^HTTP\/1\.1 413/);
  let r = await fetch(`http://127.0.0.1:${gwPort}/v1/nothing`, { method: 'POST', body: '{}' });
  assert.equal(r.status, 404);
  r = await fetch(`http://127.0.0.1:${gwPort}/v1/completions`);
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'POST');
  r = await fetch(`http://127.0.0.1:${gwPort}/v1/models`, { method: 'DELETE' });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET');
  r = await post({ model: 'm', prompt: 'still fine' });
  assert.equal(r.status, 200);
});

test('an invalid config is refused at start with the field named', async () => {
  const bad = path.join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ models: [{ name: 'm', pools: [{ endpoints: [{ url: 'http://x:0' }] }] }] }));
  const p = spawn(kiln, ['gateway', '-c', bad]);
  let err = '';
  p.stderr.on('data', (d) => (err += d));
  const code = await new Promise((res) => p.on('exit', res));
  assert.equal(code, 1);
  assert.match(err, /^kiln: .*bad\.json: models\[0\]\.pools\[0\]\.endpoints\[0\]\.url: expected http:\/\/HOST:PORT with a port/);
});

// Raw HTTP/1.1 over one connection; resolves everything the gateway sent until it closed or
// went quiet for quietMs.
function raw(text, quietMs = 1500) {
  return new Promise((resolve, reject) => {
    const s = net.connect(gwPort, '127.0.0.1', () => s.write(text));
    let got = '', timer = null;
    const done = () => { s.destroy(); resolve(got); };
    const arm = () => { clearTimeout(timer); timer = setTimeout(done, quietMs); };
    s.on('data', (d) => { got += d; arm(); });
    s.on('end', () => { clearTimeout(timer); done(); });
    s.on('error', reject);
    arm();
  });
}

const servedTotal = async () => {
  let n = 0;
  for (const p of fakes) n += metricSum(await (await fetch(`http://127.0.0.1:${p}/metrics`)).text(), 'fake_served_total');
  return n;
};

test('headers are sanitised both ways: no hop-by-hop, no client-forged internal headers, no upstream internals', async () => {
  await allMode('ok');
  const body = JSON.stringify({ model: 'm', prompt: 'headers' });
  const resp = await raw(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${body.length}\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\n` +
    `Proxy-Authorization: Basic Zm9vOmJhcg==\r\nUpgrade: websocket\r\nX-Kiln-Fallback: forged\r\n` +
    `X-Request-Id: client-chosen\r\nCookie: session=client\r\n\r\n${body}`);
  assert.match(resp, /^HTTP\/1\.1 200/);
  const at = resp.indexOf('\r\n\r\n');
  const head = resp.slice(0, at);
  let json = resp.slice(at + 4);
  if (/^transfer-encoding: chunked/im.test(head)) { // de-chunk
    let out = '';
    for (let rest = json, n; (n = parseInt(rest, 16)) > 0;) {
      const from = rest.indexOf('\r\n') + 2;
      out += rest.slice(from, from + n);
      rest = rest.slice(from + n + 2);
    }
    json = out;
  }
  const fp = JSON.parse(json).system_fingerprint;
  const up = await (await fetch(`http://127.0.0.1:${fp.slice(5)}/last`)).json();
  const upNames = new Map();
  for (let i = 0; i < up.rawHeaders.length; i += 2) upNames.set(up.rawHeaders[i].toLowerCase(), up.rawHeaders[i + 1]);
  for (const h of ['x-hop', 'te', 'proxy-authorization', 'upgrade', 'x-kiln-fallback', 'cookie'])
    assert.ok(!upNames.has(h), `${h} reached the replica`);
  assert.notEqual(upNames.get('x-request-id'), 'client-chosen');
  assert.ok(!/x-hop/i.test(upNames.get('connection') || ''));
  assert.equal(JSON.parse(up.body).prompt, 'headers');
  // and back: the replica's internal headers stop at the gateway
  assert.ok(!/x-upstream-internal|set-cookie/i.test(head), head);
});

test('Content-Length and Transfer-Encoding together cannot smuggle a request past the gateway', async () => {
  await allMode('ok');
  const body = JSON.stringify({ model: 'm', prompt: 'first' });
  const second = JSON.stringify({ model: 'm', prompt: 'smuggled' });
  const before = await servedTotal();
  // Read by Content-Length (4), the rest would be a second request; read chunked, it is one
  // body followed by a second, visible request. Either way every request the replicas get
  // must be one the client sees answered.
  const resp = await raw(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
    `Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n` +
    `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${second.length}\r\n\r\n${second}`);
  const answered = (resp.match(/^HTTP\/1\.1 200/gm) || []).length;
  assert.match(resp, /^HTTP\/1\.1 (200|400)/);
  assert.equal(await servedTotal() - before, answered, resp);
  console.log(`CL + TE: ${answered} request(s) answered 200, the same number reached the replicas; ` +
    `statuses ${JSON.stringify(resp.match(/^HTTP\/1\.1 \d+/gm))}`);
  const r = await post({ model: 'm', prompt: 'still fine' });
  assert.equal(r.status, 200);
});

// Opens a raw connection, sends a completion request, and once `when(bytesReceived)` says so
// (checked on connect and on every chunk), resets the connection (SO_LINGER 0: an RST, not a
// FIN), as a client process that crashes or a load balancer that gives up does.
function resetWhen(body, when) {
  return new Promise((resolve) => {
    const text = JSON.stringify(body);
    let got = 0, done = false;
    const s = net.connect(gwPort, '127.0.0.1');
    const check = () => {
      if (!done && when(got)) {
        done = true;
        s.resetAndDestroy();
        resolve(got);
      }
    };
    s.on('connect', () => {
      s.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
      check();
    });
    s.on('data', (d) => { got += d.length; check(); });
    s.on('error', () => { done = true; resolve(got); });
    s.on('close', () => { done = true; resolve(got); });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const gwAlive = () => gwProc.exitCode === null && gwProc.signalCode === null;

test('clients resetting their connections at any moment never kill the gateway (SIGPIPE)', async () => {
  await allMode('ok');
  // 1. Reset while the replica is still working on the first token: the gateway finds the
  //    dead client by peeking at its socket and answers it (or writes the headers into it).
  for (const p of fakes) await admin(p, { ttft_ms: 400 });
  for (let i = 0; i < 4; i++) {
    await resetWhen({ model: 'm', prompt: `reset early ${i}`, stream: true }, () => true);
    await sleep(150 + 150 * i); // resets land before, at and after the first token
  }
  for (const p of fakes) await admin(p, { ttft_ms: 0 });
  // 2. Reset mid-stream, at a different point each time, while the gateway writes chunks.
  for (let i = 0; i < 4; i++)
    await resetWhen({ model: 'm', prompt: `reset mid ${i}`, stream: true, ignore_eos: true, max_tokens: 400 },
      (n) => n > 300 + 500 * i);
  // 3. Reset while the gateway writes a 4 MiB non-streamed answer the client does not read.
  await allMode('big');
  for (let i = 0; i < 3; i++)
    await resetWhen({ model: 'm', prompt: `reset big ${i}` }, (n) => n > 0);
  await allMode('ok');
  await waitFor(async () => /kiln_gateway_inflight 0/.test(await metrics()), 10000).catch(() => {});
  assert.ok(gwAlive(), `the gateway died: ${gwProc.signalCode || gwProc.exitCode}\n${gwProc.stderrText.slice(-400)}`);
  assert.match(await metrics(), /kiln_gateway_inflight 0/);
  const r = await post({ model: 'm', prompt: 'still fine' });
  assert.equal(r.status, 200);
});

test('SIGTERM while a scrape and a health check are in flight: clean exit, nothing leaked', async () => {
  // LeakSanitizer (make BUILD=asan test) turns a leak at exit into exit code 23 and a report.
  const port = await freePort();
  const fake = start('node', [path.join(here, 'fake_replica.mjs'), String(port)]);
  const gp = await freePort();
  const file = path.join(dir, 'gw-term.json');
  writeFileSync(file, JSON.stringify({
    listen: { port: gp }, scrape: { interval_ms: 20, timeout_ms: 20000 },
    health: { interval_ms: 20, timeout_ms: 20000 },
    models: [{ name: 'm', pools: [{ endpoints: [{ url: `http://127.0.0.1:${port}` }] }] }],
  }));
  const gw = start(kiln, ['gateway', '-c', file]);
  const exited = new Promise((r) => gw.on('exit', (code, sig) => r({ code, sig })));
  await waitFor(async () => (await fetch(`http://127.0.0.1:${gp}/health`)).status === 200);
  await admin(port, { probe_hang: true });
  // both kinds of probe are now stuck at the replica
  await waitFor(async () => {
    const r = await fetch(`http://127.0.0.1:${port}/admin`, { method: 'POST', body: '{}' });
    return (await r.json()).hung >= 2;
  });
  gw.kill('SIGTERM');
  const { code, sig } = await exited;
  fake.kill('SIGKILL');
  assert.equal(sig, null);
  assert.equal(code, 0, gw.stderrText.slice(-2000));
});

test('/metrics: client-chosen names are escaped or pooled, and the exposition is well-formed', async () => {
  await allMode('ok');
  const forged = 'x"} 1\nvllm:num_requests_waiting{model_name="kiln-gateway"} 1e9\n# ';
  for (const model of [forged, 'back\\slash', 'new\nline'])
    assert.equal((await post({ model, prompt: 'p' })).status, 404);
  const before = await metrics();
  for (let i = 0; i < 40; i++) assert.equal((await post({ model: `nope-${i}`, prompt: 'p' })).status, 404);
  assert.equal((await post({ model: 'm', prompt: 'counted' })).status, 200);
  const text = await metrics();
  assert.deepEqual(expositionProblems(text), [], text);
  assert.ok(metricSum(text, 'vllm:num_requests_waiting') < 1000, 'a forged sample was summed');
  const models = new Set([...text.matchAll(/[{,]model="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]));
  assert.deepEqual([...models].sort(), ['(unknown)', 'm'], 'an unknown model name made a series');
  // every unknown name counts under one label; the lines of the family stay the same
  const unknown = (t) => (t.match(/^kiln_gateway_requests_total\{[^\n]*status="404"[^\n]* (\d+)$/m) || [])[1];
  assert.equal(Number(unknown(text)) - Number(unknown(before)), 40, text);
  const series404 = text.split('\n').filter((l) => /^kiln_gateway_requests_total\{.*status="404"/.test(l));
  assert.equal(series404.length, 1, series404.join('\n'));
  assert.match(text, /^kiln_gateway_requests_total\{model="\(unknown\)",[^\n]*status="404"/m);
});

test('a replica failing in the middle of a non-streamed body: never a truncated 200, 502 or the next replica', async () => {
  for (const mode of ['short-body', 'bad-chunk', 'reset-mid-body']) {
    await allMode(mode);
    const r = await post({ model: 'm', prompt: `cut ${mode}` });
    const text = await r.text();
    assert.equal(r.status, 502, `${mode}: ${r.status} ${text}`);
    assert.match(JSON.parse(text).error.message, /every endpoint tried failed/);
    // one replica failing so, the other fine: the fine one's answer, whole, on a fresh connection
    await admin(fakes[1], { mode: 'ok' });
    await waitFor(async () => (await metrics()).includes(`endpoint_up{endpoint="http://127.0.0.1:${fakes[1]}"} 1`));
    for (let i = 0; i < 3; i++) {
      const r2 = await post({ model: 'm', prompt: `half ${mode} ${i}` });
      assert.equal(r2.status, 200, mode);
      assert.equal((await r2.json()).system_fingerprint, `fake-${fakes[1]}`, mode);
      const last = await (await fetch(`http://127.0.0.1:${fakes[1]}/last`)).json();
      assert.equal(last.socketRequests, 1, 'an upstream connection carries one request');
    }
  }
  await allMode('ok');
  for (const p of fakes) await waitFor(async () => (await metrics()).includes(`endpoint_up{endpoint="http://127.0.0.1:${p}"} 1`));
});

// A port whose listener never accepts and whose accept queue is full: a connect to it gets
// no answer at all (the SYN is dropped), as with a replica behind a black-holed route.
async function blackHole() {
  const port = await freePort();
  const p = spawn('node', ['-e', `require('net').createServer().listen({ port: ${port}, host: '127.0.0.1', backlog: 1 },
    () => { console.log('ready'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); })`],
  { stdio: ['ignore', 'pipe', 'ignore'] });
  procs.push(p);
  await new Promise((r) => p.stdout.once('data', r));
  for (let i = 0; i < 3; i++) net.connect(port, '127.0.0.1').on('error', () => {});
  await sleep(200);
  const probe = net.connect(port, '127.0.0.1').on('error', () => {});
  await sleep(500);
  assert.ok(probe.pending, 'the black hole accepted a connection');
  probe.destroy();
  return port;
}

test('retry.first_byte_timeout_ms and retry.connect_timeout_ms are enforced (a hung replica, a black hole)', async () => {
  const hung = await freePort();
  start('node', [path.join(here, 'fake_replica.mjs'), String(hung), '--mode', 'hang-headers']);
  const hole = await blackHole();
  const gp = await freePort();
  const file = path.join(dir, 'gw-timeouts.json');
  const cfg = (retry, models) => JSON.stringify({
    listen: { port: gp }, health: { interval_ms: 100, timeout_ms: 20000 }, retry, models,
  });
  // the inactivity timeout is long: only the deadline under test can end these attempts early
  writeFileSync(file, cfg({ attempts: 1, connect_timeout_ms: 300, first_byte_timeout_ms: 400, idle_timeout_ms: 20000 },
    [{ name: 'hung', pools: [{ endpoints: [{ url: `http://127.0.0.1:${hung}` }] }] }]));
  const gw = start(kiln, ['gateway', '-c', file]);
  const url = `http://127.0.0.1:${gp}`;
  await waitFor(async () => (await fetch(`${url}/health`)).status === 200);
  const timed = async (model) => {
    const t0 = Date.now();
    const r = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model, prompt: 'x' }) });
    return { status: r.status, ms: Date.now() - t0, body: await r.text() };
  };
  const a = await timed('hung');
  assert.equal(a.status, 502, a.body);
  assert.ok(a.ms < 10000, `no headers: answered after ${a.ms} ms (first_byte_timeout_ms 400, idle 20000)`);
  // the black-holed replica is added by a reload, so it is trusted until a check fails (the
  // check hangs for its 20 s timeout): the request goes to it and its connect never completes
  writeFileSync(file, cfg({ attempts: 1, connect_timeout_ms: 300, first_byte_timeout_ms: 20000, idle_timeout_ms: 20000 },
    [{ name: 'hole', pools: [{ endpoints: [{ url: `http://127.0.0.1:${hole}` }] }] }]));
  gw.kill('SIGHUP');
  await waitFor(async () => (await (await fetch(`${url}/v1/models`)).text()).includes('"hole"'));
  const b = await timed('hole');
  assert.equal(b.status, 502, b.body);
  assert.ok(b.ms < 10000, `black hole: answered after ${b.ms} ms (connect_timeout_ms 300, others 20000)`);
  console.log(`timeouts: no headers -> 502 after ${a.ms} ms; black hole -> 502 after ${b.ms} ms`);
  assert.match(gw.stderrText, /no response headers after/);
  assert.match(gw.stderrText, /not connected after/);
  // with a second attempt allowed, both fail over to a healthy replica
  await allMode('ok');
  // (in turn, scores ignored: the black hole has no metrics and would never be picked first)
  writeFileSync(file, JSON.stringify({ listen: { port: gp }, policy: 'round_robin',
    health: { interval_ms: 100, timeout_ms: 20000, eject_ms: 10, eject_max_ms: 10 },
    retry: { attempts: 2, connect_timeout_ms: 300, first_byte_timeout_ms: 400, idle_timeout_ms: 20000 },
    models: [{ name: 'hung', pools: [{ endpoints: [{ url: `http://127.0.0.1:${hung}` }, { url: `http://127.0.0.1:${fakes[0]}` }] }] },
      { name: 'hole', pools: [{ endpoints: [{ url: `http://127.0.0.1:${hole}` }, { url: `http://127.0.0.1:${fakes[1]}` }] }] }] }));
  const stalls = () => (gw.stderrText.match(/no response headers after|not connected after/g) || []).length;
  const before = stalls();
  gw.kill('SIGHUP');
  await waitFor(async () => (await (await fetch(`${url}/v1/models`)).text()).includes('"hung"'));
  await sleep(1100); // the ejections of the requests above (eject_ms 1000 then) have run out
  for (const model of ['hung', 'hole']) {
    // in turn: one of two requests goes to the stalled replica first
    for (let i = 0; i < 2; i++) {
      const r = await timed(model);
      assert.equal(r.status, 200, `${model}: ${r.body}`);
      assert.ok(r.ms < 10000, `${model}: answered after ${r.ms} ms`);
    }
  }
  assert.ok(stalls() >= before + 2, gw.stderrText.slice(-2000));
  gw.kill('SIGKILL');
});

test('without tenants a client\'s own cache_salt passes through unchanged, and none is added', async () => {
  await allMode('ok');
  const lastBody = async (fp) => JSON.parse((await (await fetch(`http://127.0.0.1:${fp.slice(5)}/last`)).json()).body);
  let r = await post({ model: 'm', prompt: 'salted', cache_salt: 'my-secret' });
  assert.equal((await lastBody((await r.json()).system_fingerprint)).cache_salt, 'my-secret');
  r = await post({ model: 'm', prompt: 'unsalted' });
  assert.ok(!('cache_salt' in await lastBody((await r.json()).system_fingerprint)));
});

// A gateway on its own fake replicas (the shared ones keep their health); resolves once up.
async function soloGateway(name, retryHealth, models) {
  const gp = await freePort();
  const file = path.join(dir, `gw-${name}.json`);
  writeFileSync(file, JSON.stringify({ listen: { port: gp }, health: retryHealth, models }));
  const gw = start(kiln, ['gateway', '-c', file]);
  gw.url = `http://127.0.0.1:${gp}`;
  await waitFor(async () => (await fetch(`${gw.url}/health`).catch(() => ({}))).status === 200);
  return gw;
}

async function soloFake() {
  const port = await freePort();
  start('node', [path.join(here, 'fake_replica.mjs'), String(port)]);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => ({}))).status === 200);
  return port;
}

// /admin answers with the number of health checks the fake has served
const checks = async (port, o = {}) =>
  (await (await fetch(`http://127.0.0.1:${port}/admin`, { method: 'POST', body: JSON.stringify(o) })).json()).checks;
const count = (text, re) => (text.match(re) || []).length;

test('health checks have hysteresis: a replica failing every other check stays in; out after 3 failures, back after 2 passes', async () => {
  const [fa, fb] = [await soloFake(), await soloFake()];
  const one = (p) => [{ name: 'm', pools: [{ endpoints: [{ url: `http://127.0.0.1:${p}` }] }] }];
  const dflt = await soloGateway('hyst', { interval_ms: 50, timeout_ms: 1000 }, one(fa));
  // without hysteresis (both thresholds 1), the same replica flips on every check
  const twitchy = await soloGateway('twitchy', { interval_ms: 50, timeout_ms: 1000, unhealthy_threshold: 1,
    healthy_threshold: 1 }, one(fb));
  const c0 = [await checks(fa, { health: 'flap' }), await checks(fb, { health: 'flap' })];
  await waitFor(async () => (await checks(fa)) >= c0[0] + 30 && (await checks(fb)) >= c0[1] + 30);
  const downs = count(dflt.stderrText, /endpoint \S+ is down/g);
  const flips = count(twitchy.stderrText, /endpoint \S+ is down/g);
  console.log(`30 flapping checks: ${downs} ejections with the defaults, ${flips} with thresholds of 1`);
  assert.equal(downs, 0, dflt.stderrText);
  assert.ok(flips >= 5, twitchy.stderrText);
  // a replica that really fails goes out after three failed checks in a row
  const k0 = await checks(fa, { health: 'ok' }); // two passes: no failure left over from the flapping
  await waitFor(async () => (await checks(fa)) >= k0 + 2);
  const f0 = await checks(fa, { health: 'fail' });
  await waitFor(() => /is down/.test(dflt.stderrText));
  assert.ok((await checks(fa)) - f0 >= 3, 'ejected before three failed checks');
  assert.equal((await fetch(`${dflt.url}/health`)).status, 503);
  // and comes back after two passing ones
  const ups = count(dflt.stderrText, /is up/g);
  const p0 = await checks(fa, { health: 'ok' });
  await waitFor(() => count(dflt.stderrText, /is up/g) > ups);
  assert.ok((await checks(fa)) - p0 >= 2, 're-admitted before two passing checks');
  const r = await fetch(`${dflt.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', prompt: 'x' }) });
  assert.equal(r.status, 200);
  dflt.kill('SIGKILL');
  twitchy.kill('SIGKILL');
});

test('the gateway answers like a replica: /version, created in /v1/models, a request without model', async () => {
  let r = await fetch(`http://127.0.0.1:${gwPort}/version`);
  assert.equal(r.status, 200);
  assert.match((await r.json()).version, /^kiln \d+\.\d+\.\d+$/);
  r = await fetch(`http://127.0.0.1:${gwPort}/version`, { method: 'POST' });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET');
  const models = (await (await fetch(`http://127.0.0.1:${gwPort}/v1/models`)).json()).data;
  for (const m of models) {
    assert.ok(Number.isInteger(m.created) && m.created > 1.6e9 && m.created <= Date.now() / 1000 + 1, JSON.stringify(m));
  }
  // one model served: a request without one goes to it, named in the body the replica gets
  await allMode('ok');
  r = await post({ prompt: 'who am I' });
  assert.equal(r.status, 200);
  const fp = (await r.json()).system_fingerprint;
  const last = await (await fetch(`http://127.0.0.1:${fp.slice(5)}/last`)).json();
  assert.equal(JSON.parse(last.body).model, 'm');
  // two: which one is the client's to say
  const two = await soloGateway('two', {}, ['a', 'b'].map((name) => ({
    name, pools: [{ endpoints: [{ url: `http://127.0.0.1:${fakes[0]}` }] }] })));
  r = await fetch(`${two.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }) });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.param, 'model');
  two.kill('SIGKILL');
});
