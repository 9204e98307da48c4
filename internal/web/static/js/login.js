// The sign-in page.

import {post} from './api.js';
import {h, replace} from './dom.js';

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
      const me = await post('/api/login', {email: email.value.trim(), password: password.value});
      onSignedIn(me);
    } catch (err) {
      error.textContent = err.status === 401 ? 'Wrong email or password.' : err.message;
      error.hidden = false;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, h('div', {class: 'panel narrow'}, h('h1', {}, 'Sign in to mailsync'), form));
  email.focus();
}
