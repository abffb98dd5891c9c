-- Dead letters are bounded: a refused message keeps at most the first DEAD_LETTER_PAYLOAD_BYTES
-- (contracts/limits.py) of its payload, with its full size and the SHA-256 digest of all of it
-- (the digest column, unchanged, still makes the same bytes on the same topic one letter), and
-- `citysense db maintain` deletes letters older than CITYSENSE_DEAD_LETTER_RETENTION_DAYS.
ALTER TABLE rejected_messages ADD COLUMN IF NOT EXISTS payload_bytes integer;
UPDATE rejected_messages SET payload_bytes = length(payload) WHERE payload_bytes IS NULL;
UPDATE rejected_messages SET payload = substring(payload FROM 1 FOR 4096) WHERE length(payload) > 4096;
CREATE INDEX IF NOT EXISTS rejected_messages_received_idx ON rejected_messages (received_at);
