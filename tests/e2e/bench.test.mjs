// kiln bench against tests/e2e/fake_replica.mjs: the JSON it writes must add up (counts,
// ordered percentiles, token counts equal to the server's usage), an impossible SLO gives
// goodput 0, and a replica answering 500 gives counted errors, not a crash.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './gwutil.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const kiln = process.env.KILN_BIN || path.join(here, '../../kiln');
const dir = mkdtempSync(path.join(tmpdir(), 'kiln-bench-'));
const procs = [];
const fakes = [];

async function startFake(extra = []) {
  const port = await freePort();
  const p = spawn('node', [path.join(here, 'fake_replica.mjs'), String(port), '--delay-ms', '2', ...extra],
    { stdio: 'ignore' });
  procs.push(p);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok);
  return port;
}

async function admin(port, o) {
  await fetch(`http://127.0.0.1:${port}/admin`, { method: 'POST', body: JSON.stringify(o) });
}

// Runs kiln bench; resolves {code, stdout, stderr, json} (json: DIR/results.json if written).
function bench(args, name) {
  const out = path.join(dir, name);
  return new Promise((resolve) => {
    execFile(kiln, ['bench', '--out', out, ...args], { timeout: 60000 }, (e, stdout, stderr) => {
      const file = path.join(out, 'results.json');
      resolve({ code: e ? e.code : 0, stdout, stderr, out,
        json: existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null });
    });
  });
}

function checkSummary(s, records) {
  const errs = Object.values(s.errors).reduce((a, b) => a + b, 0);
  assert.equal(s.ok + errs, s.requests, 'ok + errors = requests');
  assert.equal(records.length, s.requests);
  assert.equal(records.filter((r) => r.status === 'ok').length, s.ok);
  for (const k of ['ttft_ms', 'tpot_ms', 'itl_ms', 'e2e_ms']) {
    const p = s[k];
    if (!p.n) continue;
    assert.ok(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max, `${k} percentiles ordered`);
    assert.ok(p.p50 > 0);
  }
  assert.ok(s.good <= s.ok);
}

before(async () => {
  fakes.push(await startFake());
  fakes.push(await startFake(['--ttft-ms', '20']));
  fakes.push(await startFake(['--tokenize'])); // POST /tokenize, GET /prompts
});

after(() => {
  for (const p of procs) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('closed loop: counts add up, percentiles ordered, tokens equal usage', async () => {
  const r = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--concurrency', '4',
    '--requests', '30', '--input-len', 'uniform:8:40', '--output-len', 'normal:12:4', '--seed', '3'], 'closed');
  assert.equal(r.code, 0, r.stderr);
  const { summary: s, records } = r.json;
  checkSummary(s, records);
  assert.equal(s.requests, 30);
  assert.equal(s.ok, 30);
  let inSum = 0, outSum = 0;
  for (const q of records) {
    assert.equal(q.usage, true);
    assert.equal(q.output_tokens, q.output_expected, 'ignore_eos + max_tokens honoured');
    assert.equal(q.input_tokens, q.input_expected, 'one word per token in the fake');
    assert.equal(q.chunks, q.output_tokens);
    assert.ok(q.ttft_ms <= q.e2e_ms);
    if (q.output_tokens > 1)
      assert.ok(Math.abs(q.tpot_ms - (q.e2e_ms - q.ttft_ms) / (q.output_tokens - 1)) < 1e-3); // 8 digits in JSON
    inSum += q.input_tokens;
    outSum += q.output_tokens;
  }
  assert.equal(s.input_tokens, inSum);
  assert.equal(s.output_tokens, outSum);
  assert.match(r.stdout, /TTFT/);
  assert.ok(s.output_tok_per_s > 0 && s.req_per_s > 0);
  for (const f of ['report.html', 'ttft_cdf.svg', 'tpot_cdf.svg', 'e2e_cdf.svg'])
    assert.ok(existsSync(path.join(r.out, f)), f);
});

test('the same seed gives the same workload; another seed another', async () => {
  const args = (seed) => ['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--concurrency', '2',
    '--requests', '6', '--input-len', 'uniform:8:400', '--output-len', 'uniform:2:9', '--seed', seed];
  const a = await bench(args('11'), 'seed-a');
  const b = await bench(args('11'), 'seed-b');
  const c = await bench(args('12'), 'seed-c');
  const lens = (j) => j.records.map((q) => [q.item, q.input_expected, q.output_expected].join(':')).sort();
  assert.deepEqual(lens(a.json), lens(b.json));
  assert.notDeepEqual(lens(a.json), lens(c.json));
});

