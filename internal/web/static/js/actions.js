// @ts-check
// Actions on mail: what the page asks the server to do to a message (flags, move, delete) or to
// send. The server answers at once with the action, pending; the account's sync task carries it
// out on the IMAP (or SMTP) server a moment later. A page follows the action by polling it until
// it reaches a final state, then shows the message as it is now, or the failure in words.

import {del, errorStatus, get, post} from './api.js';
import {h} from './dom.js';

/** @typedef {import('./api.js').Action} Action */
/** @typedef {import('./api.js').ActionState} ActionState */

/** @type {readonly ActionState[]} */
export const FINAL_ACTION_STATES = ['done', 'failed', 'conflict', 'unknown', 'cancelled'];

/**
 * @param {Action | null | undefined} action
 * @returns {boolean}
 */
export function isFinal(action) {
  return !!action && FINAL_ACTION_STATES.includes(action.state);
}

/**
 * describeAction says what the action does, as a button would: "Mark read", "Move to Archive".
 * @param {Action} a
 * @returns {string}
 */
export function describeAction(a) {
  switch (a.kind) {
    case 'flags': {
      const add = a.add || [];
      const remove = a.remove || [];
      if (add.includes('\\Seen')) return 'Mark read';
      if (remove.includes('\\Seen')) return 'Mark unread';
      if (add.includes('\\Flagged')) return 'Flag';
      if (remove.includes('\\Flagged')) return 'Unflag';
      return `Change flags (${[...add.map((f) => '+' + f), ...remove.map((f) => '-' + f)].join(' ')})`;
    }
    case 'move':
      return `Move to ${a.folder || 'another folder'}`;
    case 'delete':
      return a.permanent ? 'Delete for good' : 'Delete (move to Trash)';
    case 'draft':
      return a.subject ? `Save the draft “${a.subject}”` : 'Save the draft';
    case 'send':
      return a.subject ? `Send “${a.subject}”` : 'Send';
    default:
      return a.kind;
  }
}

/**
 * actionOutcome is what a page says about an action in its current state: ok says whether it
 * went through (null while it is under way).
 * @param {Action} a
 * @returns {{ok: boolean | null, text: string}}
 */
export function actionOutcome(a) {
  const what = describeAction(a);
  switch (a.state) {
    case 'pending':
      return {ok: null, text: `${what}: pending…`};
    case 'running':
      return {ok: null, text: `${what}: under way…`};
    case 'submitting':
      return {ok: null, text: `${what}: handing the message to the mail server…`};
    case 'sent':
      return {ok: null, text: `${what}: sent; saving a copy…`};
    case 'done':
      return {ok: true, text: a.kind === 'send' ? 'Sent.' : `${what}: done.`};
    case 'failed':
      return {ok: false, text: `${what} failed: ${a.error || 'the server gave no reason'}`};
    case 'conflict':
      return {ok: false, text: `${what} was not done: the message changed on the server meanwhile${a.error ? ` (${a.error})` : ''}.`};
    case 'unknown':
      return {ok: false, text: `${what}: it is not known whether it went out (the connection to the mail server ended while it was handed over${a.error ? `: ${a.error}` : ''}). Check the Sent folder or the recipient before you retry.`};
    case 'cancelled':
      return {ok: false, text: `${what}: cancelled.`};
    default:
      return {ok: null, text: `${what}: ${a.state}`};
  }
}

/**
 * newIdempotencyKey makes the key one form sends with every try of its submit, so that the server
 * creates one action however many times the request arrives. crypto.randomUUID needs a secure
 * context; getRandomValues works on plain http too.
 * @returns {string}
 */
