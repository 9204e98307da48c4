// @ts-check
// The JSON API on this origin. Errors are RFC 9457 problem documents; APIError carries one and
// says it in words a person can act on.
//
// The typedefs below are the JSON shapes the pages read, field for field as internal/httpapi
// (and task.View) writes them; times are RFC 3339 strings. A module uses one as
// import('./api.js').Task.

/** @typedef {'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled'} TaskState */

/**
 * A run's counters (task.ProgressView); they only grow within a run.
 * @typedef {object} Progress
 * @property {number} folders_total
 * @property {number} folders_done
 * @property {number} messages_total
 * @property {number} messages_done
 * @property {number} bytes_done
 * @property {number} new
 * @property {number} updated
 * @property {number} deleted
 */

/**
 * A sync task (httpapi.TaskJSON, which is task.View).
 * @typedef {object} Task
 * @property {string} id
 * @property {number} account_id
 * @property {TaskState} state
 * @property {string} phase
 * @property {number} percent
 * @property {boolean} live false: the task claims to be active but its worker is not heard from
 * @property {boolean} force_full
 * @property {string | null} created_at
 * @property {string | null} started_at
 * @property {string | null} heartbeat_at
 * @property {string | null} finished_at
 * @property {string} error
 * @property {boolean} cancel_requested
 * @property {string | null} stalled_since while running: since when the IMAP server has sent nothing
 * @property {Progress} progress
 */

/**
 * POST /api/accounts/{id}/sync.
 * @typedef {object} SyncStarted
 * @property {Task} task
 * @property {boolean} reused
 */

/** @typedef {'none' | 'starttls' | 'tls'} TLSMode */

/**
 * An IMAP account (httpapi.AccountJSON).
 * @typedef {object} Account
 * @property {number} id
 * @property {string} name
 * @property {string} imap_host
 * @property {number} imap_port
 * @property {TLSMode} tls_mode
 * @property {boolean} tls_skip_verify
 * @property {string} login
 * @property {number} sync_interval_s
 * @property {string} created_at
 * @property {string} last_error
 * @property {'password' | 'oauth2'} auth_kind
 * @property {string} [oauth_provider] the OAuth2 provider the account's token comes from
 * @property {'ok' | 'reauth_required'} auth_state
 * @property {Task | null} last_task the live task, else the most recent one
 */

/**
 * An OAuth2 provider the server offers (GET /api/oauth/providers).
 * @typedef {object} OAuthProvider
 * @property {string} name
 * @property {string} label
 */

/**
 * Where a sign-in continues (POST /api/oauth/start).
 * @typedef {object} OAuthStart
 * @property {string} url
 */

/**
 * The body of POST /api/accounts (httpapi's account input).
 * @typedef {object} NewAccount
 * @property {string} name
 * @property {string} imap_host
 * @property {number} imap_port
 * @property {string} tls_mode
 * @property {boolean} [tls_skip_verify]
 * @property {string} login
 * @property {string} password
 * @property {number} [sync_interval_s]
 */

/**
 * A folder and its sync checkpoint (httpapi.FolderJSON).
 * @typedef {object} Folder
 * @property {number} id
 * @property {string} name
 * @property {string} delimiter
 * @property {string[]} attributes
 * @property {number} uidvalidity
 * @property {number} uidnext
 * @property {number} highestmodseq
 * @property {number} messages
 * @property {string | null} last_synced_at
 */

/**
 * A stored message (httpapi.MessageJSON).
 * @typedef {object} Message
 * @property {number} id
 * @property {number} account_id
 * @property {number} folder_id
 * @property {number} uid
 * @property {string} message_id
 * @property {string} subject
 * @property {string} from
 * @property {string[]} to
 * @property {string | null} date
 * @property {string | null} internal_date
 * @property {string[]} flags
 * @property {number} size
 * @property {string} snippet
 * @property {string} [body_text] only from GET /api/messages/{id}
 * @property {string} [parse_error]
 * @property {PendingAction[]} [pending] the actions not yet done on it; flags and folder_id already
 *   show what they will leave
 */

