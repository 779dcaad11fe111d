// Upstream authentication: real `kiln serve --api-key` replicas behind a real `kiln gateway`
// that holds their keys (a pool's api_key_file, an endpoint's own api_key_env) and sends them
// as Authorization: Bearer. Without the key a replica answers 401 to everything but /health
// and /metrics: the client gets a 502 (the gateway's misconfiguration, not the client's), and
// the key never shows in the gateway's log or /metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { metricSum } from './gwutil.mjs';
import { Replica, startGateway, skipReason, cleanup, dir } from './gwreal.mjs';

const KEY_A = 'sk-replica-a-7f3e9c';
const KEY_B = 'sk-replica-b-91d2aa';
let a, b, c, gw;

before(async () => {
  if (skipReason) return;
  a = await new Replica(['--served-model-name', 'm', '--api-key', KEY_A]).start();
  b = await new Replica(['--served-model-name', 'm', '--api-key', KEY_B]).start();
  c = await new Replica(['--served-model-name', 'nokey', '--api-key', KEY_A]).start();
  const keyFile = path.join(dir, 'replica-a.key');
  writeFileSync(keyFile, `${KEY_A}\n`, { mode: 0o600 });
  gw = await startGateway({
    health: { interval_ms: 100 },
    retry: { attempts: 2 },
    models: [
      // the pool's key from a file; b has its own, from the environment
      { name: 'm', pools: [{ api_key_file: keyFile, endpoints: [{ url: a.url },
        { url: b.url, api_key_env: 'KILN_TEST_REPLICA_B_KEY' }] }] },
      // no key: the replica refuses the gateway
      { name: 'nokey', pools: [{ endpoints: [{ url: c.url }] }] },
    ],
  }, { env: { KILN_TEST_REPLICA_B_KEY: KEY_B } });
});

after(async () => {
  if (gw) await gw.stop();
  for (const r of [a, b, c]) if (r) await r.stop();
  cleanup();
});

test('the gateway authenticates to replicas started with --api-key', { skip: skipReason }, async () => {
  // the replicas do want a key
  const direct = await fetch(`${a.url}/v1/completions`, { method: 'POST',
    headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', prompt: 'x', max_tokens: 1 }) });
  assert.equal(direct.status, 401);
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'none', maxRetries: 0 });
  const served = () => Promise.all([a, b].map(async (r) => metricSum(await r.metrics(), 'vllm:request_success_total')));
  const s0 = await served();
  for (let i = 0; i < 8; i++) {
    const r = await client.completions.create({ model: 'm', prompt: `hello ${i}`, max_tokens: 2 });
    assert.equal(r.choices.length, 1);
  }
  const stream = await client.chat.completions.create({ model: 'm', stream: true, max_tokens: 3,
    messages: [{ role: 'user', content: 'hi' }] });
  let chunks = 0;
  for await (const c of stream) chunks += c.choices.length;
  assert.ok(chunks >= 1);
  const s1 = await served();
  // both keys worked: each replica served some of them
  assert.ok(s1[0] > s0[0] && s1[1] > s0[1], `served a ${s0[0]}->${s1[0]}, b ${s0[1]}->${s1[1]}`);
});

test('without the key: 502 for the client, the gateway says why, and no key is ever shown', { skip: skipReason }, async () => {
  const r = await fetch(`${gw.url}/v1/completions`, { method: 'POST',
    headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'nokey', prompt: 'x', max_tokens: 1 }) });
  assert.equal(r.status, 502, await r.clone().text());
  assert.equal((await r.json()).error.type, 'upstream_error');
  assert.match(gw.log(), /refused the gateway's credentials \(401\)/);
  const metrics = await gw.metrics();
  for (const key of [KEY_A, KEY_B]) {
    assert.ok(!gw.log().includes(key), 'a key in the gateway log');
    assert.ok(!metrics.includes(key), 'a key in /metrics');
  }
});
