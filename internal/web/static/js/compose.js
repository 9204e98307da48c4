// @ts-check
// Writing a message: a new one from an account's list, or a reply from a message. Sending creates
// a send action, which the account's task hands to its SMTP server.
//
// A send must go out once. The form makes one Idempotency-Key when it is drawn and sends it with
// every try of its submit: a double click, or a try again after the answer was lost (the server
// unreachable, a 5xx), reaches the server as the same request and creates one action; after a lost
// answer the fields stay locked, so the try again is the same request. Only an answer that refused
// it (a 4xx such as 422 or 409: nothing was created) unlocks them and gives the next try a fresh
// key, since the corrected message is another request. Once the action exists the form stays locked;
// what happens to the message from then on is the action's state, followed until it is final.

import {errorMessage, errorStatus, get, post} from './api.js';
import {ActionWatcher, actionItem, cancelAction, isFinal, newIdempotencyKey, retryAction} from './actions.js';
import {formatTime, h, replace} from './dom.js';

/** @typedef {import('./api.js').Action} Action */
/** @typedef {import('./api.js').Account} Account */
/** @typedef {import('./api.js').Message} Message */
/** @typedef {import('./api.js').Outgoing} Outgoing */

/**
 * splitAddresses reads an address field: addresses separated by commas, semicolons or line
 * breaks, except inside a quoted display name or angle brackets ("Doe, Jane" <jane@example.com>).
 * @param {string} s
 * @returns {string[]}
 */
