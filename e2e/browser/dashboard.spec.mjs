// The dashboard in Debian's Chromium (playwright-core, headless) against the real stack, driven by
// e2e/test_dashboard_browser.py, which starts the stack, renders the ground-truth clip, serves a
// small control API (kill / start the backend) and asserts on the JSON this script writes.
//
//   node e2e/browser/dashboard.spec.mjs CONFIG.json
//
// CONFIG.json: {"base_url", "control_url", "clip", "calibration": CALIB.json, "truth": truth dict,
// "operator" and "viewer": {"username", "password"} of two accounts, "api_token": a token for the
// script's own REST reads, "artifacts": folder for screenshots and downloads, "result": where to
// write the result JSON}. The journey is an operator's; the last step checks what a viewer sees.
// Each step is recorded (name, ok, ms, screenshot, error); the observations go under `seen`, the
// axe-core violations per page under `axe`. Exit code 0 when every step ran, 1 otherwise.
import fs from 'node:fs';
import path from 'node:path';

import { canvasProbe, createRun, framesSeen, login, sleep, until } from './lib.mjs';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const base = config.base_url.replace(/\/$/, '');
const calib = config.calibration;
const truth = config.truth;
const speedersExpected = truth.vehicles.filter((v) => v.speeding).length;
const lastFrameInRoi = Math.max(...truth.vehicles.map((v) => v.last_frame_in_roi ?? 0));

const run = createRun({ name: 'dashboard', config });
const { artifacts, seen, shot, step, axeOn, text, number, framesDrawn } = run;

let page;

async function control(action) {
  const r = await fetch(`${config.control_url}/${action}`, { method: 'POST' });
  const body = await r.json();
  if (!r.ok) throw new Error(`control ${action}: ${r.status} ${JSON.stringify(body)}`);
  return body;
}

async function api(pathname) {
  const r = await fetch(`${base}${pathname}`, {
    headers: { Authorization: `Bearer ${config.api_token}` },
  });
  if (!r.ok) throw new Error(`GET ${pathname}: ${r.status}`);
  return r.json();
}

async function logEntries() {
  return page.$$eval('[data-testid=speeding-log] li.entry', (items) =>
    items.map((li) => ({
      track_id: Number(li.dataset.trackId),
      class_name: li.dataset.class,
      speed_kmh: Number(li.dataset.speed),
      source: li.dataset.source,
    })),
  );
}

const bannerState = () =>
  page
    .locator('[data-testid=banner]')
    .getAttribute('data-state', { timeout: 500 })
    .catch(() => null);

