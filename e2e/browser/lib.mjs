// Shared by dashboard.spec.mjs and page_fps.mjs: Debian's Chromium through playwright-core (no
// browser download), an init script that records what the page shows over time, canvas probes.
import { createRequire } from 'node:module';

import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
export const AXE_PATH = require.resolve('axe-core/axe.min.js');
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

/** axe-core on the page as it is: the violations, reduced to what a report needs. */
export async function axe(page) {
  if (!(await page.evaluate(() => 'axe' in window))) {
    await page.addScriptTag({ path: AXE_PATH });
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
