// @ts-check
// mailsync's single page: a router over the URL fragment and the signed-in user.
//
//   #/login                      sign in
//   #/accounts                   accounts, sync buttons and progress
//   #/accounts/new               add an account
//   #/accounts/{id}/messages     stored mail, ?folder=&q=
//   #/accounts/{id}/compose      write a message
//   #/messages/{id}              one message, and the actions on it
//   #/messages/{id}/reply        answer it
//   #/webhooks                   webhook endpoints, their deliveries and state
//   #/health                     operators' health

import {errorMessage, errorStatus, get, post} from './api.js';
import {h, replace} from './dom.js';
import {accountsView} from './accounts.js';
import {addAccountView} from './addaccount.js';
import {composeView} from './compose.js';
import {healthView} from './health.js';
import {loginView} from './login.js';
import {messageView, messagesView} from './messages.js';
import {webhooksView} from './webhooks.js';

// index.html has these.
const view = /** @type {HTMLElement} */ (document.getElementById('view'));
const nav = /** @type {HTMLElement} */ (document.getElementById('nav'));
/** @type {import('./api.js').User | null} */
let me = null;
/** @type {(() => void) | null} */
let cleanup = null; // ends what the current view keeps running (event streams, timers)
let generation = 0; // a view that finishes loading after the user moved on is dropped

/** @param {string} hash */
function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/**
 * @param {string} hash
 * @returns {{parts: string[], params: URLSearchParams}}
 */
function parse(hash) {
  const [path, query] = hash.replace(/^#/, '').split('?');
  return {parts: path.split('/').filter(Boolean), params: new URLSearchParams(query || '')};
}

async function route() {
  const gen = ++generation;
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const {parts, params} = parse(location.hash);
  if (!me) {
    showNav();
    loginView(view, {onSignedIn: (user) => {
      me = user;
      navigate(parts[0] && parts[0] !== 'login' ? location.hash : '#/accounts');
    }});
    return;
  }
  showNav(parts[0] || 'accounts');
  try {
    /** @type {(() => void) | undefined} */
    let done;
    if (parts.length === 0 || parts[0] === 'login' || (parts[0] === 'accounts' && parts.length === 1)) {
      done = await accountsView(view, {params});
    } else if (parts[0] === 'accounts' && parts[1] === 'new') {
      addAccountView(view, {navigate});
    } else if (parts[0] === 'accounts' && parts[2] === 'messages') {
      done = await messagesView(view, {accountID: Number(parts[1]), params, navigate});
    } else if (parts[0] === 'accounts' && parts[2] === 'compose') {
      done = await composeView(view, {accountID: Number(parts[1]), navigate});
    } else if (parts[0] === 'messages' && parts[1] && parts[2] === 'reply') {
      done = await composeView(view, {replyTo: Number(parts[1]), navigate});
    } else if (parts[0] === 'messages' && parts[1]) {
      done = await messageView(view, {messageID: Number(parts[1])});
    } else if (parts[0] === 'webhooks') {
      done = await webhooksView(view);
    } else if (parts[0] === 'health') {
      await healthView(view, {me, refresh: route});
    } else {
      replace(view, h('div', {class: 'panel'}, h('p', {}, 'There is no such page. '), h('a', {href: '#/accounts'}, 'Go to your accounts')));
    }
    if (gen !== generation) {
      if (done) done();
    } else {
      cleanup = done || null;
    }
  } catch (err) {
    if (gen !== generation) return;
    if (errorStatus(err) === 401) {
      me = null;
      route();
      return;
    }
    replace(view, h('div', {class: 'panel'}, h('p', {class: 'error', role: 'alert'}, errorMessage(err)),
      h('p', {}, h('a', {href: '#/accounts'}, 'Back to your accounts'))));
  }
}

/** @param {string} [current] the nav link to mark as this page's */
function showNav(current) {
  nav.hidden = !me;
  /** @type {HTMLElement} */ (document.getElementById('who')).textContent = me ? me.email : '';
  for (const a of /** @type {NodeListOf<HTMLAnchorElement>} */ (nav.querySelectorAll('a[data-nav]'))) {
    if (a.dataset.nav === current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** @type {HTMLElement} */ (document.getElementById('logout')).addEventListener('click', async () => {
  try { await post('/api/logout'); } catch { /* signed out locally all the same */ }
  me = null;
  navigate('#/login');
});

window.addEventListener('hashchange', route);
window.addEventListener('mailsync:signed-out', () => {
  if (!me) return;
  me = null;
  route();
});

(async () => {
  try {
    me = await get('/api/me');
  } catch {
    me = null;
  }
  route();
})();
