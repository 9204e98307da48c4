-- Revocable credentials and operator-decided destinations.
--
-- sessions: one row per web login. The cookie is signed and names its row; a session is valid
-- only while its row exists, so logout, a password change or an operator's revocation ends it at
-- once, on every instance, instead of at the end of its lifetime.
--
-- accounts.restricted: the destination policy applies to the account (created, or last pointed
-- at a new server, by a non-admin user through the API). Accounts from before this migration were
-- added by the operator's CLI or by users under no policy; they stay unrestricted until a
-- non-admin user changes their server.

-- +goose Up
CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

ALTER TABLE accounts ADD COLUMN restricted INTEGER NOT NULL DEFAULT 0 CHECK (restricted IN (0, 1));

-- +goose Down
ALTER TABLE accounts DROP COLUMN restricted;
DROP TABLE sessions;