test('an impossible SLO gives goodput 0; a loose one counts every request', async () => {
  const base = ['--url', `http://127.0.0.1:${fakes[1]}`, '--model', 'm', '--concurrency', '2',
    '--requests', '8', '--output-len', '4'];
  const r = await bench([...base, '--slo-ttft', '1', '--slo-tpot', '1000'], 'slo-impossible');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.summary.ok, 8);
  assert.equal(r.json.summary.good, 0);
  assert.equal(r.json.summary.goodput_req_per_s, 0);
  const ok = await bench([...base, '--slo-ttft', '60000', '--slo-tpot', '60000'], 'slo-loose');
  assert.equal(ok.json.summary.good, 8);
  assert.ok(Math.abs(ok.json.summary.goodput_req_per_s - ok.json.summary.req_per_s) < 1e-9);
});

test('a replica answering 500 yields counted errors and exit status 1, not a crash', async () => {
  const port = await startFake();
  await admin(port, { mode: '500' });
  const r = await bench(['--url', `http://127.0.0.1:${port}`, '--model', 'm', '--concurrency', '3',
    '--requests', '9'], 'five-hundred');
  // no request succeeded: a failure for scripts and CI, with the results still written
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /kiln: http:\/\/127\.0\.0\.1:\d+: no request succeeded \(9 of 9 failed: http_5xx 9\)/);
  const s = r.json.summary;
  checkSummary(s, r.json.records);
  assert.equal(s.errors.http_5xx, 9);
  assert.equal(s.ok, 0);
  assert.ok(r.json.records.every((q) => q.http_status === 500 && /boom/.test(q.error)));
  await admin(port, { mode: 'die-mid-stream' });
  const d = await bench(['--url', `http://127.0.0.1:${port}`, '--model', 'm', '--concurrency', '2',
    '--requests', '4'], 'die');
  assert.equal(d.code, 1);
  assert.equal(d.json.summary.errors.stream_error, 4);
});

test('nothing listening: connect errors, exit status 1; a sweep with no success fails too', async () => {
  const port = await freePort();
  const r = await bench(['--url', `http://127.0.0.1:${port}`, '--model', 'm', '--concurrency', '2',
    '--requests', '4'], 'refused');
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /no request succeeded \(4 of 4 failed: connect 4\)/);
  assert.equal(r.json.summary.errors.connect, 4);
  const s = await bench(['--url', `http://127.0.0.1:${port}`, '--model', 'm', '--sweep', '1,2',
    '--step-requests', '2'], 'refused-sweep');
  assert.equal(s.code, 1, s.stderr);
  assert.match(s.stderr, /no request succeeded/);
  assert.ok(s.json, 'results.json is written all the same');
  // one success is enough: not an error
  const ok = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--requests', '1',
    '--output-len', '2'], 'one-ok');
  assert.equal(ok.code, 0, ok.stderr);
});

test('open loop with Poisson arrivals and the chat API', async () => {
  const r = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--rate', '200',
    '--requests', '40', '--api', 'chat', '--output-len', '5', '--input-len', '10', '--shared-prefix', '20',
    '--groups', '2'], 'rate');
  assert.equal(r.code, 0, r.stderr);
  checkSummary(r.json.summary, r.json.records);
  assert.equal(r.json.summary.ok, 40);
  assert.ok(r.json.records.every((q) => q.input_tokens === 30));
  const starts = r.json.records.map((q) => q.start_ms).sort((a, b) => a - b);
  assert.ok(starts.at(-1) > 50, 'arrivals are spread out, not sent at once');
});

test('--vs sends the same items to both endpoints and reports ratios', async () => {
  const r = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--vs', `http://127.0.0.1:${fakes[1]}`,
    '--model', 'm', '--concurrency', '2', '--requests', '10', '--output-len', '6', '--input-len',
    'uniform:5:50'], 'vs');
  assert.equal(r.code, 0, r.stderr);
  const j = r.json;
  checkSummary(j.summary, j.records.filter((q) => q.target === 0));
  checkSummary(j.summary_vs, j.records.filter((q) => q.target === 1));
  const items = (t) => j.records.filter((q) => q.target === t)
    .map((q) => `${q.item}:${q.input_tokens}`).sort();
  assert.deepEqual(items(0), items(1));
  // the second fake waits 20 ms before its first token
  assert.ok(j.ratios.ttft_p50 > 1.2, `ttft ratio ${j.ratios.ttft_p50}`);
  assert.match(r.stdout, /ratio/);
});

