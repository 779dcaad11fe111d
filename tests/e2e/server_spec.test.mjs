// kiln serve --spec ngram: the same answers as a server without speculation (greedy and seeded
// sampling, streaming, logprobs, stop strings, max_tokens, n > 1), vLLM's spec_decode metrics,
// the acceptance in the request log line, and a bad --spec refused at start.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { startServer, stopServer, haveStories, stories, kilnBin } from './serverutil.mjs';
import { needs } from './prereq.mjs';

const skip = needs(haveStories, 'needs ../shared/models/stories260K.gguf');

// Prompts whose continuations repeat what they hold, so drafts are proposed and kept.
const prompts = [
  'Once upon a time, there was a little girl named Lily. Lily liked to play. Once upon a time,',
  'Tom and Sue went to the park. Tom and Sue saw a dog. Tom and Sue',
  'The cat sat on the mat. The cat sat on the mat. The cat',
];

async function metrics(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const get = (name, label = '') => {
    const re = new RegExp(`^${name}\\{model_name="[^"]*"${label}\\} (\\S+)$`, 'm');
    const m = text.match(re);
    return m ? Number(m[1]) : null;
  };
  return { text, get };
}

async function streamText(client, body) {
  const stream = await client.completions.create({ ...body, stream: true });
  const text = [];
  let finish = [];
  for await (const c of stream) {
    for (const ch of c.choices) {
      text[ch.index] = (text[ch.index] || '') + ch.text;
      if (ch.finish_reason) finish[ch.index] = ch.finish_reason;
    }
  }
  return { text, finish };
}

