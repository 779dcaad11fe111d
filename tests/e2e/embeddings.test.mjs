// POST /v1/embeddings on a real kiln serve (stories260K) through the official openai client:
// one unit-length vector per input, the same bits whatever the batch, base64 and float
// encodings equal, `dimensions` a renormalised prefix, token-id input, and the bad inputs
// refused with the parameter named.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, stopServer, postJson, stories, haveStories } from './serverutil.mjs';
import { needs } from './prereq.mjs';

const skip = needs(haveStories, `needs ${stories}`);
let srv, client;
const MODEL = 'stories260K';

before(async () => {
  if (skip) return;
  srv = await startServer(['-m', stories, '--ctx', '64', '-t', '2']);
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'none', maxRetries: 0 });
});
after(async () => { await stopServer(srv); });

const norm = (v) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));

test('the openai client gets one unit-length vector per input, in order', { skip }, async () => {
  const r = await client.embeddings.create({ model: MODEL, input: ['Once upon a time', 'The cat sat'] });
  assert.equal(r.object, 'list');
  assert.equal(r.model, MODEL);
  assert.equal(r.data.length, 2);
  for (const [i, d] of r.data.entries()) {
    assert.equal(d.object, 'embedding');
    assert.equal(d.index, i);
    assert.equal(d.embedding.length, 64); // stories260K's width
    assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-5, `norm ${norm(d.embedding)}`);
  }
  assert.notDeepEqual(r.data[0].embedding, r.data[1].embedding);
  assert.ok(r.usage.prompt_tokens > 4 && r.usage.total_tokens === r.usage.prompt_tokens);
});

test('the same input gives the same bits alone and in a batch; float equals base64', { skip }, async () => {
  const text = 'Lily went to the park with her mom';
  const alone = await postJson(`${srv.url}/v1/embeddings`, { input: text, encoding_format: 'float' });
  const batch = await postJson(`${srv.url}/v1/embeddings`, { input: ['a dog', text, 'a big red ball'], encoding_format: 'float' });
  assert.equal(alone.status, 200);
  assert.deepEqual(batch.json.data[1].embedding, alone.json.data[0].embedding);
  const b64 = await postJson(`${srv.url}/v1/embeddings`, { input: text, encoding_format: 'base64' });
  const buf = Buffer.from(b64.json.data[0].embedding, 'base64');
  const floats = Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4));
  assert.deepEqual(floats, alone.json.data[0].embedding.map((x) => Math.fround(x)));
  // token ids: the text's own tokens give its vector
  const tk = await postJson(`${srv.url}/tokenize`, { prompt: text });
  const ids = await postJson(`${srv.url}/v1/embeddings`, { input: tk.json.tokens, encoding_format: 'float' });
  assert.deepEqual(ids.json.data[0].embedding, alone.json.data[0].embedding);
});

test('dimensions keeps a prefix of the vector, scaled back to unit length', { skip }, async () => {
  const full = await client.embeddings.create({ model: MODEL, input: 'a happy little bird' });
  const cut = await client.embeddings.create({ model: MODEL, input: 'a happy little bird', dimensions: 16 });
  const v = cut.data[0].embedding, f = full.data[0].embedding.slice(0, 16);
  assert.equal(v.length, 16);
  assert.ok(Math.abs(norm(v) - 1) < 1e-5);
  const k = norm(f);
  for (let i = 0; i < 16; i++) assert.ok(Math.abs(v[i] - f[i] / k) < 1e-6);
});

test('bad embeddings requests are 400s naming the parameter; the server goes on', { skip }, async () => {
  const long = Array(200).fill('the cat').join(' '); // past --ctx 64
  const cases = [
    [{ input: '' }, 'input'],
    [{}, 'input'],
    [{ input: [] }, 'input'],
    [{ input: [1, 'x'] }, 'input'],
    [{ input: 'hi', encoding_format: 'int8' }, 'encoding_format'],
    [{ input: 'hi', dimensions: 65 }, 'dimensions'],
    [{ input: 'hi', dimensions: 0 }, 'dimensions'],
    [{ input: long }, 'input'],
    [{ input: [[999999]] }, 'input'],
  ];
  for (const [body, param] of cases) {
    const r = await postJson(`${srv.url}/v1/embeddings`, body);
    assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80) + ' ' + r.text);
    assert.equal(r.json.error.param, param, r.text);
    assert.equal(r.json.error.type, 'invalid_request_error');
  }
  const other = await postJson(`${srv.url}/v1/embeddings`, { model: 'nope', input: 'hi' });
  assert.equal(other.status, 404);
  const ok = await client.embeddings.create({ model: MODEL, input: 'still here' });
  assert.equal(ok.data.length, 1);
});
