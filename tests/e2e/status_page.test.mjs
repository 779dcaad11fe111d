// The status page (GET /) of kiln serve and kiln gateway in headless Chromium: a real replica
// and a real gateway in front of it under a trickle of requests; the page must render, its
// charts must fill from the live /metrics, and a screenshot must show the lines drawn.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Replica, startGateway, skipReason, cleanup } from './gwreal.mjs';
import { waitFor } from './gwutil.mjs';
import { needs } from './prereq.mjs';
import { Browser, chromiumPath, countColor } from './chromium.mjs';

const skip = skipReason || needs(chromiumPath(), "needs Debian's chromium (tools/install-deps.sh)");
const FIRST_SERIES = [0x1f, 0x6f, 0xd1]; /* COLORS[0] of src/net/status.html */

let replica, gw, browser, stopLoad = false, load = null;

before(async () => {
  if (skip) return;
  replica = await new Replica().start();
  gw = await startGateway({ models: [{ name: 'tiny', pools: [{ endpoints: [{ url: replica.url }] }] }] });
  // two clients in a loop through the gateway until the tests end, 256 tokens a request: the
  // replica has one running whenever the page samples (24 ran so briefly on a loaded machine
  // that the Requests chart could see 0 running in every sample and draw on its baseline)
  const client = async () => {
    while (!stopLoad) {
      await fetch(`${gw.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', prompt: 'hello there', max_tokens: 256, ignore_eos: true }) }).then((r) => r.text()).catch(() => {});
    }
  };
  load = Promise.all([client(), client()]);
  browser = await Browser.launch();
});

after(async () => {
  stopLoad = true;
  try {
    if (load) await load;
    if (browser) await browser.close();
  } finally {
    if (gw) await gw.stop();
    if (replica) await replica.stop();
    cleanup();
  }
});

// Opens url, waits until every chart has at least `points` values and cond(kilnStatus)
// holds; returns {page, status, shot, rects}.
async function openAndWait(url, points, cond) {
  const page = await browser.open(url);
  let status = null;
  await waitFor(async () => {
    status = await page.eval('window.kilnStatus || null');
    return status && status.charts.every((c) => c.points.some((n) => n >= points)) && cond(status);
  }, 30000, 200);
  const rects = await page.eval(`[...document.querySelectorAll('.chart canvas')].map((c) => {
    const r = c.getBoundingClientRect(); return { x: r.x, y: r.y, width: r.width, height: r.height }; })`);
  return { page, status, shot: await page.screenshot(), rects };
}

test('GET / is the status page: HTML from the binary, with a policy that keeps it to its origin', { skip }, async () => {
  for (const url of [replica.url, gw.url]) {
    const r = await fetch(`${url}/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    assert.match(r.headers.get('content-security-policy'), /connect-src 'self'/);
    const html = await r.text();
    assert.match(html, /<title>Kiln status<\/title>/);
    assert.doesNotMatch(html, /(src|href)="https?:/, 'no external assets');
  }
});

test('kiln serve: the page shows the model, its charts fill and the screenshot has the lines', { skip }, async () => {
  const { page, status, shot, rects } = await openAndWait(`${replica.url}/?poll=250`, 6,
    (s) => s.tiles['generated tok/s'] > 0);
  assert.equal(status.kind, 'serve');
  assert.match(await page.eval('document.title'), /^kiln serve: /);
  assert.equal(rects.length, 5, 'five charts');
  for (const [k, r] of rects.entries()) {
    const { n } = countColor(shot, r, FIRST_SERIES);
    assert.ok(n >= 20, `chart ${k} (${status.charts[k].title}): ${n} pixels of its first line`);
  }
  // throughput: generated tokens/s is above zero, so its line leaves the chart's baseline
  const tput = countColor(shot, rects[0], FIRST_SERIES);
  assert.ok(tput.top >= 0 && tput.top < rects[0].y + rects[0].height - 24,
    `the throughput line rises above the zero line (top ${tput.top}, chart ${JSON.stringify(rects[0])})`);
});

test('kiln gateway: the page lists the endpoint as up, its charts fill and show traffic', { skip }, async () => {
  const { page, status, shot, rects } = await openAndWait(`${gw.url}/?poll=250`, 6,
    (s) => s.tiles['requests/s'] > 0);
  assert.equal(status.kind, 'gateway');
  const rows = await page.eval(`[...document.querySelectorAll('#endpoints tbody tr')].map((r) => r.innerText)`);
  assert.equal(rows.length, 1);
  assert.match(rows[0], new RegExp(`${replica.url.replace(/\./g, '\\.')}\\s+up`));
  assert.equal(rects.length, 4, 'four charts');
  for (const [k, r] of rects.entries()) {
    const { n } = countColor(shot, r, FIRST_SERIES);
    assert.ok(n >= 20, `chart ${k} (${status.charts[k].title}): ${n} pixels of its first line`);
  }
  const reqs = countColor(shot, rects[0], FIRST_SERIES);
  assert.ok(reqs.top >= 0 && reqs.top < rects[0].y + rects[0].height - 24, 'the 2xx line rises above zero');
});