/** @typedef {'flags' | 'move' | 'delete' | 'draft' | 'send'} ActionKind */

/**
 * Where an action is. done, failed, conflict, unknown and cancelled are final; unknown is a send
 * that may or may not have left (the process died while handing it over), never retried by itself.
 * @typedef {'pending' | 'running' | 'submitting' | 'sent' | 'done' | 'failed' | 'conflict' | 'unknown' | 'cancelled'} ActionState
 */

/**
 * An action on mail (httpapi's action JSON): a change mailsync makes on the IMAP server (flags,
 * move, delete, a draft) or a message it sends. Every create answers 202 with one.
 * @typedef {object} Action
 * @property {number} id
 * @property {number} account_id
 * @property {ActionKind} kind
 * @property {ActionState} state
 * @property {number[]} messages the mailsync message ids it acts on (empty for send and draft)
 * @property {string[]} [add] flags: the flags it sets
 * @property {string[]} [remove] flags: the flags it clears
 * @property {string} [folder] move: the destination
 * @property {boolean} [permanent] delete: expunged instead of moved to Trash
 * @property {number} [replaces] draft: the draft it replaces
 * @property {string} [message_id] send and draft: the Message-ID of the message
 * @property {string[]} [recipients] send: every address it is submitted to, Bcc included
 * @property {string} [subject] send and draft
 * @property {string} error why it failed, in words
 * @property {Record<string, unknown> | null} [result] free-form details (the SMTP answer, a conflict report)
 * @property {number} attempts
 * @property {string} [task_id] the sync task that last took it
 * @property {string} [next_attempt_at] a send held back by a temporary failure is tried again then
 * @property {string} created_at
 * @property {string} updated_at
 * @property {string | null} finished_at
 */

/**
 * An action not yet done on a message, as the message lists it.
 * @typedef {object} PendingAction
 * @property {number} action_id
 * @property {ActionKind} kind
 * @property {ActionState} state
 */

/**
 * A file sent with a message.
 * @typedef {object} Attachment
 * @property {string} filename
 * @property {string} content_type
 * @property {string} content base64
 */

/**
 * The body of POST /api/accounts/{id}/send (and, with replaces, of /drafts).
 * @typedef {object} Outgoing
 * @property {string} [from] empty: the account's address
 * @property {string[]} to
 * @property {string[]} [cc]
 * @property {string[]} [bcc]
 * @property {string} subject
 * @property {string} [text]
 * @property {string} [html]
 * @property {Attachment[]} [attachments]
 * @property {number} [reply_to] the mailsync message id answered: the server fills In-Reply-To and References
 * @property {string} [in_reply_to]
 * @property {string[]} [references]
 * @property {number} [replaces] drafts: the message id of the draft this one replaces
 */

/**
 * GET /api/accounts/{id}/messages.
 * @typedef {object} MessagePage
 * @property {Message[]} messages
 * @property {string} next_cursor empty on the last page
 */

/**
 * The signed-in user (httpapi.UserJSON).
 * @typedef {object} User
 * @property {number} id
 * @property {string} email
 * @property {boolean} is_admin
 */

/** @typedef {'pass' | 'warn' | 'fail'} HealthStatus */

/**
 * One measurement of a health check (httpapi.HealthCheck).
 * @typedef {object} HealthCheck
 * @property {string} [componentType]
 * @property {unknown} observedValue
 * @property {string} [observedUnit]
 * @property {HealthStatus} status
 * @property {string} time
 * @property {string} [output]
 */

/**
 * An account in the detailed sync health (httpapi.AccountHealth).
 * @typedef {object} AccountHealth
 * @property {number} id
 * @property {number} user_id
 * @property {string} name
 * @property {string} imap_host
 * @property {boolean} syncing
 * @property {Task | null} last_task
 */

