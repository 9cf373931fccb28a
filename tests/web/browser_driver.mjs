// One small page interface over two drivers, so the dashboard checks (dashboard_checks.mjs) and
// the screenshot tool are written once: Chromium through playwright-core (CDP), stock Firefox ESR
// through puppeteer-core (WebDriver BiDi; Playwright only drives its own patched Firefox).
// launchBrowser() throws an Error with code 'MISSING' saying what is missing (executable, npm
// package).
import {createRequire} from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(repo, 'package.json'));

export const browserNames = ['chromium', 'firefox'];
export const defaultExecutable = {
  chromium: process.env.BITSWEEP_CHROMIUM || '/usr/bin/chromium',
  firefox: process.env.BITSWEEP_FIREFOX || '/usr/bin/firefox-esr',
};
const npmPackage = {chromium: 'playwright-core', firefox: 'puppeteer-core'};
const debianPackage = {chromium: 'chromium', firefox: 'firefox-esr'};

// Firefox may connect to nothing but loopback (the test rule). puppeteer-core already points
// updates, blocklists, safe browsing and health reports at a dummy host; these add the services
// it leaves on, and as a catch-all send every non-loopback connection to a proxy on a closed
// loopback port (with no fallback to a direct connection), so nothing can leave the machine.
const firefoxOfflinePrefs = {
  'app.update.auto': false,
  'app.update.checkInstallTime': false,
  'app.update.disabledForTesting': true,
  'app.normandy.enabled': false,
  'app.shield.optoutstudies.enabled': false,
  'browser.ping-centre.telemetry': false,
  'browser.region.network.url': '',
  'browser.region.update.enabled': false,
  'browser.topsites.contile.enabled': false,
  'browser.newtabpage.activity-stream.feeds.telemetry': false,
  'browser.newtabpage.activity-stream.telemetry': false,
  'captivedetect.canonicalURL': '',
  'datareporting.policy.dataSubmissionEnabled': false,
  'dom.push.connection.enabled': false,
  'dom.push.enabled': false,
  'extensions.blocklist.enabled': false,
  'extensions.systemAddon.update.enabled': false,
  'geo.provider.network.url': '',
  'identity.fxaccounts.enabled': false,
  'media.gmp-gmpopenh264.enabled': false,
  'messaging-system.rsexperimentloader.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'network.dns.disablePrefetch': true,
  // Firefox still resolves some service host names (remote settings) itself: answer every
  // lookup with 127.0.0.1 without asking the system resolver.
  'network.dns.native-is-localhost': true,
  'network.predictor.enabled': false,
  'network.prefetch-next': false,
  'network.trr.mode': 5,
  'toolkit.telemetry.archive.enabled': false,
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.server': '',
  'toolkit.telemetry.unified': false,
  'network.proxy.type': 1,
  'network.proxy.share_proxy_settings': true,
  'network.proxy.http': '127.0.0.1',
  'network.proxy.http_port': 1,
  'network.proxy.ssl': '127.0.0.1',
  'network.proxy.ssl_port': 1,
  'network.proxy.socks': '127.0.0.1',
  'network.proxy.socks_port': 1,
  'network.proxy.socks_remote_dns': true,
  'network.proxy.no_proxies_on': '127.0.0.1,localhost',
  'network.proxy.allow_hijacking_localhost': false,
  'network.proxy.failover_direct': false,
};

// The same rule for Chromium: playwright-core's default flags still leave it looking up Google
// hosts (accounts, autofill, optimisation guide, component updates). Every host name resolves to
// nothing and every non-loopback connection goes to a closed loopback port (Chromium never
// proxies loopback).
const chromiumOfflineArgs = [
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  '--proxy-server=127.0.0.1:1',
  '--disable-component-update',
  '--disable-domain-reliability',
  '--disable-sync',
  '--no-pings',
  '--disable-features=AutofillServerCommunication,OptimizationHints,MediaRouter',
];

// The methods every page driver has; selectors are CSS, `attr`/`count`/`text` read the first match.
class Page {
  constructor(page) { this.page = page; }
  evaluate(fn, arg) { return this.page.evaluate(fn, arg); }
  attr(selector, name) {
    return this.evaluate(({s, n}) => document.querySelector(s)?.getAttribute(n) ?? null,
                         {s: selector, n: name});
  }
  count(selector) { return this.evaluate((s) => document.querySelectorAll(s).length, selector); }
  text(selector) { return this.evaluate((s) => document.querySelector(s)?.innerText ?? '', selector); }
  texts(selector) {
    return this.evaluate((s) => [...document.querySelectorAll(s)].map((e) => e.textContent), selector);
  }
  waitFor(selector, timeoutMs) { return this.page.waitForSelector(selector, {timeout: timeoutMs}); }
  screenshot(file, fullPage = true) { return this.page.screenshot({path: file, fullPage}); }
  // A picture of the first element matching `selector` only (its bounding box).
  async screenshotElement(selector, file) {
    const element = await this.page.$(selector);
    if (!element) throw new Error(`no element ${selector} to take a picture of`);
    await element.screenshot({path: file});
  }
}

