// POST /v1/embeddings on a BERT model: a random-weight `kiln model make --arch bert` file with
// the bge WordPiece vocab, served by a real kiln serve and asked through the official openai
// client. The vector matches the numpy float64 reference (tools/ref_forward.py) for the input's
// tokens, [CLS] ... [SEP] as the vocab says; inputs computed whole (up to the step's budget)
// give the same bits alone and batched; longer ones, completions and chat are 400s; the
// model is listed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { startServer, stopServer, postJson, kilnBin, root } from './serverutil.mjs';
import { needs } from './prereq.mjs';

const vocab = path.resolve(root, '../shared/vocab/ggml-vocab-bert-bge.gguf');
const skip = needs(existsSync(vocab), `needs ${vocab}`);
const MODEL = 'bert-e2e';
let dir, file, srv, client;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-bert-'));
  file = path.join(dir, `${MODEL}.gguf`);
  execFileSync(kilnBin, ['model', 'make', '--arch', 'bert', '--vocab-from', vocab, '--heads', '4',
    '--kv-heads', '4', '--ffn', '128', '--ctx', '128', '--std', '0.1', '-o', file]);
  // a step of 32 tokens: a bert input is computed in one step, so 32 is the longest input
  srv = await startServer(['-m', file, '--max-batch-tokens', '32', '-t', '2', '--kv-type', 'f32']);
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
});
after(async () => {
  await stopServer(srv);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const norm = (v) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
const haveNumpy = (() => {
  try { execFileSync('/usr/bin/python3', ['-c', 'import numpy'], { stdio: 'ignore' }); return true; } catch { return false; }
})();

test('the openai client gets the numpy reference vector of [CLS] text [SEP]', { skip }, async () => {
  const text = 'The quick brown fox jumps over the lazy dog';
  const tk = await postJson(`${srv.url}/tokenize`, { prompt: text });
  const ids = tk.json.tokens;
  assert.equal(ids[0], 101); // [CLS]
  assert.equal(ids[ids.length - 1], 102); // [SEP]
  const r = await client.embeddings.create({ model: MODEL, input: [text, 'a lazy dog'] });
  assert.equal(r.data.length, 2);
  assert.equal(r.usage.prompt_tokens, ids.length + 5); // [CLS] a lazy dog [SEP]
  const v = r.data[0].embedding;
  assert.equal(v.length, 64);
  assert.ok(Math.abs(norm(v) - 1) < 1e-5);
  if (!haveNumpy) return; // CI installs python3-numpy (tools/install-deps.sh)
  const out = execFileSync('/usr/bin/python3', [path.join(root, 'tools/ref_forward.py'), file, ...ids.map(String)]);
  const ref = out.toString().trim().split('\n').map((l) => Number(l.split(' ')[1]));
  assert.equal(ref.length, 64);
  const cos = v.reduce((a, x, i) => a + x * ref[i], 0) / norm(ref);
  assert.ok(cos > 1 - 1e-6, `cosine ${cos}`);
});

test('inputs up to the step budget: the same bits alone and batched; longer is a 400', { skip }, async () => {
  const texts = ['one two three four five six seven eight nine ten eleven twelve thirteen fourteen',
    'hello world', 'embeddings for search and retrieval', 'the cat sat on the mat'];
  const alone = [];
  for (const t of texts) alone.push((await client.embeddings.create({ model: MODEL, input: t })).data[0].embedding);
  const batch = await client.embeddings.create({ model: MODEL, input: texts });
  for (let i = 0; i < texts.length; i++) assert.deepEqual(batch.data[i].embedding, alone[i]);
  const long = Array(40).fill('word').join(' '); // 42 tokens with [CLS] and [SEP]
  const r = await postJson(`${srv.url}/v1/embeddings`, { input: long });
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error.param, 'input');
  assert.match(r.json.error.message, /maximum input length is 32 tokens/);
});

test('completions and chat are 400s naming the model; /v1/models lists it', { skip }, async () => {
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'hi' }),
    (e) => e.status === 400 && /embedding model/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e.status === 400 && e.param === 'model');
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
  const ok = await client.embeddings.create({ model: MODEL, input: 'still here' });
  assert.equal(ok.data.length, 1);
});
