-- Webhooks: endpoints that are sent the change log of their user's accounts.
--
-- There is no outbox table of messages to send, and no copy of a change per endpoint: the change
-- log (00009) is the queue. It is written in the transaction that writes the data, so it already
-- holds every change that committed and none that did not; what an endpoint still has to receive
-- is exactly the changes of an account after its cursor. webhook_cursors is therefore the durable
-- outbox: one row per (endpoint, account) holding the last number delivered, advanced in the
-- same statement that checks the lease, only after the receiver answered 2xx. A crash between the
-- POST and that statement sends the batch again (at-least-once, with the same ids); nothing can be
-- skipped, because nothing is ever dequeued but by moving a cursor past what was acknowledged.
-- Fan-out costs one small row per (endpoint, account), not one per change.
--
-- webhooks: the endpoint. kinds is a comma-separated list of change kinds ('' means every kind).
-- all_accounts sends every account of the user, present and future; otherwise the accounts are
-- those with a cursor row. secret_enc is the HMAC signing secret sealed under the server key
-- (package secret, bound to the endpoint's id), as the accounts' IMAP passwords are. An endpoint
-- is enabled exactly when it has no disabled_reason.
--
-- webhook_cursors: delivered_seq is the endpoint's position in the account's log. A deliverer
-- holds the row through a lease like a sync task's: owner, epoch (raised at every claim, so a
-- deliverer that lost its lease cannot advance the cursor) and lease_expires_at (a dead instance's
-- lease simply runs out). next_attempt_at is when a failing pair may be tried again; failures
-- counts the failed attempts in a row and failing_since is when the first of them happened (the
-- endpoint is disabled when it has failed for too long).
--
-- webhook_attempts: the last attempts per endpoint (the deliverer keeps a bounded number), with
-- the receiver's status (0: no answer), the latency, the error and the changes the batch carried.

-- +goose Up
CREATE TABLE webhooks (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url             TEXT    NOT NULL CHECK (url LIKE 'http://%' OR url LIKE 'https://%'),
    kinds           TEXT    NOT NULL DEFAULT '',
    all_accounts    INTEGER NOT NULL CHECK (all_accounts IN (0, 1)),
    secret_enc      BLOB    NOT NULL,
    enabled         INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    disabled_reason TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    CHECK ((enabled = 1) = (disabled_reason = ''))
);
CREATE INDEX webhooks_user ON webhooks (user_id);

CREATE TABLE webhook_cursors (
    webhook_id       INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    account_id       INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    delivered_seq    INTEGER NOT NULL DEFAULT 0 CHECK (delivered_seq >= 0),
    owner            TEXT,
    epoch            INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    lease_expires_at INTEGER,
    next_attempt_at  INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    failing_since    INTEGER,
    last_error       TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (webhook_id, account_id),
    CHECK ((owner IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((failures = 0) = (failing_since IS NULL))
);
CREATE INDEX webhook_cursors_account ON webhook_cursors (account_id);

CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY,
    webhook_id  INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    account_id  INTEGER NOT NULL DEFAULT 0,
    delivery_id TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    test        INTEGER NOT NULL DEFAULT 0 CHECK (test IN (0, 1)),
    status      INTEGER NOT NULL CHECK (status BETWEEN 0 AND 599),
    latency_ms  INTEGER NOT NULL CHECK (latency_ms >= 0),
    error       TEXT    NOT NULL DEFAULT '',
    first_seq   INTEGER NOT NULL DEFAULT 0,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    count       INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0),
    CHECK (first_seq <= last_seq),
    CHECK ((count = 0) = (first_seq = 0))
);
CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id, id);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_cursors;
DROP TABLE webhooks;
