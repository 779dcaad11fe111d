// kiln pull and `-m ORG/REPO:TAG` against a local fake hub (fake_hub.mjs): the huggingface_hub
// cache layout, llama.cpp's file choice, split models, resume after a dropped connection,
// 401/404/429, a wrong checksum, hostile names, offline mode. Every failure must leave no
// usable file in the cache: only a verified blob gets its name and a snapshot link.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFakeHub } from './fake_hub.mjs';
import { needs } from './prereq.mjs';
import { kilnBin, stories, haveStories, startServer, stopServer, postJson } from './serverutil.mjs';

let hub, tmp, tiny, tinyF32, split;

function run(args, env = {}) {
  return new Promise((resolve) => {
    const p = spawn(kilnBin, args, { env: { ...process.env, HF_ENDPOINT: hub.url,
      HF_HUB_CACHE: path.join(tmp, 'cache'), HF_TOKEN: '', HF_HUB_OFFLINE: '', ...env } });
    let out = '', err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => resolve({ code, out: out.trim(), err }));
  });
}

const repoDir = (repo) => path.join(tmp, 'cache', `models--${repo.replace('/', '--')}`);
const blobsOf = (repo) => {
  try { return fs.readdirSync(path.join(repoDir(repo), 'blobs')).sort(); } catch { return []; }
};
const snapshotFiles = (repo) => {
  const base = path.join(repoDir(repo), 'snapshots');
  try { return fs.readdirSync(base, { recursive: true }).map(String).sort(); } catch { return []; }
};

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-pull-'));
  const mk = (name, type) => {
    const p = path.join(tmp, name);
    execFileSync(kilnBin, ['model', 'make', '--out', p, '--type', type]);
    return fs.readFileSync(p);
  };
  tiny = mk('tiny-q8.gguf', 'q8_0');
  tinyF32 = mk('tiny-f32.gguf', 'f32');
  const parts = {};
  if (haveStories) {
    execFileSync(kilnBin, ['model', 'split', stories, path.join(tmp, 'st'), '--max-tensors', '20']);
    for (let i = 1; i <= 3; i++) {
      parts[`F32/stories260K-F32-0000${i}-of-00003.gguf`] =
        fs.readFileSync(path.join(tmp, `st-0000${i}-of-00003.gguf`));
    }
  }
  split = parts;
  hub = await startFakeHub({
    'test/tiny-GGUF': { files: {
      'README.md': Buffer.from('# tiny\n'),
      'mmproj-tiny-Q8_0.gguf': tinyF32, // a projector: never the model
      'tiny-F32.gguf': tinyF32,
      'tiny-Q8_0.gguf': tiny,
      'sub/dir/tiny-F32.gguf': tinyF32,
    } },
    'test/paged': { files: { 'a-F16.gguf': tinyF32, 'b-F32.gguf': tinyF32, 'c-Q6_K.gguf': tiny }, pageSize: 1 },
    'test/split': { files: split },
    'test/gated': { files: { 'g-Q8_0.gguf': tiny }, token: 'hf_good' },
    'test/old-name': { files: {}, renamedTo: 'test/tiny-GGUF' },
    'test/evil': { files: { 'ok-Q4_0.gguf': tiny }, listExtra: [
      { type: 'file', path: '../../../evil-Q8_0.gguf', size: 1, lfs: { oid: 'a'.repeat(64) } },
      { type: 'file', path: '/etc/evil-Q8_0.gguf', size: 1 }] },
    'test/badcommit': { files: { 'x-Q8_0.gguf': tiny }, commitHeader: '../../../../tmp/x' },
    'test/corrupt': { files: { 'c-Q8_0.gguf': tiny } },
    'test/flaky': { files: { 'f-Q8_0.gguf': tiny } },
    'test/flaky2': { files: { 'f-Q8_0.gguf': tinyF32 } },
    'test/flaky3': { files: { 'f-Q8_0.gguf': tinyF32 } },
    'test/busy': { files: { 'b-Q8_0.gguf': tiny } },
  });
});

after(() => { hub?.close(); if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });

