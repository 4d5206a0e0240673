// A live camera in the dashboard (Debian's Chromium through playwright-core, headless) against the
// real stack, driven by e2e/test_camera_browser.py, which serves the truth clip from a loopback
// RTSP server with a user and password, and asserts on the JSON this script writes.
//
//   CAMERA_URL=rtsp://user:password@127.0.0.1:PORT/cam CAMERA_PASSWORD=password \
//   OPERATOR_USER=... OPERATOR_PASSWORD=... CAMERA_CONTROL=DIR node e2e/browser/camera.spec.mjs CONFIG.json
//
// CONFIG.json: {"base_url", "camera_name", "fps", "artifacts": folder for screenshots, "result":
// where to write the result JSON}. The secrets come by the environment only: never written to
// the config, the result or a log line.
//
// The test's side is driven through stdout and files in CAMERA_CONTROL: the script prints
// `CAMERA:ADDED <id>` (the test calibrates the camera through REST, then creates `calibrated`)
// and `CAMERA:STOP` (the test kills the RTSP server and creates `stopped`; it restarts the server
// once the page showed the reconnecting banner, which the script says by creating `banner-seen`,
// and at least ~8 s after the stop, then creates `started`). A failure of the test's side comes
// as `<name>.error`, whose text the script throws.
//
// Each step is recorded (name, ok, ms, screenshots, error); the observations go under `seen`, the
// axe-core violations per page under `axe`. Exit code 0 when every step ran, 1 otherwise.
import fs from 'node:fs';
import path from 'node:path';

import { canvasProbe, createRun, framesSeen, login, recorder, sleep, until } from './lib.mjs';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const base = config.base_url.replace(/\/$/, '');
const fps = config.fps ?? 30;

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const CAMERA_URL = env('CAMERA_URL');
const PASSWORD = env('CAMERA_PASSWORD');
// the operator who adds and watches the camera (issue 17: the page needs a login)
const OPERATOR = { username: env('OPERATOR_USER'), password: env('OPERATOR_PASSWORD') };
const CONTROL = env('CAMERA_CONTROL');

/** Never a secret in what this script writes: the result, the logs, the page errors. */
const scrub = (s) =>
  String(s).split(PASSWORD).join('***').split(OPERATOR.password).join('***');

const run = createRun({
  name: 'camera',
  config,
  scrub,
  seen: { password_shown: {}, token_shown: {} },
});
const { result, seen, t0, shot, step, axeOn, text, number, framesDrawn } = run;

let page;

// ---- the test's side: a line on stdout, an answer as a file ----------------------------------

function tell(command) {
  // stdout is a pipe (synchronous on Linux): the test reads it line by line
  console.log(`CAMERA:${command}`);
}

async function answer(name, timeoutMs) {
  const file = path.join(CONTROL, name);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (fs.existsSync(`${file}.error`)) {
      throw new Error(`the test failed at "${name}": ${fs.readFileSync(`${file}.error`, 'utf8')}`);
    }
    if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8');
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for the test's "${name}"`);
    }
    await sleep(100);
  }
}

// ---- the page --------------------------------------------------------------------------------

/**
 * Runs in the page before its own scripts: the camera banner's states (with its text, and whether
 * it sits in a live region) and the health badge's states, with their wall-clock times.
 */
function cameraRecorder() {
  const rec = { banners: [], health: [] };
  window.__camera = rec;
  const watch = () => {
    let lastBanner;
    let lastHealth;
    const seen = () => {
      const b = document.querySelector('[data-testid=camera-banner]');
      const banner = b
        ? {
            state: b.getAttribute('data-state'),
            text: b.textContent.trim(),
            status_region: !!b.closest('[role=status]'),
          }
        : { state: null, text: null, status_region: null };
      const key = JSON.stringify(banner);
      if (key !== lastBanner) {
        lastBanner = key;
        rec.banners.push({ ...banner, t: Date.now() });
      }
      const h = document.querySelector('[data-testid=live-health] [data-testid=health]');
      const health = h ? h.getAttribute('data-state') : null;
      if (health !== lastHealth) {
        lastHealth = health;
        rec.health.push({ state: health, t: Date.now() });
      }
    };
    new MutationObserver(seen).observe(document.documentElement, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
      attributeFilter: ['data-state'],
    });
    seen();
  };
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', watch);
  } else {
    watch();
  }
}

