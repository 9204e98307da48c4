// @ts-check
// The add-account page. The server tries the IMAP login before it saves anything, so a wrong
// password or host is refused here, in words, and nothing is stored.

import {errorMessage, errorStatus, post} from './api.js';
import {h, replace} from './dom.js';

/** @type {Record<string, number>} */
const DEFAULT_PORT = {tls: 993, starttls: 143, none: 143};

/**
 * @param {HTMLElement} root
 * @param {object} opts
 * @param {(hash: string) => void} opts.navigate goes to a page, by its URL fragment
 */
export function addAccountView(root, {navigate}) {
  /**
   * @param {string} label
   * @param {HTMLElement} input
   * @param {string} [hint]
   */
  const field = (label, input, hint) => h('label', {}, label, input, hint ? h('span', {class: 'small muted'}, hint) : null);
  const name = h('input', {name: 'name', required: true, maxlength: 200, placeholder: 'Work mail'});
  const host = h('input', {name: 'imap_host', required: true, placeholder: 'imap.example.com', autocomplete: 'off'});
  const tls = h('select', {name: 'tls_mode'},
    h('option', {value: 'tls'}, 'TLS (port 993)'),
    h('option', {value: 'starttls'}, 'STARTTLS (port 143)'),
    h('option', {value: 'none'}, 'None — loopback or trusted network only'));
  const port = h('input', {name: 'imap_port', type: 'number', min: 1, max: 65535, required: true, value: DEFAULT_PORT.tls});
  const skipVerify = h('input', {name: 'tls_skip_verify', type: 'checkbox'});
  const login = h('input', {name: 'login', required: true, autocomplete: 'off'});
  const password = h('input', {name: 'password', type: 'password', required: true, autocomplete: 'new-password'});
  const interval = h('input', {name: 'sync_interval_min', type: 'number', min: 0, max: 43200, value: 0});
  const error = h('div', {class: 'error', role: 'alert', hidden: true, 'data-field': 'error'});
  const submit = h('button', {type: 'submit', class: 'primary'}, 'Test login and add');

  let lastMode = 'tls';
  tls.addEventListener('change', () => {
    if (Number(port.value) === DEFAULT_PORT[lastMode]) port.value = String(DEFAULT_PORT[tls.value]);
    lastMode = tls.value;
  });

  const form = h('form', {class: 'stack', id: 'add-account-form'},
    field('Name', name, 'How this account is shown here.'),
    h('div', {class: 'row'}, field('IMAP server', host), field('Security', tls), field('Port', port)),
    h('label', {class: 'check'}, skipVerify, 'Accept a certificate that cannot be verified (self-signed)'),
    h('div', {class: 'row'}, field('Login', login), field('Password', password)),
    field('Sync automatically every (minutes)', interval, '0: only when you press Sync now.'),
    error,
    h('div', {class: 'actions'}, submit, h('a', {class: 'button', href: '#/accounts'}, 'Back')));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    submit.textContent = 'Testing the login…';
    error.hidden = true;
    try {
      /** @type {import('./api.js').NewAccount} */
      const account = {
        name: name.value.trim(),
        imap_host: host.value.trim(),
        imap_port: Number(port.value),
        tls_mode: tls.value,
        tls_skip_verify: skipVerify.checked,
        login: login.value,
        password: password.value,
        sync_interval_s: Math.round(Number(interval.value || 0) * 60),
      };
      await post('/api/accounts', account);
      navigate('#/accounts');
    } catch (err) {
      const status = errorStatus(err);
      error.textContent = status === 422 || status === 409
        ? `Not saved. ${errorMessage(err)}`
        : `Not saved: ${errorMessage(err)}`;
      error.hidden = false;
    } finally {
      submit.disabled = false;
      submit.textContent = 'Test login and add';
    }
  });

  replace(root, h('div', {class: 'panel'}, h('h1', {}, 'Add an IMAP account'), form));
  name.focus();
}
