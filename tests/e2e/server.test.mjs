// kiln serve driven by the official openai npm package: completions and chat, streaming and
// not, n > 1, stop strings, logprobs, usage, errors; /v1/models, /tokenize, /detokenize,
// /metrics; a client that disconnects mid-stream, one that disconnects mid-prefill; a drain on SIGTERM during 16 streams.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, existsSync, rmSync, readFileSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { waitFor } from './gwutil.mjs';
import { startServer, stopServer, postJson, haveStories, stories, kilnBin } from './serverutil.mjs';
import { needs } from './prereq.mjs';

const skip = needs(haveStories, 'needs ../shared/models/stories260K.gguf');

describe('kiln serve with stories260K', { skip }, () => {
  let s, client;
  before(async () => {
    s = await startServer(['-m', stories, '-t', '2', '--ctx', '256', '--served-model-name', 'stories']);
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    const r = await stopServer(s);
    assert.equal(r.code, 0, s.log());
  });

  test('models lists the served name', async () => {
    const m = await client.models.list();
    assert.equal(m.data.length, 1);
    assert.equal(m.data[0].id, 'stories');
    // the file's path on the server is not for clients: root is the served name, as vLLM's
    assert.equal(m.data[0].root, 'stories');
    assert.ok(!JSON.stringify(m).includes(path.dirname(stories)), JSON.stringify(m));
  });

  test('completions: greedy text, usage, finish_reason length', async () => {
    const r = await client.completions.create({ model: 'stories', prompt: 'Once upon a time',
      max_tokens: 24, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    assert.ok(r.choices[0].text.length > 10, r.choices[0].text);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 24);
    assert.ok(r.usage.prompt_tokens >= 4);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 24);
    assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');
    // the same request again, streamed: the same text, chunk by chunk
    const stream = await client.completions.create({ model: 'stories', prompt: 'Once upon a time',
      max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '', finish = null, usage = null, chunks = 0;
    for await (const c of stream) {
      chunks++;
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) {
        text += ch.text;
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    assert.equal(text, r.choices[0].text);
    assert.ok(chunks > 5);
    assert.equal(finish, 'length');
    assert.equal(usage.completion_tokens, 24);
  });

  test('completions: stop string ends the text before it', async () => {
    const base = await client.completions.create({ prompt: 'Once upon a time', max_tokens: 40, temperature: 0 });
    const t = base.choices[0].text;
    const stop = t.slice(12, 16);
    const cut = t.indexOf(stop);
    assert.ok(cut > 0 && stop.length === 4);
    const r = await client.completions.create({ prompt: 'Once upon a time', max_tokens: 40,
      temperature: 0, stop: [stop, 'zzzz'] });
    assert.equal(r.choices[0].text, t.slice(0, cut));
    assert.equal(r.choices[0].finish_reason, 'stop');
  });

  test('streaming: a stop string, and chat with n = 2 choices', async () => {
    const base = await client.completions.create({ prompt: 'Once upon a time', max_tokens: 40, temperature: 0 });
    const t = base.choices[0].text;
    const stop = t.slice(20, 23);
    const s1 = await client.completions.create({ prompt: 'Once upon a time', max_tokens: 40, temperature: 0,
      stop, stream: true });
    let text = '', finish = null;
    for await (const c of s1) for (const ch of c.choices) { text += ch.text; finish = ch.finish_reason || finish; }
    assert.equal(text, t.slice(0, t.indexOf(stop)));
    assert.equal(finish, 'stop');
    const s2 = await client.chat.completions.create({ messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8,
      n: 2, seed: 3, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
    const texts = ['', ''], fins = [null, null];
    let usage = null;
    for await (const c of s2) {
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) {
        texts[ch.index] += ch.delta.content || '';
        if (ch.finish_reason) fins[ch.index] = ch.finish_reason;
      }
    }
    assert.deepEqual(fins, ['length', 'length']);
    assert.ok(texts[0].length > 0 && texts[1].length > 0);
    assert.equal(usage.completion_tokens, 16);
  });

  test('completions: n > 1 with a seed, indices and determinism', async () => {
    const req = { prompt: 'Once upon a time', max_tokens: 12, temperature: 1, n: 3, seed: 7 };
    const a = await client.completions.create(req);
    const b = await client.completions.create(req);
    assert.deepEqual(a.choices.map((c) => c.index).sort(), [0, 1, 2]);
    assert.deepEqual(a.choices.map((c) => c.text), b.choices.map((c) => c.text));
    assert.equal(a.usage.completion_tokens, 36);
  });

  test('completions: list of prompts, token-id prompt, echo', async () => {
    const r = await client.completions.create({ prompt: ['Once upon a time', 'The cat'], max_tokens: 4,
      temperature: 0, n: 2 });
    assert.equal(r.choices.length, 4);
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
    assert.equal(r.choices[0].text, r.choices[1].text); // greedy: both choices of prompt 0 agree
    const tk = await postJson(`${s.url}/tokenize`, { prompt: 'Once upon a time' });
    assert.equal(tk.status, 200);
    assert.equal(tk.json.count, tk.json.tokens.length);
    assert.equal(tk.json.max_model_len, 256);
    const byIds = await client.completions.create({ prompt: tk.json.tokens, max_tokens: 8, temperature: 0 });
    const byText = await client.completions.create({ prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    assert.equal(byIds.choices[0].text, byText.choices[0].text);
    const e = await client.completions.create({ prompt: 'Once upon a time', max_tokens: 3, temperature: 0, echo: true });
    assert.ok(e.choices[0].text.startsWith('Once upon a time'));
    const dt = await postJson(`${s.url}/detokenize`, { tokens: tk.json.tokens });
    assert.equal(dt.status, 200);
    assert.equal(dt.json.prompt, 'Once upon a time');
  });

  test('usage: cached_tokens from the prefix cache; cache_salt isolates', async () => {
    const prompt = 'Once upon a time there was a little girl named Lily who loved to play in the park with her dog';
    const first = await client.completions.create({ prompt, max_tokens: 2, cache_salt: 'tenant-a' });
    const again = await client.completions.create({ prompt, max_tokens: 2, cache_salt: 'tenant-a' });
    const other = await client.completions.create({ prompt, max_tokens: 2, cache_salt: 'tenant-b' });
    assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
    assert.ok(again.usage.prompt_tokens_details.cached_tokens >= 16, JSON.stringify(again.usage));
    assert.equal(other.usage.prompt_tokens_details.cached_tokens, 0);
  });

  test('completions: logprobs', async () => {
    const r = await client.completions.create({ prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 3 });
    const lp = r.choices[0].logprobs;
    assert.equal(lp.tokens.length, 6);
    assert.equal(lp.token_logprobs.length, 6);
    assert.equal(lp.text_offset.length, 6);
    assert.equal(lp.tokens.join(''), r.choices[0].text);
    for (let i = 0; i < 6; i++) {
      assert.ok(lp.token_logprobs[i] <= 0);
      const top = Object.values(lp.top_logprobs[i]);
      assert.ok(top.length >= 1 && top.length <= 3);
      // greedy: the chosen token is the most likely one
      assert.ok(Math.abs(Math.max(...top) - lp.token_logprobs[i]) < 1e-4);
    }
  });

  test('chat: non-streaming and streaming agree; logprobs; usage', async () => {
    const msgs = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Tell me about a dog.' }];
    const r = await client.chat.completions.create({ model: 'stories', messages: msgs, max_tokens: 16, temperature: 0,
      logprobs: true, top_logprobs: 2 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.ok(r.choices[0].message.content.length > 0);
    assert.equal(r.usage.completion_tokens, 16);
    const content = r.choices[0].logprobs.content;
    assert.equal(content.length, 16);
    for (const c of content) {
      assert.ok(c.logprob <= 0 && Array.isArray(c.bytes) && c.top_logprobs.length === 2);
    }
    const stream = await client.chat.completions.create({ messages: msgs, max_tokens: 16, temperature: 0,
      stream: true, stream_options: { include_usage: true } });
    let text = '', role = null, usage = null;
    for await (const c of stream) {
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) {
        if (ch.delta.role) role = ch.delta.role;
        text += ch.delta.content || '';
      }
    }
    assert.equal(role, 'assistant');
    assert.equal(text, r.choices[0].message.content);
    assert.equal(usage.prompt_tokens, r.usage.prompt_tokens);
    // /tokenize of the same messages counts what the chat request used (BOS included)
    const tk = await postJson(`${s.url}/tokenize`, { model: 'stories', messages: msgs });
    assert.equal(tk.status, 200);
    assert.equal(tk.json.count, r.usage.prompt_tokens);
  });

  test('errors: 400 names the parameter, 404 unknown model, prompt over the context', async () => {
    await assert.rejects(client.completions.create({ prompt: 'x', temperature: 3 }),
      (e) => e.status === 400 && e.error.param === 'temperature');
    await assert.rejects(client.completions.create({ prompt: 'x', n: 1e9 }),
      (e) => e.status === 400 && e.error.param === 'n');
    await assert.rejects(client.completions.create({ prompt: 'x', max_tokens: -1 }),
      (e) => e.status === 400 && e.error.param === 'max_tokens');
    await assert.rejects(client.completions.create({ model: 'nope', prompt: 'x' }),
      (e) => e.status === 404 && e.error.param === 'model');
    await assert.rejects(client.completions.create({ prompt: 'Once upon a time '.repeat(100) }),
      (e) => e.status === 400 && /maximum context length/.test(e.message));
    await assert.rejects(client.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }),
      (e) => e.status === 400 && e.error.param === 'top_logprobs');
  });

  test('a client that disconnects mid-stream is aborted', async () => {
    const before = await (await fetch(`${s.url}/metrics`)).text();
    const aborts = (m) => Number(m.match(/finished_reason="abort",model_name="stories"\} (\d+)/)[1]);
    await new Promise((resolve, reject) => {
      const req = http.request(`${s.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } },
        (res) => {
          assert.equal(res.statusCode, 200);
          res.once('data', () => { req.destroy(); resolve(); });
        });
      req.on('error', () => {});
      req.end(JSON.stringify({ prompt: 'Once upon a time', max_tokens: 240, ignore_eos: true, stream: true }));
      setTimeout(() => reject(new Error('no data')), 10000);
    });
    await waitFor(async () => {
      const m = await (await fetch(`${s.url}/metrics`)).text();
      return aborts(m) > aborts(before) && /vllm:num_requests_running\{model_name="stories"\} 0/.test(m);
    }, 10000);
  });

  test('metrics: vLLM names with model_name', async () => {
    const m = await (await fetch(`${s.url}/metrics`)).text();
    for (const name of ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc',
      'vllm:prefix_cache_queries_total', 'vllm:prefix_cache_hits_total', 'vllm:num_preemptions_total',
      'vllm:prompt_tokens_total', 'vllm:generation_tokens_total'])
      assert.match(m, new RegExp(`^${name}\\{model_name="stories"\\} [0-9.e+-]+$`, 'm'), name);
    assert.match(m, /^vllm:cache_config_info\{block_size="16",num_gpu_blocks="\d+"/m);
    assert.match(m, /^vllm:request_success_total\{finished_reason="length",model_name="stories"\} [1-9]/m);
    for (const h of ['time_to_first_token_seconds', 'inter_token_latency_seconds', 'e2e_request_latency_seconds',
      'request_queue_time_seconds'])
      assert.match(m, new RegExp(`^vllm:${h}_bucket\\{le="\\+Inf",model_name="stories"\\} [1-9]`, 'm'), h);
    const gen = Number(m.match(/^vllm:generation_tokens_total\{[^}]*\} (\S+)/m)[1]);
    assert.ok(gen > 50);
  });
});

describe('kiln serve MODEL (the model as its argument, as vllm serve MODEL) with --api-key', () => {
  let s, model, dir;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'kiln-serve-'));
    model = path.join(dir, 'tiny.gguf');
    execFileSync(kilnBin, ['model', 'make', '--out', model, '--ctx', '512']);
    s = await startServer([model, '-t', '1', '--api-key', 'sekret']);
  });
  after(async () => {
    const r = await stopServer(s);
    rmSync(dir, { recursive: true, force: true });
    assert.equal(r.code, 0, s.log());
  });

  test('401 without the key, served with it', async () => {
    const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(bad.completions.create({ prompt: 'a', max_tokens: 2 }), (e) => e.status === 401);
    const r0 = await postJson(`${s.url}/v1/completions`, { prompt: 'a' });
    assert.equal(r0.status, 401);
    assert.equal(r0.json.error.type, 'authentication_error');
    const ok = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'sekret', maxRetries: 0 });
    assert.match((await ok.models.list()).data[0].id, /^tiny/); // the positional model is served
    const r = await ok.completions.create({ prompt: 'hello world', max_tokens: 8, ignore_eos: true });
    assert.equal(r.usage.completion_tokens, 8);
    const c = await ok.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 4,
      ignore_eos: true, n: 2 });
    assert.equal(c.choices.length, 2);
    const h = await fetch(`${s.url}/health`);
    assert.equal(h.status, 200); // health needs no key
  });
});

describe('kiln serve without -m', () => {
  test('makes, caches and serves a synthetic model, and says so', async () => {
    const cache = mkdtempSync(path.join(tmpdir(), 'kiln-xdg-'));
    const env = { ...process.env, XDG_CACHE_HOME: cache };
    for (let round = 0; round < 2; round++) { // the second start reuses the cached file
      const s = await startServer(['-t', '1'], { env, waitReady: false });
      // HTTP listens while the model is made and loaded: 503 "loading" until it is ready
      const seen = [];
      await waitFor(async () => {
        const h = await fetch(`${s.url}/health`);
        const body = await h.json();
        seen.push(`${h.status} ${body.status}`);
        if (h.status === 503 && round === 0) {
          const r = await postJson(`${s.url}/v1/completions`, { prompt: 'x' });
          if (r.status === 503) seen.push(`completions 503 ${r.headers.get('retry-after')} ${r.json.error.type}`);
          else if ((await fetch(`${s.url}/health`)).status !== 200) seen.push(`completions ${r.status} while loading`);
        }
        return h.status === 200;
      }, 60000, 20);
      if (round === 0) {
        /* 503 "loading" until ready (a fast machine may be ready before the first probe) */
        const first200 = seen.indexOf('200 ok');
        assert.ok(seen.slice(0, first200).every((x) => x === '503 loading' || x.startsWith('completions')),
          seen.join(', '));
        /* the API answers 503 while loading; a fast machine may finish loading before the
         * probe, so only a probe that saw a 200 is a failure */
        const probes = seen.filter((x) => x.startsWith('completions'));
        assert.ok(probes.every((x) => x === 'completions 503 1 service_unavailable'), seen.join(', '));
      }
      const r = await postJson(`${s.url}/v1/completions`, { prompt: 'hello', max_tokens: 4, ignore_eos: true });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.usage.completion_tokens, 4);
      assert.match(s.log(), /synthetic model/);
      assert.match(s.log(), /kiln serve -m MODEL.gguf/);
      assert.equal(/making a small synthetic model/.test(s.log()), round === 0);
      assert.equal((await stopServer(s)).code, 0);
    }
    assert.ok(existsSync(path.join(cache, 'kiln', 'default.gguf')));
    rmSync(cache, { recursive: true, force: true });
  });
});

describe('drain', { skip }, () => {
  test('SIGTERM during 16 streaming requests: all complete, exit 0', async () => {
    const s = await startServer(['-m', stories, '-t', '2', '--max-seqs', '8']);
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 });
    let started = 0;
    const runs = Array.from({ length: 16 }, async (_, i) => {
      const stream = await client.completions.create({ prompt: `Story ${i}: Once upon a time`, max_tokens: 64,
        ignore_eos: true, temperature: 1, seed: i, stream: true, stream_options: { include_usage: true } });
      started++;
      let finish = null, usage = null;
      for await (const c of stream) {
        if (c.usage) usage = c.usage;
        for (const ch of c.choices) if (ch.finish_reason) finish = ch.finish_reason;
      }
      return { finish, usage };
    });
    await waitFor(() => started >= 8, 20000, 10);
    // every request received (running, waiting or done) before SIGTERM: a drain stops
    // accepting, so a client still in the listen backlog would be refused, not what this tests
    await waitFor(async () => {
      const m = await (await fetch(`${s.url}/metrics`)).text();
      const sum = (name) => [...m.matchAll(new RegExp(`^vllm:${name}\\{[^}]*\\} (\\S+)`, 'gm'))]
        .reduce((a, x) => a + Number(x[1]), 0);
      return sum('num_requests_running') + sum('num_requests_waiting') + sum('request_success_total') >= 16;
    }, 20000, 5);
    s.proc.kill('SIGTERM');
    const results = await Promise.all(runs);
    for (const r of results) {
      assert.equal(r.finish, 'length');
      assert.equal(r.usage.completion_tokens, 64);
    }
    const ex = await s.exited;
    assert.equal(ex.code, 0, s.log());
    assert.match(s.log(), /draining/);
  });
});

// A client that goes away while its long prompt is being prefilled: the request is aborted
// at the next engine step (the prefill does not run to the end) and its KV blocks are freed.
describe('kiln serve: disconnect mid-prefill', () => {
  let dir, s;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'kiln-prefill-'));
    const model = path.join(dir, 'm.gguf');
    execFileSync(kilnBin, ['model', 'make', '--out', model, '--dim', '512', '--layers', '4', '--heads', '8',
      '--kv-heads', '8', '--ffn', '1536', '--vocab', '512', '--ctx', '4096', '--type', 'q8_0'], { stdio: 'ignore' });
    s = await startServer(['-m', model, '-t', '1', '--served-model-name', 'p', '--max-batch-tokens', '256']);
  });
  after(async () => {
    const r = await stopServer(s);
    rmSync(dir, { recursive: true, force: true });
    assert.equal(r.code, 0, s.log());
  });

  test('the request is aborted mid-prefill and its KV blocks are freed', async () => {
    const metric = (m, re) => Number((m.match(re) || [0, 'NaN'])[1]);
    const aborts = (m) => metric(m, /finished_reason="abort",model_name="p"\} (\d+)/);
    const computed = (m) => metric(m, /^kiln:computed_tokens_total\{model_name="p"\} (\S+)/m);
    const before = await (await fetch(`${s.url}/metrics`)).text();
    const N = 3500;
    const ids = Array.from({ length: N }, (_, i) => 3 + (i * 37) % 500);
    let gotData = false;
    await new Promise((resolve) => {
      const req = http.request(`${s.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } },
        (res) => res.on('data', () => { gotData = true; }));
      req.on('error', () => {});
      req.end(JSON.stringify({ model: 'p', prompt: ids, max_tokens: 16, stream: true }));
      // the prompt is being computed: wait until the server has processed some of it
      waitFor(async () => computed(await (await fetch(`${s.url}/metrics`)).text()) > computed(before), 20000, 20)
        .then(() => { req.destroy(); resolve(); });
    });
    assert.equal(gotData, false, 'no token was streamed before the disconnect');
    let m;
    await waitFor(async () => {
      m = await (await fetch(`${s.url}/metrics`)).text();
      return aborts(m) === aborts(before) + 1 && /vllm:num_requests_running\{model_name="p"\} 0\n/.test(m) &&
        /vllm:num_requests_waiting\{model_name="p"\} 0\n/.test(m);
    }, 20000);
    assert.match(m, /^vllm:kv_cache_usage_perc\{model_name="p"\} 0\n/m, 'every block freed');
    const done = computed(m) - computed(before);
    assert.ok(done < N, `the prefill stopped early (${done} of ${N} prompt tokens computed)`);
    console.log(`disconnect mid-prefill: ${done} of ${N} prompt tokens computed, then aborted; KV usage back to 0`);
  });

  // A long stream on its own server with extra args; resolves once its first bytes came.
  async function longStream(args) {
    const srv = await startServer(['-m', path.join(dir, 'm.gguf'), '-t', '1', '--served-model-name', 'p', ...args]);
    let bytes = 0, ended = false, text = '';
    const req = http.request(`${srv.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => { res.on('data', (d) => { bytes += d.length; text += d; }); res.on('end', () => { ended = true; }); res.on('error', () => { ended = true; }); });
    req.on('error', () => { ended = true; });
    req.end(JSON.stringify({ model: 'p', prompt: [1, 5, 9], max_tokens: 3000, ignore_eos: true, stream: true }));
    await waitFor(() => bytes > 0, 20000, 10);
    return { srv, ended: () => ended, text: () => text };
  }

  test('--drain-timeout: requests still running at the deadline are aborted with an error, then exit 0', async () => {
    const { srv, ended, text } = await longStream(['--drain-timeout', '1']);
    const plain = postJson(`${srv.url}/v1/completions`, { model: 'p', prompt: [1, 5, 9], max_tokens: 3000, ignore_eos: true });
    await waitFor(async () => /vllm:num_requests_running\{model_name="p"\} 2\n/.test(await (await fetch(`${srv.url}/metrics`)).text()), 10000);
    const t0 = Date.now();
    srv.proc.kill('SIGTERM');
    const ex = await srv.exited;
    const waited = Date.now() - t0;
    assert.equal(ex.code, 0, srv.log());
    assert.ok(waited >= 900 && waited < 8000, `exited ${waited} ms after SIGTERM`);
    assert.match(srv.log(), /drain timeout: aborting 2 requests/);
    await waitFor(() => ended(), 5000);
    // not a normal finish: the stream ends with an error event and no [DONE]...
    const events = text().split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    assert.notEqual(events.at(-1), '[DONE]');
    const last = JSON.parse(events.at(-1));
    assert.equal(last.error.code, 503, events.at(-1));
    assert.equal(last.error.type, 'service_unavailable');
    assert.ok(!events.some((e) => e !== '[DONE]' && JSON.parse(e).choices?.some((c) => c.finish_reason)), 'no finish_reason');
    // ...and a request that was not streamed gets an error status
    const r = await plain;
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.error.type, 'service_unavailable');
  });

  test('SIGINT twice: the second exits now (code 130) without waiting for the stream', async () => {
    const { srv } = await longStream([]);
    srv.proc.kill('SIGINT');
    await waitFor(() => /interrupt again to exit now/.test(srv.log()), 5000);
    const t0 = Date.now();
    srv.proc.kill('SIGINT');
    const ex = await srv.exited;
    assert.equal(ex.code, 130, srv.log());
    assert.ok(Date.now() - t0 < 5000);
    assert.match(srv.log(), /second interrupt: exiting now/);
  });
});

// A request that can never fit the KV cache is refused at admission (it was admitted and cut
// short: finish_reason "length" long before max_tokens); the context the server advertises
// is what the cache holds.
describe('kiln serve: a KV cache smaller than the context', { skip }, () => {
  test('prompt + max_tokens over the cache -> 400 max_tokens; what fits runs to the end', async () => {
    // stories260K: 640 bytes of f16 KV a token, so 1 MiB holds 102 blocks of 16 = 1632 tokens
    const s = await startServer(['-m', stories, '-t', '1', '--kv-mem', '1', '--served-model-name', 's']);
    try {
      const over = await postJson(`${s.url}/v1/completions`, { model: 's', prompt: 'Once', max_tokens: 1800, ignore_eos: true });
      assert.equal(over.status, 400, over.text);
      assert.equal(over.json.error.param, 'max_tokens');
      const fits = await postJson(`${s.url}/v1/completions`, { model: 's', prompt: 'Once', max_tokens: 1600, ignore_eos: true });
      assert.equal(fits.status, 200, fits.text);
      assert.equal(fits.json.usage.completion_tokens, 1600);
      assert.equal(fits.json.choices[0].finish_reason, 'length');
      // chat without max_tokens: what is left of the 1632 (not of the 2048)
      const chat = await postJson(`${s.url}/v1/chat/completions`, { model: 's', messages: [{ role: 'user', content: 'Hi' }], ignore_eos: true });
      assert.equal(chat.status, 200, chat.text);
      assert.equal(chat.json.usage.total_tokens, 1632);
      const m = await (await fetch(`${s.url}/v1/models`)).json();
      assert.equal(m.data[0].max_model_len, 1632);
      assert.match(s.log(), /the KV cache holds 1632 tokens, less than the context of 2048/);
    } finally {
      assert.equal((await stopServer(s)).code, 0, s.log());
    }
  });
});

// Non-finite logits (here: NaN and Inf in the embedding rows of two tokens) fail the request
// that hits them with 500 model_error (a stream: an error event and no [DONE]); the engine
// goes on serving every other request. Before: a 200 with empty text and mismatched logprob
// arrays.
describe('kiln serve: a model that produces NaN', () => {
  let dir, s;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'kiln-nan-'));
    const model = path.join(dir, 'nan.gguf');
    execFileSync(kilnBin, ['model', 'make', '--out', model, '--type', 'f32', '--vocab', '512'], { stdio: 'ignore' });
    const info = execFileSync(kilnBin, ['model', 'inspect', model]).toString();
    const data = Number(info.match(/data at offset (\d+)/)[1]);
    const emb = info.match(/token_embd\.weight\s+f32\s+(\d+) x \d+\s+(\d+)/);
    const dim = Number(emb[1]), at = data + Number(emb[2]);
    const f = readFileSync(model);
    for (let i = 0; i < dim; i++) {
      f.writeFloatLE(NaN, at + (300 * dim + i) * 4); // token 300: NaN
      f.writeFloatLE(Infinity, at + (301 * dim + i) * 4); // token 301: +Inf
    }
    writeFileSync(model, f);
    s = await startServer(['-m', model, '-t', '1', '--served-model-name', 'nan']);
  });
  after(async () => {
    const r = await stopServer(s);
    rmSync(dir, { recursive: true, force: true });
    assert.equal(r.code, 0, s.log());
  });

  test('NaN or Inf logits: 500 model_error for that request, the others are served', async () => {
    // the good requests must never sample tokens 300 or 301 themselves (2 of 512: a few % of
    // 8-token answers did, and failed as they should), nor end early at a sampled EOS
    const ask = (prompt, extra = {}) => postJson(`${s.url}/v1/completions`, { model: 'nan', prompt, max_tokens: 8, logprobs: 2, logit_bias: { 300: -100, 301: -100 }, ignore_eos: true, ...extra });
    const [bad, inf, good] = await Promise.all([ask([1, 300, 7]), ask([1, 301, 7]), ask([1, 5, 7])]);
    for (const r of [bad, inf]) {
      assert.equal(r.status, 500, r.text);
      assert.equal(r.json.error.type, 'model_error');
      assert.match(r.json.error.message, /non-finite logits/);
    }
    assert.equal(good.status, 200, good.text);
    assert.equal(good.json.usage.completion_tokens, 8);
    assert.equal(good.json.choices[0].logprobs.tokens.length, 8);
    // streamed: chunks, then an error event and no [DONE]
    const st = await postJson(`${s.url}/v1/completions`, { model: 'nan', prompt: [1, 300], max_tokens: 8, stream: true });
    const events = st.text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    assert.notEqual(events.at(-1), '[DONE]', st.text);
    assert.equal(JSON.parse(events.at(-1)).error.type, 'model_error');
    const again = await ask([1, 5, 7]);
    assert.equal(again.status, 200, again.text);
    const m = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(m, /vllm:request_success_total\{finished_reason="error",model_name="nan"\} 3\n/);
  });
});

// The model file on disk is hostile too. A FIFO given as -m used to hang the loader (and then
// SIGTERM could not stop the server); a file truncated while it is served used to kill the
// process with SIGBUS. Now: refused at once; the requests that hit the vanished pages fail
// with 500 model_error, /health says 503, and the server still shuts down cleanly.
describe('kiln serve: model files that change or are not files', () => {
  let dir;
  before(() => { dir = mkdtempSync(path.join(tmpdir(), 'kiln-file-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('-m FIFO: refused at once, exit 1', async () => {
    const fifo = path.join(dir, 'fifo.gguf');
    execFileSync('mkfifo', [fifo]);
    const s = await startServer(['-m', fifo, '-t', '1'], { waitReady: false });
    const ex = await Promise.race([s.exited, new Promise((r) => setTimeout(() => r(null), 10000))]);
    if (!ex) s.proc.kill('SIGKILL');
    assert.ok(ex, `still running 10 s later:\n${s.log()}`);
    assert.equal(ex.code, 1, s.log());
    assert.match(s.log(), /fifo\.gguf: not a regular file/);
  });

  test('truncated while served: 500 model_error, /health 503, clean exit', async () => {
    const model = path.join(dir, 'm.gguf');
    execFileSync(kilnBin, ['model', 'make', '--out', model, '--type', 'f32'], { stdio: 'ignore' });
    const s = await startServer(['-m', model, '-t', '1', '--served-model-name', 'm']);
    try {
      const ok = await postJson(`${s.url}/v1/completions`, { model: 'm', prompt: [1, 5, 7], max_tokens: 3 });
      assert.equal(ok.status, 200, ok.text);
      truncateSync(model, 8192); // the tensor data now lies past the end of the file
      const r = await postJson(`${s.url}/v1/completions`, { model: 'm', prompt: [1, 5, 7], max_tokens: 3 });
      assert.equal(r.status, 500, r.text);
      assert.equal(r.json.error.type, 'model_error');
      assert.match(r.json.error.message, /model file changed on disk/);
      const h = await fetch(`${s.url}/health`);
      assert.equal(h.status, 503);
      assert.equal((await h.json()).status, 'failed');
      const again = await postJson(`${s.url}/v1/completions`, { model: 'm', prompt: [1, 5, 7], max_tokens: 3 });
      assert.equal(again.status, 503, again.text);
    } finally {
      assert.equal((await stopServer(s)).code, 0, s.log());
    }
    assert.match(s.log(), /the model file changed on disk while it was being served/);
  });
});
