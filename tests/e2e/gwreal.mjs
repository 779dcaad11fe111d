// Shared setup for the gateway_real*.test.mjs files: a tiny random-weight model made once per
// process, real `kiln serve` replicas that can be killed, stopped and restarted on the same
// port, and a real `kiln gateway` with a given config.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './gwutil.mjs';
import { killAtEnd } from './reap.mjs';
import { needs } from './prereq.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const kilnBin = process.env.KILN_BIN || path.join(here, '../../kiln');
export const haveKiln = existsSync(kilnBin);
export const skipReason = needs(haveKiln, `needs the kiln binary (${kilnBin}; set KILN_BIN)`);

export const dir = haveKiln ? mkdtempSync(path.join(tmpdir(), 'kiln-gwreal-')) : null;
let modelPath = null;

// Path of a tiny random-weight model (dim 128, 2 layers, 4 KV heads: 1 KiB of f16 KV cache
// a token), made on first call.
export function tinyModel() {
  if (modelPath) return modelPath;
  modelPath = path.join(dir, 'tiny.gguf');
  execFileSync(kilnBin, ['model', 'make', '--out', modelPath, '--dim', '128', '--layers', '2',
    '--heads', '4', '--kv-heads', '4', '--ffn', '256', '--vocab', '512', '--ctx', '2048',
    '--type', 'q8_0'], { stdio: 'ignore' });
  return modelPath;
}

// Path of a bigger random-weight model (dim 512, 4 layers: tens of times slower than
// tinyModel()), made on first call; for a deliberately slow replica.
let bigPath = null;
export function slowModel() {
  if (bigPath) return bigPath;
  bigPath = path.join(dir, 'slow.gguf');
  execFileSync(kilnBin, ['model', 'make', '--out', bigPath, '--dim', '512', '--layers', '4',
    '--heads', '8', '--kv-heads', '8', '--ffn', '1536', '--vocab', '512', '--ctx', '2048',
    '--type', 'q8_0'], { stdio: 'ignore' });
  return bigPath;
}

// A `kiln serve` replica: start() on a fixed port (picked once), kill(sig), start() again.
// model: a GGUF path (default tinyModel()).
export class Replica {
  constructor(args = [], { model = null } = {}) {
    this.args = args; this.model = model; this.port = 0; this.proc = null; this.logText = '';
  }
  get url() { return `http://127.0.0.1:${this.port}`; }
  async start({ waitReady = true } = {}) {
    if (!this.port) this.port = await freePort();
    this.proc = spawn(kilnBin, ['serve', '-m', this.model || tinyModel(), '--port', String(this.port), '-t', '1', ...this.args],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    const p = killAtEnd(this.proc);
    p.stdout.on('data', (d) => { this.logText += d; });
    p.stderr.on('data', (d) => { this.logText += d; });
    p.exited = new Promise((r) => p.on('exit', (code, sig) => r({ code, sig })));
    if (waitReady) await waitFor(async () => (await fetch(`${this.url}/health`)).status === 200, 60000);
    return this;
  }
  kill(sig) { if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(sig); }
  async stop() {
    const p = this.proc;
    if (!p) return null;
    if (p.exitCode === null && p.signalCode === null) { p.kill('SIGCONT'); p.kill('SIGKILL'); }
    return p.exited;
  }
  async metrics() { return (await fetch(`${this.url}/metrics`)).text(); }
}

// Starts `kiln gateway` with cfg (listen port filled in) and env added to its environment;
// resolves {port, url, proc, log(), stop(), metrics()} once /health answers. args: more
// command-line options; nofile: the open-file limit to run it under.
export async function startGateway(cfg, { healthy = true, env = {}, args = [], nofile = 0 } = {}) {
  const port = await freePort();
  const file = path.join(dir, `gw-${port}.json`);
  mkdirSync(dir, { recursive: true }); // a suite's cleanup() may have removed it
  writeFileSync(file, JSON.stringify({ ...cfg, listen: { ...cfg.listen, host: '127.0.0.1', port } }));
  const argv = ['gateway', '-c', file, ...args];
  const opts = { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } };
  const proc = nofile
    ? spawn('sh', ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, kilnBin, ...argv], opts)
    : spawn(kilnBin, argv, opts);
  killAtEnd(proc);
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    const r = await fetch(`${url}/health`);
    return healthy ? r.status === 200 : true;
  }, 20000);
  return {
    port, url, proc, log: () => log,
    metrics: async () => (await fetch(`${url}/metrics`)).text(),
    stop: async () => { if (proc.exitCode === null) proc.kill('SIGTERM'); return exited; },
  };
}

export function cleanup() { if (dir) rmSync(dir, { recursive: true, force: true }); }
