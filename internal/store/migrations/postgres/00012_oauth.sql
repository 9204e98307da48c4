-- OAuth2 accounts (Gmail, Microsoft 365, any provider with XOAUTH2 or OAUTHBEARER).
--
-- auth_kind: 'password' (secret_enc is the sealed IMAP password, as before) or 'oauth2'
-- (secret_enc is the sealed token set: access token, refresh token; login is the mailbox address
-- the token is for). oauth_provider names the provider configuration the token came from.
-- token_expires_at is the access token's expiry (integer milliseconds; 0: unknown).
--
-- token_version and the refresh lease fence a refresh as a single-writer operation on the row:
-- a refresher takes the lease with a compare-and-set on token_version and an expired lease, asks
-- the provider, and stores the new token set (rotated refresh token included) in the same
-- statement that bumps token_version and drops the lease; anyone else waits for the version to
-- move and reads the winner's token instead of refreshing the same one into an invalid_grant.
--
-- auth_state 'reauth_required': the provider refused the refresh token (invalid_grant, revoked
-- consent). Nothing syncs the account until its owner signs in again.
--
-- oauth_flows: the web sign-ins under way, one row per one-time state, bound to the browser
-- session that started it and taken (deleted) by the callback, on whichever instance it lands;
-- verifier_enc is the PKCE code verifier, sealed under the server key.

-- +goose Up
ALTER TABLE accounts ADD COLUMN auth_kind TEXT NOT NULL DEFAULT 'password' CHECK (auth_kind IN ('password', 'oauth2'));
ALTER TABLE accounts ADD COLUMN oauth_provider TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN token_expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN refresh_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN refresh_lease_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN auth_state TEXT NOT NULL DEFAULT 'ok' CHECK (auth_state IN ('ok', 'reauth_required'));

CREATE TABLE oauth_flows (
    state        TEXT    PRIMARY KEY,
    session_id   TEXT    NOT NULL,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider     TEXT    NOT NULL,
    account_id   BIGINT  REFERENCES accounts (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL DEFAULT '',
    login_hint   TEXT    NOT NULL DEFAULT '',
    verifier_enc BYTEA   NOT NULL,
    redirect_uri TEXT    NOT NULL,
    expires_at   BIGINT  NOT NULL
);
CREATE INDEX oauth_flows_expires ON oauth_flows (expires_at);

-- +goose Down
DROP TABLE oauth_flows;
ALTER TABLE accounts DROP COLUMN auth_state;
ALTER TABLE accounts DROP COLUMN refresh_lease_until;
ALTER TABLE accounts DROP COLUMN refresh_owner;
ALTER TABLE accounts DROP COLUMN token_version;
ALTER TABLE accounts DROP COLUMN token_expires_at;
ALTER TABLE accounts DROP COLUMN oauth_provider;
ALTER TABLE accounts DROP COLUMN auth_kind;
