// LoRA adapters served by a real kiln serve (stories260K, random adapters from `kiln model
// make-lora`) through the official openai client: adapters named as the request's model and
// listed by /v1/models with their parent; requests on two adapters and the base model in one
// concurrent batch give the tokens each gives alone; --max-loras 1 over 3 adapters swaps them
// (LRU) and still gives each its own tokens; 16 requests on 8 adapters give the tokens each
// gives alone when run together and through preemption (a KV cache too small for them);
// vLLM's runtime load/unload endpoints behind the key, refused when off, confined to
// --lora-dir (traversal and symlinks out refused), a bad file a 400 naming the problem while
// the server keeps serving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, symlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { startServer, stopServer, postJson, stories, haveStories, kilnBin } from './serverutil.mjs';
import { metricSum, metricWith, waitFor } from './gwutil.mjs';
import { needs } from './prereq.mjs';

const skip = needs(haveStories, `needs ${stories}`);
const BASE = 'stories260K';
const KEY = 'sk-lora-test';
let dir, adir, outside, srv;

function makeLora(out, seed, rank = 8) {
  const r = spawnSync(kilnBin, ['model', 'make-lora', '--base', stories, '--out', out, '--rank', String(rank),
    '--seed', String(seed), '--std', '0.08'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(tmpdir(), 'kiln-lora-'));
  adir = path.join(dir, 'adapters');
  mkdirSync(adir);
  outside = path.join(dir, 'outside.gguf');
  for (const [i, n] of ['a', 'b', 'c'].entries()) makeLora(path.join(adir, `${n}.gguf`), i + 1);
  makeLora(path.join(adir, 'rank32.gguf'), 9, 32);
  makeLora(outside, 7);
  writeFileSync(path.join(adir, 'trunc.gguf'), readFileSync(path.join(adir, 'a.gguf')).subarray(0, 1000));
  symlinkSync(outside, path.join(adir, 'link.gguf'));
  srv = await startServer(['-m', stories, '--ctx', '128', '-t', '2', '--max-lora-rank', '16',
    ...['a', 'b', 'c'].flatMap((n) => ['--lora', `${n}=${path.join(adir, n + '.gguf')}`])]);
});
after(async () => {
  await stopServer(srv);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const client = (s, apiKey = 'none') => new OpenAI({ baseURL: `${s.url}/v1`, apiKey, maxRetries: 0 });
const PROMPTS = ['Once upon a time', 'The little dog', 'Lily and Tom went'];

// One completion's text and tokens (greedy, or seeded sampling), as the client reports them.
async function complete(c, model, prompt, seed, max_tokens = 24) {
  const r = await c.completions.create({ model, prompt, max_tokens, logprobs: 0,
    ...(seed === undefined ? { temperature: 0 } : { temperature: 0.9, seed }), ignore_eos: true });
  assert.equal(r.model, model);
  return { text: r.choices[0].text, tokens: r.choices[0].logprobs.tokens };
}

const cases = [];
for (const model of ['a', 'b', BASE])
  for (const [k, prompt] of PROMPTS.entries()) cases.push({ model, prompt, seed: k === 1 ? 42 + k : undefined });

let alone = null; // every case's answer, one at a time on the server with all adapters resident
async function aloneAnswers() {
  if (!alone) {
    alone = [];
    for (const x of cases) alone.push(await complete(client(srv), x.model, x.prompt, x.seed));
  }
  return alone;
}

test('/v1/models lists the base model and each adapter with its parent', { skip }, async () => {
  const list = await client(srv).models.list();
  const ids = list.data.map((m) => m.id);
  assert.deepEqual(ids, [BASE, 'a', 'b', 'c']);
  assert.equal(list.data[0].parent, null);
  for (const m of list.data.slice(1)) assert.equal(m.parent, BASE);
  const r = await postJson(`${srv.url}/v1/completions`, { model: 'd', prompt: 'hi' });
  assert.equal(r.status, 404);
  assert.equal(r.json.error.param, 'model');
});

test('two adapters and the base in one concurrent batch give the tokens each gives alone', { skip }, async () => {
  const want = await aloneAnswers();
  // the adapters change what the model says
  assert.notEqual(want[0].text, want[6].text);
  assert.notEqual(want[3].text, want[6].text);
  assert.notEqual(want[0].text, want[3].text);
  for (let round = 0; round < 2; round++) {
    const got = await Promise.all(cases.map((x) => complete(client(srv), x.model, x.prompt, x.seed)));
    assert.deepEqual(got, want);
  }
});

test('--max-loras 1 over 3 adapters swaps them (LRU) and each still gives its own tokens', { skip }, async () => {
  const want = await aloneAnswers();
  const cAlone = await complete(client(srv), 'c', PROMPTS[0]);
  const one = await startServer(['-m', stories, '--ctx', '128', '-t', '2', '--max-loras', '1',
    ...['a', 'b', 'c'].flatMap((n) => ['--lora', `${n}=${path.join(adir, n + '.gguf')}`])]);
  try {
    const loads = async () => metricWith(await (await fetch(`${one.url}/metrics`)).text(), 'kiln:lora_loads_total', {});
    const resident = async () => {
      const t = await (await fetch(`${one.url}/metrics`)).text();
      return ['a', 'b', 'c'].filter((n) => metricWith(t, 'kiln:lora_adapter_resident', { lora_name: n }) === 1);
    };
    assert.equal(await loads(), 1); // a, at start
    assert.deepEqual(await resident(), ['a']);
    // one at a time: b replaces a, c replaces b, a comes back
    assert.deepEqual(await complete(client(one), 'b', PROMPTS[0]), want[3]);
    assert.deepEqual(await resident(), ['b']);
    assert.deepEqual(await complete(client(one), 'c', PROMPTS[0]), cAlone);
    assert.deepEqual(await complete(client(one), 'a', PROMPTS[0]), want[0]);
    assert.equal(await loads(), 4);
    assert.deepEqual(await resident(), ['a']);
    // all at once: each request waits for its adapter's turn, the base model never waits
    const got = await Promise.all(cases.map((x) => complete(client(one), x.model, x.prompt, x.seed)));
    assert.deepEqual(got, want);
    const t = await (await fetch(`${one.url}/metrics`)).text();
    assert.match(t, /vllm:lora_requests_info\{max_lora="1",running_lora_adapters="[a-c]?",waiting_lora_adapters=""\} 1\d{9}(\.\d+)?\n/);
  } finally {
    const { code } = await stopServer(one);
    assert.equal(code, 0, one.log().slice(-3000)); // a clean drain: no sanitizer report, no leak
  }
});

// Issue 18's batch invariance through a real server: each of 16 requests on 8 adapters (ranks
// 4-16, two of them F16) gives the tokens it gives alone when all 16 run together, and again
// on a server whose KV cache holds 51 blocks (16 x ~70 tokens do not fit: sequences are
// preempted and recomputed), greedy and seeded alike.
test('16 requests on 8 adapters: the tokens each gives alone, together and through preemption', { skip }, async () => {
  const names = Array.from({ length: 8 }, (_, i) => `p${i}`);
  for (const [i, n] of names.entries()) {
    const r = spawnSync(kilnBin, ['model', 'make-lora', '--base', stories, '--out', path.join(adir, `${n}.gguf`),
      '--rank', String(4 + 4 * (i % 4)), '--seed', String(20 + i), '--std', '0.08', '--type', i % 4 === 3 ? 'f16' : 'f32',
      '--targets', i % 2 ? 'q,k,v,o,gate,up,down' : 'v,o,down,output'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  }
  const loras = names.flatMap((n) => ['--lora', `${n}=${path.join(adir, n + '.gguf')}`]);
  const openers = ['Once upon a time', 'The little dog', 'Lily and Tom went', 'One day a bird'];
  const who = ['Tim', 'Sue', 'Ben', 'Max'];
  const reqs = Array.from({ length: 16 }, (_, k) => ({ model: names[k % 8], prompt: `${openers[k % 4]} ${who[k >> 2]}`,
    seed: k % 3 === 0 ? 500 + k : undefined }));
  const run = (s, x) => complete(client(s), x.model, x.prompt, x.seed, 64);
  const preemptions = async (s) => metricSum(await (await fetch(`${s.url}/metrics`)).text(), 'vllm:num_preemptions_total');

  const roomy = await startServer(['-m', stories, '--ctx', '128', '-t', '2', '--kv-type', 'f32', ...loras]);
  // stories260K: 1280 bytes of f32 KV a token, so 1 MiB holds 51 blocks of 16 (816 tokens)
  const tight = await startServer(['-m', stories, '--ctx', '128', '-t', '2', '--kv-type', 'f32', '--kv-mem', '1', ...loras]);
  try {
    const alone = [];
    for (const x of reqs) alone.push(await run(roomy, x));
    for (const a of alone) assert.equal(a.tokens.length, 64);
    // the adapters change what the model says: most answers differ from the base model's
    let differ = 0;
    for (const [k, x] of reqs.entries()) differ += (await run(roomy, { ...x, model: BASE })).text !== alone[k].text;
    assert.ok(differ >= 12, `${differ} of 16 differ from the base model`);
    const together = await Promise.all(reqs.map((x) => run(roomy, x)));
    assert.deepEqual(together, alone);
    assert.equal(await preemptions(roomy), 0);
    const squeezed = await Promise.all(reqs.map((x) => run(tight, x)));
    assert.deepEqual(squeezed, alone);
    const pre = await preemptions(tight);
    assert.ok(pre > 0, 'the tight cache preempted nothing');
    console.log(`16 requests on 8 adapters: ${differ} of 16 differ from the base, ${pre} preemptions on the tight cache`);
  } finally {
    for (const s of [roomy, tight]) {
      const { code } = await stopServer(s);
      assert.equal(code, 0, s.log().slice(-3000));
    }
  }
});

test('runtime load/unload: off by default, behind the key, confined to --lora-dir', { skip }, async () => {
  // off: the paths do not exist
  const off = await postJson(`${srv.url}/v1/load_lora_adapter`, { lora_name: 'x', lora_path: path.join(adir, 'a.gguf') });
  assert.equal(off.status, 404);
  assert.match(off.json.error.message, /enable-lora-runtime-updates/);

  const rt = await startServer(['-m', stories, '--ctx', '128', '-t', '2', '--api-key', KEY, '--max-lora-rank', '16',
    '--enable-lora-runtime-updates', '--lora-dir', adir, '--max-loras', '2']);
  const auth = { authorization: `Bearer ${KEY}` };
  const load = (body, h = auth) => postJson(`${rt.url}/v1/load_lora_adapter`, body, h);
  const unload = (body, h = auth) => postJson(`${rt.url}/v1/unload_lora_adapter`, body, h);
  try {
    assert.equal((await load({ lora_name: 'x', lora_path: 'a.gguf' }, {})).status, 401);
    const ok = await load({ lora_name: 'x', lora_path: 'a.gguf' });
    assert.equal(ok.status, 200, ok.text);
    assert.match(ok.text, /Success: LoRA adapter 'x' added/);
    const list = await client(rt, KEY).models.list();
    assert.deepEqual(list.data.map((m) => [m.id, m.parent]), [[BASE, null], ['x', BASE]]);
    // the same file as a on the first server: the same tokens
    const want = await aloneAnswers();
    assert.deepEqual(await complete(client(rt, KEY), 'x', PROMPTS[0]), want[0]);
    // an absolute path inside the directory is fine too
    assert.equal((await load({ lora_name: 'y', lora_path: path.join(adir, 'b.gguf') })).status, 200);

    const refused = [
      [{ lora_name: 'x', lora_path: 'b.gguf' }, 'lora_name', /already been loaded/],
      [{ lora_name: BASE, lora_path: 'b.gguf' }, 'lora_name', /already been loaded/],
      [{ lora_name: 'z' }, 'lora_path', /must be provided/],
      [{ lora_path: 'b.gguf' }, 'lora_name', /must be provided/],
      [{ lora_name: 'a,b', lora_path: 'b.gguf' }, 'lora_name', /characters/],
      [{ lora_name: 'z', lora_path: '../outside.gguf' }, 'lora_path', /--lora-dir/],
      [{ lora_name: 'z', lora_path: outside }, 'lora_path', /--lora-dir/],
      [{ lora_name: 'z', lora_path: 'link.gguf' }, 'lora_path', /--lora-dir/],
      [{ lora_name: 'z', lora_path: `${adir}/../adapters/../outside.gguf` }, 'lora_path', /--lora-dir/],
      [{ lora_name: 'z', lora_path: 'missing.gguf' }, 'lora_path', /missing.gguf: No such file/],
      [{ lora_name: 'z', lora_path: 'trunc.gguf' }, 'lora_path', /^trunc.gguf: .*larger than the file/],
      [{ lora_name: 'z', lora_path: 'rank32.gguf' }, 'lora_path', /rank32.gguf: LoRA tensor blk\.0\.\S+ has rank 32/],
    ];
    for (const [body, param, re] of refused) {
      const r = await load(body);
      assert.equal(r.status, 400, JSON.stringify(body) + ' ' + r.text);
      assert.equal(r.json.error.type, 'invalid_request_error');
      assert.equal(r.json.error.param, param, JSON.stringify(body));
      assert.match(r.json.error.message, re);
      assert.ok(!r.json.error.message.includes(dir) || body.lora_path?.startsWith('/'), r.json.error.message);
    }
    assert.equal((await load('{"lora_name": "z", "lora_path": ')).status, 400);
    // still serving, with the adapters it had
    assert.deepEqual((await client(rt, KEY).models.list()).data.map((m) => m.id), [BASE, 'x', 'y']);
    assert.deepEqual(await complete(client(rt, KEY), 'x', PROMPTS[0]), want[0]);

    assert.equal((await unload({ lora_name: 'x' }, {})).status, 401);
    const un = await unload({ lora_name: 'x' });
    assert.equal(un.status, 200, un.text);
    const gone = await postJson(`${rt.url}/v1/completions`, { model: 'x', prompt: 'hi' }, auth);
    assert.equal(gone.status, 404);
    assert.equal(gone.json.error.param, 'model');
    assert.equal((await unload({ lora_name: 'x' })).status, 404);
    assert.equal((await unload({})).status, 400);
    // the name is free again
    assert.equal((await load({ lora_name: 'x', lora_path: 'c.gguf' })).status, 200);
    assert.deepEqual((await client(rt, KEY).models.list()).data.map((m) => m.id), [BASE, 'y', 'x']);
  } finally {
    const { code } = await stopServer(rt);
    assert.equal(code, 0, rt.log().slice(-3000));
  }
});

test('a bad --lora stops the start with the file named', { skip }, async () => {
  const s = await startServer(['-m', stories, '-t', '1', '--lora', `bad=${path.join(adir, 'trunc.gguf')}`], { waitReady: false });
  const { code } = await s.exited;
  assert.equal(code, 1);
  assert.match(s.log(), /trunc\.gguf: .*larger than the file/);
});