/**
 * A health-check response (httpapi.Health).
 * @typedef {object} Health
 * @property {HealthStatus} status
 * @property {string} [version]
 * @property {string} [description]
 * @property {Record<string, HealthCheck[]>} checks
 * @property {Task[]} [reaped] POST /api/health/sync/cleanup only
 * @property {AccountHealth[]} [accounts] GET /api/health/sync/detailed only
 */

/**
 * One entry of a problem document's errors (huma's ErrorDetail).
 * @typedef {object} ProblemError
 * @property {string} [message]
 * @property {string} [location] e.g. body.imap_port
 * @property {unknown} [value]
 */

/**
 * An RFC 9457 problem document, as huma and httpapi's plain handlers write them.
 * @typedef {object} Problem
 * @property {string} [type]
 * @property {string} [title]
 * @property {number} [status]
 * @property {string} [detail]
 * @property {string} [instance]
 * @property {ProblemError[]} [errors]
 */

/**
 * @typedef {object} RequestOptions
 * @property {number[]} [accept] statuses returned like a success
 * @property {Record<string, string>} [headers] sent as well (an Idempotency-Key)
 */

export class APIError extends Error {
  /**
   * @param {number} status the HTTP status; 0 when the server could not be reached
   * @param {Problem | null} problem the decoded body, if it was JSON
   * @param {string} [fallback] the start of the body otherwise
   */
  constructor(status, problem, fallback) {
    super(describe(status, problem, fallback));
    this.name = 'APIError';
    this.status = status;
    this.problem = problem;
  }
}

/**
 * @param {number} status
 * @param {Problem | null} problem
 * @param {string} [fallback]
 * @returns {string}
 */
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

/**
 * request sends one API call and returns the decoded JSON (null for an empty answer). A status
 * in opts.accept is returned like a success: the health endpoints answer 503 with a body worth
 * showing. Anything else not 2xx throws APIError.
 *
 * T is the shape the caller expects, taken from where the answer lands: a variable declared
 * with a JSDoc `@type {Account[]}`, or the call itself wrapped in `@type {Promise<Account>}`
 * (inside Promise.all). Nothing checks the server's JSON against it, but a caller that declares
 * nothing gets unknown, which it cannot use unchecked.
 * @template [T=unknown]
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body] sent as JSON unless undefined
 * @param {RequestOptions} [opts]
 * @returns {Promise<T>}
 */
export async function request(method, path, body, opts = {}) {
  /** @type {Record<string, string>} */
  const headers = {...opts.headers, Accept: 'application/json'};
  /** @type {RequestInit} */
  const init = {method, headers, credentials: 'same-origin'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
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

/**
 * @template [T=unknown]
 * @param {string} path
 * @param {RequestOptions} [opts]
 * @returns {Promise<T>}
 */
export const get = (path, opts) => request('GET', path, undefined, opts);

/**
 * @template [T=unknown]
 * @param {string} path
 * @param {unknown} [body] {} when left out
 * @param {RequestOptions} [opts]
 * @returns {Promise<T>}
 */
export const post = (path, body, opts) => request('POST', path, body ?? {}, opts);

/**
 * @template [T=unknown]
 * @param {string} path
 * @param {RequestOptions} [opts]
 * @returns {Promise<T>}
 */
export const del = (path, opts) => request('DELETE', path, undefined, opts);

/**
 * errorStatus is the HTTP status of a failure caught from request: undefined for anything but an
 * APIError (0 when the server could not be reached).
 * @param {unknown} err
 * @returns {number | undefined}
 */
export function errorStatus(err) {
  return err instanceof APIError ? err.status : undefined;
}

/**
 * errorMessage is what a page shows for a failure it caught: an APIError's words, or any other
 * error's message.
 * @param {unknown} err
 * @returns {string}
 */
export function errorMessage(err) {
  return err instanceof Error ? err.message : String(err);
}
