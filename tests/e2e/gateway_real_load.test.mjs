// Load-aware picking with real replicas: of three `kiln serve` replicas, one serves a model
// tens of times slower (same name). Under a closed-loop streaming load, "score" (queue,
// KV and in-flight scorers) sends the slow one less than round robin's third, and the p99
// TTFT is lower than round robin's.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { metricSum, pool, streamCompletion, percentile } from './gwutil.mjs';
import { Replica, startGateway, skipReason, cleanup, slowModel } from './gwreal.mjs';

async function run(policy) {
  const reps = [await new Replica(['--served-model-name', 'tiny'], { model: slowModel() }).start(),
    await new Replica(['--served-model-name', 'tiny']).start(),
    await new Replica(['--served-model-name', 'tiny']).start()];
  const gw = await startGateway({
    policy, models: [{ name: 'tiny', pools: [{ endpoints: reps.map((r) => ({ url: r.url })) }] }],
  });
  try {
    const N = 60;
    const res = await pool(N, 6, (i) => streamCompletion(gw.url,
      { model: 'tiny', prompt: `request ${i}: ${'some words '.repeat(12)}`, max_tokens: 16, ignore_eos: true }));
    for (const r of res) assert.equal(r.events.at(-1), '[DONE]', r.text);
    const done = [];
    for (const r of reps) done.push(metricSum(await r.metrics(), 'vllm:request_success_total'));
    return { slowShare: done[0] / N, done, p99: percentile(res.map((r) => r.ttft), 99),
      p50: percentile(res.map((r) => r.ttft), 50) };
  } finally {
    await gw.stop();
    for (const r of reps) await r.stop();
  }
}

test('a slow replica gets less work than round robin gives it (TTFT percentiles printed)',
  { skip: skipReason, timeout: 180000 }, async () => {
    const rr = await run('round_robin');
    const sc = await run('score');
    console.log(`slow replica share: score ${(100 * sc.slowShare).toFixed(1)}% ${JSON.stringify(sc.done)}`
      + ` vs round_robin ${(100 * rr.slowShare).toFixed(1)}% ${JSON.stringify(rr.done)};`
      + ` TTFT p50/p99 score ${sc.p50.toFixed(0)}/${sc.p99.toFixed(0)} ms vs round_robin ${rr.p50.toFixed(0)}/${rr.p99.toFixed(0)} ms`);
    assert.ok(sc.slowShare < 0.75 * rr.slowShare, 'score sends the slow replica clearly less');
  });

after(cleanup);
