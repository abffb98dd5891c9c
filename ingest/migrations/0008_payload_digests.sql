-- Payloads seen in the last minutes, so a message published twice is stored once by whichever
-- gateway replica gets each copy: LASS devices publish every reading on two topics, and without
-- a trusted clock (the receive time is used) the readings' unique key cannot catch the second copy.
-- Written in the batch's transaction (ingest/batch_writer.py); rows older than the memory are
-- deleted by the writers themselves, about once a minute, so no background job is needed.
CREATE TABLE IF NOT EXISTS payload_digests (
    digest      bytea PRIMARY KEY,       -- blake2b-128 of the payload bytes (the device id is inside)
    received_at timestamptz NOT NULL     -- when a gateway last stored readings of this payload
);
