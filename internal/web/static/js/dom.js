// @ts-check
// Small DOM helpers. Text is always set as text, never parsed as HTML: nothing the server sends
// (a subject, a sender, an error) can inject markup.

/**
 * What h and replace take as children: nodes, text (numbers shown as text), nested lists, and
 * null, undefined or false for nothing.
 * @typedef {Node | string | number | null | undefined | false | Children} Child
 */
/** @typedef {Child[]} Children */

/**
 * h builds an element: h('a', {href: '#/x', class: 'y'}, 'text', child, ...). Attributes whose
 * name starts with "on" are listeners; null, undefined and false attributes are left out.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown> | null} [attrs]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), /** @type {EventListener} */ (value));
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

/**
 * @param {Element} el
 * @param {Child[]} children
 */
function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/**
 * replace swaps the children of el for the given ones.
 * @param {Element} el
 * @param {...Child} children
 */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

const numberFormat = new Intl.NumberFormat();

/**
 * @param {number | null | undefined} n
 * @returns {string}
 */
export function formatNumber(n) {
  return numberFormat.format(n || 0);
}

/**
 * @param {number} n
 * @returns {string}
 */
export function formatBytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

/**
 * formatTime shows an RFC 3339 time in the reader's zone; withSeconds for times that matter to
 * the second (a last heartbeat).
 * @param {string | null | undefined} iso
 * @param {boolean} [withSeconds]
 * @returns {string}
 */
export function formatTime(iso, withSeconds = false) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString(undefined, {dateStyle: 'medium', timeStyle: withSeconds ? 'medium' : 'short'});
}

/**
 * @param {number | null | undefined} ms
 * @returns {string}
 */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || ms < 0 || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  const rest = Math.round(s % 60);
  if (m < 60) return `${m} min ${rest} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
