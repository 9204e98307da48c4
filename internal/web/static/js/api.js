// The JSON API on this origin. Errors are RFC 9457 problem documents; APIError carries one and
// says it in words a person can act on.

export class APIError extends Error {
  constructor(status, problem, fallback) {
    super(describe(status, problem, fallback));
    this.name = 'APIError';
    this.status = status;
    this.problem = problem;
  }
}

function describe(status, problem, fallback) {
  if (status === 0) return 'The mailsync server cannot be reached. Check that it is running, then try again.';
  if (!problem || typeof problem !== 'object') {
    return fallback ? `${fallback} (HTTP ${status})` : `The server answered HTTP ${status}.`;
  }
  const parts = [problem.detail || problem.title || `HTTP ${status}`];
  for (const e of problem.errors || []) {
    const where = e.location ? e.location.replace(/^body\./, '') : '';
    const line = where ? `${where}: ${e.message}` : e.message;
    if (line && !parts.includes(line)) parts.push(line);
  }
  return parts.join('\n');
}

// request sends one API call and returns the decoded JSON (null for an empty answer). A status
// in opts.accept is returned like a success: the health endpoints answer 503 with a body worth
// showing. Anything else not 2xx throws APIError.
export async function request(method, path, body, opts = {}) {
  const init = {method, headers: {Accept: 'application/json'}, credentials: 'same-origin'};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new APIError(0, null);
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!resp.ok && !(opts.accept || []).includes(resp.status)) {
    if (resp.status === 401 && path !== '/api/login') {
      // The session ended (expired, signed out in another tab, password changed): the page
      // goes back to the sign-in form, whatever asked.
      window.dispatchEvent(new CustomEvent('mailsync:signed-out'));
    }
    throw new APIError(resp.status, data, text.slice(0, 200));
  }
  return data;
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const post = (path, body, opts) => request('POST', path, body ?? {}, opts);
export const del = (path) => request('DELETE', path);
