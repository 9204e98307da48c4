// @ts-check
// The stored mail of an account: a folder filter, a search, pages of messages; and one message.

import {del, errorMessage, errorStatus, get, post} from './api.js';
import {ActionWatcher, actionItem, cancelAction, isFinal, retryAction} from './actions.js';
import {formatBytes, formatNumber, formatTime, h, replace} from './dom.js';

/** @typedef {import('./api.js').Account} Account */
/** @typedef {import('./api.js').Action} Action */
/** @typedef {import('./api.js').Folder} Folder */
/** @typedef {import('./api.js').Message} Message */
/** @typedef {import('./api.js').MessagePage} MessagePage */
/** @typedef {import('./dom.js').Child} Child */

const PAGE = 50;

/**
 * @param {HTMLElement} root
 * @param {object} opts
 * @param {number} opts.accountID
 * @param {URLSearchParams} opts.params the page's query: folder (an id) and q (a search)
 * @param {(hash: string) => void} opts.navigate goes to a page, by its URL fragment
 * @returns {Promise<() => void>} what ends the page's polls
 */
export async function messagesView(root, {accountID, params, navigate}) {
  const folderID = Number(params.get('folder') || 0);
  const q = params.get('q') || '';
  const [account, folders] = await Promise.all([
    /** @type {Promise<Account>} */ (get(`/api/accounts/${accountID}`)),
    /** @type {Promise<Folder[]>} */ (get(`/api/accounts/${accountID}/folders`)),
  ]);

  /**
   * @param {number} folder a folder id; 0 for all of them
   * @param {string} query
   */
  const go = (folder, query) => {
    const p = new URLSearchParams();
    if (folder) p.set('folder', String(folder));
    if (query) p.set('q', query);
    const s = p.toString();
    navigate(`#/accounts/${accountID}/messages${s ? '?' + s : ''}`);
  };

  const total = folders.reduce((n, f) => n + (f.messages || 0), 0);
  const select = h('select', {name: 'folder', 'aria-label': 'Folder'},
    h('option', {value: 0}, `All folders (${formatNumber(total)})`),
    folders.map((f) => h('option', {value: f.id, selected: f.id === folderID}, `${f.name} (${formatNumber(f.messages)})`)));
  select.addEventListener('change', () => go(Number(select.value), q));
  const search = h('input', {type: 'search', name: 'q', value: q, placeholder: 'Search subject, sender, text', 'aria-label': 'Search'});
  const searchForm = h('form', {class: 'toolbar', role: 'search'}, select, search, h('button', {type: 'submit'}, 'Search'));
  searchForm.addEventListener('submit', (ev) => { ev.preventDefault(); go(folderID, search.value.trim()); });

  const folderName = new Map(folders.map((f) => [f.id, f.name]));
  const list = h('ul', {class: 'messages', id: 'message-list'});
  const more = h('button', {type: 'button', hidden: true}, 'Load more');
  const status = h('p', {class: 'muted'});
  let cursor = '';

  const load = async () => {
    more.disabled = true;
    const p = new URLSearchParams({limit: String(PAGE)});
    if (folderID) p.set('folder', String(folderID));
    if (q) p.set('q', q);
    if (cursor) p.set('cursor', cursor);
    /** @type {MessagePage} */
    const page = await get(`/api/accounts/${accountID}/messages?${p}`);
    for (const m of page.messages) list.append(messageItem(m, folderID ? '' : folderName.get(m.folder_id)));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    more.disabled = false;
    list.dataset.query = q; // the page is ready for this search
    status.textContent = list.children.length === 0
      ? (q ? `Nothing matches “${q}”.` : 'No messages stored yet. Sync the account first.')
      : '';
  };
  more.addEventListener('click', () => load().catch((err) => { status.textContent = errorMessage(err); more.disabled = false; }));

  const recent = recentActions(accountID);
  replace(root,
    h('div', {class: 'page-head'}, h('h1', {}, account.name),
      h('div', {class: 'actions'},
        h('a', {class: 'button primary', 'data-action': 'compose', href: `#/accounts/${accountID}/compose`}, 'Write a message'),
        h('a', {class: 'button', href: '#/accounts'}, 'Accounts'))),
    recent.el,
    h('div', {class: 'panel'}, searchForm, status, list, h('div', {class: 'actions'}, more)));
  try {
    await load();
  } catch (err) {
    recent.stop(); // the page shows the error instead: nothing of it keeps polling
    throw err;
  }
  return recent.stop;
}