run.main({ contextOptions: { acceptDownloads: true } }, async ({ context, page: opened }) => {
  page = opened;
  let videoId;
  await step('upload', async () => {
    seen.operator_session = await login(page, base, config.operator);
    await page.goto(`${base}/`);
    await page.getByRole('heading', { name: 'Videos', level: 1 }).waitFor();
    // Loopback uploads a few MB in milliseconds: throttle the upload so that the progress bar
    // is on screen for a few seconds (about 3 s for the clip), as it is over a real network.
    const size = fs.statSync(config.clip).size;
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: Math.max(64 * 1024, Math.round(size / 3)),
    });
    await page.evaluate(() => {
      window.__progress = [];
      new MutationObserver(() => {
        const bar = document.querySelector('[data-testid=upload-progress] progress');
        if (bar) window.__progress.push(Number(bar.value));
      }).observe(document.body, {
        subtree: true,
        childList: true,
        attributes: true,
        characterData: true,
      });
    });
    await page.locator('#video-file').setInputFiles(config.clip);
    await page.locator('#video-name').fill('Ground truth (browser)');
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    const bar = page.locator('[data-testid=upload-progress]');
    await bar.waitFor({ state: 'visible', timeout: 10_000 });
    // a first progress event (or already done)
    await until(
      'upload progress above 0 %',
      async () =>
        (await page.evaluate(() => Math.max(0, ...window.__progress))) > 0 ||
        !(await bar.isVisible()),
      5_000,
      50,
    ).catch(() => undefined);
    const shots = [await shot('01-upload-progress')];
    seen.upload_progress_label = await bar
      .locator('label')
      .innerText()
      .catch(() => null);
    const done = page.locator('[data-testid=upload-done]');
    await done.waitFor({ timeout: 60_000 });
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: -1,
    });
    await cdp.detach();
    const message = await done.innerText();
    videoId = Number(/\(video (\d+)\)/.exec(message)?.[1]);
    if (!videoId) throw new Error(`no video id in "${message}"`);
    seen.video_id = videoId;
    seen.upload_progress_values = await page.evaluate(() => window.__progress);
    const item = page.locator(`li[data-video-id="${videoId}"]`);
    await item.waitFor();
    seen.video_list_status = (await item.locator('[data-testid=status]').innerText()).trim();
    shots.push(await shot('02-uploaded'));
    await axeOn('videos');
    return shots;
  });

  await step('calibrate', async () => {
    await page
      .locator(`li[data-video-id="${videoId}"]`)
      .getByRole('link', { name: 'Calibrate' })
      .click();
    await page.waitForURL(`**/videos/${videoId}/calibration`);
    const canvas = page.locator('[data-testid=calibration-canvas]');
    await canvas.waitFor();
    // the first frame is drawn (the canvas is the video's size and shows many colours)
    await until(
      'the first frame on the calibration canvas',
      async () => {
        const p = await canvasProbe(canvas);
        return p.width === truth.camera.width && p.colours > 20;
      },
      20_000,
    );
    await canvas.scrollIntoViewIfNeeded();
    const box = await canvas.boundingBox();
    const size = await canvas.evaluate((c) => [c.width, c.height]);
    const toPage = ([u, v]) => [
      box.x + (u * box.width) / size[0],
      box.y + (v * box.height) / size[1],
    ];
    await page.getByLabel('Edit the ROI polygon').check();
    for (const p of calib.roi_polygon) {
      const [x, y] = toPage(p);
      await page.mouse.click(x, y);
    }
    await page.getByLabel('Place reference points').check();
    for (const p of calib.image_points) {
      const [x, y] = toPage(p);
      await page.mouse.click(x, y);
    }
    // the table renders after the clicks (change detection is asynchronous): wait for it
    const pointRows = page.locator('[data-testid=points-table] tbody tr');
    let rows = 0;
    try {
      await until(
        'a table row per reference point',
        async () => (rows = await pointRows.count()) === calib.image_points.length,
        5_000,
      );
    } catch {
      // reported below with the count seen last
    }
    if (rows !== calib.image_points.length) {
      throw new Error(`${rows} reference points placed, expected ${calib.image_points.length}`);
    }
    for (const [i, [X, Y]] of calib.world_points.entries()) {
      await page.locator(`[data-testid=world-x-${i}]`).fill(String(X));
      await page.locator(`[data-testid=world-x-${i}]`).press('Tab');
      await page.locator(`[data-testid=world-y-${i}]`).fill(String(Y));
      await page.locator(`[data-testid=world-y-${i}]`).press('Tab');
    }
    await page.locator('#speed-limit').fill(String(calib.speed_limit_kmh ?? 60));
    await page.locator('#speed-limit').press('Tab');
    await until(
      'the fit in the page',
      async () => /reprojection error/.test(await text('[data-testid=client-fit]')),
      5_000,
    );
    seen.client_fit = await text('[data-testid=client-fit]');
    seen.roi_vertices = await page
      .locator('input[aria-label^="ROI vertex"][aria-label$="x in pixels"]')
      .count();
    const shots = [await shot('03-calibration-edited')];
    await page.getByTestId('save-calibration').click();
    const saved = page.locator('[data-testid=saved]');
    await saved.waitFor({ timeout: 15_000 });
    seen.saved_text = (await saved.innerText()).trim();
    seen.reprojection_error_m = Number(/([\d.]+) m\./.exec(seen.saved_text)?.[1]);
    await page.locator('#canvas-title').scrollIntoViewIfNeeded();
    await page.evaluate(() => window.scrollTo(0, 0));
    shots.push(await shot('04-calibration-saved'));
    await axeOn('calibration');
    return shots;
  });

  await step('live-frames', async () => {
    await page.getByRole('link', { name: 'Live view' }).click();
    await page.waitForURL(`**/videos/${videoId}`);
    const canvas = page.locator('[data-testid=frame-canvas]');
    await canvas.waitFor();
    await sleep(1000); // the thumbnail is drawn; the page has subscribed
    const before = await canvasProbe(canvas);
    await page.getByRole('button', { name: 'Start live' }).click();
    await until('frames drawn', async () => (await framesDrawn()) >= 5, 120_000);
    const sample = async () => ({
      drawn: await framesDrawn(),
      frame: await number('[data-testid=frame-number]'),
      probe: await canvasProbe(canvas),
    });
    const first = await sample();
    // the first micro-batches of a run are slow: wait for the stream to move on (1 s of video)
    await until(
      'the frame counter to rise',
      async () =>
        (await number('[data-testid=frame-number]')) >= first.frame + truth.fps &&
        (await framesDrawn()) >= first.drawn + 10,
      60_000,
      250,
    );
    const second = await sample();
    seen.frames = framesSeen(before, first, second);
    return [await shot('05-live-frames')];
  });

  let beforeKill;
  await step('speeding-log', async () => {
    const shots = [];
    // all the truth's speeders in the log, or every truth vehicle gone from the ROI for 2 s (no
    // more can come: a degraded stream may have missed one, which the test then checks was
    // said; the count is asserted by the test, not here)
    await until(
      `${speedersExpected} entries in the speeding log, or frame ${lastFrameInRoi + 2 * truth.fps}`,
      async () => {
        // one picture of traffic with a speeder on screen (the picture trails the tiles a bit)
        if (!shots.length && (await number('[data-testid=tile-speeding-now]')) > 0) {
          await sleep(600);
          shots.push(await shot('06-live-traffic'));
        }
        return (
          (await logEntries()).length >= speedersExpected ||
          (await number('[data-testid=frame-number]')) > lastFrameInRoi + 2 * truth.fps
        );
      },
      120_000,
      250,
    );
    // every truth vehicle has left the ROI (plus 1 s): no more speeder can come
    await until(
      `frame ${lastFrameInRoi + truth.fps} on screen`,
      async () => (await number('[data-testid=frame-number]')) > lastFrameInRoi + truth.fps,
      60_000,
    );
    seen.log_live = await logEntries();
    seen.tiles = {
      total: await number('[data-testid=tile-total]'),
      speeders: await number('[data-testid=tile-speeding-total]'),
    };
    shots.push(await shot('06-live-speeding-log'));
    await axeOn('live');
    beforeKill = seen.log_live;
    return shots;
  });

  await step('backend-restart', async () => {
    await page.evaluate(() => (window.__sameDocument = 'before the backend restart'));
    const drawnAtKill = await framesDrawn();
    const killedAt = Date.now();
    seen.restart = { drawn_at_kill: drawnAtKill, kill: await control('kill/backend') };
    await page
      .locator('[data-testid=banner][data-state=reconnecting]')
      .waitFor({ timeout: 10_000 });
    seen.restart.reconnecting_after_ms = Date.now() - killedAt;
    seen.restart.banner_text = await text('[data-testid=banner]');
    const shots = [await shot('07-reconnecting')];
    await sleep(Math.max(0, 3000 - (Date.now() - killedAt)));
    const down = await control('start/backend');
    const upAt = Date.now();
    seen.restart.start = down;
    seen.restart.down_ms = upAt - killedAt;
    await until(
      'frames drawn again, connection banner gone',
      async () => {
        const state = await bannerState();
        return (
          (await framesDrawn()) >= drawnAtKill + 15 &&
          state !== 'reconnecting' &&
          state !== 'unreachable'
        );
      },
      60_000,
      250,
    );
    seen.restart.resumed_after_up_ms = Date.now() - upAt;
    seen.restart.drawn_after = await framesDrawn();
    seen.restart.same_document = await page.evaluate(() => window.__sameDocument ?? null);
    seen.restart.banners = await page.evaluate(() => window.__e2e.banners.map((b) => b.state));
    shots.push(await shot('08-resumed'));
    return shots;
  });

  await step('reload', async () => {
    const before = await logEntries();
    await page.reload();
    await page.locator('[data-testid=frame-canvas]').waitFor();
    await until(
      `${before.length} log entries after the reload`,
      async () => (await logEntries()).length >= before.length,
      20_000,
    );
    seen.log_after_reload = await logEntries();
    seen.log_before_reload = before;
    // frames keep coming after the reload while the stream runs
    seen.frames_after_reload = await until('a frame after the reload', framesDrawn, 20_000).catch(
      () => 0,
    );
    return [await shot('09-after-reload')];
  });

  await step('end-of-stream', async () => {
    await page.locator('[data-testid=banner][data-state=ended]').waitFor({ timeout: 180_000 });
    seen.summary = await text('[data-testid=summary]').catch(() => null);
    const video = await until(
      'the video stored as completed',
      async () => {
        const v = await api(`/api/videos/${videoId}`);
        return ['completed', 'failed', 'stopped'].includes(v.status) ? v : null;
      },
      180_000,
      1000,
    );
    seen.final_status = video.status;
    await sleep(3500); // the page reloads the stored violations 3 s after the end
    seen.log_final = await logEntries();
    seen.live_banners = await page.evaluate(() => window.__e2e.banners.map((b) => b.state));
    // what the page did with the frames of this document (since the reload): drawn, dropped by
    // itself (too late to draw while a newer frame waited), its own delay (arrival -> drawn, ms),
    // and the processor's side as shown (detection rate, dropped frames, degraded notice)
    seen.page_playout = await page.evaluate(() => {
      const canvas = document.querySelector('[data-testid=frame-canvas]');
      const d = canvas?.dataset ?? {};
      const num = (v) => (v === undefined || v === '' ? null : Number(v));
      const textOf = (sel) => document.querySelector(sel)?.textContent?.trim() ?? null;
      return {
        received: num(d.framesReceived),
        drawn: num(d.framesDrawn),
        page_dropped: num(d.pageDropped),
        page_late: num(d.pageLate),
        page_delay_ms: {
          p50: num(d.pageDelayP50),
          p95: num(d.pageDelayP95),
          max: num(d.pageDelayMax),
        },
        dropped_counter: textOf('[data-testid=page-dropped]'),
        detect_hz: textOf('[data-testid=detect-hz]'),
        processor_dropped: textOf('[data-testid=processor-dropped]'),
        degraded_notice: textOf('[data-testid=degraded]'),
      };
    });
    return [await shot('10-live-ended')];
  });

  await step('report', async () => {
    await page.getByRole('link', { name: 'Report' }).first().click();
    await page.waitForURL(`**/videos/${videoId}/report`);
    await page.locator('[data-testid=report-total]').waitFor({ timeout: 20_000 });
    seen.report_total = await number('[data-testid=report-total]');
    seen.report_speeding = await number('[data-testid=report-speeding]');
    seen.class_mix = Object.fromEntries(
      await page.$$eval('[data-testid=class-mix] tbody tr', (rows) =>
        rows.map((r) => [r.cells[0].innerText.trim(), Number(r.cells[1].innerText.trim())]),
      ),
    );
    // the tables fill from their own requests: wait for them (the test asserts the counts)
    const passageRows = page.locator('[data-testid=passages-table] tbody tr');
    const violationRows = page.locator('[data-testid=violations-table] tbody tr');
    try {
      await until(
        'the passages and violations tables',
        async () =>
          (await passageRows.count()) >= seen.report_total &&
          (await violationRows.count()) >= seen.report_speeding,
        10_000,
      );
    } catch {
      // the counts seen are asserted by the test
    }
    seen.passages_rows = await passageRows.count();
    seen.violations_rows = await violationRows.count();
    seen.charts = {};
    for (const name of ['chart-histogram', 'chart-volume', 'chart-mix']) {
      const chart = page.locator(`[data-testid=${name}] canvas`).first();
      await chart.waitFor({ timeout: 20_000 });
      // drawn once the animation ran: painted pixels in several colours
      seen.charts[name] = await until(
        `${name} drawn`,
        async () => {
          const p = await canvasProbe(chart);
          return p.painted > 0.01 && p.colours > 3
            ? { painted: p.painted, colours: p.colours }
            : null;
        },
        10_000,
        250,
      );
    }
    await page
      .getByRole('heading', { name: 'Traffic report', exact: false })
      .scrollIntoViewIfNeeded();
    await sleep(1200); // the charts' entry animation
    const shots = [await shot('11-report')];
    for (const [testid, file] of [
      ['passages-csv', 'passages.csv'],
      ['violations-csv', 'violations.csv'],
    ]) {
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByTestId(testid).click(),
      ]);
      const target = path.join(artifacts, file);
      await download.saveAs(target);
      seen[`${testid}_file`] = target;
      seen[`${testid}_suggested`] = download.suggestedFilename();
    }
    await page.locator('[data-testid=passages-table]').scrollIntoViewIfNeeded();
    shots.push(await shot('12-report-tables'));
    await axeOn('report');
    return shots;
  });
  await step('viewer', async () => {
    // a viewer, in a browser of its own: watches and reads, is offered no start, upload or delete
    const other = await context.browser().newContext();
    const viewerPage = await other.newPage();
    try {
      seen.viewer_session = await login(viewerPage, base, config.viewer);
      await viewerPage.getByRole('heading', { name: 'Videos', level: 1 }).waitFor();
      await viewerPage.locator(`a[href="/videos/${videoId}"]`).first().waitFor();
      const count = (testid) => viewerPage.getByTestId(testid).count();
      seen.viewer_controls = {
        upload_form: await count('upload-form'),
        add_camera: await count('add-camera'),
        delete: await count('delete-video'),
      };
      await viewerPage.goto(`${base}/videos/${videoId}`);
      await viewerPage.locator('[data-testid=frame-canvas]').waitFor();
      await sleep(500);
      seen.viewer_controls.start = await viewerPage
        .getByRole('button', { name: /^Start/ })
        .count();
      seen.viewer_controls.stop = await count('stop');
      await viewerPage.screenshot({ path: path.join(artifacts, '13-viewer.png') });
      // logging out ends the session: the page goes back to the login form
      await viewerPage.getByTestId('logout').click();
      await viewerPage.waitForURL((url) => url.pathname.startsWith('/login'), { timeout: 15_000 });
      seen.viewer_logged_out = true;
    } finally {
      await other.close();
    }
    return [path.join(artifacts, '13-viewer.png')];
  });
});