class PlaywrightPage extends Page {
  goto(url) { return this.page.goto(url); }
  check(selector) { return this.page.check(selector); }
  fill(selector, text) { return this.page.fill(selector, text); }
  onRequest(fn) { this.page.on('request', (r) => fn(r.url())); }
  onPageError(fn) { this.page.on('pageerror', (e) => fn(e.message)); }
}

class PuppeteerPage extends Page {
  goto(url) { return this.page.goto(url); }
  async check(selector) {
    const checked = await this.evaluate((s) => document.querySelector(s).checked, selector);
    if (!checked) await this.page.click(selector);
  }
  fill(selector, text) { return this.page.locator(selector).fill(text); }
  onRequest(fn) { this.page.on('request', (r) => fn(r.url())); }
  onPageError(fn) { this.page.on('pageerror', (e) => fn(e.message)); }
}

function missing(what, hint) {
  return Object.assign(new Error(`${what} is missing (${hint})`), {code: 'MISSING'});
}

function requireDriver(name) {
  try {
    return require(npmPackage[name]);
  } catch {
    throw missing(`npm package ${npmPackage[name]}`, 'scripts/setup installs it');
  }
}

// Live (not zombie) processes of the Firefox whose main process is `pid`: its process group
// (both drivers start the browser detached, as a group leader, and content processes inherit the
// group) and its crash helper, which daemonises into a session of its own but is started with
// the main pid as its first argument.
function firefoxProcesses(pid) {
  const found = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the parenthesised command: state ppid pgrp ...
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      const argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (Number(fields[2]) === pid || (/crashhelper$/.test(argv[0]) && argv[1] === String(pid))) {
        found.push(Number(entry));
      }
    } catch { /* the process ended while being read */ }
  }
  return found;
}

// Starts `name` ('chromium' or 'firefox') headless. Returns {name, newPage({width, height}),
// close()}; close() ends the browser and, for Firefox, waits (bounded) until every process of
// it (firefoxProcesses) is gone, killing leftovers, and removes its temporary profile. close()
// resolves to a list of problems found while closing (empty when clean).
export async function launchBrowser(name, executablePath = defaultExecutable[name]) {
  if (!browserNames.includes(name)) throw new Error(`unknown browser '${name}' (chromium or firefox)`);
  if (!fs.existsSync(executablePath)) {
    throw missing(executablePath, `Debian package ${debianPackage[name]}; scripts/setup installs it`);
  }
  const driver = requireDriver(name);
  if (name === 'chromium') {
    const args = ['--no-sandbox', '--disable-gpu', ...chromiumOfflineArgs];
    const browser = await driver.chromium.launch({executablePath, headless: true, args});
    return {
      name,
      async newPage({width, height}) {
        return new PlaywrightPage(await browser.newPage({viewport: {width, height}}));
      },
      async close() { await browser.close(); return []; },
    };
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'bitsweep-firefox-'));
  let browser;
  try {
    browser = await driver.launch({
      browser: 'firefox', executablePath, headless: true, userDataDir: profile,
      extraPrefsFirefox: firefoxOfflinePrefs,
      env: {...process.env, MOZ_CRASHREPORTER_DISABLE: '1'},
    });
  } catch (e) {
    fs.rmSync(profile, {recursive: true, force: true});
    throw e;
  }
  const pid = browser.process()?.pid;
  return {
    name,
    async newPage({width, height}) {
      const page = await browser.newPage();
      await page.setViewport({width, height});
      return new PuppeteerPage(page);
    },
    async close() {
      const problems = [];
      await browser.close().catch((e) => problems.push('closing Firefox: ' + e.message));
      if (pid) {
        const end = Date.now() + 10000;
        let left = firefoxProcesses(pid);
        while (left.length && Date.now() < end) {
          await new Promise((r) => setTimeout(r, 50));
          left = firefoxProcesses(pid);
        }
        if (left.length) {
          problems.push(`Firefox left processes ${left.join(' ')} behind (killed)`);
          for (const p of left) {
            try { process.kill(p, 'SIGKILL'); } catch { /* already gone */ }
          }
        }
      }
      fs.rmSync(profile, {recursive: true, force: true});
      return problems;
    },
  };
}
