// @ts-check
// The operators' page: sync health for everyone; for administrators also every account's state,
// the system's vital signs, and the one-click cleanup of dead syncs.

import {errorMessage, get, post} from './api.js';
import {formatBytes, formatDuration, formatNumber, formatTime, h, replace} from './dom.js';

/** @typedef {import('./api.js').AccountHealth} AccountHealth */
/** @typedef {import('./api.js').Health} Health */
/** @typedef {import('./api.js').HealthCheck} HealthCheck */
/** @typedef {import('./api.js').User} User */
/** @typedef {import('./dom.js').Child} Child */

/** @param {string} status */
const pill = (status) => h('span', {class: `pill ${status}`}, status);

/**
 * @param {HealthCheck} c
 * @returns {string}
 */
function value(c) {
  const v = c.observedValue;
  if (v === null || v === undefined) return '—';
  switch (c.observedUnit) {
    case 'bytes': return formatBytes(Number(v));
    case 's': return formatDuration(Number(v) * 1000);
    case 'ms': return `${Number(v).toFixed(2)} ms`;
    case 'percent': return `${Number(v).toFixed(1)} %`;
    default: return typeof v === 'number' ? formatNumber(v) : String(v);
  }
}

/** @param {Health} health */
function checksTable(health) {
  const rows = Object.entries(health.checks || {}).sort(([a], [b]) => a.localeCompare(b))
    .flatMap(([name, list]) => list.map((c) => h('tr', {},
      h('td', {}, name), h('td', {}, pill(c.status)), h('td', {class: 'num'}, value(c)), h('td', {class: 'muted'}, c.output || ''))));
  return h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Check'), h('th', {}, 'Status'), h('th', {}, 'Value'), h('th', {}, 'Note'))),
    h('tbody', {}, rows));
}

/**
 * @param {string} title
 * @param {Health} health
 * @param {...Child} extra shown below the checks
 */
function section(title, health, ...extra) {
  return h('div', {class: 'panel'},
    h('div', {class: 'page-head'}, h('h2', {}, title), pill(health.status)),
    health.description ? h('p', {class: 'muted small'}, health.description) : null,
    checksTable(health), ...extra);
}

/** @param {AccountHealth[]} accounts */
function accountsTable(accounts) {
  return h('table', {class: 'accounts-health'},
    h('thead', {}, h('tr', {}, ['Account', 'User', 'Server', 'Task', 'Heartbeat', 'Error'].map((t) => h('th', {}, t)))),
    h('tbody', {}, accounts.map((a) => {
      const t = a.last_task;
      const state = !t ? 'never synced'
        : (t.state === 'queued' || t.state === 'running') && !t.live ? `${t.state}, not live` : t.state;
      return h('tr', {},
        h('td', {}, a.name), h('td', {class: 'num'}, a.user_id), h('td', {}, a.imap_host),
        h('td', {}, state), h('td', {}, formatTime(t?.heartbeat_at, true)), h('td', {class: 'muted'}, t?.error || ''));
    })));
}

/**
 * @param {HTMLElement} root
 * @param {object} opts
 * @param {User} opts.me the signed-in user: an administrator sees more
 * @param {() => void} opts.refresh draws the page again
 */
export async function healthView(root, {me, refresh}) {
  const accept = {accept: [503]};
  /** @type {Health} */
  const sync = await get('/api/health/sync', accept);
  const parts = [h('div', {class: 'page-head'}, h('h1', {}, 'Health'))];
  if (!me.is_admin) {
    parts.push(section('Sync tasks', sync));
    replace(root, parts);
    return;
  }
  const [detailed, system] = await Promise.all([
    /** @type {Promise<Health>} */ (get('/api/health/sync/detailed', accept)),
    /** @type {Promise<Health>} */ (get('/api/health/system', accept)),
  ]);
  const result = h('div', {'aria-live': 'polite'});
  const cleanup = h('button', {type: 'button', 'data-action': 'cleanup'}, 'Clean up dead syncs now');
  cleanup.addEventListener('click', async () => {
    cleanup.disabled = true;
    try {
      /** @type {Health} */
      const r = await post('/api/health/sync/cleanup', undefined, accept);
      const reaped = r.reaped || [];
      replace(result, h('p', {class: 'notice'}, reaped.length === 0
        ? 'Nothing to clean up: no dead sync.'
        : `Cleaned up ${reaped.length} dead sync${reaped.length > 1 ? 's' : ''}: ` +
          reaped.map((t) => `${t.id.slice(0, 8)} (account ${t.account_id}) → ${t.state}`).join(', ')),
      h('button', {type: 'button', class: 'link', onclick: refresh}, 'Refresh the figures'));
    } catch (err) {
      replace(result, h('p', {class: 'error'}, errorMessage(err)));
    } finally {
      cleanup.disabled = false;
    }
  });
  parts.push(
    section('Sync tasks', sync, h('div', {class: 'actions'}, cleanup), result),
    section('Accounts', detailed, accountsTable(detailed.accounts || [])),
    section('System', system));
  replace(root, parts);
}