export function splitAddresses(s) {
  /** @type {string[]} */
  const out = [];
  let cur = '';
  let quoted = false;
  let angle = false;
  for (const c of s) {
    if (c === '"' && !angle) quoted = !quoted;
    else if (c === '<' && !quoted) angle = true;
    else if (c === '>' && !quoted) angle = false;
    if (!quoted && !angle && (c === ',' || c === ';' || c === '\n')) {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/**
 * @param {string} subject
 * @returns {string}
 */
function replySubject(subject) {
  return /^re:/i.test(subject.trim()) ? subject.trim() : `Re: ${subject.trim()}`;
}

/**
 * @param {Message} m
 * @returns {string}
 */
function quote(m) {
  const text = (m.body_text || '').replace(/\s+$/, '');
  if (!text) return '';
  return `\n\nOn ${formatTime(m.date || m.internal_date)}, ${m.from || 'the sender'} wrote:\n` +
    text.split('\n').map((l) => (l ? `> ${l}` : '>')).join('\n') + '\n';
}

/**
 * composeView draws the form: for a new message of accountID, or for a reply to the message
 * replyTo (To is its sender, the subject "Re: …", the server threads it). It returns what ends
 * the page's polls.
 * @param {HTMLElement} root
 * @param {{accountID?: number, replyTo?: number, navigate: (hash: string) => void}} opts
 * @returns {Promise<() => void>}
 */
export async function composeView(root, {accountID, replyTo, navigate}) {
  /** @type {Message | null} */
  let original = null;
  if (replyTo) {
    /** @type {Message} */
    const m = await get(`/api/messages/${replyTo}`);
    original = m;
    accountID = m.account_id;
  }
  /** @type {Account} */
  const account = await get(`/api/accounts/${accountID}`);
  const back = original ? `#/messages/${original.id}` : `#/accounts/${account.id}/messages`;

  /**
   * @param {string} label
   * @param {HTMLElement} input
   * @param {string} [hint]
   */
  const field = (label, input, hint) => h('label', {}, label, input, hint ? h('span', {class: 'small muted'}, hint) : null);
  // The server sends from the account's login when it is an address; other logins need one here.
  const loginIsAddress = account.login.includes('@');
  const from = h('input', {name: 'from', autocomplete: 'email', required: !loginIsAddress,
    value: loginIsAddress ? account.login : null, placeholder: 'Your Name <you@example.com>'});
  const to = h('input', {name: 'to', required: true, autocomplete: 'off', value: original ? original.from : null});
  const cc = h('input', {name: 'cc', autocomplete: 'off'});
  const subject = h('input', {name: 'subject', value: original ? replySubject(original.subject || '') : null});
  const text = h('textarea', {name: 'text', rows: 14});
  text.value = original ? quote(original) : '';
  const error = h('div', {class: 'error', role: 'alert', hidden: true, 'data-field': 'error'});
  const submit = h('button', {type: 'submit', class: 'primary', 'data-action': 'send'}, 'Send');
  const fields = h('fieldset', {class: 'stack plain'},
    field('From', from, loginIsAddress ? undefined : `The account's login (${account.login}) is not an address: say which one it sends from.`),
    field('To', to, 'Addresses separated by commas.'), field('Cc', cc), field('Subject', subject), field('Message', text));
  const sendRow = h('div', {class: 'actions'}, submit, h('a', {class: 'button', href: back}, 'Discard'));
  const outcome = h('ul', {class: 'action-log', 'aria-live': 'polite', 'data-field': 'send-status'});
  const after = h('div', {class: 'actions', hidden: true},
    h('a', {class: 'button', href: back}, original ? 'Back to the message' : 'Back to the list'),
    h('button', {type: 'button', 'data-action': 'compose-another', onclick: () => navigate(`#/accounts/${account.id}/compose`)}, 'Write another'));
  const form = h('form', {class: 'stack', id: 'compose-form'},
    h('p', {class: 'muted small'}, `Sent through ${account.name}'s SMTP server; a copy goes to its Sent folder.`),
    fields, error, outcome,
    sendRow,
    after);

  let key = newIdempotencyKey();
  form.dataset.idempotencyKey = key;
  let sending = false;
  /** @type {Action | null} */
  let action = null;

  const showAction = () => {
    if (!action) return;
    form.dataset.state = action.state;
    replace(outcome, actionItem(action, {onRetry: (a) => retry(a), onCancel: (a) => cancel(a)}));
    after.hidden = !isFinal(action);
  };
  const watcher = new ActionWatcher((a) => {
    action = a;
    showAction();
  });

  /** @type {Outgoing | null} a request whose answer was lost: tried again as it is */
  let unanswered = null;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (sending || action) return; // one submit at a time; one action per form
    /** @type {Outgoing} */
    const msg = unanswered || {
      from: from.value.trim(),
      to: splitAddresses(to.value),
      cc: splitAddresses(cc.value),
      subject: subject.value.trim(),
      text: text.value,
    };
    if (original && !unanswered) msg.reply_to = original.id;
    if (msg.to.length === 0) {
      error.textContent = 'Say whom it goes to.';
      error.hidden = false;
      to.focus();
      return;
    }
    sending = true;
    fields.disabled = true;
    submit.disabled = true;
    submit.textContent = 'Sending…';
    error.hidden = true;
    try {
      /** @type {Action} */
      const a = await post(`/api/accounts/${account.id}/send`, msg, {headers: {'Idempotency-Key': key}});
      action = a;
      unanswered = null;
      sendRow.hidden = true;
      showAction();
      watcher.watch(a);
    } catch (err) {
      const status = errorStatus(err) || 0;
      if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
        // Refused (invalid, no SMTP server, signed out): nothing was created, and the corrected
        // message is another request.
        unanswered = null;
        key = newIdempotencyKey();
        form.dataset.idempotencyKey = key;
        fields.disabled = false;
        error.textContent = `Not sent. ${errorMessage(err)}`;
        submit.textContent = 'Send';
      } else {
        // The answer was lost or the server failed: it may have been stored. Trying again sends
        // the same request under the same key, which cannot make a second message; the fields
        // stay as they were sent.
        unanswered = msg;
        error.textContent = `Perhaps not sent: ${errorMessage(err)}\nTry again: it cannot go out twice.`;
        submit.textContent = 'Try again';
      }
      error.hidden = false;
      submit.disabled = false;
    } finally {
      sending = false;
    }
  });

  /** @param {Action} a */
  const retry = async (a) => {
    error.hidden = true;
    try {
      action = await retryAction(a.id);
      showAction();
      watcher.watch(action);
    } catch (err) {
      error.textContent = `Could not retry: ${errorMessage(err)}`;
      error.hidden = false;
    }
  };
  /** @param {Action} a */
  const cancel = async (a) => {
    error.hidden = true;
    try {
      action = await cancelAction(a.id);
      showAction();
    } catch (err) {
      error.textContent = errorStatus(err) === 409 ? 'Too late to cancel: it is being sent.' : `Could not cancel: ${errorMessage(err)}`;
      error.hidden = false;
    }
  };

  replace(root,
    h('div', {class: 'page-head'}, h('h1', {}, original ? 'Reply' : 'New message'),
      h('a', {class: 'button', href: back}, original ? 'Back to the message' : 'Back to the list')),
    h('div', {class: 'panel'}, form));
  (original ? text : to).focus();
  if (original) text.setSelectionRange(0, 0);
  return () => watcher.stop();
}