test('--sweep stops when the SLO fails and writes the report, plots and advice', async () => {
  // The fake serves any concurrency alike, so a loose SLO holds at every step; the second
  // fake waits 20 ms before its first token, so a 1 ms TTFT SLO fails at once.
  const r = await bench(['--url', `http://127.0.0.1:${fakes[1]}`, '--model', 'm', '--sweep', '1,2,4',
    '--step-requests', '8', '--output-len', '4', '--input-len', '8', '--slo-ttft', '5000',
    '--slo-tpot', '5000', '--recommend', '--target-rate', '50'], 'sweep');
  assert.equal(r.code, 0, r.stderr);
  const sw = r.json.sweep;
  assert.equal(sw.by, 'concurrency');
  assert.deepEqual(sw.steps.map((s) => s.load), [1, 2, 4].slice(0, sw.steps.length));
  for (const st of sw.steps) {
    assert.equal(st.summary.requests, 8);
    assert.equal(st.meets_slo, true);
  }
  assert.ok(sw.saturation && sw.saturation.load >= 1);
  assert.equal(r.json.records.length, sw.steps.length);
  for (const f of ['report.html', 'ttft.svg', 'tpot.svg', 'latency.svg', 'throughput.svg', 'recommend.md',
    'hpa.yaml', 'prometheus-adapter-rule.yaml', 'gateway.json']) assert.ok(existsSync(path.join(r.out, f)), f);
  const html = readFileSync(path.join(r.out, 'report.html'), 'utf8');
  assert.equal((html.match(/<svg /g) || []).length, 4);
  assert.match(html, /Saturation:/);
  // the recommendation is rendered, not shown as Markdown source
  assert.match(html, /<h2>Serving recommendation for m at http:\/\/127\.0\.0\.1:\d+<\/h2>/);
  assert.match(html, /<li>max concurrency: <strong>\d+<\/strong>/);
  assert.match(html, /<code>prometheus-adapter-rule\.yaml<\/code>/);
  assert.doesNotMatch(html, /\*\*|^#+ /m);
  // TPOT (a few ms) and TTFT (about 20 ms) lie far under the 5 s SLOs: the axes follow the
  // data and the SLO is named above them
  for (const f of ['tpot.svg', 'ttft.svg']) {
    const svg = readFileSync(path.join(r.out, f), 'utf8');
    assert.match(svg, />SLO 5000 ms \(above the chart\)</, f);
    assert.doesNotMatch(svg, />5000<\/text>|>5k<\/text>/, f);
  }
  // the adapter rule serves the metric the HPA asks for (deploy.test.mjs validates both)
  const rule = readFileSync(path.join(r.out, 'prometheus-adapter-rule.yaml'), 'utf8');
  assert.match(rule, /seriesQuery: 'vllm:num_requests_waiting\{/);
  assert.match(readFileSync(path.join(r.out, 'hpa.yaml'), 'utf8'),
    new RegExp(`name: ${rule.match(/ as: "([^"]+)"/)[1]}\n`));
  const gw = JSON.parse(readFileSync(path.join(r.out, 'gateway.json'), 'utf8'));
  assert.equal(gw.saturation.max_inflight, sw.saturation.load);

  // an impossible SLO: the first step fails, the sweep stops there, nothing to recommend
  const bad = await bench(['--url', `http://127.0.0.1:${fakes[1]}`, '--model', 'm', '--sweep',
    '--step-requests', '4', '--output-len', '3', '--slo-ttft', '1', '--recommend'], 'sweep-bad');
  assert.equal(bad.code, 0, bad.stderr);
  assert.match(bad.stdout, /recommendation: none: .*no step of the sweep met the SLO/);
  assert.ok(!existsSync(path.join(bad.out, 'hpa.yaml')));
  assert.ok(existsSync(path.join(bad.out, 'report.html')));
  assert.equal(bad.json.sweep.steps.length, 1);
  assert.equal(bad.json.sweep.saturation, null);
  assert.match(bad.json.sweep.stop_reason, /SLO failed/);
});

test('--input-len is exact with the server\'s /tokenize, and says so; approximate without', async () => {
  for (const api of ['completions', 'chat']) {
    const r = await bench(['--url', `http://127.0.0.1:${fakes[2]}`, '--model', 'm', '--api', api,
      '--concurrency', '3', '--requests', '12', '--input-len', 'uniform:5:60', '--output-len', '3'], `exact-${api}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /input lengths are exact: \d+ one-token words of the server's tokenizer/);
    assert.equal(r.json.config.input_len_exact, true);
    assert.ok(r.json.records.every((q) => q.input_tokens === q.input_expected), api);
    assert.ok(new Set(r.json.records.map((q) => q.input_tokens)).size > 3, 'lengths vary as drawn');
  }
  // fakes[0] has no /tokenize: the word approximation, said on stderr and in results.json
  const a = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--requests', '2',
    '--output-len', '2'], 'approx');
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stderr, /input lengths are approximate .*POST \/tokenize gave no token count/);
  assert.equal(a.json.config.input_len_exact, false);
});

test('a sweep sends fresh prompts each step (and its own shared prefixes), never a replay', async () => {
  const before = (await (await fetch(`http://127.0.0.1:${fakes[2]}/prompts`)).json()).length;
  const r = await bench(['--url', `http://127.0.0.1:${fakes[2]}`, '--model', 'm', '--sweep', '1,2,4',
    '--step-requests', '6', '--input-len', '12', '--output-len', '2', '--shared-prefix', '4',
    '--groups', '1'], 'sweep-fresh');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.sweep.steps.length, 3);
  const prompts = (await (await fetch(`http://127.0.0.1:${fakes[2]}/prompts`)).json()).slice(before);
  assert.equal(prompts.length, 18);
  assert.equal(new Set(prompts).size, 18, 'no prompt sent twice');
  const items = r.json.records.map((step) => new Set(step.map((q) => q.item)));
  for (let i = 0; i < 3; i++)
    for (let k = i + 1; k < 3; k++)
      assert.ok([...items[i]].every((x) => !items[k].has(x)), `steps ${i} and ${k} share items`);
  // within a step one shared prefix (--groups 1), across steps another
  const prefixes = [0, 1, 2].map((s) => new Set(prompts.slice(s * 6, s * 6 + 6)
    .map((p) => p.split(' ').slice(0, 4).join(' '))));
  for (const p of prefixes) assert.equal(p.size, 1);
  assert.equal(new Set(prefixes.map((p) => [...p][0])).size, 3);
});

test('multi-turn: a turn is sent after the previous one finished, with the history', async () => {
  const r = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--concurrency', '2',
    '--requests', '9', '--turns', '3', '--api', 'chat', '--input-len', '5', '--output-len', '4'], 'turns');
  assert.equal(r.code, 0, r.stderr);
  const byItem = new Map(r.json.records.map((q) => [q.item, q]));
  for (const q of r.json.records) {
    const turn = q.item % 3;
    // history: every earlier turn's 5 words + its 4-word reply, then 5 new words
    assert.equal(q.input_tokens, 5 + turn * 9);
    if (turn > 0) {
      const prev = byItem.get(q.item - 1);
      assert.ok(prev, `turn ${q.item - 1} ran`);
      assert.ok(q.start_ms >= prev.start_ms + prev.e2e_ms - 0.5, 'sent after the previous turn ended');
    }
  }
});

test('--dataset: ShareGPT prompts, reply lengths as max_tokens; a bad file is an error', async () => {
  const file = path.join(dir, 'sharegpt.json');
  writeFileSync(file, JSON.stringify([
    { conversations: [{ from: 'human', value: 'one two three four' }, { from: 'gpt', value: 'x'.repeat(40) }] },
    { conversations: [{ from: 'gpt', value: 'no human turn first' }] },
    { conversations: [{ from: 'human', value: 'five six' }, { from: 'gpt', value: 'y'.repeat(20) }] },
  ]));
  const r = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--concurrency', '2',
    '--requests', '10', '--dataset', file], 'dataset');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.summary.ok, 10);
  for (const q of r.json.records) {
    assert.ok([4, 2].includes(q.input_tokens), `input ${q.input_tokens}`);
    assert.equal(q.output_tokens, q.input_tokens === 4 ? 10 : 5);
  }
  writeFileSync(file, '{"not": "an array"}');
  const bad = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--dataset', file], 'dataset-bad');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^kiln: .*sharegpt\.json: expected a ShareGPT array/);
});