test('pull by tag: llama.cpp picks, huggingface_hub cache layout, a second pull uses the cache', async () => {
  const r = await run(['pull', 'test/tiny-GGUF:q8_0']);
  assert.equal(r.code, 0, r.err);
  const commit = fs.readFileSync(path.join(repoDir('test/tiny-GGUF'), 'refs', 'main'), 'utf8');
  assert.match(commit, /^[0-9a-f]{40}$/);
  assert.equal(r.out, path.join(repoDir('test/tiny-GGUF'), 'snapshots', commit, 'tiny-Q8_0.gguf'));
  const sha = hub.sha256(tiny);
  assert.equal(fs.readlinkSync(r.out), `../../blobs/${sha}`);
  assert.deepEqual(fs.readFileSync(r.out), tiny);
  assert.deepEqual(blobsOf('test/tiny-GGUF'), [sha]);
  assert.match(r.err, /checksum verified/);
  // no tag: Q4_K_M is absent, Q8_0 is next; the mmproj file is not a model
  const d = await run(['pull', 'test/tiny-GGUF']);
  assert.equal(d.code, 0, d.err);
  assert.equal(d.out, r.out);
  assert.match(d.err, /in the cache/);
  assert.equal(hub.cdnRequests.filter((q) => q.url === `/blob/${sha}`).length, 1);
});

test('hf:// path in a subfolder, a renamed repository (relative redirect), a paged listing', async () => {
  const r = await run(['pull', 'hf://test/tiny-GGUF/sub/dir/tiny-F32.gguf']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /snapshots\/[0-9a-f]{40}\/sub\/dir\/tiny-F32\.gguf$/);
  assert.equal(fs.readlinkSync(r.out), `../../../../blobs/${hub.sha256(tinyF32)}`);
  assert.deepEqual(fs.readFileSync(r.out), tinyF32);
  const o = await run(['pull', 'hf://test/old-name/tiny-F32.gguf']);
  assert.equal(o.code, 0, o.err);
  assert.deepEqual(fs.readFileSync(o.out), tinyF32);
  const p = await run(['pull', 'test/paged:Q6_K']); // on the third page of one entry each
  assert.equal(p.code, 0, p.err);
  assert.match(p.out, /c-Q6_K\.gguf$/);
  assert.equal(hub.requests.filter((q) => q.url.includes('/api/models/test/paged/tree/')).length, 3);
});

test('kiln serve -m ORG/REPO:TAG downloads, then serves the model', async () => {
  const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: path.join(tmp, 'cache2') };
  const s = await startServer(['-m', 'test/tiny-GGUF:Q8_0'], { env });
  try {
    // ignore_eos: the tiny random model samples its EOS in a few % of 4-token answers
    const r = await postJson(`${s.url}/v1/completions`, { prompt: 'hello', max_tokens: 4, ignore_eos: true });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.usage.completion_tokens, 4);
    const models = await (await fetch(`${s.url}/v1/models`)).json();
    assert.equal(models.data[0].id, 'tiny-Q8_0');
  } finally {
    await stopServer(s);
  }
});

