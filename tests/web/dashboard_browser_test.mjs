// Browser test of the dashboard in one browser (argument: chromium or firefox): a real
// bitsweep-server on a database filled by dashboard_fixture, the checks of dashboard_checks.mjs
// run through browser_driver.mjs. Screenshots go to $BITSWEEP_SCREENSHOT_DIR/<browser>/.
// A missing browser or driver package: Chromium exits 77 (ctest: skipped), Firefox fails (CI
// installs both through scripts/setup; the Firefox test exists to prove the dashboard works there).
import {spawn, execFileSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {browserNames, launchBrowser} from './browser_driver.mjs';
import {checkDashboard} from './dashboard_checks.mjs';

const name = process.argv[2];
if (!browserNames.includes(name)) {
  console.log(`usage: node dashboard_browser_test.mjs ${browserNames.join('|')}`);
  process.exit(2);
}
const serverBin = process.env.BITSWEEP_SERVER;
const fixtureBin = process.env.BITSWEEP_DASHBOARD_FIXTURE;
const shots = path.join(process.env.BITSWEEP_SCREENSHOT_DIR ||
                        path.join(os.tmpdir(), 'bitsweep-screenshots'), name);
fs.mkdirSync(shots, {recursive: true});
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitsweep-web-'));
const db = path.join(dir, 'dashboard.db');
let server = null, browser = null;
let failures = 0;

function check(condition, what) {
  if (condition) { console.log('ok   ' + what); return; }
  console.log('FAIL ' + what); failures++;
}

async function main() {
  const t0 = Date.now();
  try {
    browser = await launchBrowser(name);
  } catch (e) {
    if (e.code !== 'MISSING') throw e;
    if (name === 'chromium') { console.log('SKIP: ' + e.message); return 77; }
    check(false, e.message);
    return 1;
  }
  console.log(`${name} started in ${Date.now() - t0} ms`);
  const ids = JSON.parse(execFileSync(fixtureBin, ['small', db], {encoding: 'utf8'}));
  const portFile = path.join(dir, 'ports.json');
  server = spawn(serverBin, ['--db', db, '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0',
                             '--port-file', portFile, '--log-level', 'warn'], {stdio: 'inherit'});
  const exited = new Promise((resolve) => server.on('exit', resolve));
  let ports = null;
  for (const end = Date.now() + 15000; !ports && Date.now() < end;) {
    try {
      ports = JSON.parse(fs.readFileSync(portFile, 'utf8'));
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  if (!ports) throw new Error('timed out waiting for the server\'s port file');
  const base = `http://127.0.0.1:${ports.http_port}`;

  const page = await browser.newPage({width: 1440, height: 900});
  await checkDashboard({page, base, ids, db, fixtureBin, shots, check});
  for (const problem of await browser.close()) check(false, problem);
  browser = null;
  check(true, `${name} closed, no process left`);
  server.kill('SIGTERM');
  await exited;
  server = null;
  return 0;
}

let skip = 0;
try {
  skip = await main();
} catch (e) {
  console.log('FAIL ' + (e.stack || e));
  failures++;
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server) server.kill('SIGKILL');
  fs.rmSync(dir, {recursive: true, force: true});
}
if (skip === 77 && !failures) process.exit(77);
console.log(failures ? `${failures} check(s) failed in ${name}`
                     : `all checks passed in ${name}; screenshots in ${shots}`);
process.exit(failures ? 1 : 0);
