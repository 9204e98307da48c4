// @ts-check
// The accounts page: one card per account with its sync state, progress and last results, and
// the Sync now / Full resync / Cancel buttons.

import {del, errorMessage, get, post} from './api.js';
import {TaskFollower, isActive, isStalled} from './sync.js';
import {formatDuration, formatNumber, formatTime, h, replace} from './dom.js';

/** @typedef {import('./api.js').Account} Account */
/** @typedef {import('./api.js').Progress} Progress */
/** @typedef {import('./api.js').SyncStarted} SyncStarted */
/** @typedef {import('./api.js').Task} Task */

/**
 * accountsView draws the page into root and returns what ends it (the cards' event streams).
 * @param {HTMLElement} root
 * @param {{params?: URLSearchParams}} [opts] the page's query, when it was reached from a sign-in
 * @returns {Promise<() => void>}
 */
export async function accountsView(root, {params} = {}) {
  /** @type {Account[]} */
  const accounts = await get('/api/accounts');
  const empty = () => h('div', {class: 'panel empty'},
    h('p', {}, 'No mailbox connected yet.'),
    h('a', {class: 'button primary', href: '#/accounts/new'}, 'Connect an IMAP account'));
  /** @type {AccountCard[]} */
  const cards = [];
  for (const a of accounts) {
    const card = new AccountCard(a, () => {
      cards.splice(cards.indexOf(card), 1);
      if (cards.length === 0) root.append(empty());
    });
    cards.push(card);
  }
  replace(root,
    h('div', {class: 'page-head'},
      h('h1', {}, 'Accounts'),
      h('a', {class: 'button primary', href: '#/accounts/new'}, 'Add account')),
    oauthOutcome(params, accounts),
    cards.length === 0 ? empty() : cards.map((c) => c.el));
  return () => cards.forEach((c) => c.dispose());
}

/**
 * oauthOutcome says how a sign-in with a provider ended, when the page was reached from one.
 * @param {URLSearchParams | undefined} params
 * @param {Account[]} accounts
 * @returns {HTMLElement | null}
 */
function oauthOutcome(params, accounts) {
  if (!params) return null;
  const named = (/** @type {string | null} */ id) => accounts.find((a) => String(a.id) === id)?.name || 'The account';
  if (params.get('oauth_error')) {
    return h('div', {class: 'error', role: 'alert', 'data-field': 'oauth-outcome'}, `Not added: ${params.get('oauth_error')}`);
  }
  if (params.get('oauth_added')) {
    return h('div', {class: 'notice', role: 'status', 'data-field': 'oauth-outcome'},
      `${named(params.get('oauth_added'))} was added. Press Sync now to copy it.`);
  }
  if (params.get('oauth_resumed')) {
    return h('div', {class: 'notice', role: 'status', 'data-field': 'oauth-outcome'},
      `${named(params.get('oauth_resumed'))} is signed in again; its sync has resumed.`);
  }
  return null;
}

/**
 * What a card says about its task: key names the state for styling and for the tests.
 * @typedef {object} Status
 * @property {string} key
 * @property {string} label
 * @property {string} detail
 * @property {boolean} [waiting] running, but its IMAP server has gone quiet
 */

/**
 * describe turns a task into what the card says about it.
 * @param {Task | null} task
 * @returns {Status}
 */
function describe(task) {
  if (!task) return {key: 'none', label: 'Never synced', detail: 'Press Sync now to copy this mailbox.'};
  /** @type {Partial<Progress>} */
  const p = task.progress || {};
  if (isStalled(task)) {
    return {key: 'stalled', label: 'Stalled',
      detail: `Its worker stopped answering (last heard ${formatTime(task.heartbeat_at || task.created_at, true)}). Start a new sync.`};
  }
  if (isActive(task) && task.cancel_requested) {
    return {key: 'cancelling', label: 'Cancelling', detail: 'The sync stops at its next checkpoint…'};
  }
  switch (task.state) {
    case 'queued':
      // A queued task with an error is a retry: its last run's worker died.
      return {key: 'queued', label: 'Queued', detail: task.error ? `Retrying (${task.error})…` : 'Waiting for a worker…'};
    case 'running': {
      const folders = p.folders_total ? ` · folder ${Math.min((p.folders_done || 0) + 1, p.folders_total)} of ${p.folders_total}` : '';
      if (task.stalled_since) {
        // The worker is alive but its IMAP server has gone quiet: say so rather than show a
        // frozen bar as if all were well. The command timeout ends the sync if it stays quiet.
        return {key: 'running', waiting: true, label: 'Waiting for the server',
          detail: `The IMAP server has sent nothing since ${formatTime(task.stalled_since, true)}${folders}`};
      }
      return {key: 'running', label: 'Syncing', detail: (task.phase || 'working') + folders};
    }
    case 'succeeded':
      return {key: 'succeeded', label: 'Up to date', detail: `Synced ${formatTime(task.finished_at)}.`};
    case 'failed':
      return {key: 'failed', label: 'Failed', detail: `The sync of ${formatTime(task.started_at || task.created_at)} failed.`};
    case 'cancelled':
      return {key: 'cancelled', label: 'Cancelled', detail: `Cancelled ${formatTime(task.finished_at)}.`};
    default:
      return {key: task.state, label: task.state, detail: ''};
  }
}

