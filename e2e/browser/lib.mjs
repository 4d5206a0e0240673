// Shared by dashboard.spec.mjs, camera.spec.mjs and page_fps.mjs: Debian's Chromium through
// playwright-core (no browser download), an init script that records what the page shows over
// time, canvas probes, and a spec's run (`createRun`: its steps, screenshots and result file).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
export const AXE_PATH = require.resolve('axe-core/axe.min.js');
let axeSource;
const AXE_SOURCE = () => (axeSource ??= fs.readFileSync(AXE_PATH, 'utf8'));
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // small /dev/shm in containers; no GPU on CI
    args: ['--disable-dev-shm-usage', '--disable-gpu'],
  });
}

/**
 * Runs in the page before its own scripts, on every load (a reload too): records the banner's
 * states and the canvas counters the live view writes (`data-frames-received`,
 * `data-frames-drawn`) with their times, in `window.__e2e`.
 */
export function recorder() {
  const rec = {
    loadedAt: performance.timeOrigin,
    banners: [],
    received: [],
    drawn: [],
  };
  window.__e2e = rec;
  const watch = () => {
    let last;
    const seen = () => {
      const banner = document.querySelector('[data-testid=banner]');
      const state = banner ? banner.getAttribute('data-state') : null;
      if (state !== last) {
        last = state;
        rec.banners.push({ state, t: performance.now() });
      }
    };
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.type === 'attributes' && r.target instanceof HTMLCanvasElement) {
          const value = Number(r.target.getAttribute(r.attributeName));
          const list = r.attributeName === 'data-frames-drawn' ? rec.drawn : rec.received;
          list.push([performance.now(), value]);
        }
      }
      seen();
    }).observe(document.documentElement, {
      subtree: true,
      childList: true,
      attributes: true,
      attributeFilter: ['data-state', 'data-frames-drawn', 'data-frames-received'],
    });
    seen();
  };
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', watch);
  } else {
    watch();
  }
}

/** A small grey-level thumbnail (cols x rows means) of a canvas, plus how much of it is painted. */
export async function canvasProbe(locator, cols = 32, rows = 18) {
  return locator.evaluate(
    (canvas, [cols, rows]) => {
      const ctx = canvas.getContext('2d');
      const { width, height } = canvas;
      if (!ctx || !width || !height) return { width, height, cells: [], painted: 0, colours: 0 };
      const data = ctx.getImageData(0, 0, width, height).data;
      const sums = new Array(cols * rows).fill(0);
      const counts = new Array(cols * rows).fill(0);
      const colours = new Set();
      let painted = 0;
      for (let y = 0; y < height; y += 2) {
        for (let x = 0; x < width; x += 2) {
          const i = (y * width + x) * 4;
          const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
          if (a > 0 && !(r > 250 && g > 250 && b > 250)) painted++;
          if (colours.size < 512) colours.add((r >> 4) * 256 + (g >> 4) * 16 + (b >> 4));
          const cell = Math.floor((y * rows) / height) * cols + Math.floor((x * cols) / width);
          sums[cell] += (r + g + b) / 3;
          counts[cell]++;
        }
      }
      return {
        width,
        height,
        cells: sums.map((s, i) => (counts[i] ? s / counts[i] : 0)),
        painted: painted / Math.ceil(width / 2) / Math.ceil(height / 2),
        colours: colours.size,
      };
    },
    [cols, rows],
  );
}

/** Mean absolute difference (grey levels, 0-255) between two probes of one canvas. */
export function probeDifference(a, b) {
  if (!a.cells.length || a.cells.length !== b.cells.length) return 255;
  return a.cells.reduce((sum, v, i) => sum + Math.abs(v - b.cells[i]), 0) / a.cells.length;
}

/**
 * The live canvas over two samples (`{ drawn, frame, probe }`, a few seconds apart) after the
 * thumbnail's probe (`before`): the frame counters, how much the picture changed, how painted.
 */
export function framesSeen(before, first, second) {
  return {
    drawn: [first.drawn, second.drawn],
    frame_number: [first.frame, second.frame],
    change_from_thumbnail: probeDifference(before, first.probe),
    change_between: probeDifference(first.probe, second.probe),
    painted: second.probe.painted,
  };
}

/** axe-core on the page as it is: the violations, reduced to what a report needs. */
export async function axe(page) {
  if (!(await page.evaluate(() => 'axe' in window))) {
    // evaluated by the DevTools protocol, not as a <script> of the page: the page's CSP
    // (script-src 'self', issue 17) stays in force for everything the page itself runs
    await page.evaluate(AXE_SOURCE());
  }
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => ({ target: n.target, summary: n.failureSummary })),
    }));
  });
  return result;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` until it returns a truthy value; that value, or throws after `timeoutMs`. */
export async function until(what, fn, timeoutMs, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what} (last: ${String(last)})`,
      );
    }
    await sleep(everyMs);
  }
}

