-- PostgreSQL's 00003 stops compressing raw messages. SQLite never compresses: nothing to do. The
-- file exists so that both engines share their version numbers.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
