// CORS on kiln serve and kiln gateway (--allowed-origins, the gateway's listen.allowed_origins):
// a browser's preflight is answered for an allowed origin (and before authentication: a
// preflight carries no key), actual responses carry Access-Control-Allow-Origin for an allowed
// origin and nothing for others, "*" is never combined with credentials, and without the
// option nothing changes. Raw node:http requests, so the Origin header is ours to set.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Replica, startGateway, cleanup, kilnBin, dir } from './gwreal.mjs';

const APP = 'https://app.example.com', DEV = 'http://localhost:5173', EVIL = 'https://evil.example';

// One request; resolves {status, headers, body}.
function send(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const r = http.request(url, { method, headers: body ? { 'content-type': 'application/json', ...headers } : headers },
      (res) => {
        let text = '';
        res.on('data', (d) => { text += d; });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
      });
    r.on('error', reject);
    r.end(body ? JSON.stringify(body) : undefined);
  });
}

function preflight(url, origin, requestHeaders = 'authorization, content-type, x-stainless-os') {
  return send(`${url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin,
    'access-control-request-method': 'POST', 'access-control-request-headers': requestHeaders } });
}

const chat = (stream = false) => ({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3,
  ignore_eos: true, stream });

function noCors(r) {
  for (const h of Object.keys(r.headers)) assert.ok(!h.startsWith('access-control-'), `${h}: ${r.headers[h]}`);
}

describe('CORS', () => {
  let listed, star, plain, gw;
  before(async () => {
    // assigned before start(), so after() stops a replica whose start failed half way
    listed = new Replica(['--allowed-origins', `${APP}, ${DEV}`, '--served-model-name', 'm']);
    star = new Replica(['--allowed-origins', '*', '--api-key', 'sk-test', '--served-model-name', 'm']);
    plain = new Replica(['--served-model-name', 'm']);
    for (const r of [listed, star, plain]) await r.start();
    gw = await startGateway({ listen: { allowed_origins: [APP] },
      models: [{ name: 'm', pools: [{ endpoints: [{ url: plain.url }] }] }] });
  });
  after(async () => { // whatever part of the setup ran: no process outlives the file
    for (const r of [listed, star, plain]) if (r) await r.stop();
    const g = gw ? await gw.stop() : null;
    cleanup();
    if (g) assert.equal(g.code, 0, gw.log());
  });

  for (const target of ['kiln serve', 'kiln gateway']) {
    const url = () => (target === 'kiln serve' ? listed.url : gw.url);

    test(`${target}: a preflight from an allowed origin is answered`, async () => {
      const r = await preflight(url(), APP);
      assert.equal(r.status, 204);
      assert.equal(r.headers['access-control-allow-origin'], APP);
      assert.match(r.headers['access-control-allow-methods'], /\bPOST\b/);
      assert.match(r.headers['access-control-allow-headers'], /authorization/i);
      assert.match(r.headers['access-control-allow-headers'], /x-stainless-os/i);
      assert.equal(r.headers['access-control-max-age'], '600');
      assert.match(r.headers.vary, /Origin/);
      assert.equal(r.headers['access-control-allow-credentials'], undefined);
    });

    test(`${target}: other origins get no CORS header, preflight or not`, async () => {
      const p = await preflight(url(), EVIL);
      assert.notEqual(p.status, 204);
      noCors(p);
      const r = await send(`${url()}/v1/chat/completions`, { method: 'POST', headers: { origin: EVIL }, body: chat() });
      assert.equal(r.status, 200, r.body); // served: CORS is the browser's to enforce
      noCors(r);
      const none = await send(`${url()}/v1/chat/completions`, { method: 'POST', body: chat() });
      assert.equal(none.status, 200);
      noCors(none);
    });

    test(`${target}: actual responses carry the header for an allowed origin, streams too`, async () => {
      const r = await send(`${url()}/v1/chat/completions`, { method: 'POST', headers: { origin: APP }, body: chat() });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.headers['access-control-allow-origin'], APP);
      assert.match(r.headers.vary, /Origin/);
      assert.match(r.headers['access-control-expose-headers'], /Retry-After/);
      assert.equal(JSON.parse(r.body).usage.completion_tokens, 3);
      const s = await send(`${url()}/v1/chat/completions`, { method: 'POST', headers: { origin: APP }, body: chat(true) });
      assert.equal(s.status, 200);
      assert.equal(s.headers['access-control-allow-origin'], APP);
      assert.match(s.body, /data: \[DONE\]/);
      const e = await send(`${url()}/v1/chat/completions`, { method: 'POST', headers: { origin: APP },
        body: { ...chat(), model: 'no-such-model' } });
      assert.equal(e.status, 404); // an error a page must be able to read
      assert.equal(e.headers['access-control-allow-origin'], APP);
    });
  }

  test('kiln serve: a second listed origin; the gateway allows only its own list', async () => {
    const s = await send(`${listed.url}/v1/models`, { headers: { origin: DEV } });
    assert.equal(s.headers['access-control-allow-origin'], DEV);
    const g = await send(`${gw.url}/v1/models`, { headers: { origin: DEV } });
    assert.equal(g.status, 200);
    noCors(g);
  });

  test('"*": any origin, never with credentials; the preflight needs no API key', async () => {
    const p = await preflight(star.url, EVIL);
    assert.equal(p.status, 204); // answered before the 401 a keyless request gets
    assert.equal(p.headers['access-control-allow-origin'], '*');
    assert.equal(p.headers['access-control-allow-credentials'], undefined);
    const denied = await send(`${star.url}/v1/chat/completions`, { method: 'POST', headers: { origin: EVIL }, body: chat() });
    assert.equal(denied.status, 401);
    assert.equal(denied.headers['access-control-allow-origin'], '*');
    const ok = await send(`${star.url}/v1/chat/completions`, { method: 'POST',
      headers: { origin: EVIL, authorization: 'Bearer sk-test' }, body: chat() });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], '*');
    assert.equal(ok.headers['access-control-allow-credentials'], undefined);
  });

  test('without --allowed-origins nothing changes', async () => {
    const p = await preflight(plain.url, APP);
    assert.equal(p.status, 405);
    noCors(p);
    const r = await send(`${plain.url}/v1/chat/completions`, { method: 'POST', headers: { origin: APP }, body: chat() });
    assert.equal(r.status, 200);
    noCors(r);
  });

  test('a list that is not origins is refused at start, naming the entry', async () => {
    const run = (args) => new Promise((resolve) => execFile(kilnBin, args, { timeout: 20000 },
      (e, stdout, stderr) => resolve({ code: e ? e.code : 0, stderr })));
    const s = await run(['serve', '--port', '0', '--allowed-origins', 'https://a.example/app']);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /--allowed-origins: 'https:\/\/a\.example\/app' is not an origin/);
    const w = await run(['serve', '--port', '0', '--allowed-origins', `*,${APP}`]);
    assert.equal(w.code, 1);
    assert.match(w.stderr, /'\*' must be alone/);
    const file = path.join(dir, 'cors-bad.json');
    writeFileSync(file, JSON.stringify({ listen: { port: 0, allowed_origins: ['*', APP] },
      models: [{ name: 'm', pools: [{ endpoints: [{ url: 'http://127.0.0.1:1' }] }] }] }));
    const g = await run(['gateway', file]);
    assert.equal(g.code, 1);
    assert.match(g.stderr, /listen\.allowed_origins: '\*' must be alone/);
  });
});
