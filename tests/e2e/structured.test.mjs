// Structured outputs through real kiln serve processes: the openai SDK's
// chat.completions.parse with a zod schema, vLLM's guided_* and llama-server's grammar /
// json_schema fields, with n > 1, logprobs and streaming; 400s naming the parameter for bad
// schemas, regexes and grammars (the server unaffected); a flood of distinct schemas held
// under --grammar-cache; and a property test: random JSON Schemas x models (stories260K, and
// random-weight models of a synthetic and of the Llama 3 vocabulary) x temperatures 0 and 1,
// every output that ends by EOS validated by ajv, none cut short except by max_tokens.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import Ajv from 'ajv';
import { startServer, stopServer, postJson, haveStories, stories, kilnBin, root } from './serverutil.mjs';
import { needs } from './prereq.mjs';
import { rng, randomSchema } from './schemagen.mjs';

const llama3Vocab = path.resolve(root, '../shared/vocab/ggml-vocab-llama3.gguf');
const skip = needs(haveStories && existsSync(llama3Vocab) && existsSync(kilnBin),
  'needs ../shared/models/stories260K.gguf, ../shared/vocab/ggml-vocab-llama3.gguf and ./kiln');

// Runs jobs with at most `width` in flight.
async function pool(jobs, width, run) {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) await run(jobs[next++]);
  }));
}