/**
 * @param {Task | null | undefined} task
 * @returns {number | null} milliseconds, null before it started
 */
function duration(task) {
  if (!task || !task.started_at) return null;
  const end = task.finished_at ? new Date(task.finished_at) : new Date();
  return end.getTime() - new Date(task.started_at).getTime();
}

class AccountCard {
  /**
   * @param {Account} account
   * @param {() => void} onRemoved called once the account is deleted and its card gone
   */
  constructor(account, onRemoved) {
    this.account = account;
    this.onRemoved = onRemoved;
    /** @type {Task | null} */
    this.task = null;
    this.starting = false;
    this.error = '';
    this.follower = new TaskFollower((t) => this.show(t));

    /**
     * @param {string} key
     * @param {string} label
     * @param {string} title
     */
    const stat = (key, label, title) => {
      const dd = h('dd', {'data-stat': key}, '—');
      this.stats[key] = dd;
      return h('div', {class: 'stat', title}, h('dt', {}, label), dd);
    };
    /** @type {Record<string, HTMLElement>} */
    this.stats = {};
    this.stateEl = h('span', {class: 'state'});
    this.detailEl = h('span', {class: 'muted'});
    this.fill = h('div');
    this.bar = h('div', {class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
      'aria-valuenow': 0, 'aria-label': `Sync progress of ${account.name}`}, this.fill);
    this.phaseEl = h('span', {'data-field': 'counts'});
    this.percentEl = h('span', {'data-field': 'percent'});
    this.errorEl = h('div', {class: 'error', role: 'alert', 'data-field': 'error', hidden: true});
    this.syncBtn = h('button', {type: 'button', class: 'primary', 'data-action': 'sync', onclick: () => this.start(false)}, 'Sync now');
    this.fullBtn = h('button', {type: 'button', 'data-action': 'full', title: 'Rescan every folder and reconcile',
      onclick: () => this.start(true)}, 'Full resync');
    this.cancelBtn = h('button', {type: 'button', 'data-action': 'cancel', onclick: () => this.cancel()}, 'Cancel');
    // An OAuth2 account whose provider refused its authorization syncs no more until its owner
    // signs in again: the card says so and offers the sign-in, which resumes the sync.
    this.reauth = account.auth_state === 'reauth_required';
    this.reauthBtn = h('button', {type: 'button', class: 'primary', 'data-action': 'reauth', hidden: !this.reauth,
      onclick: () => this.signInAgain()}, 'Sign in again');
    this.reauthEl = h('div', {class: 'error', role: 'alert', 'data-field': 'reauth', hidden: !this.reauth},
      `Sign in again: ${account.oauth_provider || 'the provider'} no longer accepts mailsync's access to ${account.login} ` +
      '(it was revoked, expired, or the password changed). Nothing syncs until you do.');
    this.el = h('section', {class: 'panel account', 'data-account-id': account.id},
      h('div', {class: 'account-head'},
        h('h2', {}, account.name),
        h('span', {class: 'muted small'}, `${account.login} · ${account.imap_host}:${account.imap_port} · ${account.tls_mode}`)),
      h('p', {class: 'status'}, this.stateEl, ' ', this.detailEl),
      h('div', {class: 'progress'}, this.bar, h('div', {class: 'progress-text'}, this.phaseEl, this.percentEl)),
      h('dl', {class: 'stats'},
        stat('new', 'New', 'Messages copied for the first time'),
        stat('updated', 'Updated', 'Messages whose flags changed'),
        stat('deleted', 'Deleted', 'Messages gone from the server'),
        stat('total', 'Messages', 'Messages this sync covered'),
        stat('duration', 'Duration', 'Time from start to end')),
      this.reauthEl,
      this.errorEl,
      h('div', {class: 'actions'},
        this.reauthBtn, this.syncBtn, this.fullBtn, this.cancelBtn,
        h('a', {class: 'button', href: `#/accounts/${account.id}/messages`}, 'Messages'),
        h('button', {type: 'button', class: 'link danger', 'data-action': 'remove', onclick: () => this.remove()}, 'Remove')));

    this.show(account.last_task);
    if (isActive(account.last_task)) this.follower.follow(account.last_task); // a reload mid-sync picks it up
  }