/** Where a secret shows in the page: its text, its HTML, a field's value, the address, storage. */
async function whereShown(secret) {
  return page.evaluate((s) => {
    const found = [];
    if (document.body.innerText.includes(s)) found.push('text');
    if (document.documentElement.outerHTML.includes(s)) found.push('html');
    for (const el of document.querySelectorAll('input, textarea, select')) {
      if (el.type !== 'password' && String(el.value).includes(s)) {
        found.push(`value of ${el.id || el.name || el.tagName}`);
      }
    }
    if (location.href.includes(s)) found.push('address');
    if (document.title.includes(s)) found.push('title');
    for (const [name, store] of [
      ['localStorage', localStorage],
      ['sessionStorage', sessionStorage],
    ]) {
      for (let i = 0; i < store.length; i++) {
        const key = store.key(i);
        if ((store.getItem(key) ?? '').includes(s)) found.push(`${name} ${key}`);
      }
    }
    return found;
  }, secret);
}

async function checkSecrets(where) {
  seen.password_shown[where] = await whereShown(PASSWORD);
  // neither the operator's password nor the session (an HttpOnly cookie: not readable by scripts)
  const cookieReadable = await page.evaluate(() => document.cookie.includes('traffic_session'));
  seen.token_shown[where] = [
    ...(await whereShown(OPERATOR.password)),
    ...(cookieReadable ? ['document.cookie'] : []),
  ];
}

const frameNumber = () => number('[data-testid=frame-number]').catch(() => null);
const cameraBanner = async () => {
  const b = page.locator('[data-testid=camera-banner]');
  if (!(await b.count())) return null;
  return {
    state: await b.getAttribute('data-state', { timeout: 500 }).catch(() => null),
    text: (await b.innerText({ timeout: 500 }).catch(() => '')).trim(),
  };
};
const healthState = () =>
  page
    .locator('[data-testid=live-health] [data-testid=health]')
    .getAttribute('data-state', { timeout: 500 })
    .catch(() => null);

