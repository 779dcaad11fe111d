// Expert load on /metrics (issue 16 item 3): a Mixture-of-Experts model served by a real kiln
// serve (a random-weight Mixtral-shaped `kiln model make` file: 3 layers, 4 experts, 2 used)
// counts every token's choices: kiln_moe_expert_tokens_total{expert="0".."3"} sums to the
// tokens run through the model (kiln:computed_tokens_total) x 2 used x 3 layers, grows with
// each request, and the exposition stays well-formed. A dense model has no such series.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, stopServer, postJson, kilnBin, stories, haveStories } from './serverutil.mjs';
import { expositionProblems } from './gwutil.mjs';
import { needs } from './prereq.mjs';

const skip = needs(haveStories, `needs ${stories}`);
let dir, srv;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-moe-'));
  const file = path.join(dir, 'mixtral-e2e.gguf');
  execFileSync(kilnBin, ['model', 'make', '--layers', '3', '--experts', '4', '--experts-used', '2',
    '--std', '0.15', '-o', file]);
  srv = await startServer(['-m', file, '-t', '2']);
});
after(async () => {
  await stopServer(srv);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// The samples of family name: [{ labels, value }]
function samples(text, name) {
  const out = [];
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$/);
    if (!m || m[1] !== name) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

async function load() {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  assert.deepEqual(expositionProblems(text), [], text);
  const experts = samples(text, 'kiln_moe_expert_tokens_total');
  const computed = samples(text, 'kiln:computed_tokens_total')[0].value;
  return { experts, computed };
}

test('every routed token is counted per expert, summed over the layers', { skip }, async () => {
  const before = await load();
  assert.deepEqual(before.experts.map((s) => s.labels.expert), ['0', '1', '2', '3']);
  for (const s of before.experts) assert.equal(s.labels.model_name, 'mixtral-e2e');
  const r = await postJson(`${srv.url}/v1/completions`,
    { prompt: 'the experts share the work', max_tokens: 6, ignore_eos: true });
  assert.equal(r.status, 200, r.text);
  const after = await load();
  const sum = (l) => l.experts.reduce((a, s) => a + s.value, 0);
  assert.ok(after.computed > before.computed);
  assert.equal(sum(after), after.computed * 2 * 3);
  assert.ok(sum(after) > sum(before));
  assert.ok(after.experts.filter((s) => s.value > 0).length > 1);
});

test('a dense model has no expert series', { skip }, async () => {
  const dense = await startServer(['-m', stories, '-t', '1']);
  try {
    const text = await (await fetch(`${dense.url}/metrics`)).text();
    assert.equal(samples(text, 'kiln_moe_expert_tokens_total').length, 0);
    assert.doesNotMatch(text, /kiln_moe_expert_tokens_total/);
  } finally {
    await stopServer(dense);
  }
});