  dispose() {
    this.follower.stop();
  }

  /**
   * show draws the card for task (the latest view of the account's live or last task).
   * @param {Task | null | undefined} task
   */
  show(task) {
    this.task = task || null;
    const d = this.starting
      ? {key: 'starting', label: 'Starting…', detail: 'Asking the server for a sync.'}
      : describe(this.task);
    /** @type {Partial<Progress>} */
    const p = (task && task.progress) || {};
    const live = isActive(task) && !isStalled(task);

    this.el.dataset.state = d.key;
    this.el.dataset.waiting = d.waiting ? 'true' : 'false';
    this.el.dataset.taskId = task ? task.id : '';
    this.stateEl.className = `state ${d.key}${d.waiting ? ' waiting' : ''}`;
    this.stateEl.textContent = d.label;
    this.detailEl.textContent = d.detail;

    const pct = task ? Math.max(0, Math.min(100, task.percent || 0)) : 0;
    this.fill.style.width = `${pct}%`;
    this.bar.setAttribute('aria-valuenow', String(Math.round(pct * 10) / 10));
    this.bar.classList.toggle('done', task?.state === 'succeeded');
    this.bar.classList.toggle('bad', task?.state === 'failed' || d.key === 'stalled');
    this.percentEl.textContent = task ? `${Math.floor(pct)}%` : '';
    this.phaseEl.textContent = task && p.messages_total
      ? `${formatNumber(p.messages_done)} of ${formatNumber(p.messages_total)} messages`
      : '';

    /**
     * @param {string} k
     * @param {string} v
     */
    const set = (k, v) => { this.stats[k].textContent = v; };
    set('new', task ? formatNumber(p.new) : '—');
    set('updated', task ? formatNumber(p.updated) : '—');
    set('deleted', task ? formatNumber(p.deleted) : '—');
    set('total', task ? formatNumber(p.messages_total) : '—');
    set('duration', formatDuration(duration(task)));

    const err = this.error || (task?.state === 'failed' ? (task.error || 'The sync failed.') : '');
    this.errorEl.hidden = !err;
    this.errorEl.textContent = err;

    this.syncBtn.disabled = this.starting || live || this.reauth;
    this.fullBtn.disabled = this.starting || live || this.reauth;
    this.cancelBtn.disabled = !isActive(task) || !!task.cancel_requested;
    this.syncBtn.textContent = task?.state === 'failed' ? 'Retry' : 'Sync now';
  }

  /**
   * start is Sync now (or Full resync). The server answers with the account's one live task, new
   * or not, so a click that races another tab simply joins the same task.
   * @param {boolean} forceFull
   */
  async start(forceFull) {
    if (this.starting || (isActive(this.task) && !isStalled(this.task))) return;
    this.starting = true;
    this.error = '';
    this.show(this.task); // disables the buttons before the request leaves
    try {
      /** @type {SyncStarted} */
      const {task} = await post(`/api/accounts/${this.account.id}/sync`, {force_full: forceFull});
      this.starting = false;
      this.follower.follow(task);
      this.show(task);
    } catch (err) {
      this.starting = false;
      this.error = `Could not start the sync: ${errorMessage(err)}`;
      this.show(this.task);
    }
  }

  // signInAgain runs the provider's sign-in for this account; the callback stores the new
  // authorization and starts a sync.
  async signInAgain() {
    this.reauthBtn.disabled = true;
    try {
      const {url} = /** @type {import('./api.js').OAuthStart} */ (await post('/api/oauth/start', {account_id: this.account.id}));
      window.location.assign(url);
    } catch (err) {
      this.error = `Cannot start the sign-in: ${errorMessage(err)}`;
      this.reauthBtn.disabled = false;
      this.show(this.task);
    }
  }

  async cancel() {
    if (!isActive(this.task)) return;
    this.cancelBtn.disabled = true;
    try {
      /** @type {Task} */
      const task = await post(`/api/sync/tasks/${encodeURIComponent(this.task.id)}/cancel`);
      // A queued task is cancelled at once; a running one stops at its next heartbeat, and the
      // stream brings the terminal event.
      if (!isActive(task)) this.follower.stop();
      if (task.id === this.task?.id) this.show(task);
    } catch (err) {
      this.error = `Could not cancel: ${errorMessage(err)}`;
      this.show(this.task);
    }
  }

  async remove() {
    if (!window.confirm(`Remove ${this.account.name} and every message mailsync stored for it? The IMAP mailbox itself is not touched.`)) return;
    try {
      await del(`/api/accounts/${this.account.id}`);
      this.dispose();
      this.el.remove();
      this.onRemoved();
    } catch (err) {
      this.error = `Could not remove the account: ${errorMessage(err)}`;
      this.show(this.task);
    }
  }
}
