// @ts-check
// The Webhooks page: the user's endpoints with their state (enabled, or disabled and why; how
// far behind), their last deliveries with status and latency, and the actions: add an endpoint
// (its signing secret is shown once), send a test event, disable or enable, delete.
//
// The module depends on nothing but the API client and the element builder, so that it can be
// read, and typed, on its own.

import {request} from './api.js';
import {h, replace} from './dom.js';

/**
 * @typedef {object} WebhookState
 * @property {number} behind
 * @property {number} lag_s
 * @property {string|null} oldest_undelivered_at
 * @property {string|null} failing_since
 * @property {string} last_error
 */

/**
 * @typedef {object} Webhook
 * @property {number} id
 * @property {string} url
 * @property {string[]} kinds
 * @property {boolean} all_accounts
 * @property {number[]} account_ids
 * @property {boolean} enabled
 * @property {string} disabled_reason
 * @property {string} created_at
 * @property {string} [secret]
 * @property {WebhookState} state
 */

/**
 * @typedef {object} Attempt
 * @property {number} id
 * @property {string} delivery_id
 * @property {number} account_id
 * @property {string} at
 * @property {boolean} test
 * @property {number} status
 * @property {boolean} ok
 * @property {number} latency_ms
 * @property {string} error
 * @property {number} first_seq
 * @property {number} last_seq
 * @property {number} count
 */

/** @typedef {{id: number, name: string}} Account */

// The change kinds an endpoint may choose (internal/changes: Kinds).
const KINDS = ['message.created', 'message.updated', 'message.deleted', 'folder.created', 'folder.renamed',
  'folder.deleted', 'folder.reset', 'sync.succeeded', 'sync.failed'];

// How often the page re-reads the endpoints' state and deliveries.
const REFRESH_MS = 3000;

/**
 * @param {number} ms
 * @returns {string}
 */
function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.round(s / 60);
  return m < 120 ? `${m} min` : `${Math.round(m / 60)} h`;
}

/**
 * @param {string|null|undefined} iso
 * @returns {string}
 */
function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '—' : d.toLocaleString(undefined, {dateStyle: 'short', timeStyle: 'medium'});
}

/**
 * @param {Webhook} w
 * @returns {HTMLElement}
 */
function statePill(w) {
  if (!w.enabled) return h('span', {class: 'pill fail', 'data-state': 'disabled'}, 'disabled');
  if (w.state.failing_since) return h('span', {class: 'pill warn', 'data-state': 'failing'}, 'failing');
  return h('span', {class: 'pill pass', 'data-state': 'enabled'}, 'enabled');
}

/**
 * @param {Attempt[]} attempts
 * @returns {HTMLElement}
 */
function deliveriesTable(attempts) {
  if (attempts.length === 0) return h('p', {class: 'muted small'}, 'No delivery yet.');
  return h('table', {class: 'deliveries'},
    h('thead', {}, h('tr', {}, ['When', 'Status', 'Latency', 'Changes', 'Error'].map((t) => h('th', {}, t)))),
    h('tbody', {}, attempts.map((a) => h('tr', {'data-delivery': a.delivery_id},
      h('td', {}, when(a.at)),
      h('td', {}, h('span', {class: `pill ${a.ok ? 'pass' : 'fail'}`, 'data-status': String(a.status)}, a.status ? String(a.status) : 'no answer')),
      h('td', {class: 'num'}, duration(a.latency_ms)),
      h('td', {class: 'num'}, a.test ? 'test event' : `${a.count} (account ${a.account_id}, ${a.first_seq}–${a.last_seq})`),
      h('td', {class: 'muted'}, a.error)))));
}

/**
 * One endpoint's panel; update() re-reads its deliveries.
 */
class EndpointCard {
  /**
   * @param {Webhook} w
   * @param {Map<number, string>} names account names by id
   * @param {() => void} changed called after an action changed the endpoint
   */
  constructor(w, names, changed) {
    this.w = w;
    this.names = names;
    this.changed = changed;
    this.el = h('div', {class: 'panel webhook', 'data-webhook': String(w.id)});
    this.result = h('div', {'aria-live': 'polite', class: 'result'});
    /** @type {Attempt[]} */
    this.attempts = [];
  }