describe('kiln serve --spec ngram', { skip }, () => {
  let plain, spec, cp, cs;
  before(async () => {
    const args = ['-m', stories, '-t', '1', '--ctx', '512', '--served-model-name', 'stories'];
    plain = await startServer(args);
    spec = await startServer([...args, '--spec', 'ngram:k=6,min=1,fixed']);
    cp = new OpenAI({ baseURL: `${plain.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    cs = new OpenAI({ baseURL: `${spec.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    const a = await stopServer(plain);
    const b = await stopServer(spec);
    assert.equal(a.code, 0, plain.log());
    assert.equal(b.code, 0, spec.log());
  });

  test('the same completions as without speculation, streamed or not', async () => {
    const bodies = [];
    for (const prompt of prompts) {
      bodies.push({ model: 'stories', prompt, max_tokens: 60, temperature: 0 });
      bodies.push({ model: 'stories', prompt, max_tokens: 40, temperature: 0.8, seed: 11, n: 2 });
      bodies.push({ model: 'stories', prompt, max_tokens: 30, temperature: 0, logprobs: 3 });
      bodies.push({ model: 'stories', prompt, max_tokens: 7, temperature: 0 });
    }
    for (const body of bodies) {
      const [a, b] = await Promise.all([cp.completions.create(body), cs.completions.create(body)]);
      assert.deepEqual(b.choices, a.choices, JSON.stringify(body));
      assert.deepEqual(b.usage, a.usage);
      const s = await streamText(cs, body);
      assert.deepEqual(s.text, a.choices.map((c) => c.text));
      assert.deepEqual(s.finish, a.choices.map((c) => c.finish_reason));
    }
  });

  test('stop strings end the text where they do without speculation', async () => {
    const base = await cp.completions.create({ model: 'stories', prompt: prompts[0], max_tokens: 60,
      temperature: 0 });
    const text = base.choices[0].text;
    assert.ok(text.length > 20, text);
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    const body = { model: 'stories', prompt: prompts[0], max_tokens: 60, temperature: 0, stop: [stop] };
    const [a, b] = await Promise.all([cp.completions.create(body), cs.completions.create(body)]);
    assert.equal(a.choices[0].finish_reason, 'stop');
    assert.deepEqual(b.choices, a.choices);
    assert.equal((await streamText(cs, body)).text[0], a.choices[0].text);
  });

  test('spec_decode metrics count drafts and acceptance; the log line has them', async () => {
    const m = await metrics(spec.url);
    const drafts = m.get('vllm:spec_decode_num_drafts_total');
    const tokens = m.get('vllm:spec_decode_num_draft_tokens_total');
    const accepted = m.get('vllm:spec_decode_num_accepted_tokens_total');
    assert.ok(drafts > 0 && tokens >= drafts, m.text);
    assert.ok(accepted > 0 && accepted < tokens, m.text);
    let perPos = 0;
    for (let i = 0; i < 6; i++) {
      const v = m.get('vllm:spec_decode_num_accepted_tokens_per_pos', `,position="${i}"`);
      assert.notEqual(v, null, `position ${i}`);
      perPos += v;
    }
    assert.equal(perPos, accepted);
    assert.equal(m.get('vllm:spec_decode_num_accepted_tokens_per_pos', ',position="6"'), null);
    assert.ok(m.get('vllm:spec_decode_num_accepted_tokens_per_pos', ',position="0"') >=
      m.get('vllm:spec_decode_num_accepted_tokens_per_pos', ',position="5"'));
    // the server without speculation has none of them
    assert.ok(!(await metrics(plain.url)).text.includes('spec_decode'));
    const lines = spec.log().split('\n').filter((l) => l.includes('serve: request id='));
    assert.ok(lines.length > 0);
    const kept = lines.map((l) => l.match(/spec_draft_tokens=(\d+) spec_accepted_tokens=(\d+) acceptance_pct=([\d.]+)/));
    assert.ok(kept.every((k) => k), lines.join('\n'));
    assert.ok(kept.some((k) => Number(k[2]) > 0));
    assert.ok(!plain.log().includes('spec_draft_tokens'));
  });
});

// kiln bench against a speculating server beside a plain one (--vs: the same prompts, requests
// alternating): the same output tokens, the spec line and results.json's spec_decode from the
// server's counters over the run (a fresh server: exactly its /metrics totals), none for the
// plain server, and the output tokens per SSE chunk.
test('kiln bench against a speculating server reports its acceptance', { skip }, async () => {
  const args = ['-m', stories, '-t', '1', '--ctx', '512', '--served-model-name', 'stories'];
  const plain = await startServer(args);
  const spec = await startServer([...args, '--spec', 'ngram:k=6,min=1,fixed']);
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-spec-bench-'));
  // input-grounded prompts (ShareGPT form), so drafts are kept even at temperature 1
  const dataset = path.join(dir, 'prompts.json');
  writeFileSync(dataset, JSON.stringify(prompts.map((p) => ({ conversations: [
    { from: 'human', value: `${p} ${p} ${p}` }, { from: 'gpt', value: 'x' }] }))));
  try {
    const r = await new Promise((resolve) => {
      execFile(kilnBin, ['bench', '--url', plain.url, '--vs', spec.url, '--quiet', '--out', dir,
        '--requests', '12', '--concurrency', '2', '--dataset', dataset, '--output-len', '40'],
      { timeout: 120000 }, (e, stdout, stderr) => resolve({ code: e ? e.code : 0, stdout, stderr }));
    });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('speculation (server counters'));
    assert.equal(lines.length, 1, r.stdout);
    const j = JSON.parse(readFileSync(path.join(dir, 'results.json'), 'utf8'));
    assert.equal(j.summary.spec_decode, null);
    assert.equal(j.summary.ok, 12);
    assert.equal(j.summary_vs.ok, 12);
    assert.equal(j.summary_vs.output_tokens, 12 * 40);
    assert.equal(j.summary_vs.output_tokens, j.summary.output_tokens);
    const sd = j.summary_vs.spec_decode;
    const m = await metrics(spec.url);
    assert.equal(sd.drafts, m.get('vllm:spec_decode_num_drafts_total'));
    assert.equal(sd.draft_tokens, m.get('vllm:spec_decode_num_draft_tokens_total'));
    assert.equal(sd.accepted_tokens, m.get('vllm:spec_decode_num_accepted_tokens_total'));
    assert.ok(sd.accepted_tokens > 0 && sd.accepted_tokens < sd.draft_tokens, JSON.stringify(sd));
    const near = (a, b) => Math.abs(a - b) <= 1e-7 * b; // results.json holds 8 digits
    assert.ok(near(sd.mean_accepted_length, 1 + sd.accepted_tokens / sd.drafts), JSON.stringify(sd));
    assert.ok(near(sd.tokens_per_chunk, j.summary_vs.output_tokens / j.summary_vs.chunks));
    console.log(lines[0]);
    assert.match(lines[0], new RegExp(`accepted ${sd.accepted_tokens} \\(`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
    assert.equal((await stopServer(plain)).code, 0, plain.log());
    assert.equal((await stopServer(spec)).code, 0, spec.log());
  }
});

test('a bad --spec is refused at start, naming the setting', () => {
  for (const [arg, want] of [['ngramm', /expected ngram/], ['ngram:k=99', /'k=99'/],
    ['ngram:min=5', /min=5 is above n=4/]]) {
    const r = spawnSync(kilnBin, ['serve', '--port', '0', '--spec', arg], { encoding: 'utf8', timeout: 30000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /kiln: --spec: speculation: /);
    assert.match(r.stderr, want);
  }
});

// The model draft sources behind the same API: the model's own first layers (layerskip) and a
// draft model (here the model itself: every greedy draft is kept) answer as the plain server
// does; a draft model of another vocabulary is refused at start, naming the file.
describe('kiln serve --spec layerskip / --draft-model', { skip }, () => {
  const args = ['-m', stories, '-t', '1', '--ctx', '512', '--served-model-name', 'stories'];
  test('the same greedy and seeded completions; the self-draft keeps every greedy draft', async () => {
    const servers = [await startServer(args), await startServer([...args, '--spec', 'layerskip:layers=2,k=4,fixed']),
      await startServer([...args, '--draft-model', stories, '--spec', 'draft:k=4,fixed'])];
    try {
      const answers = [];
      let m = null; // the self-draft's counters after the greedy requests
      for (const s of servers) {
        const c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
        const out = [];
        for (const [i, prompt] of prompts.entries()) {
          if (i === 2 && s === servers[2]) m = await metrics(s.url);
          const r = await c.completions.create({ model: 'stories', prompt, max_tokens: 40, temperature: i === 2 ? 0.8 : 0, seed: 3, logprobs: 2 });
          out.push({ choices: r.choices, usage: r.usage });
        }
        answers.push(out);
      }
      assert.deepEqual(answers[1], answers[0]);
      assert.deepEqual(answers[2], answers[0]);
      const drafted = m.get('vllm:spec_decode_num_draft_tokens_total');
      const accepted = m.get('vllm:spec_decode_num_accepted_tokens_total');
      assert.ok(drafted > 0, m.text);
      assert.ok(accepted >= 0.9 * drafted, `self-draft kept ${accepted} of ${drafted}`);
      assert.ok((await metrics(servers[1].url)).get('vllm:spec_decode_num_draft_tokens_total') > 0);
    } finally {
      for (const s of servers) assert.equal((await stopServer(s)).code, 0, s.log());
    }
  });

  test('a draft model of another vocabulary is refused at start', async () => {
    const other = `${process.env.TMPDIR || '/tmp'}/kiln-spec-other-${process.pid}.gguf`;
    spawnSync(kilnBin, ['model', 'make', '--out', other, '--vocab', '512'], { encoding: 'utf8' });
    const r = spawnSync(kilnBin, ['serve', ...args, '--port', '0', '--draft-model', other], { encoding: 'utf8', timeout: 30000 });
    spawnSync('rm', ['-f', other]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /kiln: .*kiln-spec-other-\d+\.gguf: draft vocabulary differs from the target's \(/);
  });
});
