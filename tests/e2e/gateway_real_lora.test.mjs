// Adapter-affinity routing with real processes: three kiln serve replicas of one base model,
// each knowing six LoRA adapters with room for two (--max-loras 2), behind a real kiln gateway
// that reads which adapters each holds from its /metrics (vllm:lora_requests_info and
// kiln:lora_adapter_resident). The same seeded stream of requests over the six adapters
// causes far fewer adapter loads (swaps) with the scoring policy than with round robin, and
// every answer equals the one the adapter gives on a replica directly.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { metricSum, waitFor } from './gwutil.mjs';
import { Replica, startGateway, skipReason, cleanup, dir, tinyModel, kilnBin } from './gwreal.mjs';

const procs = [];
after(async () => {
  for (const p of procs.reverse()) await p.stop();
  cleanup();
});

const NAMES = ['a', 'b', 'c', 'd', 'e', 'f'];

async function complete(url, model, prompt) {
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt, max_tokens: 4, temperature: 0, ignore_eos: true }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text).choices[0].text;
}

const loads = async (reps) => {
  let n = 0;
  for (const r of reps) n += metricSum(await r.metrics(), 'kiln:lora_loads_total');
  return n;
};

// A seeded stream of adapter names (xorshift): the same for both policies.
function stream(n, seed) {
  let x = seed >>> 0;
  const out = [];
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out.push(NAMES[x % NAMES.length]);
  }
  return out;
}

test('adapter affinity: requests go where their adapter is resident; far fewer swaps than round robin', { skip: skipReason, timeout: 180000 }, async () => {
  const model = tinyModel();
  const loras = NAMES.flatMap((n, i) => {
    const f = path.join(dir, `lora-${n}.gguf`);
    execFileSync(kilnBin, ['model', 'make-lora', '--base', model, '--out', f, '--rank', '8', '--seed', String(i + 1), '--std', '0.1'], { stdio: 'ignore' });
    return ['--lora', `${n}=${f}`];
  });
  const reps = [];
  for (let i = 0; i < 3; i++) {
    const r = new Replica(['--served-model-name', 'm', '--max-loras', '2', ...loras]);
    procs.push(r);
    reps.push(await r.start());
  }
  // what each adapter says, asked of one replica directly
  const want = {};
  for (const n of NAMES) want[n] = await complete(reps[0].url, n, 'Once upon a time');

  const cfg = (policy) => ({
    policy,
    scrape: { interval_ms: 50 },
    models: [{ name: 'm', pools: [{ adapters: NAMES, endpoints: reps.map((r) => ({ url: r.url })) }] }],
  });
  const run = async (policy, seed) => {
    const gw = await startGateway(cfg(policy));
    procs.push(gw);
    // the gateway has read every replica's metrics
    await waitFor(async () => metricSum(await gw.metrics(), 'kiln_gateway_endpoint_metrics_fresh') === 3, 20000);
    const before = await loads(reps);
    for (const n of stream(90, seed)) assert.equal(await complete(gw.url, n, 'Once upon a time'), want[n], n);
    const swaps = await loads(reps) - before;
    await gw.stop();
    return swaps;
  };
  const rr = await run('round_robin', 7);
  const affinity = await run('score', 7);
  console.log(`adapter loads over 90 requests: round robin ${rr}, affinity ${affinity}`);
  // 3 replicas x 2 slots hold all 6 adapters: once each is placed, affinity needs no swap;
  // round robin sends each adapter everywhere and swaps on most requests
  assert.ok(affinity <= 12, `affinity: ${affinity} loads`);
  assert.ok(rr >= 3 * affinity + 10, `round robin ${rr} vs affinity ${affinity}`);
  // the replicas now report what they hold through the gateway's eyes too
  const t = await reps[0].metrics();
  assert.match(t, /vllm:lora_requests_info\{max_lora="2",running_lora_adapters="[a-f,]*",waiting_lora_adapters="[a-f,]*"\} /);
});
