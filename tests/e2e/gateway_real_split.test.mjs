// Canary split and sticky sessions with real replicas: model alias "chat" splits 90/10 between
// "chat-v1" (two `kiln serve` replicas) and "chat-v2" (one), each replica serving its name with
// --served-model-name; the response's "model" field says which one answered.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { pool, metricSum } from './gwutil.mjs';
import { Replica, startGateway, skipReason, cleanup } from './gwreal.mjs';

let v1a, v1b, v2, gw;

async function complete(body, headers = {}) {
  const r = await fetch(`${gw.url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text);
}

const finished = async (r) => metricSum(await r.metrics(), 'vllm:request_success_total');

before(async () => {
  if (skipReason) return;
  v1a = await new Replica(['--served-model-name', 'chat-v1']).start();
  v1b = await new Replica(['--served-model-name', 'chat-v1']).start();
  v2 = await new Replica(['--served-model-name', 'chat-v2']).start();
  gw = await startGateway({
    models: [{ name: 'chat-v1', pools: [{ endpoints: [{ url: v1a.url }, { url: v1b.url }] }] },
      { name: 'chat-v2', pools: [{ endpoints: [{ url: v2.url }] }] }],
    splits: [{ model: 'chat', targets: [{ model: 'chat-v1', weight: 90 }, { model: 'chat-v2', weight: 10 }] }],
  });
});

after(async () => {
  if (gw) await gw.stop();
  for (const r of [v1a, v1b, v2]) if (r) await r.stop();
  cleanup();
});

test('canary split 90/10 holds within +-3% over 2,000 requests', { skip: skipReason, timeout: 120000 }, async () => {
  const N = 2000;
  const t0 = Date.now();
  const res = await pool(N, 16, (i) => complete({ model: 'chat', prompt: `canary ${i}`, max_tokens: 1 }));
  const v2n = res.filter((j) => j.model === 'chat-v2').length;
  const v1n = res.filter((j) => j.model === 'chat-v1').length;
  console.log(`canary: chat-v1 ${v1n} (${(100 * v1n / N).toFixed(1)}%), chat-v2 ${v2n} (${(100 * v2n / N).toFixed(1)}%) in ${Date.now() - t0} ms`);
  assert.equal(v1n + v2n, N);
  assert.ok(Math.abs(v2n / N - 0.10) <= 0.03, `chat-v2 share ${v2n / N}`);
  // the replicas agree: every answer was really served by the pool of its model
  assert.equal(await finished(v2), v2n);
  assert.equal((await finished(v1a)) + (await finished(v1b)), v1n);
});

test('sticky sessions: every request of a session lands on the same replica', { skip: skipReason, timeout: 60000 }, async () => {
  const homes = new Set();
  for (let s = 0; s < 16; s++) {
    const a0 = await finished(v1a), b0 = await finished(v1b);
    for (let k = 0; k < 6; k++)
      await complete({ model: 'chat-v1', prompt: `session ${s} turn ${k}`, max_tokens: 1 }, { 'x-session-id': `sess-${s}` });
    const da = (await finished(v1a)) - a0, db = (await finished(v1b)) - b0;
    assert.ok((da === 6 && db === 0) || (da === 0 && db === 6), `session ${s} split ${da}/${db}`);
    homes.add(da ? 'a' : 'b');
  }
  assert.equal(homes.size, 2, 'sessions are spread over both replicas');
});

test('the openai client lists the gateway models (the split alias too) and a user field sticks like a session', { skip: skipReason, timeout: 60000 }, async () => {
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'none' });
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), ['chat', 'chat-v1', 'chat-v2']);
  const homes = new Set();
  for (let s = 0; s < 8; s++) {
    const a0 = await finished(v1a), b0 = await finished(v1b);
    for (let k = 0; k < 4; k++) {
      const c = await client.completions.create({ model: 'chat-v1', prompt: `user ${s} turn ${k}`, max_tokens: 1, user: `user-${s}` });
      assert.equal(c.model, 'chat-v1');
    }
    const da = (await finished(v1a)) - a0, db = (await finished(v1b)) - b0;
    assert.ok((da === 4 && db === 0) || (da === 0 && db === 4), `user ${s} split ${da}/${db}`);
    homes.add(da ? 'a' : 'b');
  }
  assert.equal(homes.size, 2, 'users are spread over both replicas');
});