test('models mixed by weight, and a sweep by rate', async () => {
  const r = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'a=3,b=1', '--concurrency', '4',
    '--requests', '80', '--output-len', '2', '--input-len', '4'], 'mix');
  assert.equal(r.code, 0, r.stderr);
  const a = r.json.records.filter((q) => q.model === 'a').length;
  const b = r.json.records.filter((q) => q.model === 'b').length;
  assert.equal(a + b, 80);
  assert.ok(a > 2 * b && b > 5, `a ${a}, b ${b}`);
  assert.equal(r.json.by_model.a.requests, a);
  assert.equal(r.json.by_model.b.requests, b);
  assert.match(r.stdout, /by model/);
  const s = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--rate', '20', '--sweep',
    '20,40', '--step-requests', '10', '--output-len', '3'], 'sweep-rate');
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.json.sweep.by, 'rate');
  assert.deepEqual(s.json.sweep.steps.map((x) => x.load), [20, 40]);
  assert.ok(existsSync(path.join(s.out, 'throughput.svg')));
  assert.match(readFileSync(path.join(s.out, 'throughput.svg'), 'utf8'), /Throughput vs offered load/);
});

test('without --model, each endpoint is asked its model name (GET /v1/models)', async () => {
  const a = await startFake(['--model-id', 'alpha']);
  const b = await startFake(['--model-id', 'beta']);
  const r = await bench(['--url', `http://127.0.0.1:${a}`, '--vs', `http://127.0.0.1:${b}`, '--concurrency', '2',
    '--requests', '4', '--output-len', '2'], 'probe');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.json.records.filter((q) => q.target === 0).every((q) => q.model === 'alpha'));
  assert.ok(r.json.records.filter((q) => q.target === 1).every((q) => q.model === 'beta'));
  assert.match(r.stdout, /model alpha/);
});

