-- The attempt log: one row for every run of a task that ended, however it ended (finished by its
-- worker, handed back at shutdown, re-queued or failed by a reaper, abandoned by a Start). A
-- claim clears the task's error, so a running retry no longer shows why the run before it died;
-- the reason lives here. A trigger writes the rows, so no code path that ends a run (now or
-- later) can forget to.

-- +goose Up
CREATE TABLE sync_task_attempts (
    task_id           TEXT    NOT NULL REFERENCES sync_tasks (id) ON DELETE CASCADE,
    epoch             BIGINT  NOT NULL,
    attempt           INTEGER NOT NULL,
    owner             TEXT,
    started_at        BIGINT,
    last_heartbeat_at BIGINT,
    ended_at          BIGINT  NOT NULL,
    outcome           TEXT    NOT NULL,
    phase             TEXT    NOT NULL,
    messages_done     INTEGER NOT NULL,
    error             TEXT    NOT NULL,
    PRIMARY KEY (task_id, epoch)
);

-- search_path is pinned to the schema the migration ran in, so the trigger finds its table
-- whatever the session that fires it has set.
-- +goose StatementBegin
CREATE FUNCTION sync_task_attempt_ended() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO sync_task_attempts (task_id, epoch, attempt, owner, started_at, last_heartbeat_at,
        ended_at, outcome, phase, messages_done, error)
    VALUES (OLD.id, OLD.epoch, OLD.attempt, OLD.owner, OLD.started_at, OLD.heartbeat_at,
        coalesce(NEW.finished_at, NEW.heartbeat_at, (extract(epoch FROM statement_timestamp()) * 1000)::bigint),
        NEW.state, OLD.phase, greatest(OLD.messages_done, NEW.messages_done), NEW.error)
    ON CONFLICT (task_id, epoch) DO NOTHING;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER sync_task_attempt_ended AFTER UPDATE OF state ON sync_tasks
FOR EACH ROW WHEN (OLD.state = 'running' AND NEW.state <> 'running')
EXECUTE FUNCTION sync_task_attempt_ended();

-- +goose Down
DROP TRIGGER sync_task_attempt_ended ON sync_tasks;
DROP FUNCTION sync_task_attempt_ended();
DROP TABLE sync_task_attempts;
