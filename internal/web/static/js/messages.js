// @ts-check
// The stored mail of an account: a folder filter, a search, pages of messages; and one message.

import {errorMessage, get} from './api.js';
import {formatBytes, formatNumber, formatTime, h, replace} from './dom.js';

/** @typedef {import('./api.js').Account} Account */
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

  replace(root,
    h('div', {class: 'page-head'}, h('h1', {}, account.name), h('a', {class: 'button', href: '#/accounts'}, 'Accounts')),
    h('div', {class: 'panel'}, searchForm, status, list, h('div', {class: 'actions'}, more)));
  await load();
}

/**
 * @param {Message} m
 * @param {string | undefined} folder the folder's name, shown when the list mixes folders
 */
function messageItem(m, folder) {
  const unread = !(m.flags || []).includes('\\Seen');
  return h('li', {class: unread ? 'unread' : null},
    h('a', {href: `#/messages/${m.id}`},
      h('span', {class: 'from'}, m.from || '(no sender)'),
      h('span', {class: 'date'}, formatTime(m.date || m.internal_date)),
      h('span', {class: 'subject'}, m.subject || '(no subject)', folder ? h('span', {class: 'muted small'}, `  · ${folder}`) : null),
      m.snippet ? h('span', {class: 'snippet'}, m.snippet) : null));
}

/**
 * @param {HTMLElement} root
 * @param {object} opts
 * @param {number} opts.messageID
 */
export async function messageView(root, {messageID}) {
  /** @type {Message} */
  const m = await get(`/api/messages/${messageID}`);
  /**
   * @param {string} k
   * @param {Child} v
   */
  const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  replace(root,
    h('div', {class: 'page-head'},
      h('h1', {}, m.subject || '(no subject)'),
      h('a', {class: 'button', href: `#/accounts/${m.account_id}/messages`}, 'Back to the list')),
    h('div', {class: 'panel'},
      h('dl', {class: 'headers'},
        row('From', m.from || '—'),
        row('To', (m.to || []).join(', ') || '—'),
        row('Date', formatTime(m.date || m.internal_date)),
        row('Size', formatBytes(m.size)),
        row('Flags', h('span', {class: 'flags'}, (m.flags || []).length ? m.flags.map((f) => h('span', {}, f)) : '—')),
        m.parse_error ? row('Note', `Stored as received; it could not be fully read: ${m.parse_error}`) : null),
      h('div', {class: 'actions'}, h('a', {class: 'button', href: `/api/messages/${m.id}/raw`, download: `message-${m.id}.eml`}, 'Download original'))),
    h('div', {class: 'panel'}, h('pre', {class: 'body'}, m.body_text || m.snippet || '(no text)')));
}