export function newIdempotencyKey() {
  if (typeof crypto.randomUUID === 'function' && window.isSecureContext) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

const FIRST_POLL_MS = 250;
const MAX_POLL_MS = 5000;

/**
 * ActionWatcher polls actions until each reaches a final state. An action is carried out by the
 * account's sync task, within a second or a minute: the delay between polls grows so that a slow
 * one costs little, and stop() ends every poll (leaving the page).
 */
export class ActionWatcher {
  /**
   * onUpdate(action) is called with every view of an action that differs from the last one, the
   * last one final; onGone(id) when the action no longer exists (its account was deleted).
   * @param {(action: Action) => void} onUpdate
   * @param {(id: number) => void} [onGone]
   */
  constructor(onUpdate, onGone) {
    this.onUpdate = onUpdate;
    this.onGone = onGone || (() => {});
    /** @type {Map<number, {timer: ReturnType<typeof setTimeout> | null, delay: number, last: string}>} */
    this.watched = new Map();
    this.stopped = false;
  }

  /**
   * watch follows the action from this view of it (a create's answer), or from its id alone.
   * @param {Action | number} action
   */
  watch(action) {
    if (this.stopped) return;
    const id = typeof action === 'number' ? action : action.id;
    if (this.watched.has(id)) return;
    const w = {timer: /** @type {ReturnType<typeof setTimeout> | null} */ (null), delay: FIRST_POLL_MS, last: ''};
    this.watched.set(id, w);
    if (typeof action !== 'number') {
      w.last = JSON.stringify(action);
      if (isFinal(action)) {
        this.watched.delete(id);
        return;
      }
    }
    this.schedule(id);
  }

  /** @returns {boolean} whether an action is still followed */
  get busy() {
    return this.watched.size > 0;
  }

  stop() {
    this.stopped = true;
    for (const w of this.watched.values()) {
      if (w.timer !== null) clearTimeout(w.timer);
    }
    this.watched.clear();
  }

  /** @param {number} id */
  schedule(id) {
    const w = this.watched.get(id);
    if (!w || this.stopped) return;
    const delay = w.delay;
    w.delay = Math.min(Math.round(w.delay * 1.5), MAX_POLL_MS);
    w.timer = setTimeout(() => this.poll(id), delay);
  }

  /** @param {number} id */
  async poll(id) {
    const w = this.watched.get(id);
    if (!w || this.stopped) return;
    w.timer = null;
    /** @type {Action} */
    let a;
    try {
      a = await get(`/api/actions/${id}`);
    } catch (err) {
      if (this.stopped || this.watched.get(id) !== w) return;
      if (errorStatus(err) === 404) {
        this.watched.delete(id);
        this.onGone(id);
        return;
      }
      this.schedule(id); // the server is restarting or unreachable: keep asking, less often
      return;
    }
    if (this.stopped || this.watched.get(id) !== w) return;
    const seen = JSON.stringify(a);
    if (isFinal(a)) this.watched.delete(id);
    else this.schedule(id);
    if (seen !== w.last) {
      w.last = seen;
      this.onUpdate(a);
    }
  }
}

/**
 * actionItem is one line of a page's list of actions: what it does and where it is, with Retry on
 * a failed one and Cancel on a pending one. data-state carries the state for styling and tests.
 * @param {Action} a
 * @param {{onRetry?: (a: Action) => void, onCancel?: (a: Action) => void, target?: boolean}} [handlers]
 *   target: name what it acts on (a link to the message), for a list of an account's actions
 * @returns {HTMLLIElement}
 */
export function actionItem(a, {onRetry, onCancel, target} = {}) {
  const {ok, text} = actionOutcome(a);
  const retryable = a.state === 'failed' || a.state === 'conflict' || a.state === 'unknown';
  const n = (a.messages || []).length;
  return h('li', {class: `action ${ok === null ? 'under-way' : ok ? 'ok' : 'bad'}`, 'data-action-id': a.id, 'data-state': a.state},
    h('span', {'data-field': 'outcome'}, text),
    target && n === 1 ? h('a', {href: `#/messages/${a.messages[0]}`}, 'the message') : null,
    target && n > 1 ? h('span', {class: 'muted'}, `${n} messages`) : null,
    retryable && onRetry ? h('button', {type: 'button', class: 'link', 'data-action': 'retry', onclick: () => onRetry(a)}, 'Retry') : null,
    a.state === 'pending' && onCancel ? h('button', {type: 'button', class: 'link', 'data-action': 'cancel', onclick: () => onCancel(a)}, 'Cancel') : null);
}

/**
 * retryAction puts a failed, conflicting or unknown action back in the queue.
 * @param {number} id
 * @returns {Promise<Action>}
 */
export async function retryAction(id) {
  /** @type {Action | null} */
  const a = await post(`/api/actions/${id}/retry`);
  return a || get(`/api/actions/${id}`);
}

/**
 * cancelAction cancels a pending action; the server refuses (409) one that already runs.
 * @param {number} id
 * @returns {Promise<Action>}
 */
export async function cancelAction(id) {
  /** @type {Action | null} */
  const a = await del(`/api/actions/${id}`);
  return a || get(`/api/actions/${id}`);
}
