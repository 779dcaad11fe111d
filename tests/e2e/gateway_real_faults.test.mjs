// Faults with real replicas: three `kiln serve` processes behind a real `kiln gateway`.
// kill -9 during a run of streaming requests; kill -STOP / -CONT (a hang); all down.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pool, streamCompletion, waitFor, metricSum } from './gwutil.mjs';
import { Replica, startGateway, skipReason, cleanup } from './gwreal.mjs';

const reps = [];
let gw;

const upLine = (r, v) => `kiln_gateway_endpoint_up{endpoint="${r.url}"} ${v}`;
async function isUp(r, v) { return (await gw.metrics()).includes(upLine(r, v)); }
async function served(r) { return metricSum(await r.metrics(), 'vllm:prompt_tokens_total'); }

// A finished stream is either whole (200, ends with [DONE]) or cut mid-stream (200, at least
// one token chunk, then an error event, no [DONE]); returns 'ok' or 'cut', throws otherwise.
function classify(r) {
  assert.equal(r.error, null, `network error: ${r.error}`);
  assert.equal(r.status, 200, r.text);
  if (r.events.at(-1) === '[DONE]') return 'ok';
  assert.ok(!r.events.includes('[DONE]'));
  const last = JSON.parse(r.events.at(-1));
  assert.ok(last.error && last.error.message, `last event is not an error: ${r.events.at(-1)}`);
  assert.ok(r.events.slice(0, -1).some((e) => JSON.parse(e).choices?.length), 'cut before any token');
  return 'cut';
}

before(async () => {
  if (skipReason) return;
  for (let i = 0; i < 3; i++) reps.push(await new Replica(['--served-model-name', 'tiny']).start());
  gw = await startGateway({
    health: { interval_ms: 100, timeout_ms: 300, eject_ms: 200, eject_max_ms: 1000 },
    retry: { attempts: 3, connect_timeout_ms: 300, first_byte_timeout_ms: 1000, idle_timeout_ms: 1000 },
    models: [{ name: 'tiny', pools: [{ endpoints: reps.map((r) => ({ url: r.url })) }] }],
  });
});

after(async () => {
  if (gw) await gw.stop();
  for (const r of reps) await r.stop();
  cleanup();
});

test('kill -9 mid-run: unstarted requests succeed elsewhere, streaming ones end with an SSE error; eject < 2 s, rejoin < 5 s',
  { skip: skipReason, timeout: 60000 }, async () => {
    const victim = reps[0];
    let done = 0, killedAt = 0;
    const body = { model: 'tiny', prompt: 'Once upon a time there was', max_tokens: 400, ignore_eos: true, temperature: 0 };
    const run = pool(64, 8, async (i) => {
      const r = await streamCompletion(gw.url, { ...body, prompt: `${body.prompt} ${i}` });
      done++;
      return r;
    });
    await waitFor(() => done >= 16, 30000, 5);
    const before = await served(victim);
    assert.ok(before > 0, 'the victim served requests before the kill');
    victim.kill('SIGKILL');
    killedAt = Date.now();
    await waitFor(() => isUp(victim, 0), 2000, 20);
    const ejectMs = Date.now() - killedAt;
    const res = await run;
    const kinds = res.map(classify);
    const cut = kinds.filter((k) => k === 'cut').length;
    console.log(`kill -9: ${kinds.length - cut} of ${kinds.length} streams whole, ${cut} cut mid-stream; ejected after ${ejectMs} ms`);
    assert.ok(cut <= 8, `${cut} streams cut, more than were in flight`);

    await victim.exited;
    const t0 = Date.now();
    await victim.start({ waitReady: false });
    await waitFor(() => isUp(victim, 1), 5000, 20);
    const upMs = Date.now() - t0;
    // Rejoined = serving gateway traffic again (a replica whose metrics are not scraped yet
    // ranks below fresh idle ones, so it takes up to a scrape interval more).
    for (;;) {
      // enough concurrent work that every eligible replica gets some (idle ties go to one)
      const res2 = await pool(9, 9, (i) => streamCompletion(gw.url, { ...body, max_tokens: 32, prompt: `again ${i}` }));
      for (const r of res2) assert.equal(classify(r), 'ok');
      if (await served(victim) > 0) break;
      assert.ok(Date.now() - t0 < 5000, 'the restarted replica got no traffic within 5 s');
    }
    console.log(`restart on the same port: up ${upMs} ms, serving gateway traffic ${Date.now() - t0} ms after the process started`);
  });

test('kill -STOP: timeouts eject the hung replica and traffic moves away; kill -CONT brings it back',
  { skip: skipReason, timeout: 60000 }, async () => {
    const victim = reps[1];
    await waitFor(async () => (await Promise.all(reps.map((r) => isUp(r, 1)))).every(Boolean), 10000);
    victim.kill('SIGSTOP');
    const t0 = Date.now();
    try {
      // requests start at once: any the gateway sends to the hung replica before the health
      // checks eject it must hit the first-byte timeout and be retried elsewhere
      const body = { model: 'tiny', max_tokens: 4, ignore_eos: true, temperature: 0 };
      const run = pool(30, 4, (i) => streamCompletion(gw.url, { ...body, prompt: `hang ${i}` }));
      await waitFor(() => isUp(victim, 0), 3000, 20);
      console.log(`kill -STOP: ejected after ${Date.now() - t0} ms`);
      const res = await run;
      for (const r of res) assert.equal(classify(r), 'ok');
      const m = await gw.metrics();
      console.log(`kill -STOP: 30 of 30 requests whole; gateway retries: ${metricSum(m, 'kiln_gateway_retries_total') || 0}`);
    } finally {
      victim.kill('SIGCONT');
    }
    const t1 = Date.now();
    await waitFor(() => isUp(victim, 1), 5000, 20);
    console.log(`kill -CONT: back after ${Date.now() - t1} ms`);
    const before = await served(victim);
    /* traffic returns once the gateway has fresh metrics for it (a scrape or two): keep
     * sending small bursts, every request whole, until the resumed replica serves some */
    let round = 0;
    const all = []; /* waitFor swallows throws: every result is checked after it */
    await waitFor(async () => {
      const res = await pool(9, 9, (i) => streamCompletion(gw.url,
        { model: 'tiny', max_tokens: 48, ignore_eos: true, prompt: `back ${round} ${i}` }));
      round++;
      all.push(...res);
      return await served(victim) > before;
    }, 5000, 50);
    for (const r of all) assert.equal(classify(r), 'ok');
    console.log(`kill -CONT: serving again after ${round} burst(s) of 9`);
  });

test('all replicas down: 503 with a clear JSON body', { skip: skipReason, timeout: 30000 }, async () => {
  for (const r of reps) r.kill('SIGKILL');
  await Promise.all(reps.map((r) => r.proc.exited));
  await waitFor(async () => (await fetch(`${gw.url}/health`)).status === 503, 5000);
  const r = await fetch(`${gw.url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', prompt: 'x', max_tokens: 1 }),
  });
  const text = await r.text();
  assert.equal(r.status, 503, text);
  const j = JSON.parse(text);
  assert.match(j.error.message, /\S{3,}/);
  console.log(`all down: ${r.status} ${text.trim()}`);
});
