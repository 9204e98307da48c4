-- What a running task is waiting for, and how often its workers died.
--
-- stalled_since: when the task's IMAP server went quiet (database clock, milliseconds), as the
-- worker's heartbeats report it; NULL while the server answers. The worker is alive (its
-- heartbeats go on), so the task is live: this column is how it says it waits on the server.
--
-- deaths: the attempts whose worker went silent and was given up on (reaped or replaced by a
-- Start). A task failed with deaths on every attempt is a crash loop, and the account's automatic
-- syncs back off. Tasks failed that way before this column existed are counted from their error.

-- +goose Up
ALTER TABLE sync_tasks ADD COLUMN stalled_since BIGINT;
ALTER TABLE sync_tasks ADD COLUMN deaths INTEGER NOT NULL DEFAULT 0 CONSTRAINT sync_tasks_deaths CHECK (deaths >= 0);
UPDATE sync_tasks SET deaths = attempt
WHERE state = 'failed' AND error LIKE 'the worker stopped sending heartbeats on every attempt%';
UPDATE sync_tasks SET deaths = GREATEST(attempt, 1)
WHERE state = 'failed' AND error = 'abandoned: the worker stopped sending heartbeats';

-- +goose Down
ALTER TABLE sync_tasks DROP COLUMN deaths;
ALTER TABLE sync_tasks DROP COLUMN stalled_since;
