// Prefix affinity with real replicas: three `kiln serve` replicas whose KV cache holds only a
// few long prompts each, behind a real `kiln gateway`; 8 groups x 6 requests sharing a
// ~600-token prefix, interleaved across groups. Prefix-aware picking ("score") keeps each
// group on one replica, so the replicas' own prefix-cache hit rate is at least 3x that of
// "round_robin", which sprays every group over every replica and thrashes the caches.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { metricSum, pool, streamCompletion } from './gwutil.mjs';
import { Replica, startGateway, skipReason, cleanup } from './gwreal.mjs';

const GROUPS = 8, PER_GROUP = 6;

function prompt(g, i) {
  const words = [];
  for (let k = 0; k < 130; k++) words.push(`g${g}w${(k * 7 + g) % 97}`);
  return `${words.join(' ')} tail ${i} of ${g}`;
}

// One run: fresh replicas (cold caches), a gateway with `policy`, the workload at
// concurrency 3. Returns {hitRate, meanTtft, perReplica}.
async function run(policy) {
  const reps = [];
  for (let i = 0; i < 3; i++) reps.push(await new Replica(['--served-model-name', 'tiny', '--kv-mem', '2']).start());
  const gw = await startGateway({
    policy,
    models: [{ name: 'tiny', pools: [{ endpoints: reps.map((r) => ({ url: r.url })) }] }],
  });
  try {
    const order = [];
    for (let i = 0; i < PER_GROUP; i++) for (let g = 0; g < GROUPS; g++) order.push([g, i]);
    const res = await pool(order.length, 3, (k) => streamCompletion(gw.url,
      { model: 'tiny', prompt: prompt(...order[k]), max_tokens: 4, ignore_eos: true, temperature: 0 }));
    for (const r of res) {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.events.at(-1), '[DONE]');
    }
    let hits = 0, queries = 0;
    const perReplica = [];
    for (const r of reps) {
      const m = await r.metrics();
      const h = metricSum(m, 'vllm:prefix_cache_hits_total'), q = metricSum(m, 'vllm:prefix_cache_queries_total');
      perReplica.push({ hits: h, queries: q });
      hits += h; queries += q;
    }
    const meanTtft = res.reduce((a, r) => a + r.ttft, 0) / res.length;
    return { hitRate: hits / queries, meanTtft, perReplica };
  } finally {
    await gw.stop();
    for (const r of reps) await r.stop();
  }
}

test('prefix-aware picking: replica prefix-cache hit rate >= 3x round robin', { skip: skipReason, timeout: 120000 }, async () => {
  const rr = await run('round_robin');
  const sc = await run('score');
  console.log(`prefix affinity: hit rate score ${(sc.hitRate * 100).toFixed(1)}% vs round_robin ${(rr.hitRate * 100).toFixed(1)}%;`
    + ` mean TTFT score ${sc.meanTtft.toFixed(1)} ms vs round_robin ${rr.meanTtft.toFixed(1)} ms`);
  console.log(`per replica (hits/queries): score ${JSON.stringify(sc.perReplica)} round_robin ${JSON.stringify(rr.perReplica)}`);
  assert.ok(rr.perReplica.every((p) => p.queries > 0), 'round robin used every replica');
  if (rr.hitRate > 0) assert.ok(sc.hitRate >= 3 * rr.hitRate, `score ${sc.hitRate} < 3 x round_robin ${rr.hitRate}`);
  else assert.ok(sc.hitRate > 0.3, `score hit rate ${sc.hitRate} with round robin at 0`);
});

after(cleanup);