/**
 * recentActions is the panel of the account's recent actions that were not simply done: under way
 * (followed until they end), failed or in conflict (with Retry), and sends whose fate is unknown,
 * which are never sent again by themselves: their owner decides here, whatever page they were
 * asked from. It stays hidden while there is none.
 * @param {number} accountID
 * @returns {{el: HTMLElement, stop: () => void}}
 */
function recentActions(accountID) {
  /** @type {Map<number, Action>} */
  const shown = new Map();
  const log = h('ul', {class: 'action-log', 'aria-live': 'polite'});
  const error = h('p', {class: 'error', role: 'alert', hidden: true});
  const el = h('div', {class: 'panel', 'data-field': 'recent-actions', hidden: true},
    h('h2', {}, 'Recent actions'), log, error);
  const draw = () => {
    el.hidden = shown.size === 0;
    replace(log, [...shown.values()].sort((a, b) => b.id - a.id)
      .map((a) => actionItem(a, {target: true, onRetry: (x) => act(x, retryAction), onCancel: (x) => act(x, cancelAction)})));
  };
  const watcher = new ActionWatcher((a) => { shown.set(a.id, a); draw(); });
  /**
   * @param {Action} a
   * @param {(id: number) => Promise<Action>} how
   */
  const act = async (a, how) => {
    error.hidden = true;
    try {
      const next = await how(a.id);
      shown.set(next.id, next);
      watcher.watch(next);
    } catch (err) {
      error.textContent = errorStatus(err) === 409 ? 'Too late: it is being carried out.' : errorMessage(err);
      error.hidden = false;
    }
    draw();
  };
  (async () => {
    try {
      /** @type {{actions: Action[]}} */
      const {actions} = await get(`/api/accounts/${accountID}/actions?limit=20`);
      for (const a of actions) {
        if (a.state === 'done' || a.state === 'cancelled') continue;
        shown.set(a.id, a);
        watcher.watch(a);
      }
      draw();
    } catch {
      // The list of messages is what the page is for; without this panel it still is.
    }
  })();
  return {el, stop: () => watcher.stop()};
}

/**
 * @param {Message} m
 * @param {string | undefined} folder the folder's name, shown when the list mixes folders
 */
function messageItem(m, folder) {
  const unread = !(m.flags || []).includes('\\Seen');
  return h('li', {class: unread ? 'unread' : null, 'data-message-id': m.id},
    h('a', {href: `#/messages/${m.id}`},
      h('span', {class: 'from'}, m.from || '(no sender)'),
      h('span', {class: 'date'}, formatTime(m.date || m.internal_date)),
      h('span', {class: 'subject'}, m.subject || '(no subject)', folder ? h('span', {class: 'muted small'}, `  · ${folder}`) : null,
        (m.pending || []).length ? h('span', {class: 'badge pending', 'data-field': 'pending'}, 'pending…') : null),
      m.snippet ? h('span', {class: 'snippet'}, m.snippet) : null));
}

/**
 * messageView shows one message with what can be done to it: mark read or unread, flag, move,
 * delete, reply. Each button creates an action; the message is shown at once as the action will
 * leave it (the server's overlay), marked pending until the action is carried out, and the outcome
 * (or the failure, in words) is listed under the buttons. It returns what ends the page's polls.
 * @param {HTMLElement} root
 * @param {object} opts
 * @param {number} opts.messageID
 * @returns {Promise<() => void>}
 */
