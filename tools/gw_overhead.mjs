#!/usr/bin/env node
// Gateway overhead benchmark (prints figures; not a test). Starts N real `kiln serve` replicas
// of a tiny random-weight model and a `kiln gateway` in front of them, then sends
// non-streaming `max_tokens: 1` completions at a fixed rate (open loop), alternating request
// by request between the gateway and going direct to a replica (round robin), so both paths
// see the same machine load in the same run. Prints median / p90 / p99 latency of each path
// and the difference.
//   node tools/gw_overhead.mjs [--rate 500] [--seconds 5] [--replicas 2]   (KILN_BIN=... to pick the binary)
import { Replica, startGateway, cleanup, haveKiln, kilnBin } from '../tests/e2e/gwreal.mjs';
import { percentile } from '../tests/e2e/gwutil.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const rate = arg('rate', 500), seconds = arg('seconds', 5), nrep = arg('replicas', 2);
if (!haveKiln) {
  console.error(`gw_overhead: no kiln binary at ${kilnBin} (set KILN_BIN)`);
  process.exit(1);
}

const reps = [];
for (let i = 0; i < nrep; i++) reps.push(await new Replica(['--served-model-name', 'tiny', '--max-queue', '4096']).start());
const gw = await startGateway({
  models: [{ name: 'tiny', pools: [{ endpoints: reps.map((r) => ({ url: r.url })) }] }],
});

async function one(url) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 1 }),
  });
  await r.arrayBuffer();
  return { ok: r.status === 200, ms: performance.now() - t0 };
}

// warm up both paths (connections, caches)
for (let i = 0; i < 50; i++) { await one(gw.url); await one(reps[i % nrep].url); }

const lat = { gateway: [], direct: [] };
let errors = 0;
const pending = [];
const n = Math.round(rate * seconds);
const start = performance.now();
for (let i = 0; i < n; i++) {
  const due = start + (i * 1000) / rate;
  const wait = due - performance.now();
  if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  const path = i % 2 ? 'gateway' : 'direct';
  const url = path === 'gateway' ? gw.url : reps[(i >> 1) % nrep].url;
  pending.push(one(url).then((r) => { if (r.ok) lat[path].push(r.ms); else errors++; }, () => errors++));
}
await Promise.all(pending);
const achieved = n / ((performance.now() - start) / 1000);

const f = (x) => x.toFixed(2).padStart(7);
console.log(`gw_overhead: ${n} requests at ${rate}/s offered (${achieved.toFixed(0)}/s achieved) over ${nrep} replicas, ${errors} errors`);
console.log('path      count  median     p90     p99  (ms)');
for (const p of ['direct', 'gateway'])
  console.log(`${p.padEnd(8)} ${String(lat[p].length).padStart(6)} ${f(percentile(lat[p], 50))} ${f(percentile(lat[p], 90))} ${f(percentile(lat[p], 99))}`);
console.log(`added by the gateway: median ${f(percentile(lat.gateway, 50) - percentile(lat.direct, 50))} ms,`
  + ` p99 ${f(percentile(lat.gateway, 99) - percentile(lat.direct, 99))} ms`);

await gw.stop();
for (const r of reps) await r.stop();
cleanup();
