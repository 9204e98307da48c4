-- Large raw messages are written in pieces: the first piece in messages.raw, the others in
-- message_chunks, in order. One statement never binds a whole large message, so storing it costs
-- a piece of memory in the database engine, not its size again (twice, in SQLite: the bound copy
-- and the record). raw_chunks says how many pieces follow; 0 for a message held whole in raw.

-- +goose Up
ALTER TABLE messages ADD COLUMN raw_chunks INTEGER NOT NULL DEFAULT 0;
CREATE TABLE message_chunks (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    PRIMARY KEY (message_id, seq)
);

-- +goose Down
DROP TABLE message_chunks;
ALTER TABLE messages DROP COLUMN raw_chunks;
