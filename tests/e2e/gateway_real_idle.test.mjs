// The real `kiln gateway` holds 5,000 concurrent idle streaming connections: every client gets
// its first chunks, the stream then goes quiet (the upstream is tests/e2e/fake_replica.mjs in
// hang-mid-stream mode: a real `kiln serve` does not hold 5,000 idle sequences), a normal
// request still gets through quickly, and when the clients go away the gateway's in-flight
// count returns to 0.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor, metricSum } from './gwutil.mjs';
import { startGateway, skipReason, cleanup } from './gwreal.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const N = 5000;

function openStream(port, agent) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', agent,
      headers: { 'content-type': 'application/json' } }, (res) => {
      res.once('data', () => resolve({ req, res }));
      res.on('error', () => {});
    });
    req.on('error', reject);
    req.end(JSON.stringify({ model: 'm', prompt: 'idle', stream: true }));
  });
}

test(`holds ${N} concurrent idle streaming connections`, { skip: skipReason, timeout: 120000 }, async () => {
  const fport = await freePort();
  const fake = spawn('node', [path.join(here, 'fake_replica.mjs'), String(fport), '--mode', 'hang-mid-stream'],
    { stdio: 'ignore' });
  const gw = await startGateway({
    retry: { idle_timeout_ms: 120000 },
    saturation: { max_inflight: 100000 },
    models: [{ name: 'm', pools: [{ endpoints: [{ url: `http://127.0.0.1:${fport}` }] }] }],
  });
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const streams = [];
  try {
    const t0 = Date.now();
    for (let i = 0; i < N; i += 250) // in waves: the listen backlog is finite
      streams.push(...await Promise.all(Array.from({ length: Math.min(250, N - i) }, () => openStream(gw.port, agent))));
    const openMs = Date.now() - t0;
    const m = await gw.metrics();
    assert.equal(metricSum(m, 'kiln_gateway_inflight'), N);
    const t1 = performance.now();
    const h = await fetch(`${gw.url}/health`);
    const healthMs = performance.now() - t1;
    assert.equal(h.status, 200);
    console.log(`idle streams: ${N} open (first chunk each) in ${openMs} ms; gateway in flight ${metricSum(m, 'kiln_gateway_inflight')};`
      + ` /health meanwhile in ${healthMs.toFixed(1)} ms`);
    for (const s of streams) s.req.destroy();
    await waitFor(async () => metricSum(await gw.metrics(), 'kiln_gateway_inflight') === 0, 20000);
  } finally {
    for (const s of streams) s.req.destroy();
    await gw.stop();
    fake.kill('SIGTERM');
  }
});

after(cleanup);
