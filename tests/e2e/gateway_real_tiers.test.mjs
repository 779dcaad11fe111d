// Config reload and tiers with real processes: SIGHUP swaps a gateway's config while streams
// are in flight (none dropped; new requests follow the new config; a bad file keeps the old
// one), and a global gateway in front of two regional gateways keeps its home region while it
// is up, fails over to the other region when the home replica dies, and comes back.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { metricSum, streamCompletion, waitFor } from './gwutil.mjs';
import { Replica, startGateway, skipReason, cleanup, dir, slowModel } from './gwreal.mjs';

const procs = [];
after(async () => {
  for (const p of procs.reverse()) await p.stop();
  cleanup();
});

async function started(p) { procs.push(p); return p; }

const served = async (r) => metricSum(await r.metrics(), 'vllm:request_success_total');

async function complete(url, prompt) {
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt, max_tokens: 2 }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text);
}

function assertClean(s, what) {
  assert.equal(s.status, 200, `${what}: ${s.text}`);
  assert.equal(s.error, null, what);
  assert.equal(s.events.at(-1), '[DONE]', `${what}: ${s.text.slice(-200)}`);
}

test('SIGHUP reloads the config without dropping streams in flight; a bad file keeps the old one', { skip: skipReason, timeout: 180000 }, async () => {
  const slow = await started(await new Replica(['--served-model-name', 'm'], { model: slowModel() }).start());
  const fresh = await started(await new Replica(['--served-model-name', 'm']).start());
  const pools = (r) => [{ name: 'm', pools: [{ endpoints: [{ url: r.url }] }] }];
  const gw = await started(await startGateway({ models: pools(slow) }));
  const file = path.join(dir, `gw-${gw.port}.json`);
  const listen = { host: '127.0.0.1', port: gw.port };

  let firstBytes = 0, finished = 0;
  const streams = [];
  for (let i = 0; i < 8; i++)
    streams.push(streamCompletion(gw.url, { model: 'm', prompt: `reload ${i}`, max_tokens: 600, ignore_eos: true },
      {}, { onFirstByte: () => firstBytes++ }).then((s) => { finished++; return s; }));
  await waitFor(() => firstBytes === 8, 60000);

  writeFileSync(file, JSON.stringify({ listen, models: pools(fresh) }));
  gw.proc.kill('SIGHUP');
  await waitFor(() => gw.log().includes('reloaded'), 10000);
  const finishedAtReload = finished;
  const before = await served(fresh);
  for (let i = 0; i < 6; i++) await complete(gw.url, `after reload ${i}`);
  assert.equal(await served(fresh) - before, 6, 'new requests follow the new config');

  writeFileSync(file, '{"models": [ this is not json');
  gw.proc.kill('SIGHUP');
  await waitFor(() => gw.log().includes('reload failed'), 10000);
  await complete(gw.url, 'after a bad reload');
  assert.equal(await served(fresh) - before, 7, 'a bad file keeps the last good config');

  const res = await Promise.all(streams);
  res.forEach((s, i) => assertClean(s, `stream ${i}`));
  assert.ok(finishedAtReload < 8, `the streams were still running at the reload (${finishedAtReload} done)`);
  assert.equal(await served(slow), 8, 'the old replica finished its 8 streams and got nothing new');
  console.log(`reload: ${8 - finishedAtReload} of 8 streams in flight across the reload, all ended with [DONE]`);
});

test('tiers: a global gateway keeps its home region, fails over to the other region and comes back', { skip: skipReason, timeout: 120000 }, async () => {
  const ra = await started(await new Replica(['--served-model-name', 'm']).start());
  const rb = await started(await new Replica(['--served-model-name', 'm']).start());
  const regional = (region, r) => ({
    region, health: { interval_ms: 200 },
    models: [{ name: 'm', pools: [{ region, endpoints: [{ url: r.url }] }] }],
  });
  const ga = await started(await startGateway(regional('a', ra)));
  const gb = await started(await startGateway(regional('b', rb)));
  const global = await started(await startGateway({
    region: 'a', health: { interval_ms: 200 },
    models: [{ name: 'm', pools: [{ region: 'a', endpoints: [{ url: ga.url }] }, { region: 'b', endpoints: [{ url: gb.url }] }] }],
  }));

  // home region while it is up
  let a0 = await served(ra), b0 = await served(rb);
  for (let i = 0; i < 10; i++) await complete(global.url, `home ${i}`);
  assert.equal(await served(ra) - a0, 10);
  assert.equal(await served(rb) - b0, 0);
  const s = await streamCompletion(global.url, { model: 'm', prompt: 'two tiers', max_tokens: 8 });
  assertClean(s, 'stream through two gateways');

  // the home replica dies: region a's gateway has no endpoint up; the global one moves on
  await ra.stop();
  b0 = await served(rb);
  for (let i = 0; i < 10; i++) await complete(global.url, `failover ${i}`);
  assert.equal(await served(rb) - b0, 10, 'every request served in region b');
  await waitFor(async () => (await fetch(`${ga.url}/health`)).status === 503, 5000);

  // it comes back: traffic returns home
  await ra.start();
  const t0 = Date.now();
  await waitFor(async () => {
    const before = await served(ra);
    await complete(global.url, 'back home?');
    return (await served(ra)) > before;
  }, 10000, 100);
  console.log(`tiers: region a served again ${Date.now() - t0} ms after its replica restarted`);
});