test('a split model: every shard fetched, loaded as one model', { skip: needs(haveStories, 'needs ../shared/models/stories260K.gguf') }, async () => {
  const r = await run(['pull', 'test/split:F32']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /F32\/stories260K-F32-00001-of-00003\.gguf$/);
  assert.equal(blobsOf('test/split').length, 3);
  for (let i = 2; i <= 3; i++) assert.ok(fs.existsSync(r.out.replace('00001-of', `0000${i}-of`)));
  const gen = (m) => execFileSync(kilnBin, ['run', '-m', m, '-p', 'Once upon', '-n', '16', '--temp', '0'],
    { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  assert.equal(gen(r.out), gen(stories));
});

test('a gated repository: 401 without HF_TOKEN, refused with a wrong one, the token never reaches the CDN', async () => {
  let r = await run(['pull', 'test/gated:Q8_0']);
  assert.equal(r.code, 1);
  assert.match(r.err, /401 Unauthorized: .*private or gated: set HF_TOKEN/);
  r = await run(['pull', 'test/gated:Q8_0'], { HF_TOKEN: 'hf_bad' });
  assert.equal(r.code, 1);
  assert.match(r.err, /the hub refused HF_TOKEN/);
  assert.deepEqual(blobsOf('test/gated'), []);
  const before = hub.cdnRequests.length;
  r = await run(['pull', 'test/gated:Q8_0'], { HF_TOKEN: 'hf_good' });
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(fs.readFileSync(r.out), tiny);
  const cdn = hub.cdnRequests.slice(before);
  assert.ok(cdn.length >= 1);
  for (const q of cdn) assert.equal(q.headers.authorization, undefined);
  assert.ok(hub.requests.some((q) => q.headers.authorization === 'Bearer hf_good'));
});

test('404s: repository, file, revision, tag', async () => {
  let r = await run(['pull', 'test/nothing:Q8_0']);
  assert.equal(r.code, 1);
  assert.match(r.err, /test\/nothing: 404: no such repository/);
  r = await run(['pull', 'hf://test/tiny-GGUF/missing.gguf']);
  assert.equal(r.code, 1);
  assert.match(r.err, /missing\.gguf: 404: no such file at revision 'main'/);
  r = await run(['pull', 'hf://test/tiny-GGUF/tiny-F32.gguf', '--revision', 'v9']);
  assert.equal(r.code, 1);
  assert.match(r.err, /404: no revision 'v9'/);
  r = await run(['pull', 'test/tiny-GGUF:Q5_K_S']);
  assert.equal(r.code, 1);
  assert.match(r.err, /no GGUF file with tag Q5_K_S \(GGUF files: mmproj-tiny-Q8_0.gguf, sub\/dir\/tiny-F32.gguf, tiny-F32.gguf, tiny-Q8_0.gguf\)/);
});

test('429 with Retry-After is retried', async () => {
  hub.faults.status429 = 2;
  const r = await run(['pull', 'test/busy:Q8_0']);
  assert.equal(r.code, 0, r.err);
  assert.equal((r.err.match(/HTTP 429; retrying in 1\.0 s/g) || []).length, 2);
  assert.deepEqual(fs.readFileSync(r.out), tiny);
  hub.faults.status429 = 10;
  const f = await run(['pull', 'test/busy:Q8_0', '--retries', '1']);
  hub.faults.status429 = 0;
  assert.equal(f.code, 1);
  assert.match(f.err, /429 Too Many Requests: the hub kept refusing after 2 attempts; try again later/);
});

test('a connection dropped mid-file resumes with a Range request', async () => {
  hub.faults.drops = 2;
  hub.faults.dropAt = Math.floor(tiny.length / 3);
  const before = hub.cdnRequests.length;
  const r = await run(['pull', 'test/flaky:Q8_0']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(fs.readFileSync(r.out), tiny);
  const ranges = hub.cdnRequests.slice(before).map((q) => q.headers.range);
  assert.deepEqual(ranges, [undefined, `bytes=${hub.faults.dropAt}-`, `bytes=${2 * hub.faults.dropAt}-`]);
  assert.match(r.err, /at byte \d+; retrying/);
});

test('a download that keeps failing leaves only the .incomplete part; the next pull resumes it', async () => {
  hub.faults.drops = 5;
  hub.faults.dropAt = Math.floor(tinyF32.length / 4); // each attempt gets a quarter
  const r = await run(['pull', 'test/flaky2:Q8_0', '--retries', '1']);
  assert.equal(r.code, 1);
  assert.match(r.err, /f-Q8_0\.gguf: .*after 2 attempts; run again to resume/);
  const sha = hub.sha256(tinyF32);
  assert.deepEqual(blobsOf('test/flaky2'), [`${sha}.incomplete`]);
  assert.deepEqual(snapshotFiles('test/flaky2'), []);
  hub.faults.drops = 0;
  const before = hub.cdnRequests.length;
  const again = await run(['pull', 'test/flaky2:Q8_0']);
  assert.equal(again.code, 0, again.err);
  assert.equal(hub.cdnRequests[before].headers.range, `bytes=${2 * hub.faults.dropAt}-`);
  assert.match(again.err, /resuming at/);
  assert.deepEqual(fs.readFileSync(again.out), tinyF32);
  assert.deepEqual(blobsOf('test/flaky2'), [sha]);
});

test('a server that ignores Range: the whole file replaces the part', async () => {
  hub.faults.drops = 1;
  hub.faults.dropAt = Math.floor(tinyF32.length / 3);
  const r = await run(['pull', 'test/flaky3:Q8_0', '--retries', '0']);
  assert.equal(r.code, 1);
  hub.faults.ignoreRange = true;
  const before = hub.cdnRequests.length;
  const again = await run(['pull', 'test/flaky3:Q8_0']);
  hub.faults.ignoreRange = false;
  assert.equal(again.code, 0, again.err);
  assert.equal(hub.cdnRequests[before].headers.range, `bytes=${hub.faults.dropAt}-`);
  assert.deepEqual(fs.readFileSync(again.out), tinyF32);
});

test('a wrong checksum: refused, nothing left in the cache', async () => {
  hub.faults.wrongSha = 'c-Q8_0.gguf';
  const r = await run(['pull', 'hf://test/corrupt/c-Q8_0.gguf']);
  hub.faults.wrongSha = null;
  assert.equal(r.code, 1);
  assert.match(r.err, /c-Q8_0\.gguf: checksum mismatch: the file's SHA-256 is [0-9a-f]{64}, the hub published [0-9a-f]{64}; the download was discarded/);
  assert.deepEqual(blobsOf('test/corrupt'), []);
  assert.deepEqual(snapshotFiles('test/corrupt'), []);
  // the listing's lfs.oid and the download's X-Linked-Etag must agree too
  hub.faults.wrongSha = 'c-Q8_0.gguf';
  const t = await run(['pull', 'test/corrupt:Q8_0']);
  hub.faults.wrongSha = null;
  assert.equal(t.code, 1);
  assert.match(t.err, /disagree on its checksum/);
  assert.deepEqual(blobsOf('test/corrupt'), []);
});

test('hostile names from the user and the hub never become paths', async () => {
  for (const ref of ['hf://test/tiny-GGUF/../../x.gguf', 'hf://../x/y.gguf', 'hf://test/a--b/x.gguf',
    'hf://test/tiny-GGUF//etc/x.gguf', 'test/tiny-GGUF:Q8_0/../x']) {
    const r = await run(['pull', ref]);
    assert.equal(r.code, 1, ref);
    assert.match(r.err, /expected hf:\/\/ORG\/REPO|plain relative path|the tag must be/, ref);
  }
  const rev = await run(['pull', 'test/tiny-GGUF:Q8_0', '--revision', '../../x']);
  assert.equal(rev.code, 1);
  assert.match(rev.err, /revision '\.\.\/\.\.\/x': expected a branch/);
  const e = await run(['pull', 'test/evil:Q8_0']); // only ../ and / names carry Q8_0
  assert.equal(e.code, 1);
  assert.match(e.err, /skipping a file with an unsafe name/);
  assert.match(e.err, /no GGUF file with tag Q8_0 \(GGUF files: ok-Q4_0.gguf\)/);
  const c = await run(['pull', 'test/badcommit:Q8_0']);
  assert.equal(c.code, 1);
  assert.match(c.err, /the hub sent no valid X-Repo-Commit/);
  assert.deepEqual(blobsOf('test/badcommit'), []);
  assert.ok(!fs.existsSync(path.join(tmp, 'evil-Q8_0.gguf')));
  assert.ok(!fs.existsSync('/tmp/x'));
});

test('HF_HUB_OFFLINE=1 uses the cache only', async () => {
  const online = await run(['pull', 'test/tiny-GGUF:Q8_0']);
  assert.equal(online.code, 0, online.err);
  const n = hub.requests.length;
  const off = { HF_HUB_OFFLINE: '1', HF_ENDPOINT: 'http://127.0.0.1:9' };
  const r = await run(['pull', 'test/tiny-GGUF:Q8_0'], off);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, online.out);
  const f = await run(['pull', 'hf://test/tiny-GGUF/sub/dir/tiny-F32.gguf'], off);
  assert.equal(f.code, 0, f.err);
  const miss = await run(['pull', 'test/busy-not-pulled:Q8_0'], off);
  assert.equal(miss.code, 1);
  assert.match(miss.err, /not in the cache .*HF_HUB_OFFLINE is set: nothing is downloaded/);
  const tag = await run(['pull', 'test/tiny-GGUF:Q4_0'], off);
  assert.equal(tag.code, 1);
  assert.match(tag.err, /no GGUF file with tag Q4_0/);
  assert.equal(hub.requests.length, n);
});
