-- Large raw messages are written in pieces: the first piece in messages.raw, the others in
-- message_chunks, in order. One statement never binds a whole large message, so storing it costs
-- a piece of memory in the client and the server, not its size again. raw_chunks says how many
-- pieces follow; 0 for a message held whole in raw. Pieces are stored uncompressed, like raw
-- (00003).

-- +goose Up
ALTER TABLE messages ADD COLUMN raw_chunks INTEGER NOT NULL DEFAULT 0;
CREATE TABLE message_chunks (
    message_id BIGINT  NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    data       BYTEA   NOT NULL,
    PRIMARY KEY (message_id, seq)
);
ALTER TABLE message_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- +goose Down
DROP TABLE message_chunks;
ALTER TABLE messages DROP COLUMN raw_chunks;
