-- Raw messages are stored out of line and uncompressed. Compressing every body as it is inserted
-- made the PostgreSQL server the bottleneck of a first sync (20,000 messages: 8.6 s, 5.4 s
-- without), and mail shrinks little (attachments are base64 of already compressed files). It
-- also keeps the column what it promises to any SQL tool: the exact bytes the server sent.
-- Rows written before keep their storage until rewritten.

-- +goose Up
ALTER TABLE messages ALTER COLUMN raw SET STORAGE EXTERNAL;

-- +goose Down
ALTER TABLE messages ALTER COLUMN raw SET STORAGE EXTENDED;
