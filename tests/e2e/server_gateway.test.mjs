// kiln gateway in front of two real kiln serve replicas: requests (streaming and not) go
// through, and the gateway reads the replicas' vLLM metrics (its own vllm:* aggregates).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { freePort, waitFor } from './gwutil.mjs';
import { startServer, stopServer, haveStories, stories, kilnBin } from './serverutil.mjs';
import { needs } from './prereq.mjs';

const skip = needs(haveStories, 'needs ../shared/models/stories260K.gguf');

describe('gateway over kiln serve', { skip }, () => {
  let a, b, gw, gwPort, dir, gwLog = '';
  before(async () => {
    a = await startServer(['-m', stories, '-t', '1', '--served-model-name', 'tiny']);
    b = await startServer(['-m', stories, '-t', '1', '--served-model-name', 'tiny']);
    dir = mkdtempSync(path.join(tmpdir(), 'kiln-srv-gw-'));
    gwPort = await freePort();
    writeFileSync(path.join(dir, 'gw.json'), JSON.stringify({
      listen: { host: '127.0.0.1', port: gwPort },
      models: [{ name: 'tiny', pools: [{ endpoints: [{ url: a.url }, { url: b.url }] }] }],
    }));
    gw = spawn(kilnBin, ['gateway', '-c', path.join(dir, 'gw.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
    gw.stderr.on('data', (d) => { gwLog += d; });
    // Ready to compare: both replicas up with fresh metrics (until its first scrape a replica
    // scores as half loaded, and an idle scraped one takes all the traffic).
    await waitFor(async () => {
      const m = await (await fetch(`http://127.0.0.1:${gwPort}/metrics`)).text();
      return [a, b].every((s) => m.includes(`kiln_gateway_endpoint_up{endpoint="${s.url}"} 1`) &&
        m.includes(`kiln_gateway_endpoint_metrics_fresh{endpoint="${s.url}"} 1`));
    }, 20000);
  });
  after(async () => {
    gw.kill('SIGTERM');
    await new Promise((r) => gw.on('exit', r));
    assert.equal((await stopServer(a)).code, 0, a.log());
    assert.equal((await stopServer(b)).code, 0, b.log());
    rmSync(dir, { recursive: true, force: true });
  });

  test('completions and chat through the gateway; its metrics see the replicas', async () => {
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${gwPort}/v1`, apiKey: 'x', maxRetries: 0 });
    const direct = new OpenAI({ baseURL: `${a.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const req = { model: 'tiny', prompt: 'Once upon a time', max_tokens: 16, temperature: 0 };
    const r = await client.completions.create(req);
    const d = await direct.completions.create(req);
    assert.equal(r.choices[0].text, d.choices[0].text);
    const runs = Array.from({ length: 8 }, async (_, i) => {
      const s = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: `story ${i}` }],
        max_tokens: 24, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
      let usage = null;
      for await (const c of s) if (c.usage) usage = c.usage;
      return usage.completion_tokens;
    });
    assert.deepEqual(await Promise.all(runs), Array(8).fill(24));
    // the gateway's count per endpoint (a replica's log may not have reached us yet)
    const m = await (await fetch(`http://127.0.0.1:${gwPort}/metrics`)).text();
    const served = (s) => m.split('\n').filter((l) => l.startsWith('kiln_gateway_requests_total{') &&
      l.includes(`endpoint="${s.url}"`)).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
    assert.ok(served(a) > 0 && served(b) > 0, `both replicas served requests: ${served(a)} + ${served(b)}`);
    assert.match(m, /vllm:num_requests_waiting/);
    assert.match(m, /vllm:kv_cache_usage_perc/);
  });
});
