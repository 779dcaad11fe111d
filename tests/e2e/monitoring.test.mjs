// /metrics of kiln serve and kiln gateway pass `promtool check metrics` and carry the process
// figures; deploy/monitoring: every PromQL expression of the Grafana dashboard and of the alert rules
// parses (promtool check rules, Debian's prometheus package), and names only metrics that a
// real kiln serve and a real kiln gateway export: both are scraped here after the events
// that create their counters (picks, retries, ejections, rate limits, client cancels,
// fallbacks, sheds; fake replicas fail or hold requests on purpose).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { root } from './serverutil.mjs';
import { Replica, startGateway, cleanup, skipReason, slowModel } from './gwreal.mjs';
import { freePort, waitFor } from './gwutil.mjs';

const mon = path.join(root, 'deploy', 'monitoring');
const havePromtool = spawnSync('promtool', ['--version']).status === 0;
const skip = skipReason || (!havePromtool && 'needs promtool (apt-get install prometheus)');

const dashboard = JSON.parse(fs.readFileSync(path.join(mon, 'kiln-dashboard.json'), 'utf8'));
const rule = YAML.parse(fs.readFileSync(path.join(mon, 'prometheusrule.yaml'), 'utf8'));
const panels = dashboard.panels.filter((p) => p.type !== 'row');
const dashExprs = panels.flatMap((p) => p.targets.map((t) => ({ title: p.title, expr: t.expr })));
const ruleExprs = rule.spec.groups.flatMap((g) => g.rules.map((r) => ({ title: r.alert || r.record, expr: r.expr })));
const records = new Set(rule.spec.groups.flatMap((g) => g.rules.filter((r) => r.record).map((r) => r.record)));

// Grafana's variables, as Grafana would fill them in
const filled = (e) => e.replaceAll('$__rate_interval', '1m').replaceAll('$namespace', '.*');

// The metric names an expression reads: identifiers left once strings, label matchers,
// grouping clauses, ranges and function calls are taken out.
const keywords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or',
  'unless', 'bool', 'offset', 'e', 'inf', 'nan']);
function metricNames(expr) {
  const e = filled(expr).replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, ' ').replace(/\[[^\]]*\]/g, ' ');
  const names = new Set();
  for (const m of e.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (m[2] || keywords.has(m[1].toLowerCase())) continue;
    names.add(m[1]);
  }
  return names;
}

// Names a Prometheus text exposition provides (histograms: _bucket, _sum and _count too).
function exposed(text) {
  const names = new Set();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)/.exec(line);
    if (t && (t[2] === 'histogram' || t[2] === 'summary')) {
      for (const s of ['', '_bucket', '_sum', '_count']) names.add(t[1] + s);
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (m) names.add(m[1]);
  }
  return names;
}

// What `promtool check metrics` finds in an exposition, but for the one lint Kiln keeps on
// purpose: the colon of vLLM's names (vllm:*, and kiln:* beside them), which routers written
// for vLLM read.
function promtoolProblems(text) {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 3) return [`promtool exit ${r.status}: ${r.stderr}`];
  return (r.stdout + r.stderr).split('\n').filter((l) => l.trim() &&
    !/^(vllm|kiln):\S+ metric names should not contain ':'$/.test(l));
}

let tmp;
before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-mon-')); });
after(() => { fs.rmSync(tmp, { recursive: true, force: true }); cleanup(); });

test('the dashboard covers serve and gateway, every panel has a query', () => {
  const titles = panels.map((p) => p.title).join('\n');
  for (const want of ['Requests', 'Tokens', 'Time to first token', 'Time per output token', 'End-to-end',
    'Queue and running', 'KV cache', 'Prefix cache hit rate', 'Preemptions', 'Errors by status',
    'Endpoint health', 'Picks', 'Ejections', 'Sheds, fallbacks', 'Engine step time', 'Tokens per step',
    'Compute workers busy', 'CPU', 'Resident memory', 'Open file descriptors']) assert.match(titles, new RegExp(want));
  for (const p of panels) assert.ok(p.targets.length > 0 && p.targets.every((t) => t.expr), p.title);
  const alerts = ruleExprs.map((r) => r.title);
  for (const a of ['KilnReplicaDown', 'KilnSaturated', 'KilnHighErrorRatio', 'KilnTTFTBudgetBurnFast'])
    assert.ok(alerts.includes(a), a);
});

test('every PromQL expression parses (promtool check rules)', { skip }, () => {
  // the dashboard's queries as recording rules, the alert rules as they are
  const groups = [{ name: 'dashboard', rules: dashExprs.map((d, i) => ({ record: `kiln_dashboard:expr_${i}`, expr: filled(d.expr) })) },
    ...rule.spec.groups];
  const file = path.join(tmp, 'rules.yaml');
  fs.writeFileSync(file, YAML.stringify({ groups }));
  const r = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`SUCCESS: ${dashExprs.length + ruleExprs.length} rules found`));
  // and promtool does catch a broken one
  fs.writeFileSync(file, YAML.stringify({ groups: [{ name: 'x', rules: [{ record: 'x', expr: 'sum(rate(x[5m])' }] }] }));
  assert.notEqual(spawnSync('promtool', ['check', 'rules', file]).status, 0);
});

