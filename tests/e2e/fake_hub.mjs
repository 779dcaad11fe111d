// A small Hugging Face compatible hub for the `kiln pull` tests: the tree API, resolve URLs
// that redirect LFS files to a second server (the "CDN", another port, so another host for
// the client), Range requests, and faults a real hub shows now and then: 401/404/429,
// renamed repositories (relative redirects), connections dropped mid-file, a published
// checksum that does not match, hostile file names and commits. Only what the tests need.
import http from 'node:http';
import crypto from 'node:crypto';

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

// repos: { 'org/name': { files: { path: Buffer }, commit?, token?, pageSize?, renamedTo?,
//                         listExtra?: [entries], commitHeader? } }
// faults (mutable through hub.faults): { status429: n, drops: n, dropAt: bytes, wrongSha: path,
//                                          ignoreRange: bool }
export async function startFakeHub(repos) {
  const blobs = new Map(); // sha -> Buffer
  for (const r of Object.values(repos)) {
    r.commit ??= crypto.randomBytes(20).toString('hex');
    r.shas = {};
    for (const [p, b] of Object.entries(r.files)) {
      r.shas[p] = sha256(b);
      blobs.set(r.shas[p], b);
    }
  }
  const hub = { requests: [], cdnRequests: [], faults: { status429: 0, drops: 0, dropAt: 0 } };

  const cdn = http.createServer((req, res) => {
    hub.cdnRequests.push({ url: req.url, headers: req.headers });
    const sha = req.url.replace(/^\/blob\//, '');
    const body = blobs.get(sha);
    if (!body) { res.writeHead(404); res.end('no such blob'); return; }
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range || '');
    if (m && !hub.faults.ignoreRange) start = Number(m[1]);
    if (start > body.length) { res.writeHead(416); res.end(); return; }
    const headers = { 'content-length': body.length - start, 'accept-ranges': 'bytes' };
    if (start) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    res.writeHead(start ? 206 : 200, headers);
    if (hub.faults.drops > 0 && body.length - start > hub.faults.dropAt) {
      hub.faults.drops--;
      res.write(body.subarray(start, start + hub.faults.dropAt), () => res.socket.destroy());
      return;
    }
    res.end(body.subarray(start));
  });

  const error = (res, status, code, msg) => {
    res.writeHead(status, { 'content-type': 'application/json', 'x-error-code': code,
      'x-error-message': msg });
    res.end(JSON.stringify({ error: msg }));
  };

  const server = http.createServer((req, res) => {
    hub.requests.push({ method: req.method, url: req.url, headers: req.headers });
    const url = new URL(req.url, 'http://x');
    if (hub.faults.status429 > 0) {
      hub.faults.status429--;
      res.writeHead(429, { 'retry-after': '1' });
      res.end('slow down');
      return;
    }
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/?]+)$/.exec(url.pathname);
    const kind = m ? 'tree' : 'resolve';
    if (!m) m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) { error(res, 404, 'NotFound', 'no such route'); return; }
    const name = decodeURIComponent(m[1]);
    const repo = repos[name];
    if (!repo) { error(res, 404, 'RepoNotFound', `Repository ${name} not found`); return; }
    if (repo.renamedTo) {
      res.writeHead(307, { location: req.url.replace(`/${m[1]}/`, `/${repo.renamedTo}/`) });
      res.end();
      return;
    }
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) {
      error(res, 401, 'GatedRepo', `Access to model ${name} is restricted.`);
      return;
    }
    if (decodeURIComponent(m[2]) !== 'main' && decodeURIComponent(m[2]) !== repo.commit) {
      error(res, 404, 'RevisionNotFound', `Invalid rev id: ${m[2]}`);
      return;
    }
    if (kind === 'tree') {
      const all = Object.keys(repo.files).sort().map((p) => ({
        type: 'file', path: p, size: repo.files[p].length, oid: crypto.randomBytes(20).toString('hex'),
        lfs: { oid: repo.shas[p], size: repo.files[p].length, pointerSize: 134 },
      })).concat(repo.listExtra || []);
      const size = repo.pageSize || all.length;
      const cursor = Number(url.searchParams.get('cursor') || 0);
      const headers = { 'content-type': 'application/json' };
      if (cursor + size < all.length) {
        headers.link = `<http://${req.headers.host}${url.pathname}?recursive=true&cursor=${cursor + size}>; rel="next"`;
      }
      res.writeHead(200, headers);
      res.end(JSON.stringify(all.slice(cursor, cursor + size)));
      return;
    }
    const file = decodeURIComponent(m[3]);
    const body = repo.files[file];
    if (!body) { error(res, 404, 'EntryNotFound', `${file} does not exist`); return; }
    const sha = hub.faults.wrongSha === file ? sha256(Buffer.from('something else')) : repo.shas[file];
    res.writeHead(302, {
      location: `${hub.cdnUrl}/blob/${repo.shas[file]}`,
      'x-repo-commit': repo.commitHeader ?? repo.commit,
      'x-linked-etag': `"${sha}"`,
      'x-linked-size': String(body.length),
      etag: '"0123456789abcdef0123456789abcdef01234567"',
    });
    res.end();
  });

  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  await new Promise((r) => cdn.listen(0, '127.0.0.1', r));
  hub.url = `http://127.0.0.1:${server.address().port}`;
  hub.cdnUrl = `http://127.0.0.1:${cdn.address().port}`;
  hub.close = () => { server.close(); cdn.close(); server.closeAllConnections?.(); cdn.closeAllConnections?.(); };
  hub.sha256 = sha256;
  return hub;
}
