// Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: commands on the browser's fd 3, answers on fd 4, each message JSON
// ended by a NUL), so a test can open a page, evaluate script in it and take a screenshot with
// no npm package; and a PNG decoder for the screenshots (node's zlib inflates the pixels).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inflateSync } from 'node:zlib';

export function chromiumPath() {
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
    } catch {}
  }
  return null;
}

export class Browser {
  static async launch({ width = 1280, height = 1400 } = {}) {
    const b = new Browser();
    b.profile = mkdtempSync(path.join(tmpdir(), 'kiln-chromium-'));
    b.proc = spawn(chromiumPath(), ['--headless=new', '--no-sandbox', '--disable-gpu',
      '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
      `--user-data-dir=${b.profile}`, `--window-size=${width},${height}`,
      '--remote-debugging-pipe', 'about:blank'],
    // its own process group, so close() can kill the renderers and helpers with it
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], detached: true });
    b.stderr = '';
    b.proc.stdio[2].on('data', (d) => { b.stderr += d; });
    b.next = 1;
    b.waiting = new Map();
    let buf = Buffer.alloc(0);
    b.proc.stdio[4].on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (let z; (z = buf.indexOf(0)) >= 0; buf = buf.subarray(z + 1)) {
        const msg = JSON.parse(buf.subarray(0, z).toString('utf8'));
        const w = msg.id && b.waiting.get(msg.id);
        if (!w) continue;
        b.waiting.delete(msg.id);
        if (msg.error) w.reject(new Error(`${w.method}: ${msg.error.message}`));
        else w.resolve(msg.result);
      }
    });
    b.exited = new Promise((r) => b.proc.on('exit', () => {
      for (const w of b.waiting.values()) w.reject(new Error(`chromium exited: ${b.stderr.slice(-500)}`));
      r();
    }));
    b.size = { width, height };
    return b;
  }

  send(method, params = {}, sessionId = undefined) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, method });
      this.proc.stdio[3].write(JSON.stringify({ id, method, params, sessionId }) + '\0');
    });
  }

  // Opens url in a new tab; resolves a Page.
  async open(url) {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true });
    const page = new Page(this, sessionId);
    await page.send('Emulation.setDeviceMetricsOverride',
      { width: this.size.width, height: this.size.height, deviceScaleFactor: 1, mobile: false });
    await page.send('Page.enable');
    await page.send('Page.navigate', { url });
    return page;
  }

  // Never throws: a helper process still writing into the profile made rmSync fail with
  // ENOTEMPTY, which failed the test file's after() hook before it stopped its servers.
  async close() {
    try { await Promise.race([this.send('Browser.close'), this.exited]); } catch {}
    try { process.kill(-this.proc.pid, 'SIGKILL'); } catch {}
    await this.exited;
    try {
      rmSync(this.profile, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
    } catch (e) {
      console.error(`# chromium profile ${this.profile} left behind: ${e.message}`);
    }
  }
}

class Page {
  constructor(browser, sessionId) { this.b = browser; this.sessionId = sessionId; }
  send(method, params) { return this.b.send(method, params, this.sessionId); }
  // The value of a script expression (JSON-serialisable), awaited if it is a promise.
  async eval(expression) {
    const r = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(`${expression}: ${r.exceptionDetails.text}`);
    return r.result.value;
  }
  async screenshot() {
    const { data } = await this.send('Page.captureScreenshot', { format: 'png' });
    return decodePng(Buffer.from(data, 'base64'));
  }
}

// {width, height, rgba: Buffer} of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium
// writes); anything else throws.
export function decodePng(png) {
  if (png.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG');
  let at = 8, width = 0, height = 0, channels = 0;
  const idat = [];
  while (at < png.length) {
    const len = png.readUInt32BE(at), type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const depth = data[8], color = data[9], interlace = data[12];
      channels = color === 6 ? 4 : color === 2 ? 3 : 0;
      if (depth !== 8 || !channels || interlace) throw new Error(`PNG kind not handled: depth ${depth}, color ${color}, interlace ${interlace}`);
    } else if (type === 'IDAT') idat.push(data);
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat)), stride = width * channels;
  const px = Buffer.alloc(stride * height), rgba = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = px.subarray(y * stride, (y + 1) * stride), up = y ? px.subarray((y - 1) * stride, y * stride) : null;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels] : 0, b = up ? up[i] : 0, c = up && i >= channels ? up[i - channels] : 0;
      let pred = 0;
      if (f === 1) pred = a;
      else if (f === 2) pred = b;
      else if (f === 3) pred = (a + b) >> 1;
      else if (f === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      row[i] = (src[i] + pred) & 255;
    }
  }
  for (let i = 0; i < width * height; i++) {
    for (let k = 0; k < 3; k++) rgba[i * 4 + k] = px[i * channels + k];
    rgba[i * 4 + 3] = channels === 4 ? px[i * channels + 3] : 255;
  }
  return { width, height, rgba };
}

// Pixels of img inside rect {x, y, width, height} within tol of color [r, g, b], with the
// lowest y among them (-1 when none).
export function countColor(img, rect, [r, g, b], tol = 40) {
  let n = 0, top = -1;
  const x1 = Math.min(img.width, Math.floor(rect.x + rect.width)), y1 = Math.min(img.height, Math.floor(rect.y + rect.height));
  for (let y = Math.max(0, Math.floor(rect.y)); y < y1; y++) {
    for (let x = Math.max(0, Math.floor(rect.x)); x < x1; x++) {
      const i = (y * img.width + x) * 4;
      if (Math.abs(img.rgba[i] - r) + Math.abs(img.rgba[i + 1] - g) + Math.abs(img.rgba[i + 2] - b) <= tol) {
        n++;
        if (top < 0) top = y;
      }
    }
  }
  return { n, top };
}
