// @ts-check
// The sign-in page.

import {errorMessage, errorStatus, post} from './api.js';
import {h, replace} from './dom.js';

/** @typedef {import('./api.js').User} User */

/**
 * @param {HTMLElement} root
 * @param {object} opts
 * @param {(user: User) => void} opts.onSignedIn called with the user once signed in
 */
export function loginView(root, {onSignedIn}) {
  const error = h('div', {class: 'error', role: 'alert', hidden: true});
  const email = h('input', {type: 'email', name: 'email', autocomplete: 'username', required: true, autofocus: true});
  const password = h('input', {type: 'password', name: 'password', autocomplete: 'current-password', required: true});
  const submit = h('button', {type: 'submit', class: 'primary'}, 'Sign in');
  const form = h('form', {class: 'stack', id: 'login-form'},
    h('label', {}, 'Email', email),
    h('label', {}, 'Password', password),
    error,
    h('div', {class: 'actions'}, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      /** @type {User} */
      const me = await post('/api/login', {email: email.value.trim(), password: password.value});
      onSignedIn(me);
    } catch (err) {
      error.textContent = errorStatus(err) === 401 ? 'Wrong email or password.' : errorMessage(err);
      error.hidden = false;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, h('div', {class: 'panel narrow'}, h('h1', {}, 'Sign in to mailsync'), form));
  email.focus();
}