/**
 * A spec's run against the stack: the result it writes to `config.result` (`steps`, each with its
 * name, ok, ms, screenshots and error; the observations under `seen`; the axe-core violations per
 * page under `axe`; the page's console errors and warnings, its uncaught errors, `seconds`, `ok`),
 * its log lines (`[name 12.3s] ...`), screenshots in `config.artifacts`.
 *
 * `scrub` is applied to whatever the run writes: the result file, the log lines, the errors kept
 * (a spec with secrets passes one that masks them). `seen` is the initial `result.seen`.
 *
 * `main(options, body)` launches Chromium (`open`), runs `body({ context, page })` (its steps)
 * and exits: 0 when every step ran, 1 when one failed (recorded in its step), 2 on anything else
 * (`result.fatal`).
 */
export function createRun({ name, config, scrub = (s) => String(s), seen = {} }) {
  const artifacts = config.artifacts;
  fs.mkdirSync(artifacts, { recursive: true });
  const result = { steps: [], seen, axe: {}, console: [], page_errors: [], ok: false };
  const t0 = Date.now();
  let page;
  let browser;

  const log = (...args) =>
    console.log(
      `[${name} ${((Date.now() - t0) / 1000).toFixed(1)}s]`,
      ...args.map((a) => (typeof a === 'string' ? scrub(a) : a)),
    );

  function save() {
    fs.writeFileSync(config.result, scrub(JSON.stringify(result, null, 1)));
  }

  async function shot(file) {
    const target = path.join(artifacts, `${file}.png`);
    await page.screenshot({ path: target });
    return target;
  }

  async function step(stepName, fn) {
    const started = Date.now();
    const entry = { name: stepName, ok: false, ms: 0, screenshots: [] };
    result.steps.push(entry);
    log(`step ${stepName}`);
    try {
      const shots = await fn();
      entry.screenshots = shots ?? [];
      entry.ok = true;
    } catch (error) {
      entry.error = scrub(error?.stack ?? error);
      log(`step ${stepName} FAILED: ${scrub(error)}`);
      try {
        entry.screenshots.push(await shot(`failed-${stepName}`));
      } catch {
        // no page to capture
      }
      throw error;
    } finally {
      entry.ms = Date.now() - started;
      save();
    }
  }

  async function axeOn(pageName) {
    const violations = await axe(page);
    result.axe[pageName] = violations;
    const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    log(`axe ${pageName}: ${violations.length} violations (${bad.length} serious/critical)`);
  }

  const text = async (selector) => (await page.locator(selector).first().innerText()).trim();
  const number = async (selector) => Number((await text(selector)).replace(/[^\d.-]/g, ''));
  const framesDrawn = () =>
    page
      .locator('[data-testid=frame-canvas]')
      .evaluate((c) => Number(c.dataset.framesDrawn ?? 0))
      .catch(() => 0);

  /** Chromium, a 1280x800 context with the init scripts, its page: console and errors recorded. */
  async function open({ contextOptions = {}, initScripts = [recorder] } = {}) {
    browser = await launch();
    const context = await browser.newContext({
      viewport: { width: 1280, height: 800 },
      ...contextOptions,
    });
    for (const script of initScripts) await context.addInitScript(script);
    page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') {
        result.console.push({ type: m.type(), text: m.text().slice(0, 300), t: Date.now() - t0 });
      }
    });
    page.on('pageerror', (e) => result.page_errors.push(String(e?.stack ?? e).slice(0, 1000)));
    return { browser, context, page };
  }

  async function run(options, body) {
    const opened = await open(options);
    try {
      await body(opened);
      result.ok = true;
    } catch {
      // recorded in its step
    } finally {
      result.seconds = (Date.now() - t0) / 1000;
      save();
      await browser.close();
    }
    return result.ok ? 0 : 1;
  }

  function main(options, body) {
    run(options, body).then(
      (code) => process.exit(code),
      (error) => {
        result.fatal = scrub(error?.stack ?? error);
        save();
        console.error(scrub(error?.stack ?? error));
        process.exit(2);
      },
    );
  }

  return {
    result,
    seen: result.seen,
    t0,
    artifacts,
    log,
    save,
    shot,
    step,
    axeOn,
    text,
    number,
    framesDrawn,
    main,
  };
}

/**
 * Logs in through the dashboard's login page as `{ username, password }` (issue 17) and waits
 * until the app has left it (it returns to `returnPath`, `/` by default). Returns the session
 * user and role the header shows.
 */
export async function login(page, base, { username, password }, returnPath = '/') {
  await page.goto(`${base}/login?returnUrl=${encodeURIComponent(returnPath)}`);
  await page.getByTestId('login-username').fill(username);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await page.waitForURL((url) => !url.pathname.startsWith('/login'), { timeout: 15_000 });
  const user = page.getByTestId('session-user');
  await user.waitFor({ timeout: 15_000 });
  return {
    user: (await user.innerText()).trim(),
    role: (await page.getByTestId('session-role').innerText()).trim(),
  };
}
