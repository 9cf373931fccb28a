// Screenshots of a running dashboard, for people to look at (not a test): the sweeps page, one
// sweep, one of its trials and the workers page, in each browser, at a laptop viewport. Each page
// gives NAME.png (what the viewport shows) and NAME-full.png (the whole page), and a line with
// the page's size and any horizontal overflow (an element wider than the viewport). The sweep
// page also gives two crops: NAME-analysis.png (the analysis panel alone) and NAME-plots.png
// (title, curves, final accuracy and iterations to target; the other panels hidden).
//   node bench/dashboard/dashboard_screenshots.mjs URL OUT_DIR [--browsers chromium,firefox]
//        [--viewport 1366x768] [--sweep ID] [--trial ID] [--pages sweeps,sweep,trial,workers]
// URL is the server's HTTP address (http://127.0.0.1:PORT). The sweep defaults to the newest;
// without --trial the sweep's finished trials with the best and the worst final accuracy are
// taken (trial-best, trial-worst).
import fs from 'node:fs';
import path from 'node:path';
import {launchBrowser} from '../../tests/web/browser_driver.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf('--' + name);
  return i >= 0 ? args.splice(i, 2)[1] : fallback;
};
const browsers = option('browsers', 'chromium,firefox').split(',');
const [width, height] = option('viewport', '1366x768').split('x').map(Number);
let sweepId = option('sweep', null);
const trialId = option('trial', null);
const only = option('pages', 'sweeps,sweep,trial,workers').split(',');
const [base, out] = args;
if (!base || !out || !(width > 0 && height > 0)) {
  console.error('usage: dashboard_screenshots.mjs URL OUT_DIR [--browsers chromium,firefox] ' +
                '[--viewport WxH] [--sweep ID] [--trial ID] [--pages sweeps,sweep,trial,workers]');
  process.exit(2);
}
fs.mkdirSync(out, {recursive: true});
const api = async (p) => {
  const response = await fetch(base + p);
  if (!response.ok) throw new Error(`GET ${p}: HTTP ${response.status}`);
  return response.json();
};

if (!sweepId) {
  const {sweeps} = await api('/api/sweeps');
  if (!sweeps.length) throw new Error('the server has no sweep');
  sweepId = String(sweeps[0].id);
}
let trials = [['trial', trialId]];
if (!trialId && only.includes('trial')) {
  const table = await api(`/api/sweeps/${sweepId}/table`);
  const col = Object.fromEntries(table.columns.map((c, i) => [c, i]));
  const done = table.rows.filter((r) => r[col.state] === 'DONE');
  const rows = done.length ? done : table.rows;
  if (!rows.length) throw new Error(`sweep ${sweepId} has no trial`);
  rows.sort((a, b) => (b[col.final_test_accuracy] ?? -1) - (a[col.final_test_accuracy] ?? -1));
  trials = [['trial-best', rows[0][col.id]], ['trial-worst', rows[rows.length - 1][col.id]]];
  if (rows.length === 1) trials.pop();
}
const pages = [['sweeps', '/'], ['sweep', `/sweeps/${sweepId}`],
               ...trials.map(([what, id]) => [what, `/trials/${id}`]), ['workers', '/workers']]
  .filter(([what]) => only.includes(what.replace(/-.*/, '')));

let failed = 0;
for (const name of browsers) {
  const browser = await launchBrowser(name);
  try {
    const page = await browser.newPage({width, height});
    for (const [what, hash] of pages) {
      await page.goto(`${base}/#${hash}`);
      await page.waitFor('body[data-ready="1"]', 30000);
      // The analysis panel loads after the page is ready (it may take longer).
      if (what === 'sweep') {
        await page.waitFor('#analysis[data-state="ready"], #analysis[data-state="error"], body:not(:has(#analysis))', 60000);
      }
      // Let uPlot's resize observers settle before the picture.
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      const layout = await page.evaluate((w) => {
        const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
          (typeof e.className === 'string' && e.className ? '.' + e.className.split(' ')[0] : '');
        const wide = [...document.querySelectorAll('body *')]
          .filter((e) => e.getBoundingClientRect().right > w + 1 && e.offsetParent !== null)
          .slice(0, 5).map(name);
        return {scrollWidth: document.documentElement.scrollWidth,
                scrollHeight: document.documentElement.scrollHeight, wide};
      }, width);
      const file = path.join(out, `${name}-${what}`);
      await page.screenshot(file + '.png', false);
      await page.screenshot(file + '-full.png', true);
      const overflow = layout.scrollWidth > width ?
        `, OVERFLOW: page ${layout.scrollWidth} px wide (${layout.wide.join(', ')})` : '';
      const size = `${layout.scrollWidth}x${layout.scrollHeight}`;
      console.log(`${name} ${what}: ${file}.png, page ${size}${overflow}`);
      if (overflow) failed++;
      if (what === 'sweep' && await page.count('#analysis')) {
        await page.screenshotElement('#analysis', file + '-analysis.png');
        // The plots alone: everything after the curves and error-bar panels hidden.
        await page.evaluate(() => {
          for (const e of document.querySelectorAll('#analysis, #heatmap, #table')) {
            const panel = e.closest('.panel');
            panel.dataset.hiddenForShot = '1'; panel.style.display = 'none';
          }
        });
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
        await page.screenshotElement('#app', file + '-plots.png');
        await page.evaluate(() => document.querySelectorAll('[data-hidden-for-shot]').forEach((e) => { e.style.display = ''; }));
        console.log(`${name} ${what}: ${file}-analysis.png, ${file}-plots.png`);
      }
    }
  } finally {
    for (const problem of await browser.close()) { console.log(problem); failed++; }
  }
}
process.exit(failed ? 1 : 0);
