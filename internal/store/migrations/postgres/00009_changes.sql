-- The change feed: every change to an account's copy, written in the transaction that makes it.
--
-- change_heads: one row per account that has changes. last_seq is the number of the account's
-- newest change; a writer increments it with INSERT ... ON CONFLICT DO UPDATE, which locks the row
-- until the writer commits, so a second writer of the same account waits and takes the next
-- numbers: within an account, sequence order is commit order and has no gaps. floor is the
-- highest number pruning has removed: a cursor below it is answered "gone".
--
-- changes: the log itself, keyed by (account, seq). data is the kind's JSON payload
-- (internal/changes). created_at is the database clock at the write, for the retention window.

-- +goose Up
CREATE TABLE change_heads (
    account_id BIGINT NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    last_seq   BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    floor      BIGINT NOT NULL DEFAULT 0 CHECK (floor >= 0 AND floor <= last_seq)
);

CREATE TABLE changes (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL CHECK (seq > 0),
    kind       TEXT    NOT NULL,
    folder     TEXT    NOT NULL DEFAULT '',
    uid        BIGINT NOT NULL DEFAULT 0,
    task_id    TEXT    NOT NULL DEFAULT '',
    data       TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE INDEX changes_created ON changes (created_at);

-- +goose Down
DROP TABLE changes;
DROP TABLE change_heads;
