// One kiln binary runs on any x86-64: on a CPU without AVX-512 it must start, pick the AVX2
// kernels and give the same tokens as the AVX2 table forced on this machine (KILN_SIMD=avx2);
// on one without AVX, the scalar table's.
// The AVX2-only CPU is QEMU's user-mode emulation of a Haswell (TCG runs AVX2, FMA and F16C
// but no AVX-512 instruction: one executed there is SIGILL, as on a real AVX2 CPU).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { needs } from './prereq.mjs';
import { kilnBin, stories, haveStories } from './serverutil.mjs';

const qemu = ['/usr/bin/qemu-x86_64', '/usr/bin/qemu-x86_64-static'].find((p) => fs.existsSync(p));
// A sanitizer's shadow memory is terabytes of reserved address space, which qemu-user backs
// with real pages (an ASan kiln grew to 16 GB and was OOM-killed): the release run of the
// suite covers this file, the sanitized runs (asan, tsan) skip it.
const sanitized = fs.existsSync(kilnBin) &&
  ((bin) => bin.includes('__asan_init') || bin.includes('__tsan_init'))(fs.readFileSync(kilnBin));
const skip = (sanitized && 'a sanitized kiln cannot run under qemu-user (its shadow memory)') ||
  needs(qemu, 'qemu-x86_64 (Debian qemu-user) is not installed') ||
  needs(haveStories, 'no ../shared/models/stories260K.gguf');

// Types whose AVX2 kernels differ from AVX-512's in layout or code: the legacy and K-quant
// panels, IQ4_XS's packed record, the TQ tiles.
const TYPES = ['f16', 'q8_0', 'q4_0', 'q5_0', 'q2_k', 'q3_k', 'q4_k', 'q6_k', 'iq4_xs', 'tq1_0', 'tq2_0'];
let tmp;

function generate(model, { emulate = false, cpu = 'Haswell', env = {} } = {}) {
  const args = ['run', '-m', model, '-p', 'Once upon a time', '-n', '12', '--temp', '0',
    '--print-ids', '-t', '2'];
  const cmd = emulate ? qemu : kilnBin;
  const argv = emulate ? ['-cpu', cpu, kilnBin, ...args] : args;
  const r = spawnSync(cmd, argv, { env: { ...process.env, KILN_SIMD: '', ...env },
    encoding: 'utf8', timeout: 120000 });
  return { code: r.status, signal: r.signal, out: (r.stdout || '').trim(), err: r.stderr || '' };
}

before(() => {
  if (skip) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-avx2cpu-'));
  for (const t of TYPES) {
    execFileSync(kilnBin, ['model', 'make', '--out', path.join(tmp, `${t}.gguf`), '--dim', '256',
      '--layers', '2', '--heads', '4', '--kv-heads', '2', '--ffn', '512', '--type', t]);
  }
});

after(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });

test('the emulated CPU lacks AVX-512: an AVX-512 instruction dies there', { skip }, () => {
  // the control: were AVX-512 emulated, the tests below would prove nothing
  const probe = path.join(tmp, 'zmm-probe');
  execFileSync('cc', ['-x', 'c', '-', '-o', probe],
    { input: 'int main(void) { __asm__ volatile("vpxord %zmm0, %zmm0, %zmm0"); return 0; }\n' });
  const r = spawnSync(qemu, ['-cpu', 'Haswell', probe]);
  assert.equal(r.signal, 'SIGILL');
});

test('KILN_SIMD naming an ISA the CPU lacks is ignored there', { skip }, () => {
  const r = generate(stories, { emulate: true, env: { KILN_SIMD: 'avx512vbmi' } });
  assert.equal(r.code, 0, `status ${r.code} signal ${r.signal}: ${r.err}`);
  assert.equal(r.out, generate(stories, { env: { KILN_SIMD: 'avx2' } }).out);
});

test('stories260K: the same tokens on an AVX2-only CPU as with KILN_SIMD=avx2', { skip }, () => {
  const want = generate(stories, { env: { KILN_SIMD: 'avx2' } });
  assert.equal(want.code, 0, want.err);
  const got = generate(stories, { emulate: true });
  assert.equal(got.code, 0, `kiln under qemu -cpu Haswell: status ${got.code} signal ${got.signal}: ${got.err}`);
  assert.ok(want.out.length > 0);
  assert.equal(got.out, want.out);
});

test('stories260K on an x86-64 without AVX (qemu64): the scalar table, its tokens', { skip }, () => {
  const want = generate(stories, { env: { KILN_SIMD: 'scalar' } });
  assert.equal(want.code, 0, want.err);
  const got = generate(stories, { emulate: true, cpu: 'qemu64' });
  assert.equal(got.code, 0, `status ${got.code} signal ${got.signal}: ${got.err}`);
  assert.equal(got.out, want.out);
});

for (const t of TYPES) {
  test(`${t}: the same tokens on an AVX2-only CPU as with KILN_SIMD=avx2`, { skip }, () => {
    const model = path.join(tmp, `${t}.gguf`);
    const want = generate(model, { env: { KILN_SIMD: 'avx2' } });
    assert.equal(want.code, 0, want.err);
    const got = generate(model, { emulate: true });
    assert.equal(got.code, 0, `status ${got.code} signal ${got.signal}: ${got.err}`);
    assert.equal(got.out, want.out);
  });
}

// `kiln model make` writes no IQ1-IQ3 file (those need an importance matrix), so their AVX2
// kernels are checked on the emulated CPU by the unit tests that compare every table the CPU
// runs with the scalar reference on random blocks (tests/unit/kernels_gemm*.c, kernels_iq.c's
// packed forms): there only the AVX2 and scalar tables run, and an AVX-512 instruction in the
// AVX2 code would be SIGILL.
const unitBin = path.join(path.dirname(kilnBin), 'kiln-tests');
test('the IQ1-IQ3 kernels\' reference tests pass on an AVX2-only CPU', {
  skip: skip || needs(fs.existsSync(unitBin), `no ${unitBin} (make builds it)`),
}, () => {
  const r = spawnSync(qemu, ['-cpu', 'Haswell', unitBin, 'kernels_gemm_iq1', 'kernels_gemm_iq2',
    'kernels_gemm_iq3', 'kernels_iq_decode', 'kernels_iq_iq1_iq2_packed'], { env: { ...process.env, KILN_SIMD: '' },
    encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, `status ${r.status} signal ${r.signal}: ${r.stdout}\n${r.stderr}`);
  const m = /(\d+) passed, (\d+) failed/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.equal(Number(m[2]), 0, r.stdout);
  // iq1_s, iq1_m, iq2_xxs/xs/s, iq3_xxs/s, the decodings, and the packed IQ1/IQ2/IQ3 forms
  assert.equal(Number(m[1]), 10, r.stdout);
});