async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = text.match(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

describe('structured outputs', { skip }, () => {
  let dir, s, client, rnd, l3;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-structured-'));
    const make = (out, extra) => execFileSync(kilnBin, ['model', 'make', '--out', out, '--dim', '64',
      '--layers', '2', '--heads', '4', '--kv-heads', '4', '--ffn', '128', '--ctx', '1024', ...extra], { stdio: 'ignore' });
    make(path.join(dir, 'rnd.gguf'), ['--vocab', '512', '--seed', '11']);
    make(path.join(dir, 'l3.gguf'), ['--vocab-from', llama3Vocab, '--seed', '12']);
    [s, rnd, l3] = await Promise.all([
      startServer(['-m', stories, '-t', '1', '--ctx', '1024', '--served-model-name', 'stories', '--grammar-cache', '1']),
      startServer(['-m', path.join(dir, 'rnd.gguf'), '-t', '1', '--served-model-name', 'rnd']),
      startServer(['-m', path.join(dir, 'l3.gguf'), '-t', '1', '--served-model-name', 'l3']),
    ]);
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 });
  });
  after(async () => {
    await Promise.all([stopServer(s), stopServer(rnd), stopServer(l3)]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('chat.completions.parse with a zod schema', async () => {
    const Person = z.object({
      name: z.string().max(10),
      age: z.number().int().min(0).max(120),
      tags: z.array(z.enum(['happy', 'brave'])).max(3),
      pet: z.object({ kind: z.enum(['cat', 'dog']), lives: z.number().int().nullable() }).nullable(),
    });
    for (const temperature of [0, 1]) {
      const r = await client.chat.completions.parse({
        model: 'stories', messages: [{ role: 'user', content: 'Describe Lily.' }],
        response_format: zodResponseFormat(Person, 'person'), temperature, seed: 3, max_tokens: 300,
      });
      const m = r.choices[0].message;
      assert.equal(r.choices[0].finish_reason, 'stop', m.content);
      assert.ok(m.parsed, m.content);
      assert.deepEqual(Person.parse(JSON.parse(m.content)), m.parsed);
    }
  });

  test('json_object, guided_choice, guided_regex, grammar, n > 1, logprobs and streaming', async () => {
    const base = { model: 'stories', max_tokens: 200, temperature: 1, seed: 5 };
    const msgs = [{ role: 'user', content: 'Tell me a story.' }];
    const jo = await client.chat.completions.create({ ...base, messages: msgs, n: 3,
      response_format: { type: 'json_object' } });
    assert.equal(jo.choices.length, 3);
    for (const c of jo.choices) {
      if (c.finish_reason === 'stop') assert.equal(typeof JSON.parse(c.message.content), 'object');
      else assert.equal(c.finish_reason, 'length');
    }
    const ch = await client.completions.create({ ...base, prompt: 'Once upon a time', n: 4,
      guided_choice: ['Lily', 'Tom', 'the dog'] });
    for (const c of ch.choices) {
      assert.ok(['Lily', 'Tom', 'the dog'].includes(c.text), c.text);
      assert.equal(c.finish_reason, 'stop');
    }
    const rx = await client.completions.create({ ...base, prompt: 'Once upon a time',
      guided_regex: '[0-9]{3}-[a-z]{2,4}', logprobs: 2 });
    assert.match(rx.choices[0].text, /^[0-9]{3}-[a-z]{2,4}$/);
    assert.equal(rx.choices[0].finish_reason, 'stop');
    for (const lp of rx.choices[0].logprobs.token_logprobs) assert.ok(Number.isFinite(lp) && lp <= 0);
    // nested stars (catastrophic for a backtracking matcher) are an automaton like any other
    const ns = await client.completions.create({ ...base, prompt: 'Once', guided_regex: '((a|aa)*)*b' });
    assert.match(ns.choices[0].text, /^a*b$/);
    // chat logprobs under a schema: every sampled token had a finite probability
    const lj = await client.chat.completions.create({ ...base, messages: msgs, logprobs: true, top_logprobs: 2,
      response_format: { type: 'json_schema', json_schema: { name: 'b', schema: { type: 'boolean' } } } });
    assert.match(lj.choices[0].message.content, /^(true|false)$/);
    assert.equal(lj.choices[0].logprobs.content.map((t) => t.token).join(''), lj.choices[0].message.content);
    const gb = await client.chat.completions.create({ ...base, messages: msgs,
      grammar: 'root ::= "(" item ("," item){0,3} ")"\nitem ::= [a-z]{1,5} | "<" [0-9]{1,2} ">"\n' });
    assert.equal(gb.choices[0].finish_reason, 'stop', gb.choices[0].message.content);
    assert.match(gb.choices[0].message.content, /^\((([a-z]{1,5}|<[0-9]{1,2}>),?){1,4}\)$/);
    // streamed, n = 2: each choice's pieces join to a sentence of the language
    const stream = await client.completions.create({ ...base, prompt: 'Once', stream: true, n: 2,
      guided_json: { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 999 }, b: { enum: ['x', 'y'] } },
        required: ['a', 'b'], additionalProperties: false } });
    const text = ['', ''], finish = [null, null];
    for await (const ev of stream) {
      for (const c of ev.choices) {
        text[c.index] += c.text ?? '';
        finish[c.index] = c.finish_reason ?? finish[c.index];
      }
    }
    for (let i = 0; i < 2; i++) {
      assert.equal(finish[i], 'stop', text[i]);
      const v = JSON.parse(text[i]);
      assert.ok(Number.isInteger(v.a) && ['x', 'y'].includes(v.b), text[i]);
    }
    // max_tokens still cuts a constrained output
    const cut = await client.completions.create({ ...base, prompt: 'Once', max_tokens: 3,
      guided_json: { type: 'array', items: { type: 'integer' }, minItems: 50 } });
    assert.equal(cut.choices[0].finish_reason, 'length');
    assert.equal(cut.usage.completion_tokens, 3);
  });

  test('bad schemas, regexes and grammars: 400 naming the parameter, the server unaffected', async () => {
    const deep = '{"type":"array","items":'.repeat(10000) + '{}' + '}'.repeat(10000);
    let deepObj = {};
    for (let i = 0; i < 1000; i++) deepObj = { type: 'object', properties: { a: deepObj } };
    const cases = [
      [{ guided_json: { type: 'object', properties: { a: { not: {} } } } }, 'guided_json', /not/],
      [{ guided_json: { type: 'array', uniqueItems: true } }, 'guided_json', /uniqueItems/],
      [{ guided_json: deep }, 'guided_json', /depth|deep|nest/],
      [{ json_schema: deepObj }, 'json_schema', /depth|deep|nest/],
      [{ guided_json: '{"type": ' }, 'guided_json', /./],
      [{ guided_regex: '(a)\\1' }, 'guided_regex', /backreference/],
      [{ guided_regex: '((a{1000}){1000}){1000}' }, 'guided_regex', /too large|too complex|budget/],
      [{ guided_regex: '('.repeat(20) + 'a*' + ')*'.repeat(20) + '(b{1000}){1000}' }, 'guided_regex',
        /too large|too complex|budget/],
      [{ guided_grammar: 'root ::= root "a" | "b"\n' }, 'guided_grammar', /left recursion/],
      [{ guided_grammar: 'root ::= ([a-z]{1000}){1000}\n' }, 'guided_grammar', /too large|states/], // a million states
      [{ grammar: 'root ::= [a-z]{1000000}\n' }, 'grammar', /too large/],
      [{ grammar: 'root ::= x\n' }, 'grammar', /never defined/],
      [{ guided_choice: [] }, 'guided_choice', /array/],
      [{ guided_json: {}, guided_regex: 'a' }, 'guided_regex', /only one/],
    ];
    for (const [extra, param, msg] of cases) {
      const r = await postJson(`${s.url}/v1/completions`, { model: 'stories', prompt: 'x', max_tokens: 4, ...extra });
      assert.equal(r.status, 400, `${param}: ${r.text}`);
      assert.equal(r.json.error.param, param, r.text);
      assert.equal(r.json.error.type, 'invalid_request_error', r.text);
      assert.match(r.json.error.message, msg);
    }
    const r = await postJson(`${s.url}/v1/chat/completions`, { model: 'stories', max_tokens: 4,
      messages: [{ role: 'user', content: 'x' }],
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'number', multipleOf: 3 } } } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.param, 'response_format');
    assert.match(r.json.error.message, /multipleOf/);
    const ok = await client.completions.create({ model: 'stories', prompt: 'Once', max_tokens: 4 });
    assert.equal(ok.choices[0].finish_reason, 'length');
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
  });

  test('a flood of distinct schemas stays under --grammar-cache', async () => {
    const jobs = Array.from({ length: 120 }, (_, i) => ({ type: 'object', additionalProperties: false, required: [`k${i}`],
      properties: { [`k${i}`]: { type: 'string', enum: [`v${i}`, `w${i}`] } } }));
    await pool(jobs, 4, async (schema) => {
      const seed = Number(schema.required[0].slice(1)), max_tokens = 120;
      const res = await client.completions.create({ model: 'stories', prompt: 'Once', max_tokens, temperature: 1, seed, guided_json: schema });
      const c = res.choices[0];
      if (c.finish_reason === 'length') { // the JSON grammar allows some whitespace: cut only at max_tokens
        assert.equal(res.usage.completion_tokens, max_tokens, c.text);
        return;
      }
      assert.equal(c.finish_reason, 'stop', c.text);
      assert.ok(Object.keys(schema.properties).includes(Object.keys(JSON.parse(c.text))[0]), c.text);
    });
    const bytes = await metric(s.url, 'kiln:grammar_cache_bytes');
    const misses = await metric(s.url, 'kiln:grammar_cache_misses_total');
    assert.ok(bytes > 0 && bytes <= 1 << 20, `cache bytes ${bytes}`);
    assert.ok(misses >= 120, `misses ${misses}`);
  });

  test('property: random schemas x models x temperatures 0 and 1, validated by ajv', async () => {
    const ajv = new Ajv({ strict: false });
    const r = rng(2026);
    const N = 200, MAX = 160;
    const servers = [['stories', s], ['rnd', rnd], ['l3', l3]];
    let ended = 0, cut = 0;
    const jobs = [];
    for (let i = 0; i < N; i++) {
      const schema = randomSchema(r, 3);
      for (const [model, srv] of servers)
        for (const temperature of [0, 1]) jobs.push({ schema, model, srv, temperature, seed: i });
    }
    await pool(jobs, 6, async ({ schema, model, srv, temperature, seed }) => {
      const res = await postJson(`${srv.url}/v1/completions`, { model, prompt: 'Once upon a time',
        max_tokens: MAX, temperature, seed, guided_json: schema });
      assert.equal(res.status, 200, res.text);
      const c = res.json.choices[0], what = `${model} t=${temperature} ${JSON.stringify(schema)} -> ${c.text}`;
      if (c.finish_reason === 'length') { // cut only by max_tokens
        assert.equal(res.json.usage.completion_tokens, MAX, what);
        cut++;
        return;
      }
      assert.equal(c.finish_reason, 'stop', what);
      let v;
      assert.doesNotThrow(() => { v = JSON.parse(c.text); }, what);
      assert.ok(ajv.validate(schema, v), `${what}: ${ajv.errorsText()}`);
      ended++;
    });
    console.log(`# ${ended} of ${jobs.length} outputs ended by EOS and validated; ${cut} cut by max_tokens`);
    assert.ok(ended >= jobs.length * 0.8, `${ended} of ${jobs.length}`);
  });
});