run.main({ initScripts: [recorder, cameraRecorder] }, async ({ page: opened }) => {
  page = opened;
  // what the page asked for and did not get (a 404 of a source without a run yet, say)
  result.failed_requests = [];
  page.on('response', (r) => {
    if (r.status() >= 400) {
      const u = new URL(r.url());
      result.failed_requests.push({ status: r.status(), path: u.pathname, t: Date.now() - t0 });
    }
  });

  let videoId;
  await step('add-camera', async () => {
    seen.session = await login(page, base, OPERATOR);
    await page.goto(`${base}/`);
    await page.getByRole('heading', { name: 'Add a camera', level: 2 }).waitFor();
    const form = page.getByTestId('add-camera');
    await form.getByLabel('Name', { exact: true }).fill(config.camera_name);
    await form.getByLabel('Camera URL', { exact: true }).fill(CAMERA_URL);
    const shots = [];
    await form.getByRole('button', { name: 'Test and add' }).click();
    // the server grabs a frame first (up to ~5 s): the progress shows meanwhile
    seen.progress_shown = await page
      .getByTestId('camera-progress')
      .waitFor({ timeout: 2_000 })
      .then(() => true)
      .catch(() => false);
    if (seen.progress_shown) shots.push(await shot('01-camera-testing'));
    const done = page.getByTestId('camera-done');
    const error = page.getByTestId('camera-error');
    await done.or(error).first().waitFor({ timeout: 30_000 });
    if (await error.isVisible())
      throw new Error(`the camera was refused: ${await error.innerText()}`);
    const message = (await done.innerText()).trim();
    seen.done_message = message;
    videoId = Number(/\(source (\d+)\)/.exec(message)?.[1]);
    if (!videoId) throw new Error(`no source id in "${message}"`);
    seen.video_id = videoId;
    seen.url_field_after = await form.getByLabel('Camera URL', { exact: true }).inputValue();
    const item = page.locator(`li[data-video-id="${videoId}"]`);
    await item.waitFor({ timeout: 10_000 });
    seen.list_item = {
      kind: await item.getAttribute('data-source-kind'),
      name: (await item.locator('h3 a').innerText()).trim(),
      badge: await item
        .getByTestId('kind')
        .innerText()
        .then((s) => s.trim())
        .catch(() => null),
      health: await item
        .getByTestId('health')
        .getAttribute('data-state')
        .catch(() => null),
      source_url: await item
        .getByTestId('source-url')
        .innerText()
        .then((s) => s.trim())
        .catch(() => null),
    };
    await checkSecrets('videos');
    shots.push(await shot('02-camera-added'));
    await axeOn('videos');
    return shots;
  });

  await step('calibrate', async () => {
    tell(`ADDED ${videoId}`);
    seen.calibration = JSON.parse(await answer('calibrated', 60_000));
  });

  await step('live-frames', async () => {
    await page
      .locator(`li[data-video-id="${videoId}"]`)
      .getByRole('link', { name: 'Live view' })
      .click();
    await page.waitForURL(`**/videos/${videoId}`);
    await page.getByTestId('kind').waitFor(); // the camera badge: the video is loaded
    const canvas = page.locator('[data-testid=frame-canvas]');
    await canvas.waitFor();
    await sleep(1000); // the thumbnail is drawn; the page has subscribed
    const before = await canvasProbe(canvas);
    seen.before_start = { banner: await cameraBanner(), health: await healthState() };
    await page.getByRole('button', { name: 'Start live' }).click();
    await until('frames drawn', async () => (await framesDrawn()) >= 5, 180_000, 250);
    const sample = async () => ({
      drawn: await framesDrawn(),
      frame: await frameNumber(),
      probe: await canvasProbe(canvas),
    });
    const first = await sample();
    await until(
      'the frame counter to rise',
      async () =>
        (await frameNumber()) >= first.frame + fps && (await framesDrawn()) >= first.drawn + 10,
      60_000,
      250,
    );
    const second = await sample();
    // live: the health badge says so, and the camera banner is gone
    await until(
      'the camera live, without its banner',
      async () => (await healthState()) === 'live' && !(await cameraBanner()),
      30_000,
      250,
    );
    seen.frames = framesSeen(before, first, second);
    // a loop of the clip counted before the outage: the report has vehicles to show
    seen.frames.tile_total = await until(
      `${config.vehicles} vehicles counted`,
      async () => {
        const n = await number('[data-testid=tile-total]');
        return n >= config.vehicles ? n : 0;
      },
      90_000,
      500,
    ).catch(() => number('[data-testid=tile-total]'));
    seen.live_health_facts = await text('[data-testid=live-health]').catch(() => null);
    await checkSecrets('live');
    const shots = [await shot('03-live-frames')];
    await axeOn('live');
    return shots;
  });

  await step('outage', async () => {
    const drawnAtStop = await framesDrawn();
    const frameAtStop = await frameNumber();
    tell('STOP');
    await answer('stopped', 30_000);
    const stoppedAt = Date.now();
    seen.outage = { drawn_at_stop: drawnAtStop, frame_at_stop: frameAtStop };
    const banner = await until(
      'the reconnecting banner',
      async () => {
        const b = await cameraBanner();
        return b && ['reconnecting', 'connecting'].includes(b.state) ? b : null;
      },
      60_000,
      200,
    );
    fs.writeFileSync(path.join(CONTROL, 'banner-seen'), String(Date.now()));
    seen.outage.banner_after_ms = Date.now() - stoppedAt;
    seen.outage.banner = banner;
    seen.outage.banner_role = await page
      .locator('[data-testid=camera-banner]')
      .evaluate((b) => b.closest('[role]')?.getAttribute('role') ?? null);
    seen.outage.health = await healthState();
    const shots = [await shot('04-camera-reconnecting')];
    await axeOn('live-reconnecting');
    // frames stop while the camera is down (a few in flight may still come)
    await sleep(2000);
    const stalledFrom = await framesDrawn();
    await sleep(2000);
    seen.outage.drawn_while_down = [stalledFrom, await framesDrawn()];
    return shots;
  });

  await step('resume', async () => {
    const started = JSON.parse(await answer('started', 120_000));
    const upAt = Date.now();
    seen.resume = { server: started };
    const drawnAtUp = await framesDrawn();
    const frameAtUp = await frameNumber();
    // the banner is gone (not just between two polls: the health says live) and new frames come
    await until(
      'the banner gone and new frames',
      async () =>
        !(await cameraBanner()) &&
        (await healthState()) === 'live' &&
        (await framesDrawn()) >= drawnAtUp + 10 &&
        (await frameNumber()) !== frameAtUp,
      120_000,
      250,
    );
    seen.resume.live_after_ms = Date.now() - upAt;
    const first = { drawn: await framesDrawn(), frame: await frameNumber() };
    await until(
      'the frame counter to rise after the restart',
      async () =>
        (await frameNumber()) >= first.frame + fps && (await framesDrawn()) >= first.drawn + 10,
      60_000,
      250,
    );
    seen.resume.drawn = [drawnAtUp, first.drawn, await framesDrawn()];
    seen.resume.frame_number = [frameAtUp, first.frame, await frameNumber()];
    seen.resume.health_facts = await text('[data-testid=live-health]').catch(() => null);
    const record = await page.evaluate(() => window.__camera);
    seen.camera_banners = record.banners;
    seen.health_states = record.health;
    seen.connection_banners = await page.evaluate(() => window.__e2e.banners.map((b) => b.state));
    await checkSecrets('live-after-restart');
    return [await shot('05-camera-resumed')];
  });

  await step('report', async () => {
    await page
      .getByRole('navigation', { name: 'Video pages' })
      .getByRole('link', { name: 'Report' })
      .click();
    await page.waitForURL(`**/videos/${videoId}/report`);
    const picker = page.getByTestId('window-picker');
    await picker.waitFor({ timeout: 20_000 });
    const csv = page.getByTestId('window-csv');
    // a camera's report opens on a window of its own: wait for it, then ask for 15 minutes
    await csv.waitFor({ timeout: 30_000 }).catch(() => undefined);
    seen.report_initial = {
      preset: await page.getByTestId('window-preset').inputValue(),
      csv_href: await csv.getAttribute('href').catch(() => null),
    };
    await page.getByTestId('window-preset').selectOption({ label: 'Last 15 minutes' });
    const askedAt = new Date();
    await picker.getByRole('button', { name: 'Show', exact: true }).click();
    const span = (href) => {
      const q = new URL(href, base).searchParams;
      return (Date.parse(q.get('to')) - Date.parse(q.get('from'))) / 1000;
    };
    await until(
      'the 15-minute window shown',
      async () => {
        const href = await csv.getAttribute('href', { timeout: 500 });
        return (
          href &&
          span(href) === 900 &&
          !(await page.getByTestId('window-loading').count()) &&
          (await page.locator('[data-testid=window-table] tbody tr[data-start]').count()) >= 1
        );
      },
      30_000,
      250,
    );
    const href = await csv.getAttribute('href');
    const query = Object.fromEntries(new URL(href, base).searchParams);
    const rows = page.locator('[data-testid=window-table] tbody tr[data-start]');
    seen.report = {
      asked_at: askedAt.toISOString(),
      preset: await page.getByTestId('window-preset').inputValue(),
      csv_href: href,
      csv_query: query,
      caption: await text('[data-testid=window-caption]'),
      total_volume: await number('[data-testid=window-total-volume]'),
      rows: await rows.evaluateAll((trs) =>
        trs.map((tr) => ({
          start: tr.dataset.start,
          label: tr.querySelector('th').innerText.trim(),
          volume: Number(tr.querySelector('[data-col=volume]').innerText.trim()),
          directions: Object.fromEntries(
            [...tr.querySelectorAll('[data-col^=direction-]')].map((td) => [
              td.dataset.col.slice('direction-'.length),
              Number(td.innerText.trim()),
            ]),
          ),
        })),
      ),
      column_headers: await page
        .locator('[data-testid=window-table] thead tr:nth-child(2) th')
        .allInnerTexts(),
    };
    const chart = page.getByTestId('window-chart');
    seen.report.chart = (await chart.count())
      ? {
          bars: await chart.locator('g.bar').count(),
          segments: await chart.locator('g.bar rect').count(),
          label: await chart.evaluate((svg) =>
            (svg.getAttribute('aria-labelledby') ?? '')
              .split(' ')
              .map((id) => document.getElementById(id)?.textContent?.trim() ?? '')
              .join(' | '),
          ),
          legend: await page.getByTestId('window-legend').locator('li').allInnerTexts(),
        }
      : null;
    seen.report.empty_notice = await page.getByTestId('window-empty').count();
    // the link's CSV as the browser gets it (same origin)
    seen.report.csv = await page.evaluate(async (h) => {
      const r = await fetch(h);
      const body = await r.text();
      const lines = body.split('\n').filter((l) => l.trim());
      return {
        status: r.status,
        type: r.headers.get('content-type'),
        header: lines[0] ?? null,
        lines: lines.length,
      };
    }, href);
    await page.getByTestId('window-report').scrollIntoViewIfNeeded();
    await checkSecrets('report');
    const shots = [await shot('06-report-15-minutes')];
    await axeOn('report');
    return shots;
  });
});
