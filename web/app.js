// bitsweep dashboard: plain JavaScript modules, no build step; charts by uPlot (web/README.md).
// Routes: #/ (sweeps), #/sweeps/ID, #/trials/ID, #/workers. The sweep page stays live through
// the sweep's event stream; the other pages refresh every few seconds.
import {esc} from './util.js';
import {renderSweeps} from './sweeps_page.js';
import {SweepPage} from './sweep_page.js';
import {renderTrial} from './trial_page.js';
import {renderWorkers} from './workers_page.js';

const REFRESH_MS = 3000;
const app = document.getElementById('app');
const statusLine = document.getElementById('status');
let timer = null;
let sweepPage = null;

function setStatus(text) { statusLine.textContent = text; }

async function route() {
  clearTimeout(timer);
  if (sweepPage) { sweepPage.close(); sweepPage = null; }
  delete document.body.dataset.ready;
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  try {
    if (parts[0] === 'sweeps' && parts[1]) {
      sweepPage = new SweepPage(app, parts[1], setStatus);
      sweepPage.connect();
      await sweepPage.load();
      setStatus('live');
      return;
    }
    let render;
    if (parts[0] === 'trials' && parts[1]) render = () => renderTrial(app, parts[1]);
    else if (parts[0] === 'workers') render = () => renderWorkers(app);
    else render = () => renderSweeps(app);
    await render();
    document.body.dataset.ready = '1';
    setStatus('updated ' + new Date().toLocaleTimeString());
    // The trial page keeps its scroll and open details: refresh only the list pages.
    if (parts[0] !== 'trials') {
      const again = async () => {
        try { await render(); setStatus('updated ' + new Date().toLocaleTimeString()); } catch (e) { setStatus(e.message); }
        timer = setTimeout(again, REFRESH_MS);
      };
      timer = setTimeout(again, REFRESH_MS);
    }
  } catch (error) {
    app.innerHTML = `<p class="error">${esc(error.message)}</p>`;
    document.body.dataset.ready = 'error';
  }
}

window.addEventListener('hashchange', route);
route();