export async function messageView(root, {messageID}) {
  /** @type {Message} */
  let m = await get(`/api/messages/${messageID}`);
  /** @type {Folder[]} */
  let folders = [];
  try {
    folders = await get(`/api/accounts/${m.account_id}/folders`);
  } catch {
    // The message is still worth showing; Move stays empty.
  }
  const folderName = new Map(folders.map((f) => [f.id, f.name]));

  /** @type {Map<number, Action>} the actions this page started or found pending, by id */
  const actions = new Map();
  let busy = false; // a create request is on its way
  let gone = ''; // set once the message is no longer stored (deleted, or moved under a new id)
  let error = '';

  const badge = h('span', {class: 'badge pending', 'data-field': 'pending', hidden: true}, 'pending…');
  const title = h('h1', {});
  const fromEl = h('dd', {});
  const toEl = h('dd', {});
  const dateEl = h('dd', {});
  const folderEl = h('dd', {'data-field': 'folder'});
  const sizeEl = h('dd', {});
  const flagsEl = h('dd', {class: 'flags', 'data-field': 'flags'});
  const noteDt = h('dt', {hidden: true}, 'Note');
  const noteEl = h('dd', {hidden: true});
  const body = h('pre', {class: 'body'});

  const seenBtn = h('button', {type: 'button', 'data-action': 'seen', onclick: () => toggleFlag('\\Seen')});
  const flagBtn = h('button', {type: 'button', 'data-action': 'flag', onclick: () => toggleFlag('\\Flagged')});
  const moveTo = h('select', {name: 'move-to', 'aria-label': 'Move to folder'});
  const moveBtn = h('button', {type: 'button', 'data-action': 'move', onclick: () => move()}, 'Move');
  const deleteBtn = h('button', {type: 'button', class: 'danger', 'data-action': 'delete', onclick: () => remove()}, 'Delete');
  const replyLink = h('a', {class: 'button', 'data-action': 'reply', href: `#/messages/${m.id}/reply`}, 'Reply');
  const download = h('a', {class: 'button', href: `/api/messages/${m.id}/raw`, download: `message-${m.id}.eml`}, 'Download original');
  const errorEl = h('div', {class: 'error', role: 'alert', 'data-field': 'error', hidden: true});
  const goneEl = h('div', {class: 'notice', role: 'status', 'data-field': 'gone', hidden: true});
  const log = h('ul', {class: 'action-log', 'aria-live': 'polite'});

  const watcher = new ActionWatcher((a) => {
    actions.set(a.id, a);
    draw();
    if (isFinal(a)) refresh(a);
  }, (id) => {
    actions.delete(id);
    draw();
  });

  const draw = () => {
    title.textContent = m.subject || '(no subject)';
    fromEl.textContent = m.from || '—';
    toEl.textContent = (m.to || []).join(', ') || '—';
    dateEl.textContent = formatTime(m.date || m.internal_date);
    folderEl.textContent = folderName.get(m.folder_id) || '—';
    sizeEl.textContent = formatBytes(m.size);
    replace(flagsEl, (m.flags || []).length ? m.flags.map((f) => h('span', {}, f)) : '—');
    noteDt.hidden = noteEl.hidden = !m.parse_error;
    noteEl.textContent = m.parse_error ? `Stored as received; it could not be fully read: ${m.parse_error}` : '';
    body.textContent = m.body_text || m.snippet || '(no text)';

    const pending = (m.pending || []).length > 0 || [...actions.values()].some((a) => !isFinal(a));
    badge.hidden = !pending;
    const flags = m.flags || [];
    seenBtn.textContent = flags.includes('\\Seen') ? 'Mark unread' : 'Mark read';
    flagBtn.textContent = flags.includes('\\Flagged') ? 'Unflag' : 'Flag';
    const chosen = moveTo.value;
    replace(moveTo, h('option', {value: ''}, 'Move to…'),
      folders.filter((f) => f.id !== m.folder_id).map((f) => h('option', {value: f.name, selected: f.name === chosen}, f.name)));
    for (const b of [seenBtn, flagBtn, deleteBtn]) b.disabled = busy || !!gone;
    moveTo.disabled = busy || !!gone;
    moveBtn.disabled = busy || !!gone;
    replyLink.hidden = !!gone;
    download.hidden = !!gone;

    errorEl.hidden = !error;
    errorEl.textContent = error;
    goneEl.hidden = !gone;
    replace(goneEl, gone, ' ', h('a', {href: `#/accounts/${m.account_id}/messages`}, 'Back to the list'));
    replace(log, [...actions.values()].sort((a, b) => b.id - a.id)
      .map((a) => actionItem(a, {onRetry: (x) => retry(x), onCancel: (x) => cancel(x)})));
  };

  /**
   * refresh reads the message again: after a create (the overlay shows what the action will
   * leave) and after an action ended (what it left). A message that is no longer stored was
   * deleted or moved under another id; the page says so instead of failing.
   * @param {Action} [after] the action that just ended
   */
  const refresh = async (after) => {
    try {
      m = await get(`/api/messages/${m.id}`);
    } catch (err) {
      if (errorStatus(err) === 404) {
        gone = after?.kind === 'move' && after.state === 'done' ? `Moved to ${after.folder}.`
          : after?.kind === 'delete' && after.state === 'done' ? 'Deleted.'
            : 'This message is no longer stored.';
      } else {
        error = `Could not read the message again: ${errorMessage(err)}`;
      }
    }
    for (const p of m.pending || []) watcher.watch(p.action_id);
    draw();
  };

  /**
   * create sends one action's request and follows what it answers.
   * @param {string} what says what failed, in words
   * @param {() => Promise<Action>} send
   */
  const create = async (what, send) => {
    if (busy || gone) return;
    busy = true;
    error = '';
    draw();
    try {
      const a = await send();
      actions.set(a.id, a);
      watcher.watch(a);
    } catch (err) {
      error = `Could not ${what}: ${errorMessage(err)}`;
    }
    busy = false;
    await refresh();
  };

  /** @param {string} flag */
  const toggleFlag = (flag) => {
    const on = (m.flags || []).includes(flag);
    const change = on ? {add: [], remove: [flag]} : {add: [flag], remove: []};
    create(on ? `clear ${flag}` : `set ${flag}`, () => post(`/api/messages/${m.id}/flags`, change));
  };
  const move = () => {
    const folder = moveTo.value;
    if (!folder) {
      error = 'Choose the folder to move it to.';
      draw();
      moveTo.focus();
      return;
    }
    create(`move the message to ${folder}`, () => post(`/api/messages/${m.id}/move`, {folder}));
  };
  const remove = () => create('delete the message', () => del(`/api/messages/${m.id}`));
  /** @param {Action} a */
  const retry = async (a) => {
    error = '';
    try {
      const next = await retryAction(a.id);
      actions.set(next.id, next);
      watcher.watch(next);
    } catch (err) {
      error = `Could not retry: ${errorMessage(err)}`;
    }
    await refresh();
  };
  /** @param {Action} a */
  const cancel = async (a) => {
    error = '';
    try {
      actions.set(a.id, await cancelAction(a.id));
    } catch (err) {
      error = errorStatus(err) === 409 ? 'Too late to cancel: it is being carried out.' : `Could not cancel: ${errorMessage(err)}`;
    }
    await refresh();
  };

  /**
   * @param {string} k
   * @param {HTMLElement} dd
   */
  const row = (k, dd) => [h('dt', {}, k), dd];
  replace(root,
    h('div', {class: 'page-head'},
      h('div', {class: 'title'}, title, badge),
      h('a', {class: 'button', href: `#/accounts/${m.account_id}/messages`}, 'Back to the list')),
    h('div', {class: 'panel'},
      h('dl', {class: 'headers'},
        row('From', fromEl), row('To', toEl), row('Date', dateEl), row('Folder', folderEl),
        row('Size', sizeEl), row('Flags', flagsEl), noteDt, noteEl),
      h('div', {class: 'actions message-actions'},
        seenBtn, flagBtn, h('span', {class: 'move'}, moveTo, moveBtn), deleteBtn, replyLink, download),
      errorEl, goneEl, log),
    h('div', {class: 'panel'}, body));
  for (const p of m.pending || []) watcher.watch(p.action_id);
  draw();
  return () => watcher.stop();
}