test('the recommended gateway.json runs a kiln gateway that kiln bench can load through', async () => {
  const sw = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--sweep', '1,2',
    '--step-requests', '6', '--output-len', '3', '--slo-ttft', '5000', '--recommend'], 'gw-advice');
  assert.equal(sw.code, 0, sw.stderr);
  const cfg = JSON.parse(readFileSync(path.join(sw.out, 'gateway.json'), 'utf8'));
  const gwPort = await freePort();
  cfg.listen = { host: '127.0.0.1', port: gwPort };
  const cfgFile = path.join(dir, 'gw-from-advice.json');
  writeFileSync(cfgFile, JSON.stringify(cfg));
  const gw = spawn(kiln, ['gateway', '-c', cfgFile], { stdio: 'ignore' });
  procs.push(gw);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${gwPort}/health`)).ok);
  const r = await bench(['--url', `http://127.0.0.1:${gwPort}`, '--model', 'm', '--concurrency', '2',
    '--requests', '10', '--output-len', '4'], 'through-gateway');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.summary.ok, 10);
  assert.ok(r.json.records.every((q) => q.usage && q.output_tokens === 4));
});

test('connections are kept alive, and a server that closes them anyway costs no error', async () => {
  const port = await startFake(['--close-after']);
  const r = await bench(['--url', `http://127.0.0.1:${port}`, '--model', 'm', '--concurrency', '2',
    '--requests', '20', '--output-len', '3'], 'close-after');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.summary.ok, 20, JSON.stringify(r.json.records.find((q) => q.status !== 'ok')));
});

test('--duration alone bounds a run by time', async () => {
  const t0 = Date.now();
  const r = await bench(['--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--concurrency', '2',
    '--duration', '0.5', '--output-len', '3'], 'duration');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.json.summary.requests > 2, `${r.json.summary.requests} requests`);
  assert.equal(r.json.summary.ok, r.json.summary.requests);
  assert.ok(r.json.summary.duration_s < 1.5 && Date.now() - t0 < 5000);
  assert.ok(Math.max(...r.json.records.map((q) => q.start_ms)) < 600, 'nothing sent after the deadline');
});

test('Ctrl-C ends a run early with its results written; in a sweep it ends the sweep', async () => {
  for (const extra of [[], ['--sweep', '1,2,4,8']]) {
    const out = path.join(dir, `sigint-${extra.length}`);
    const p = spawn(kiln, ['bench', '--url', `http://127.0.0.1:${fakes[0]}`, '--model', 'm', '--concurrency', '2',
      '--duration', '30', '--output-len', '3', '--out', out, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    await new Promise((r) => setTimeout(r, 700));
    p.kill('SIGINT');
    const code = await new Promise((r) => p.on('exit', r));
    assert.equal(code, 0, stderr);
    assert.match(stderr, /interrupted/);
    const j = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8'));
    if (extra.length) {
      assert.equal(j.sweep.steps.length, 1);
      assert.match(j.sweep.stop_reason, /interrupted/);
    } else {
      assert.ok(j.summary.requests > 0 && j.summary.ok === j.summary.requests);
    }
  }
});
