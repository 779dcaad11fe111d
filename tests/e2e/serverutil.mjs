// Helpers for the kiln serve end-to-end tests: start a real `kiln serve`, wait until ready.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './gwutil.mjs';
import { killAtEnd } from './reap.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '../..');
export const kilnBin = process.env.KILN_BIN || path.join(root, 'kiln');
export const stories = path.resolve(root, '../shared/models/stories260K.gguf');
export const haveStories = existsSync(stories);

// The command line that runs kiln with args, under an open-file limit when nofile is set.
export function kilnCommand(args, nofile) {
  return nofile ? ['sh', ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, kilnBin, ...args]]
    : [kilnBin, args];
}

// Starts `kiln serve args...` on a free port; resolves {proc, port, url, log(), exited}
// once /health says 200. nofile: the open-file limit to run it under.
export async function startServer(args, { waitReady = true, env = process.env, nofile = 0 } = {}) {
  const port = await freePort();
  const [cmd, argv] = kilnCommand(['serve', '--port', String(port), ...args], nofile);
  const proc = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  killAtEnd(proc);
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  const url = `http://127.0.0.1:${port}`;
  const s = { proc, port, url, log: () => log, exited };
  if (waitReady) {
    await waitFor(async () => (await fetch(`${url}/health`)).status === 200, 60000);
  }
  return s;
}

export async function stopServer(s) {
  if (!s || s.proc.exitCode !== null) return s ? s.exited : null;
  s.proc.kill('SIGTERM');
  return s.exited;
}

export async function postJson(url, body, headers = {}) {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch {}
  return { status: r.status, headers: r.headers, text, json };
}