  async update() {
    this.attempts = await request('GET', `/api/webhooks/${this.w.id}/deliveries?limit=10`);
    this.render();
  }

  /**
   * @param {string} label
   * @param {string} action
   * @param {() => Promise<void>} fn
   * @returns {HTMLButtonElement}
   */
  button(label, action, fn) {
    const b = /** @type {HTMLButtonElement} */ (h('button', {type: 'button', 'data-action': action}, label));
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await fn();
      } catch (err) {
        replace(this.result, h('p', {class: 'error', role: 'alert'}, err instanceof Error ? err.message : String(err)));
      } finally {
        b.disabled = false;
      }
    });
    return b;
  }

  render() {
    const w = this.w;
    const accounts = w.all_accounts ? 'all accounts'
      : w.account_ids.map((id) => this.names.get(id) || `account ${id}`).join(', ');
    const st = w.state;
    const facts = [
      `Kinds: ${w.kinds.length ? w.kinds.join(', ') : 'every kind'}`,
      `Accounts: ${accounts}`,
      st.behind ? `Behind: ${st.behind} change${st.behind > 1 ? 's' : ''}, the oldest ${duration(st.lag_s * 1000)} old` : 'Caught up',
    ];
    if (st.failing_since) facts.push(`Failing since ${when(st.failing_since)}: ${st.last_error}`);
    const test = this.button('Send a test event', 'test', async () => {
      /** @type {Attempt} */
      const a = await request('POST', `/api/webhooks/${w.id}/test`, {});
      replace(this.result, h('p', {class: a.ok ? 'notice' : 'error', 'data-test-status': String(a.status)},
        a.ok ? `The receiver answered ${a.status} in ${duration(a.latency_ms)}.`
          : `The test event failed: ${a.error || `HTTP ${a.status}`}`));
      await this.update();
    });
    const toggle = this.button(w.enabled ? 'Disable' : 'Enable', 'toggle', async () => {
      this.w = /** @type {Webhook} */ (await request('PATCH', `/api/webhooks/${w.id}`, {enabled: !w.enabled}));
      replace(this.result);
      this.render();
      this.changed();
    });
    const remove = this.button('Delete', 'delete', async () => {
      if (!window.confirm(`Delete the endpoint ${w.url}? Its cursor and history go with it.`)) return;
      await request('DELETE', `/api/webhooks/${w.id}`);
      this.el.remove();
      this.changed();
    });
    replace(this.el,
      h('div', {class: 'page-head'}, h('h2', {class: 'url'}, w.url), statePill(w)),
      w.enabled ? null : h('p', {class: 'error reason', role: 'alert'}, `Disabled: ${w.disabled_reason}`),
      w.enabled || w.disabled_reason.includes('pruned') ? null
        : h('p', {class: 'muted small'}, 'Enabling it resumes where it stopped: nothing is skipped.'),
      h('ul', {class: 'facts muted small'}, facts.map((f) => h('li', {}, f))),
      h('div', {class: 'actions'}, test, toggle, remove),
      this.result,
      h('h3', {class: 'small'}, 'Last deliveries'),
      deliveriesTable(this.attempts));
  }
}

/**
 * The add-endpoint form. onCreated gets the new endpoint, with its secret.
 * @param {Account[]} accounts
 * @param {(w: Webhook) => void} onCreated
 * @returns {HTMLElement}
 */
