-- Actions on mail: what a user asked mailsync to do on the server (set or clear flags, move,
-- delete, save a draft, send), stored before it is done and applied by the account's task.
--
-- An action is a row from the moment it is asked for: the API answers 202 with it, and the next
-- task of the account pushes it to the server before it pulls (docs/actions.md). The row is the
-- durable intent and the only record of how far it got: a dead worker's action is taken by the
-- next task, which knows from its state what the first one did.
--
-- state: pending (waits for a task), running (a task is applying it; a later task that finds it
-- so applies it again, guarded so that nothing is done twice), submitting (a send whose DATA is
-- under way: if a task finds it so, nobody knows whether the server took the message, and it
-- becomes unknown, never sent again by itself), sent (submitted; the copy for Sent is still to
-- be saved), and the final states done, failed, conflict, unknown, cancelled. finished_at is set
-- exactly in the final states (CHECK below).
--
-- idempotency_key is the client's Idempotency-Key, unique per user: the same key is the same
-- action, never a second one; request_hash tells a reuse of the key for another request.
-- request is the action's JSON (action.Request); raw is the composed message of a send or a draft,
-- composed once when asked so that every attempt submits or appends the same bytes with the same
-- Message-ID. task_id and epoch are the task that last took it; attempts counts those takes.
-- next_attempt_at holds a send back after a temporary SMTP failure.
--
-- account_smtp: where an account submits mail. saves_sent: the server files submitted mail in
-- Sent by itself (Gmail), so no copy is appended. restricted: a non-admin user chose the server,
-- so the destination policy applies to it (as accounts.restricted does to the IMAP server).

-- +goose Up
CREATE TABLE actions (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key TEXT,
    request_hash    TEXT    NOT NULL DEFAULT '',
    kind            TEXT    NOT NULL CHECK (kind IN ('flags', 'move', 'delete', 'draft', 'send')),
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'submitting', 'sent', 'done', 'failed', 'conflict', 'unknown', 'cancelled')),
    request         TEXT    NOT NULL,
    raw             BLOB,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    task_id         TEXT,
    epoch           INTEGER NOT NULL DEFAULT 0,
    result          TEXT    NOT NULL DEFAULT '{}',
    error           TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    UNIQUE (user_id, idempotency_key),
    CHECK ((finished_at IS NULL) = (state IN ('pending', 'running', 'submitting', 'sent')))
);
CREATE INDEX actions_open ON actions (account_id, id) WHERE finished_at IS NULL;
CREATE INDEX actions_account ON actions (account_id, id);

CREATE TABLE account_smtp (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    host        TEXT    NOT NULL,
    port        INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    tls_mode    TEXT    NOT NULL CHECK (tls_mode IN ('none', 'starttls', 'tls')),
    saves_sent  INTEGER NOT NULL DEFAULT 0 CHECK (saves_sent IN (0, 1)),
    restricted  INTEGER NOT NULL DEFAULT 0 CHECK (restricted IN (0, 1))
);

-- +goose Down
DROP TABLE account_smtp;
DROP TABLE actions;
