// Tenants, priorities and fallback with real replicas behind a real `kiln gateway`: wrong key
// 401; over the rate limit 429 with Retry-After; a saturated primary pool (max_inflight 1,
// one long stream) sends new requests to the fallback model, marked X-Kiln-Fallback; a
// low-priority tenant flooding a saturated model is shed while a high-priority one is served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pool, streamCompletion, percentile } from './gwutil.mjs';
import { Replica, startGateway, skipReason, cleanup, slowModel } from './gwreal.mjs';

let big, small, solo, gw;
const KEYS = { gold: 'sk-gold', free: 'sk-free', tiny: 'sk-tiny', other: 'sk-other' };

async function post(body, key, extra = {}) {
  const headers = { 'content-type': 'application/json', ...extra };
  if (key) headers.authorization = `Bearer ${key}`;
  const t0 = performance.now();
  const r = await fetch(`${gw.url}/v1/completions`, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch {}
  return { status: r.status, headers: r.headers, text, json, ms: performance.now() - t0 };
}

before(async () => {
  if (skipReason) return;
  // big runs a slower model so that the long stream below holds its slot for seconds
  big = await new Replica(['--served-model-name', 'big'], { model: slowModel() }).start();
  small = await new Replica(['--served-model-name', 'small']).start();
  solo = await new Replica(['--served-model-name', 'solo']).start();
  gw = await startGateway({
    saturation: { max_inflight: 1 },
    queue: { max: 4, max_wait_ms: 20000 },
    models: [{ name: 'big', fallback: 'small', pools: [{ endpoints: [{ url: big.url }] }] },
      { name: 'small', pools: [{ endpoints: [{ url: small.url }] }] },
      { name: 'solo', pools: [{ endpoints: [{ url: solo.url }] }] }],
    tenants: [{ name: 'gold', api_keys: [KEYS.gold], priority: 2, cache_salt: 'gold-salt' },
      { name: 'free', api_keys: [KEYS.free], priority: 0 },
      { name: 'other', api_keys: [KEYS.other] },
      { name: 'tiny', api_keys: [KEYS.tiny], requests_per_min: 3 }],
  });
});

after(async () => {
  if (gw) await gw.stop();
  for (const r of [big, small, solo]) if (r) await r.stop();
  cleanup();
});

test('wrong or missing API key: 401 with a JSON error', { skip: skipReason }, async () => {
  for (const key of ['sk-wrong', null]) {
    const r = await post({ model: 'small', prompt: 'x', max_tokens: 1 }, key);
    assert.equal(r.status, 401, r.text);
    assert.match(r.json.error.message, /API key/);
  }
  assert.equal((await post({ model: 'small', prompt: 'x', max_tokens: 1 }, KEYS.gold)).status, 200);
});

test('prefix cache: the gateway sets every tenant\'s salt; no client reaches another tenant\'s cache', { skip: skipReason }, async () => {
  const prompt = (tag) => `${tag}: ` + 'the quick brown fox jumps over the lazy dog. '.repeat(30);
  // prompt tokens the replica found in its prefix cache for one request (its usage says so)
  const hitsOf = async (key, p, salt) => {
    const body = { model: 'solo', prompt: p, max_tokens: 1 };
    if (salt) body.cache_salt = salt;
    const r = await post(body, key);
    assert.equal(r.status, 200, r.text);
    return r.json.usage.prompt_tokens_details.cached_tokens;
  };
  const P = prompt('gold secret');
  assert.equal(await hitsOf(KEYS.gold, P), 0);
  assert.ok(await hitsOf(KEYS.gold, P) > 0, 'a tenant hits its own cache');
  // naming gold's configured salt gets another tenant nothing of gold's cache
  assert.equal(await hitsOf(KEYS.free, P, 'gold-salt'), 0, 'a client-sent salt passed through');
  // tenants with no salt configured are apart too: each gets a default derived from it
  const Q = prompt('free secret');
  assert.equal(await hitsOf(KEYS.free, Q), 0);
  assert.equal(await hitsOf(KEYS.other, Q), 0, 'two tenants without a configured salt shared a cache');
  assert.ok(await hitsOf(KEYS.free, Q) > 0, 'a derived salt is stable');
  // a client's own salt subdivides its tenant's cache
  const R = prompt('user secret');
  assert.equal(await hitsOf(KEYS.free, R, 'u1'), 0);
  assert.ok(await hitsOf(KEYS.free, R, 'u1') > 0);
  assert.equal(await hitsOf(KEYS.free, R, 'u2'), 0);
  assert.equal(await hitsOf(KEYS.free, R), 0);
  // a salt that is not a non-empty string is refused as a replica would refuse it
  const bad = await post({ model: 'solo', prompt: 'x', max_tokens: 1, cache_salt: '' }, KEYS.free);
  assert.equal(bad.status, 400, bad.text);
  assert.equal(bad.json.error.param, 'cache_salt');
});

test('over the rate limit: 429 with Retry-After', { skip: skipReason }, async () => {
  const st = [];
  let limited = null;
  for (let i = 0; i < 8; i++) {
    const r = await post({ model: 'small', prompt: `rate ${i}`, max_tokens: 1 }, KEYS.tiny);
    st.push(r.status);
    if (r.status === 429 && !limited) limited = r;
  }
  console.log(`rate limit 3/min: statuses ${st.join(' ')}`);
  assert.equal(st[0], 200);
  assert.ok(limited, 'some request was limited');
  assert.ok(Number(limited.headers.get('retry-after')) >= 1, 'Retry-After');
  assert.match(limited.json.error.message, /rate limit/);
  assert.ok(st.filter((s) => s === 200).length <= 4, `${st}`);
});

test('fallback model serves while the primary pool is saturated', { skip: skipReason, timeout: 60000 }, async () => {
  let streaming;
  const started = new Promise((r) => { streaming = r; });
  let holdDone = false;
  const hold = streamCompletion(gw.url, { model: 'big', prompt: 'a long story', max_tokens: 1500, ignore_eos: true },
    { authorization: `Bearer ${KEYS.gold}` }, { onFirstByte: streaming }).finally(() => { holdDone = true; });
  await Promise.race([started, hold]); // the long stream has taken big's only slot
  assert.ok(!holdDone, 'the long stream was still running when the fallback request was sent');
  const r = await post({ model: 'big', prompt: 'while busy', max_tokens: 2 }, KEYS.gold);
  assert.ok(!holdDone, 'the long stream still held big when the answer came');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-kiln-fallback'), 'small');
  assert.equal(r.json.model, 'small');
  const h = await hold;
  assert.equal(h.events.at(-1), '[DONE]', 'the long stream still finished on big');
  assert.equal(JSON.parse(h.events[0]).model, 'big');
  const after = await post({ model: 'big', prompt: 'idle again', max_tokens: 2 }, KEYS.gold);
  assert.equal(after.json.model, 'big');
  assert.equal(after.headers.get('x-kiln-fallback'), null);
  console.log(`fallback: big busy -> served by ${r.json.model} (X-Kiln-Fallback: ${r.headers.get('x-kiln-fallback')})`);
});

test('a low-priority flood is shed; the high-priority tenant is served', { skip: skipReason, timeout: 60000 }, async () => {
  const body = { model: 'solo', max_tokens: 48, ignore_eos: true };
  let goldDone = false;
  const free = [];
  const worker = async (w) => {
    for (let k = 0; !goldDone; k++) free.push(await post({ ...body, prompt: `flood ${w} ${k}` }, KEYS.free));
  };
  const flood = Promise.all(Array.from({ length: 12 }, (_, w) => worker(w)));
  await new Promise((r) => setTimeout(r, 200));
  const gold = [];
  try {
    for (let i = 0; i < 8; i++) gold.push(await post({ ...body, prompt: `gold ${i}` }, KEYS.gold));
  } finally {
    goldDone = true;
  }
  await flood;
  const shed = free.filter((r) => r.status === 429);
  const ok = free.filter((r) => r.status === 200);
  for (const r of gold) assert.equal(r.status, 200, r.text);
  assert.ok(shed.length > 0, 'the flood was shed');
  assert.equal(shed.length + ok.length, free.length, free.map((r) => r.status).join(' '));
  assert.ok(Number(shed[0].headers.get('retry-after')) >= 1);
  const g50 = percentile(gold.map((r) => r.ms), 50), f50 = percentile(ok.map((r) => r.ms), 50);
  console.log(`priority flood: free ${ok.length} served / ${shed.length} shed (429), median ${f50.toFixed(0)} ms;`
    + ` gold ${gold.length} served, median ${g50.toFixed(0)} ms`);
});
