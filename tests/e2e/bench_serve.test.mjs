// kiln bench against a real `kiln serve` with a tiny random-weight model from
// `kiln model make`: the JSON must add up, token counts must equal the server's usage (and
// what was asked: ignore_eos), an impossible SLO gives goodput 0, errors are counted, and a
// short sweep writes the report and the advice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, execFileSync } from 'node:child_process';
import { readFileSync, mkdtempSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './gwutil.mjs';
import { needs } from './prereq.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const kiln = process.env.KILN_BIN || path.join(here, '../../kiln');
const dir = mkdtempSync(path.join(tmpdir(), 'kiln-bench-serve-'));
let server, port, model;

// Skipped (with the reason) while this kiln has no `serve` command.
const hasServe = (() => {
  try {
    const out = execFileSync(kiln, ['serve', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    return /usage: kiln serve/.test(String(out));
  } catch (e) {
    return /usage: kiln serve/.test(String(e.stdout) + String(e.stderr));
  }
})();
const opts = { skip: needs(hasServe, 'kiln serve is not built') };

function bench(args, name) {
  const out = path.join(dir, name);
  return new Promise((resolve) => {
    execFile(kiln, ['bench', '--url', `http://127.0.0.1:${port}`, '--quiet', '--out', out, ...args],
      { timeout: 120000 }, (e, stdout, stderr) => {
        const file = path.join(out, 'results.json');
        resolve({ code: e ? e.code : 0, stdout, stderr, out,
          json: existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null });
      });
  });
}

function ordered(p) {
  return p.n === 0 || (p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max);
}

before(async () => {
  if (!hasServe) return;
  const gguf = path.join(dir, 'tiny.gguf');
  execFileSync(kiln, ['model', 'make', '--out', gguf, '--dim', '64', '--layers', '2', '--heads', '4',
    '--kv-heads', '4', '--ffn', '128', '--vocab', '512', '--ctx', '1024'], { stdio: 'ignore' });
  port = await freePort();
  server = spawn(kiln, ['serve', '-m', gguf, '--port', String(port), '-t', '1'], { stdio: 'ignore' });
  await waitFor(async () => {
    const r = await fetch(`http://127.0.0.1:${port}/v1/models`);
    if (!r.ok) return false;
    model = (await r.json()).data[0].id;
    return true;
  }, 30000);
});

after(() => {
  if (server) server.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('against kiln serve: counts add up, percentiles ordered, tokens equal usage', opts, async () => {
  const r = await bench(['--concurrency', '4', '--requests', '16', '--input-len', 'uniform:16:64',
    '--output-len', 'uniform:4:16', '--seed', '9', '--slo-ttft', '0.001', '--slo-tpot', '0.001'], 'serve');
  assert.equal(r.code, 0, r.stderr);
  const s = r.json.summary;
  const errs = Object.values(s.errors).reduce((a, b) => a + b, 0);
  assert.equal(s.requests, 16);
  assert.equal(s.ok + errs, s.requests);
  assert.equal(s.ok, 16, JSON.stringify(r.json.records.find((q) => q.status !== 'ok')));
  for (const k of ['ttft_ms', 'tpot_ms', 'itl_ms', 'e2e_ms']) assert.ok(ordered(s[k]), k);
  let outSum = 0, inSum = 0;
  for (const q of r.json.records) {
    assert.equal(q.usage, true, 'kiln serve sends usage with include_usage');
    assert.equal(q.output_tokens, q.output_expected, 'ignore_eos: as many tokens as asked');
    assert.ok(q.input_tokens > 0);
    assert.ok(q.chunks >= 1 && q.chunks <= q.output_tokens);
    assert.ok(q.ttft_ms > 0 && q.ttft_ms <= q.e2e_ms);
    outSum += q.output_tokens;
    inSum += q.input_tokens;
  }
  assert.equal(s.output_tokens, outSum);
  assert.equal(s.input_tokens, inSum);
  // the SLO of 1 microsecond cannot be met
  assert.equal(s.good, 0);
  assert.equal(s.goodput_req_per_s, 0);
});

test('against kiln serve: an unknown model is counted as http_4xx; no success is exit 1', opts, async () => {
  const r = await bench(['--model', 'no-such-model', '--concurrency', '2', '--requests', '4'], 'serve-404');
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /no request succeeded \(4 of 4 failed: http_4xx 4\)/);
  assert.equal(r.json.summary.errors.http_4xx, 4);
  assert.ok(r.json.records.every((q) => q.http_status === 404));
});

test('against kiln serve: chat API and a short sweep with advice', opts, async () => {
  const r = await bench(['--api', 'chat', '--sweep', '1,2', '--step-requests', '6', '--input-len', '16',
    '--output-len', '8', '--slo-ttft', '60000', '--slo-tpot', '60000', '--recommend', '--target-rate', '10'],
  'serve-sweep');
  assert.equal(r.code, 0, r.stderr);
  const sw = r.json.sweep;
  assert.ok(sw.steps.length >= 1);
  for (const st of sw.steps) assert.equal(st.summary.ok, 6);
  assert.ok(sw.saturation);
  for (const f of ['report.html', 'ttft.svg', 'throughput.svg', 'recommend.md', 'hpa.yaml', 'gateway.json'])
    assert.ok(existsSync(path.join(r.out, f)), f);
  const gw = JSON.parse(readFileSync(path.join(r.out, 'gateway.json'), 'utf8'));
  assert.equal(gw.models[0].name, model);
});

// A tiny vocabulary splits most words into several tokens (the word approximation gave 2.3x
// the asked length): with the server's /tokenize, every prompt is the asked number of tokens
// as the server itself counts them (usage.prompt_tokens), BOS or chat template included.
test('against kiln serve: --input-len N is N tokens exactly, completions and chat', opts, async () => {
  for (const api of ['completions', 'chat']) {
    const r = await bench(['--api', api, '--concurrency', '4', '--requests', '12', '--input-len',
      'uniform:24:96', '--output-len', '2'], `serve-exact-${api}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /input lengths are exact/);
    for (const q of r.json.records) {
      assert.equal(q.input_tokens, q.input_expected, `${api}: ${JSON.stringify(q)}`);
      assert.ok(q.input_tokens >= 24 && q.input_tokens <= 96, `${api}: ${q.input_tokens}`);
    }
  }
  const f = await bench(['--requests', '3', '--input-len', '37', '--output-len', '2'], 'serve-exact-37');
  assert.ok(f.json.records.every((q) => q.input_tokens === 37), JSON.stringify(f.json.records));
});

async function metric(name) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = text.match(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

// Each step of a sweep sends prompts no earlier step sent: the server's prefix cache finds
// nothing to reuse, so every step's TTFT is a real prefill (a replay hit 63% of the prompt
// tokens from the second step on).
test('against kiln serve: sweep steps do not hit the prefix cache with each other\'s prompts', opts, async () => {
  const q0 = await metric('vllm:prefix_cache_queries_total'), h0 = await metric('vllm:prefix_cache_hits_total');
  // a seed of its own: another run with the same seed sends the same prompts (by design)
  const r = await bench(['--sweep', '1,2,4', '--step-requests', '8', '--input-len', '96', '--output-len', '2',
    '--seed', '4242'], 'serve-sweep-fresh');
  assert.equal(r.code, 0, r.stderr);
  const steps = r.json.sweep.steps.length; // 2 or 3: it may stop when throughput stops rising
  assert.ok(steps >= 2, r.json.sweep.stop_reason);
  const q = await metric('vllm:prefix_cache_queries_total') - q0, h = await metric('vllm:prefix_cache_hits_total') - h0;
  assert.ok(q >= steps * 8 * 96, `prefix cache queries ${q}`);
  assert.ok(h <= 0.02 * q, `prefix cache hits ${h} of ${q} prompt tokens`);
});
