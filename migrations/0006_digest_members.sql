-- The highest delivery id of a window's digest, fixed when the digest is first planned, so that
-- its retries, also after a restart, carry the same deliveries and so the same nonce. NULL until
-- then.
ALTER TABLE digest_windows ADD COLUMN digest_last_id INTEGER;
