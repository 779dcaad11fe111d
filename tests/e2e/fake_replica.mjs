// A replica that misbehaves on purpose, for the gateway's fault tests only (a real
// `kiln serve` cannot be made to hang mid-stream or send garbage on demand).
// Usage: node fake_replica.mjs PORT [--mode ok|hang-headers|die-mid-stream|garbage|500|big|
//        short-body|bad-chunk|reset-mid-body]
//        [--waiting N] [--kv F] [--delay-ms D] [--ttft-ms T] [--model-id ID] [--close-after]
//        [--tokenize] (POST /tokenize: one token a word, as its usage counts; GET /prompts:
//        every completion request's prompt text, in order)
// It serves /health, /metrics (vLLM names), /v1/completions and /v1/chat/completions
// (GET /last: the last completion request's raw headers and body)
// (streaming: 5 tokens "tok0".."tok4" then [DONE]). Each response names this replica in
// the "system_fingerprint" field so tests can see where a request went.
import http from 'node:http';

const args = process.argv.slice(2);
const port = Number(args[0]);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
let mode = opt('--mode', 'ok');
let waiting = Number(opt('--waiting', '0'));
let kv = Number(opt('--kv', '0'));
const delay = Number(opt('--delay-ms', '5'));
let ttft = Number(opt('--ttft-ms', '0')); // extra wait before the first token (default none)
const modelId = opt('--model-id', null); // with it, GET /v1/models lists this one model
// --close-after: close each connection after a streamed reply, though keep-alive was announced
// (llama.cpp's server does this; kiln bench must not count the next request as failed)
const closeAfter = args.includes('--close-after');
let served = 0;
let probeHang = false, hung = 0; // /admin {"probe_hang": true}: /health and /metrics never answer
// /admin {"health": "ok"|"fail"|"flap"}: /health answers 200, 503, or each in turn
let health = 'ok', checks = 0;
let last = null; // the last completion request as received: {rawHeaders, body} (GET /last)
const tokenize = args.includes('--tokenize');
const prompts = []; // with --tokenize: the prompt text of every completion request (GET /prompts)
const promptText = (j) => (j.messages ? j.messages.map((m) => m.content).join(' ') : String(j.prompt ?? ''));

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    if (probeHang && (req.url === '/health' || req.url === '/metrics')) return hung++; // never answers
    if (req.url === '/health') {
      checks++;
      const up = health === 'ok' || (health === 'flap' && checks % 2 === 0);
      return res.writeHead(up ? 200 : 503).end('{}');
    }
    if (modelId && req.url === '/v1/models' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ object: 'list', data: [{ id: modelId, object: 'model' }] }));
    }
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end(
        `vllm:num_requests_running{model_name="m"} 0\n` +
          `vllm:num_requests_waiting{model_name="m"} ${waiting}\n` +
          `vllm:kv_cache_usage_perc{model_name="m"} ${kv}\n` +
          `fake_served_total ${served}\n`,
      );
    }
    if (req.url === '/admin') { // tests reconfigure the fake: {"mode":..., "waiting":..}
      const o = JSON.parse(body || '{}');
      if (o.mode) mode = o.mode;
      if (o.waiting !== undefined) waiting = o.waiting;
      if (o.kv !== undefined) kv = o.kv;
      if (o.ttft_ms !== undefined) ttft = o.ttft_ms;
      if (o.probe_hang !== undefined) probeHang = o.probe_hang;
      if (o.health !== undefined) health = o.health;
      return res.writeHead(200).end(JSON.stringify({ served, hung, checks }));
    }
    if (tokenize && req.url === '/tokenize' && req.method === 'POST') {
      let j = {};
      try { j = JSON.parse(body); } catch {}
      const n = promptText(j).split(/\s+/).filter(Boolean).length;
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ count: n, tokens: Array.from({ length: n }, (_, i) => i + 3),
        max_model_len: 4096 }));
    }
    if (tokenize && req.url === '/prompts' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(prompts));
    }
    if (req.url === '/last' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(last));
    }
    served++;
    // socketRequests: how many requests this connection has carried (1: a fresh one)
    req.socket.served = (req.socket.served || 0) + 1;
    last = { rawHeaders: req.rawHeaders, body, socketRequests: req.socket.served };
    if (mode === '500') return res.writeHead(500).end('{"error":{"message":"boom"}}');
    if (mode === 'hang-headers') return; // never answers
    if (mode === 'garbage') {
      res.socket.write('HTTP/1.1 2OO NOT OK\r\n\r\n\x00\xff garbage');
      return res.socket.destroy();
    }
    let j = {};
    try { j = JSON.parse(body); } catch {}
    if (tokenize && prompts.length < 100000) prompts.push(promptText(j));
    const fp = `fake-${port}`;
    // Non-streamed answers that break off in the middle of the body:
    if (mode === 'short-body' && !j.stream) { // announces 1000 bytes, sends 70, closes
      res.socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n' +
        `{"id":"x","object":"text_completion","system_fingerprint":"${fp}","choices":[{"text":"tok0`);
      return res.socket.end();
    }
    if (mode === 'bad-chunk' && !j.stream) { // a chunk size that is not hexadecimal
      res.socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' +
        `10\r\n{"id":"x","choi\r\nzz\r\nces":[]}\r\n0\r\n\r\n`);
      return res.socket.end();
    }
    if (mode === 'reset-mid-body' && !j.stream) { // half an answer, then an RST
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(`{"id":"x","object":"text_completion","system_fingerprint":"${fp}","choices":[{"text":"tok0`);
      return setTimeout(() => res.socket.resetAndDestroy(), 20);
    }
    if (mode === 'big' && !j.stream) { // a 4 MiB answer, to be written while the client resets
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ id: 'x', object: 'text_completion', model: j.model,
        system_fingerprint: fp, choices: [{ index: 0, text: 'x'.repeat(4 << 20), finish_reason: 'length' }] }));
    }
    if (!j.stream) { // with headers a proxy must not pass on (the gateway's sanitising test)
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream-internal': 'secret',
        'set-cookie': 'upstream=1', connection: 'keep-alive, x-upstream-internal' });
      return res.end(JSON.stringify({ id: 'x', object: 'text_completion', model: j.model,
        system_fingerprint: fp, choices: [{ index: 0, text: 'tok0tok1', finish_reason: 'length' }],
        usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } }));
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let i = 0;
    // For kiln bench: with ignore_eos, max_tokens tokens instead of 5; with
    // stream_options.include_usage, a last chunk carrying usage (prompt tokens = words).
    const nTok = j.ignore_eos && j.max_tokens > 0 ? j.max_tokens : 5;
    const wantUsage = !!(j.stream_options && j.stream_options.include_usage);
    const text = j.messages ? j.messages.map((m) => m.content).join(' ') : String(j.prompt ?? '');
    const promptTokens = text.split(/\s+/).filter(Boolean).length;
    const tick = () => {
      if (mode === 'die-mid-stream' && i === 2) return res.socket.destroy();
      if (mode === 'hang-mid-stream' && i === 2) return;
      if (i === nTok) {
        if (wantUsage) res.write(`data: ${JSON.stringify({ id: 'x', object: 'text_completion',
          model: j.model, system_fingerprint: fp, choices: [],
          usage: { prompt_tokens: promptTokens, completion_tokens: nTok,
            total_tokens: promptTokens + nTok } })}\n\n`);
        res.write('data: [DONE]\n\n');
        if (closeAfter) {
          const sock = res.socket; // detached from res once it finishes
          return res.end(() => sock.end());
        }
        return res.end();
      }
      res.write(`data: ${JSON.stringify({ id: 'x', object: 'text_completion', model: j.model,
        system_fingerprint: fp, choices: [{ index: 0, text: `tok${i}`, finish_reason: null }] })}\n\n`);
      i++;
      setTimeout(tick, delay);
    };
    if (ttft > 0) setTimeout(tick, ttft);
    else tick();
  });
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
