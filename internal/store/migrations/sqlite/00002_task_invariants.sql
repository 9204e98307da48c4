-- The invariants of the sync-task lifecycle, enforced by the database itself. A database may hold
-- rows written before these rules (by a crash, an older build or a hand edit); they are repaired
-- first, every repaired row saying why in its error, and only then constrained. SQLite cannot add a
-- CHECK to a table, so the table is rebuilt with its constraints and the repaired rows copied in.

-- +goose Up
UPDATE sync_tasks SET
    folders_done     = max(folders_done, 0),
    folders_total    = max(folders_total, folders_done, 0),
    messages_done    = max(messages_done, 0),
    messages_total   = max(messages_total, messages_done, 0),
    bytes_done       = max(bytes_done, 0),
    new_messages     = max(new_messages, 0),
    updated_messages = max(updated_messages, 0),
    deleted_messages = max(deleted_messages, 0),
    attempt          = max(attempt, 0),
    max_attempts     = max(max_attempts, 1);

UPDATE sync_tasks
SET error = 'repaired by migration: unknown state ' || quote(state), state = 'failed'
WHERE state NOT IN ('queued', 'running', 'succeeded', 'failed', 'cancelled');

UPDATE sync_tasks
SET state = 'failed', error = 'repaired by migration: an active task had finished_at set'
WHERE state IN ('queued', 'running') AND finished_at IS NOT NULL;

UPDATE sync_tasks
SET state = 'failed', error = 'repaired by migration: running without owner or start time'
WHERE state = 'running' AND (owner IS NULL OR started_at IS NULL);

UPDATE sync_tasks
SET state = 'failed', error = 'repaired by migration: a newer task of the account was active'
WHERE state IN ('queued', 'running')
  AND EXISTS (SELECT 1 FROM sync_tasks AS newer
              WHERE newer.account_id = sync_tasks.account_id
                AND newer.state IN ('queued', 'running')
                AND (newer.created_at > sync_tasks.created_at
                     OR (newer.created_at = sync_tasks.created_at AND newer.id > sync_tasks.id)));

UPDATE sync_tasks
SET finished_at = coalesce(heartbeat_at, started_at, created_at)
WHERE state NOT IN ('queued', 'running') AND finished_at IS NULL;

UPDATE sync_tasks SET messages_total = messages_done
WHERE state = 'succeeded' AND messages_done <> messages_total;

CREATE TABLE sync_tasks_constrained (
    id                  TEXT    PRIMARY KEY,
    account_id          INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    state               TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    force_full          INTEGER NOT NULL DEFAULT 0 CHECK (force_full IN (0, 1)),
    epoch               INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    attempt             INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts        INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
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
    error               TEXT    NOT NULL DEFAULT '',
    CONSTRAINT sync_tasks_finished_iff_terminal CHECK ((state IN ('queued', 'running')) = (finished_at IS NULL)),
    CONSTRAINT sync_tasks_running_has_owner CHECK (state <> 'running' OR (owner IS NOT NULL AND started_at IS NOT NULL)),
    CONSTRAINT sync_tasks_succeeded_is_complete CHECK (state <> 'succeeded' OR messages_done = messages_total),
    CONSTRAINT sync_tasks_counters CHECK (
        folders_done >= 0 AND folders_done <= folders_total
        AND messages_done >= 0 AND messages_done <= messages_total
        AND bytes_done >= 0 AND new_messages >= 0 AND updated_messages >= 0 AND deleted_messages >= 0)
);
INSERT INTO sync_tasks_constrained SELECT
    id, account_id, state, force_full, epoch, attempt, max_attempts, owner, created_at, started_at,
    heartbeat_at, finished_at, cancel_requested_at, phase, folders_total, folders_done, messages_total,
    messages_done, bytes_done, new_messages, updated_messages, deleted_messages, error
FROM sync_tasks;
DROP TABLE sync_tasks;
ALTER TABLE sync_tasks_constrained RENAME TO sync_tasks;

-- One active task per account: the rule that makes "Sync now" idempotent.
CREATE UNIQUE INDEX sync_tasks_one_active ON sync_tasks (account_id) WHERE state IN ('queued', 'running');
CREATE INDEX sync_tasks_account_created ON sync_tasks (account_id, created_at DESC);
CREATE INDEX sync_tasks_active ON sync_tasks (state, heartbeat_at) WHERE state IN ('queued', 'running');

-- +goose Down
DROP INDEX sync_tasks_active;
DROP INDEX sync_tasks_account_created;
DROP INDEX sync_tasks_one_active;