function addForm(accounts, onCreated) {
  const url = /** @type {HTMLInputElement} */ (h('input', {type: 'url', name: 'url', required: true,
    placeholder: 'https://your-app/mailsync-hook', size: 50}));
  const all = /** @type {HTMLInputElement} */ (h('input', {type: 'checkbox', name: 'all_accounts', checked: true}));
  const accountBoxes = accounts.map((a) => /** @type {HTMLInputElement} */ (h('input', {type: 'checkbox', name: 'account', value: String(a.id)})));
  const kindBoxes = KINDS.map((k) => /** @type {HTMLInputElement} */ (h('input', {type: 'checkbox', name: 'kind', value: k})));
  const error = h('div', {'aria-live': 'polite'});
  const submit = /** @type {HTMLButtonElement} */ (h('button', {type: 'submit', class: 'primary'}, 'Add endpoint'));
  const form = h('form', {class: 'panel add-webhook'},
    h('h2', {}, 'Add an endpoint'),
    h('label', {}, 'URL ', url),
    h('fieldset', {}, h('legend', {}, 'Accounts'),
      h('label', {class: 'check'}, all, 'All my accounts, those added later included'),
      accounts.map((a, i) => h('label', {class: 'check inline'}, accountBoxes[i], a.name))),
    h('fieldset', {}, h('legend', {}, 'Kinds (none ticked: every kind)'),
      KINDS.map((k, i) => h('label', {class: 'check inline'}, kindBoxes[i], k))),
    error,
    h('div', {class: 'actions'}, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    replace(error);
    try {
      const ids = accountBoxes.filter((b) => b.checked).map((b) => Number(b.value));
      /** @type {Webhook} */
      const w = await request('POST', '/api/webhooks', {
        url: url.value.trim(),
        kinds: kindBoxes.filter((b) => b.checked).map((b) => b.value),
        ...(all.checked ? {all_accounts: true} : {account_ids: ids}),
      });
      url.value = '';
      onCreated(w);
    } catch (err) {
      replace(error, h('p', {class: 'error', role: 'alert'}, err instanceof Error ? err.message : String(err)));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/**
 * Renders the page into root and returns what stops its refreshes.
 * @param {HTMLElement} root
 * @returns {Promise<() => void>}
 */
export async function webhooksView(root) {
  const [hooks, accounts] = await Promise.all([
    /** @type {Promise<Webhook[]>} */ (request('GET', '/api/webhooks')),
    /** @type {Promise<Account[]>} */ (request('GET', '/api/accounts')),
  ]);
  const names = new Map(accounts.map((a) => [a.id, a.name]));
  const list = h('div', {class: 'webhooks'});
  const secretBox = h('div', {'aria-live': 'polite'});
  /** @type {Map<number, EndpointCard>} */
  const cards = new Map();
  let stopped = false;

  const empty = () => h('p', {class: 'panel empty muted'}, 'No endpoint yet: add one below to be told of every change.');
  /** @param {Webhook[]} ws */
  const show = async (ws) => {
    for (const w of ws) {
      let card = cards.get(w.id);
      if (!card) {
        card = new EndpointCard(w, names, () => void refresh());
        cards.set(w.id, card);
      }
      card.w = w;
    }
    for (const id of [...cards.keys()]) {
      if (!ws.some((w) => w.id === id)) cards.delete(id);
    }
    await Promise.all([...cards.values()].map((c) => c.update()));
    replace(list, cards.size === 0 ? empty() : [...cards.values()].map((c) => c.el));
  };
  const refresh = async () => {
    if (stopped) return;
    try {
      await show(await request('GET', '/api/webhooks'));
    } catch {
      // The next refresh tries again; an action's own error is shown where it happened.
    }
  };

  const form = addForm(accounts, (w) => {
    replace(secretBox, h('div', {class: 'panel notice', role: 'status'},
      h('p', {}, `Endpoint added. Its signing secret is shown this once: copy it now.`),
      h('p', {}, h('code', {class: 'secret'}, w.secret || '')),
      h('p', {class: 'muted small'}, 'Each request carries X-Mailsync-Timestamp and X-Mailsync-Signature: ' +
        'v1=hex(HMAC-SHA256(secret, timestamp + "." + body)). Reject a request whose signature does not match ' +
        'or whose timestamp is more than a few minutes old.')));
    void refresh();
  });

  replace(root, h('div', {class: 'page-head'}, h('h1', {}, 'Webhooks')), secretBox, list, form);
  await show(hooks);
  const timer = window.setInterval(() => void refresh(), REFRESH_MS);
  return () => {
    stopped = true;
    window.clearInterval(timer);
  };
}
