// The frames per second a headless Chromium page of the dashboard actually draws, for
// `make bench-e2e` (e2e/bench.py): opens the live view of one video, says READY on stdout once the
// page has subscribed to both channels, then records every frame the page receives and every
// frame it draws (the live view writes `data-frames-received` / `data-frames-drawn` on its canvas,
// see lib.mjs `recorder`) until the stream ends. The page's own figures come from the canvas too:
// `data-page-dropped` (frames the page dropped itself: too late to draw while a newer one waited),
// `data-page-late` (drawn later than one frame interval), `data-page-delay-p50/p95/max` (its own
// delay, arrival of a frame message to drawn on the canvas, ms).
//
//   node e2e/browser/page_fps.mjs CONFIG.json
//
// CONFIG.json: {"base_url", "video_id", "viewer": {"username", "password"} (the page logs in as
// this viewer first), "result": path of the JSON written, "timeout_s"}.
// PAGE_FPS_KEEP (environment, optional): a second path the result is written to (the bench
// deletes its own copy once read).
import fs from 'node:fs';

import { launch, login, recorder, sleep } from './lib.mjs';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const base = config.base_url.replace(/\/$/, '');
const id = config.video_id;
const deadline = Date.now() + (config.timeout_s ?? 900) * 1000;

function rate(series) {
  if (series.length < 2) return null;
  const span = (series[series.length - 1][0] - series[0][0]) / 1000;
  return span > 0 ? (series.length - 1) / span : null;
}

const browser = await launch();
const out = { ok: false };
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
  });
  await context.addInitScript(recorder);
  const page = await context.newPage();
  const wanted = new Set([`processed_frame_${id}`, `analytics_metrics_${id}`]);
  const subscribed = new Set();
  page.on('websocket', (ws) =>
    ws.on('framesent', (frame) => {
      try {
        const message = JSON.parse(frame.payload);
        if (message.action === 'subscribe' && wanted.has(message.channel))
          subscribed.add(message.channel);
      } catch {
        // not ours
      }
    }),
  );
  page.on('pageerror', (e) => (out.page_error = String(e).slice(0, 500)));
  await login(page, base, config.viewer, `/videos/${id}`);
  while (subscribed.size < wanted.size) {
    if (Date.now() > deadline) throw new Error('the page never subscribed');
    await sleep(100);
  }
  await sleep(500); // the hub has answered the subscriptions
  console.log('READY');

  // until the stream ended (banner), or 20 s without a frame once frames came
  let ended = false;
  for (;;) {
    const state = await page.evaluate(() => {
      const r = window.__e2e;
      const first = r.received.length ? r.received[0][0] : null;
      const last = r.received.length ? r.received[r.received.length - 1][0] : null;
      return {
        // an end after frames came (a video streamed before opens with "stream ended")
        ended:
          first !== null &&
          r.banners.some((b) => ['ended', 'failed', 'stopped'].includes(b.state) && b.t >= first),
        silentMs: last === null ? null : performance.now() - last,
      };
    });
    if (state.ended) {
      ended = true;
      break;
    }
    if ((state.silentMs !== null && state.silentMs > 20_000) || Date.now() > deadline) break;
    await sleep(500);
  }
  await sleep(1000); // the last decode
  const rec = await page.evaluate(() => {
    const canvas = document.querySelector('[data-testid=frame-canvas]');
    const data = canvas ? canvas.dataset : {};
    const num = (v) => (v === undefined || v === '' ? null : Number(v));
    return {
      received: window.__e2e.received,
      drawn: window.__e2e.drawn,
      banners: window.__e2e.banners,
      pageDropped: num(data.pageDropped),
      pageLate: num(data.pageLate),
      delay: {
        p50: num(data.pageDelayP50),
        p95: num(data.pageDelayP95),
        max: num(data.pageDelayMax),
      },
      degraded: !!document.querySelector('[data-testid=degraded]'),
      detectHz: num(document.querySelector('[data-testid=detect-hz]')?.textContent?.trim()),
      processorDropped: num(
        document.querySelector('[data-testid=processor-dropped]')?.textContent?.trim(),
      ),
    };
  });
  const received = rec.received.length ? rec.received[rec.received.length - 1][1] : 0;
  const drawn = rec.drawn.length ? rec.drawn[rec.drawn.length - 1][1] : 0;
  // the end-of-stream marker is a frame message without a picture
  const pictures = Math.max(0, received - (ended ? 1 : 0));
  Object.assign(out, {
    ok: true,
    ended,
    received_messages: received,
    received_pictures: pictures,
    drawn,
    drawn_share: pictures ? drawn / pictures : null,
    receive_fps: rate(rec.received),
    draw_fps: rate(rec.drawn),
    // what the page did itself: dropped (oldest first, counted and shown), its own delay
    page_dropped: rec.pageDropped,
    page_late: rec.pageLate,
    page_delay_ms: rec.delay,
    // accounted for: drawn + dropped by the page = pictures received
    page_accounted: rec.pageDropped === null ? null : drawn + rec.pageDropped,
    // the processor's side as the page shows it at the end
    page_detect_hz: rec.detectHz,
    page_processor_dropped: rec.processorDropped,
    page_degraded_at_end: rec.degraded,
    banners: rec.banners.map((b) => b.state),
  });
} catch (error) {
  out.error = String(error?.stack ?? error);
} finally {
  fs.writeFileSync(config.result, JSON.stringify(out, null, 1));
  if (process.env.PAGE_FPS_KEEP)
    fs.writeFileSync(process.env.PAGE_FPS_KEEP, JSON.stringify(out, null, 1));
  await browser.close();
}
process.exit(out.ok ? 0 : 1);
