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
