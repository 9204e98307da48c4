-- A folder's RFC 8474 MAILBOXID, where the server has OBJECTID: part of the folder's identity with
-- its UIDVALIDITY. Cyrus keeps UIDVALIDITY across RENAME, so "delete A, rename B to A" leaves A's
-- name and UIDVALIDITY on B's messages; only the id tells them apart. '' means unknown (a server
-- without OBJECTID, or a checkpoint written before this column).

-- +goose Up
ALTER TABLE folders ADD COLUMN mailbox_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE folders DROP COLUMN mailbox_id;
