-- The base schema. Times are integer milliseconds since the Unix epoch (UTC) in both dialects,
-- so that every comparison is numeric and the same SQL serves SQLite and PostgreSQL.

-- +goose Up
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    imap_host       TEXT    NOT NULL,
    imap_port       INTEGER NOT NULL CHECK (imap_port BETWEEN 1 AND 65535),
    tls_mode        TEXT    NOT NULL CHECK (tls_mode IN ('none', 'starttls', 'tls')),
    tls_skip_verify INTEGER NOT NULL DEFAULT 0 CHECK (tls_skip_verify IN (0, 1)),
    login           TEXT    NOT NULL,
    secret_enc      BLOB    NOT NULL,
    sync_interval_s INTEGER NOT NULL DEFAULT 0 CHECK (sync_interval_s >= 0),
    created_at      INTEGER NOT NULL,
    last_error      TEXT    NOT NULL DEFAULT '',
    UNIQUE (user_id, name)
);

CREATE TABLE folders (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    delimiter      TEXT    NOT NULL DEFAULT '',
    attributes     TEXT    NOT NULL DEFAULT '',
    uidvalidity    INTEGER NOT NULL DEFAULT 0,
    uidnext        INTEGER NOT NULL DEFAULT 0,
    highestmodseq  INTEGER NOT NULL DEFAULT 0,
    messages       INTEGER NOT NULL DEFAULT 0,
    last_synced_at INTEGER,
    UNIQUE (account_id, name)
);

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    folder_id     INTEGER NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL,
    message_id    TEXT    NOT NULL DEFAULT '',
    subject       TEXT    NOT NULL DEFAULT '',
    from_addr     TEXT    NOT NULL DEFAULT '',
    to_addrs      TEXT    NOT NULL DEFAULT '',
    date          INTEGER,
    internal_date INTEGER,
    flags         TEXT    NOT NULL DEFAULT '',
    size          INTEGER NOT NULL DEFAULT 0,
    snippet       TEXT    NOT NULL DEFAULT '',
    body_text     TEXT    NOT NULL DEFAULT '',
    raw           BLOB    NOT NULL,
    parse_error   TEXT    NOT NULL DEFAULT '',
    UNIQUE (folder_id, uid)
);
CREATE INDEX messages_account_date ON messages (account_id, date DESC, id DESC);

-- The first cut of the task table, without its invariants: 00002 repairs and constrains it, the
-- way a database that predates the constraints would be brought up to date.
CREATE TABLE sync_tasks (
    id                  TEXT    PRIMARY KEY,
    account_id          INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    state               TEXT    NOT NULL,
    force_full          INTEGER NOT NULL DEFAULT 0,
    epoch               INTEGER NOT NULL DEFAULT 0,
    attempt             INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL DEFAULT 3,
    owner               TEXT,
    created_at          INTEGER NOT NULL,
    started_at          INTEGER,
    heartbeat_at        INTEGER,
    finished_at         INTEGER,
    cancel_requested_at INTEGER,
    phase               TEXT    NOT NULL DEFAULT '',
    folders_total       INTEGER NOT NULL DEFAULT 0,
    folders_done        INTEGER NOT NULL DEFAULT 0,
    messages_total      INTEGER NOT NULL DEFAULT 0,
    messages_done       INTEGER NOT NULL DEFAULT 0,
    bytes_done          INTEGER NOT NULL DEFAULT 0,
    new_messages        INTEGER NOT NULL DEFAULT 0,
    updated_messages    INTEGER NOT NULL DEFAULT 0,
    deleted_messages    INTEGER NOT NULL DEFAULT 0,
    error               TEXT    NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE sync_tasks;
DROP TABLE messages;
DROP TABLE folders;
DROP TABLE accounts;
DROP TABLE api_tokens;
DROP TABLE users;
