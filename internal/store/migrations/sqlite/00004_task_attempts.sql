-- The attempt log: one row for every run of a task that ended, however it ended (finished by its
-- worker, handed back at shutdown, re-queued or failed by a reaper, abandoned by a Start). A
-- claim clears the task's error, so a running retry no longer shows why the run before it died;
-- the reason lives here. A trigger writes the rows, so no code path that ends a run (now or
-- later) can forget to.
--
-- A migration that rebuilds sync_tasks (SQLite's way to add a constraint) drops this trigger with
-- the table and deletes these rows through the foreign key: it must copy the log aside and
-- create the trigger again.

-- +goose Up
CREATE TABLE sync_task_attempts (
    task_id           TEXT    NOT NULL REFERENCES sync_tasks (id) ON DELETE CASCADE,
    epoch             INTEGER NOT NULL,
    attempt           INTEGER NOT NULL,
    owner             TEXT,
    started_at        INTEGER,
    last_heartbeat_at INTEGER,
    ended_at          INTEGER NOT NULL,
    outcome           TEXT    NOT NULL,
    phase             TEXT    NOT NULL,
    messages_done     INTEGER NOT NULL,
    error             TEXT    NOT NULL,
    PRIMARY KEY (task_id, epoch)
);

-- +goose StatementBegin
CREATE TRIGGER sync_task_attempt_ended AFTER UPDATE OF state ON sync_tasks
FOR EACH ROW WHEN OLD.state = 'running' AND NEW.state <> 'running'
BEGIN
    INSERT OR IGNORE INTO sync_task_attempts (task_id, epoch, attempt, owner, started_at, last_heartbeat_at,
        ended_at, outcome, phase, messages_done, error)
    VALUES (OLD.id, OLD.epoch, OLD.attempt, OLD.owner, OLD.started_at, OLD.heartbeat_at,
        coalesce(NEW.finished_at, NEW.heartbeat_at, CAST(unixepoch('subsec') * 1000 AS INTEGER)),
        NEW.state, OLD.phase, max(OLD.messages_done, NEW.messages_done), NEW.error);
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER sync_task_attempt_ended;
DROP TABLE sync_task_attempts;