test('the expressions name only metrics a real kiln serve and kiln gateway export', { skip }, async () => {
  // a slow model, so that a long stream holds its replica while the gateway is probed
  const serve = await new Replica(['--served-model-name', 'main'], { model: slowModel() }).start();
  const fakes = [];
  const fake = async (...args) => {
    const port = await freePort();
    const p = spawn(process.execPath, [path.join(root, 'tests/e2e/fake_replica.mjs'), String(port), ...args],
      { stdio: 'ignore' });
    fakes.push(p);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`)).ok);
    return `http://127.0.0.1:${port}`;
  };
  const failing = await fake('--mode', '500');
  const slowSmall = await fake('--delay-ms', '400');
  const gw = await startGateway({
    models: [
      { name: 'main', fallback: 'small', pools: [{ endpoints: [{ url: serve.url }, { url: failing }] }] },
      { name: 'small', pools: [{ endpoints: [{ url: slowSmall }] }] }],
    tenants: [{ name: 't', api_keys: ['k'] }, { name: 'slow', api_keys: ['s'], requests_per_min: 1 }],
    saturation: { max_inflight: 1 },
    queue: { max: 1, max_wait_ms: 300 },
    health: { interval_ms: 60000, eject_ms: 60000 },
  });
  // every endpoint up first: the failing one must take (and fail) requests below, not come
  // up later and take the one meant to fall back (seen on a loaded machine)
  await waitFor(async () => (await (await fetch(`${gw.url}/health`)).json()).endpoints_up === 3);
  const post = (key, body, signal) => fetch(`${gw.url}/v1/completions`, { method: 'POST', signal,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(body) });
  const open = [];
  try {
    // picks, requests, a retry and an ejection (the failing replica answers 500)
    for (let i = 0; i < 4; i++) await (await post('k', { model: 'main', prompt: 'hi', max_tokens: 2 })).text();
    // a rate limit
    await (await post('s', { model: 'main', prompt: 'hi', max_tokens: 2 })).text();
    assert.equal((await post('s', { model: 'main', prompt: 'hi', max_tokens: 2 })).status, 429, 'rate limit');
    // a client that goes away mid-stream
    const ac = new AbortController();
    const cancelled = await post('k', { model: 'small', prompt: 'hi', max_tokens: 5, stream: true }, ac.signal);
    await cancelled.body.getReader().read();
    ac.abort();
    await waitFor(async () => /kiln_gateway_client_cancels_total/.test(await gw.metrics()));
    // main's replica held by a long stream: the next request falls back to small, the one
    // after finds both saturated and is shed from the queue
    const hold = await post('k', { model: 'main', prompt: 'hi', max_tokens: 1500, ignore_eos: true, stream: true });
    const reader = hold.body.getReader();
    open.push(reader);
    await reader.read();
    const fb = await post('k', { model: 'main', prompt: 'hi', max_tokens: 5, stream: true });
    assert.equal(fb.headers.get('x-kiln-fallback'), 'small', (await gw.metrics()) + gw.log());
    open.push(fb.body.getReader());
    const shed = await post('k', { model: 'main', prompt: 'hi', max_tokens: 2 });
    assert.equal(shed.status, 429, `shed: ${await shed.text()}`);
    const serveText = await serve.metrics(), gwText = await gw.metrics();
    const names = new Set([...exposed(serveText), ...exposed(gwText), 'up', ...records]);
    // both expositions pass promtool's checks and carry the process figures
    for (const [who, text] of [['serve', serveText], ['gateway', gwText]]) {
      assert.deepEqual(promtoolProblems(text), [], who);
      for (const n of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_virtual_memory_bytes',
        'process_open_fds', 'process_max_fds', 'process_start_time_seconds']) {
        assert.match(text, new RegExp(`^# TYPE ${n} (counter|gauge)$`, 'm'), `${who}: ${n}`);
      }
    }
    for (const n of ['kiln_engine_step_seconds', 'kiln_engine_step_tokens']) {
      assert.match(serveText, new RegExp(`^# TYPE ${n} histogram$`, 'm'), n);
    }
    assert.ok(Number(/^kiln_engine_step_tokens_sum\{[^}]*\} (\S+)/m.exec(serveText)[1]) > 0);
    assert.ok(Number(/^kiln_worker_busy_seconds_total\{[^}]*\} (\S+)/m.exec(serveText)[1]) > 0);
    const missing = [];
    for (const { title, expr } of [...dashExprs, ...ruleExprs]) {
      for (const n of metricNames(expr)) if (!names.has(n)) missing.push(`${title}: ${n}`);
    }
    assert.deepEqual(missing, []);
    // and the check does catch a name Kiln does not export
    assert.ok(!names.has('vllm:time_per_output_token_seconds_bucket'));
  } finally {
    for (const r of open) r.cancel().catch(() => {});
    await gw.stop();
    await serve.stop();
    for (const p of fakes) p.kill('SIGKILL');
  }
});
