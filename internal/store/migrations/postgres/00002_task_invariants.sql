-- The invariants of the sync-task lifecycle, enforced by the database itself. A database may hold
-- rows written before these rules (by a crash, an older build or a hand edit); they are repaired
-- first, every repaired row saying why in its error, and only then constrained.

-- +goose Up
UPDATE sync_tasks SET
    folders_done     = GREATEST(folders_done, 0),
    folders_total    = GREATEST(folders_total, folders_done, 0),
    messages_done    = GREATEST(messages_done, 0),
    messages_total   = GREATEST(messages_total, messages_done, 0),
    bytes_done       = GREATEST(bytes_done, 0),
    new_messages     = GREATEST(new_messages, 0),
    updated_messages = GREATEST(updated_messages, 0),
    deleted_messages = GREATEST(deleted_messages, 0),
    attempt          = GREATEST(attempt, 0),
    max_attempts     = GREATEST(max_attempts, 1);

UPDATE sync_tasks
SET error = 'repaired by migration: unknown state ' || quote_literal(state), state = 'failed'
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
SET finished_at = COALESCE(heartbeat_at, started_at, created_at)
WHERE state NOT IN ('queued', 'running') AND finished_at IS NULL;

UPDATE sync_tasks SET messages_total = messages_done
WHERE state = 'succeeded' AND messages_done <> messages_total;

ALTER TABLE sync_tasks
    ADD CONSTRAINT sync_tasks_state CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    ADD CONSTRAINT sync_tasks_epoch CHECK (epoch >= 0),
    ADD CONSTRAINT sync_tasks_attempts CHECK (attempt >= 0 AND max_attempts >= 1),
    ADD CONSTRAINT sync_tasks_finished_iff_terminal CHECK ((state IN ('queued', 'running')) = (finished_at IS NULL)),
    ADD CONSTRAINT sync_tasks_running_has_owner CHECK (state <> 'running' OR (owner IS NOT NULL AND started_at IS NOT NULL)),
    ADD CONSTRAINT sync_tasks_succeeded_is_complete CHECK (state <> 'succeeded' OR messages_done = messages_total),
    ADD CONSTRAINT sync_tasks_counters CHECK (
        folders_done >= 0 AND folders_done <= folders_total
        AND messages_done >= 0 AND messages_done <= messages_total
        AND bytes_done >= 0 AND new_messages >= 0 AND updated_messages >= 0 AND deleted_messages >= 0);

-- One active task per account: the rule that makes "Sync now" idempotent.
CREATE UNIQUE INDEX sync_tasks_one_active ON sync_tasks (account_id) WHERE state IN ('queued', 'running');
CREATE INDEX sync_tasks_account_created ON sync_tasks (account_id, created_at DESC);
CREATE INDEX sync_tasks_active ON sync_tasks (state, heartbeat_at) WHERE state IN ('queued', 'running');

-- +goose Down
DROP INDEX sync_tasks_active;
DROP INDEX sync_tasks_account_created;
DROP INDEX sync_tasks_one_active;
ALTER TABLE sync_tasks
    DROP CONSTRAINT sync_tasks_counters,
    DROP CONSTRAINT sync_tasks_succeeded_is_complete,
    DROP CONSTRAINT sync_tasks_running_has_owner,
    DROP CONSTRAINT sync_tasks_finished_iff_terminal,
    DROP CONSTRAINT sync_tasks_attempts,
    DROP CONSTRAINT sync_tasks_epoch,
    DROP CONSTRAINT sync_tasks_state;
