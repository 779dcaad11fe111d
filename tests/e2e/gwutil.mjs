// Small helpers for the gateway's end-to-end tests (node standard library only).
import net from 'node:net';

// A TCP port that was free a moment ago on 127.0.0.1.
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Polls fn until it returns truthy, or throws after timeoutMs.
export async function waitFor(fn, timeoutMs = 15000, stepMs = 50) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {}
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms: ${fn}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

// The data payloads of an SSE body, in order.
export function sseEvents(text) {
  return text.split('\n\n').map((e) => e.trim()).filter((e) => e.startsWith('data:'))
    .map((e) => e.slice(5).trim());
}

// ---- helpers for the tests against real `kiln serve` replicas (gateway_real*.test.mjs) ----

// Sum of every sample of metric `name` (any labels) in a Prometheus text body; NaN if absent.
export function metricSum(text, name) {
  let sum = NaN;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = line.match(/^([^\s{]+)(\{[^}]*\})?\s+(\S+)/);
    if (!m || m[1] !== name) continue;
    sum = (Number.isNaN(sum) ? 0 : sum) + Number(m[3]);
  }
  return sum;
}

// Value of the sample of `name` whose label set contains every `k="v"` of labels; NaN if none.
export function metricWith(text, name, labels) {
  for (const line of text.split('\n')) {
    const m = line.match(/^([^\s{]+)(\{[^}]*\})?\s+(\S+)/);
    if (!m || m[1] !== name) continue;
    const l = m[2] || '';
    if (Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`))) return Number(m[3]);
  }
  return NaN;
}

// Sends one streaming completion to baseUrl; resolves {status, ttft (ms, first data chunk),
// total (ms), events (SSE data payloads), text, error (network error message or null)}.
export async function streamCompletion(baseUrl, body, headers = {}, { onFirstByte = null } = {}) {
  const t0 = performance.now();
  let ttft = null, text = '', status = 0, error = null;
  try {
    const r = await fetch(`${baseUrl}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ ...body, stream: true }),
    });
    status = r.status;
    const dec = new TextDecoder();
    for await (const chunk of r.body) {
      if (ttft === null) {
        ttft = performance.now() - t0;
        if (onFirstByte) onFirstByte();
      }
      text += dec.decode(chunk, { stream: true });
    }
  } catch (e) {
    error = String(e && (e.cause?.message || e.message) || e);
  }
  return { status, ttft, total: performance.now() - t0, events: sseEvents(text), text, error };
}

// Runs n tasks (task(i) returns a promise) with at most `concurrency` in flight; resolves the
// results in order.
export async function pool(n, concurrency, task) {
  const out = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return out;
}

// p-th percentile (0..100) of an array of numbers (nearest rank); NaN when empty.
export function percentile(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

// Problems with a Prometheus text exposition (format 0.0.4), as strings; [] when it is
// well-formed: every line a `# HELP`, a `# TYPE` or a sample `name{k="v",...} value`; label
// values escaped (only \\, \" and \n); each family announced by HELP and TYPE before its
// samples, and its samples together (a family never comes back after another one started).
export function expositionProblems(text) {
  const problems = [];
  const help = new Set(), type = new Map(), closed = new Set();
  let current = null;
  const family = (name) => {
    for (const suf of ['_bucket', '_sum', '_count']) {
      const base = name.endsWith(suf) ? name.slice(0, -suf.length) : null;
      if (base && ['histogram', 'summary'].includes(type.get(base))) return base;
    }
    return name;
  };
  const enter = (f, line) => {
    if (f === current) return;
    if (closed.has(f)) problems.push(`family ${f} split: ${line}`);
    if (current) closed.add(current);
    current = f;
  };
  const nameRe = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sampleRe = new RegExp(`^(${nameRe})(\\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*")*)?\\})? (\\S+)$`);
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m;
    if ((m = line.match(new RegExp(`^# HELP (${nameRe}) (.*)$`)))) {
      enter(m[1], line);
      help.add(m[1]);
    } else if ((m = line.match(new RegExp(`^# TYPE (${nameRe}) (counter|gauge|histogram|summary|untyped)$`)))) {
      enter(m[1], line);
      type.set(m[1], m[2]);
    } else if (line.startsWith('#')) {
      problems.push(`stray comment: ${line}`);
    } else if ((m = line.match(sampleRe))) {
      const f = family(m[1]);
      if (!help.has(f) || !type.has(f)) problems.push(`no HELP/TYPE before: ${line}`);
      if (Number.isNaN(Number(m[3])) && !['NaN', '+Inf', '-Inf'].includes(m[3])) problems.push(`bad value: ${line}`);
      enter(f, line);
    } else {
      problems.push(`not a sample: ${line}`);
    }
  }
  return problems;
}
