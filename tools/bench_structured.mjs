// Structured output against llama.cpp's llama-server on the same file and schema:
//   node tools/bench_structured.mjs --model FILE --llama-server PATH [--rounds 3] [--tokens 64]
// Starts kiln serve and llama-server (2 threads each, one at a time so they never share the
// cores), sends the same prompt with the same nested JSON Schema (kiln: json_schema on
// /v1/completions; llama-server: json_schema on /completion) and without it, alternating the
// servers round by round. Reports generated tokens per second of wall time and per CPU-second
// of the server process (utime + stime from /proc, which a loaded machine distorts less),
// median and spread over the rounds, and validates every constrained output that ended with
// ajv (tests/e2e/node_modules). Machine-dependent: a benchmark, never a test.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../tests/e2e/package.json'));
const Ajv = require('ajv');

const args = Object.fromEntries(process.argv.slice(2).reduce((a, x, i, all) =>
  (x.startsWith('--') ? [...a, [x.slice(2), all[i + 1]]] : a), []));
const model = args.model, llama = args['llama-server'];
const rounds = Number(args.rounds || 3), tokens = Number(args.tokens || 64);
const kiln = args.kiln || path.join(here, '../kiln');
if (!model || !llama) {
  console.error('usage: node tools/bench_structured.mjs --model FILE --llama-server PATH [--rounds N] [--tokens N]');
  process.exit(2);
}

// the nested schema of kiln model bench-engine --grammar, with a bounded array
const schema = {
  type: 'array', minItems: 2, maxItems: 4, items: {
    type: 'object', additionalProperties: false, required: ['id', 'name', 'pos'], properties: {
      id: { type: 'integer' }, name: { type: 'string', maxLength: 16 },
      tags: { type: 'array', items: { type: 'string', maxLength: 8 }, maxItems: 3 },
      kind: { enum: ['a', 'b', 'c'] },
      pos: { type: 'object', required: ['x', 'y'], additionalProperties: false,
        properties: { x: { type: 'integer' }, y: { type: 'integer' } } },
    },
  },
};
const prompt = 'A list of the items in the shop, as JSON:';
const validate = new Ajv({ strict: false }).compile(schema);

const freePort = () => new Promise((res) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cpuSecs = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
};

async function start(kind) {
  const port = await freePort();
  const argv = kind === 'kiln'
    ? [kiln, ['serve', '-m', model, '--port', String(port), '-t', '2', '--ctx', '2048']]
    : [llama, ['-m', model, '--port', String(port), '-t', '2', '-c', '2048', '-np', '1']];
  const proc = spawn(argv[0], argv[1], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(`${url}/health`)).status === 200) return { proc, url }; } catch {}
    await sleep(200);
  }
  throw new Error(`${kind} did not start`);
}

async function one(kind, s, constrained, n = tokens) {
  const body = kind === 'kiln'
    ? { prompt, max_tokens: n, temperature: 0, ...(constrained ? { json_schema: schema } : { ignore_eos: true }) }
    : { prompt, n_predict: n, temperature: 0, cache_prompt: false, ...(constrained ? { json_schema: schema } : { ignore_eos: true }) };
  const c0 = cpuSecs(s.proc.pid), t0 = performance.now();
  const r = await fetch(`${s.url}${kind === 'kiln' ? '/v1/completions' : '/completion'}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const j = await r.json();
  const wall = (performance.now() - t0) / 1000, cpu = cpuSecs(s.proc.pid) - c0;
  const text = kind === 'kiln' ? j.choices[0].text : j.content;
  const got = kind === 'kiln' ? j.usage.completion_tokens : j.tokens_predicted;
  const ended = kind === 'kiln' ? j.choices[0].finish_reason === 'stop' : j.stop_type === 'eos';
  let valid = null;
  if (constrained && ended) { try { valid = validate(JSON.parse(text)); } catch { valid = false; } }
  return { n: got, wall, cpu, valid, ended, text };
}

const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const res = {};
for (let round = 0; round < rounds; round++) {
  for (const kind of round % 2 ? ['llama', 'kiln'] : ['kiln', 'llama']) {
    const s = await start(kind);
    await one(kind, s, false, 4); // warm-up: pages in the weights
    for (const constrained of [false, true]) {
      const x = await one(kind, s, constrained);
      const k = `${kind} ${constrained ? 'schema' : 'plain '}`;
      (res[k] ||= []).push(x);
      if (constrained && x.valid === false) console.log(`INVALID ${kind}: ${x.text}`);
    }
    s.proc.kill('SIGTERM');
    await new Promise((r) => s.proc.on('exit', r));
  }
}
console.log(`${path.basename(model)}, ${tokens} tokens at most, temperature 0, 2 threads, ${rounds} rounds alternated`);
for (const [k, xs] of Object.entries(res)) {
  const tps = xs.map((x) => x.n / x.wall), tpc = xs.map((x) => x.n / Math.max(x.cpu, 0.01));
  const v = xs.filter((x) => x.valid !== null);
  console.log(`${k}: ${med(xs.map((x) => x.n))} tokens; tok/s median ${med(tps).toFixed(2)} ` +
    `(${Math.min(...tps).toFixed(2)}-${Math.max(...tps).toFixed(2)}); tok per CPU-s median ${med(tpc).toFixed(2)} ` +
    `(${Math.min(...tpc).toFixed(2)}-${Math.max(...tpc).toFixed(2)})` +
    (k.includes('schema') ? `; ended ${xs.filter((x) => x.ended).length}/${xs.length}, valid ${v.filter((x) => x.valid).length}/${v.length}` : ''));
}
console.log(`sample: kiln ${res['kiln schema'][0].text.slice(0, 160)}`);
console.log(`sample: llama ${res['llama schema'][0].text.slice(0, 160)}`);
