-- Adds the 'skipped' delivery status: a DM the recipient no longer wants when it is due (muted,
-- category turned off, severity below their minimum, or the account is no longer theirs). SQLite
-- cannot change a CHECK constraint in place, so the outbox table is rebuilt with its rows.
CREATE TABLE alert_deliveries_new (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_row_id       INTEGER NOT NULL REFERENCES alert_events (id) ON DELETE CASCADE,
    target_kind        TEXT    NOT NULL
        CHECK (target_kind IN ('dm', 'account_channel', 'all_alerts', 'billing_alerts')),
    -- The user id for a DM, else the channel id.
    target_id          INTEGER NOT NULL,
    critical           INTEGER NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    last_error         TEXT,
    created_at_ms      INTEGER NOT NULL,
    sent_at_ms         INTEGER,
    message_id         INTEGER,
    UNIQUE (event_row_id, target_kind, target_id)
) STRICT;

INSERT INTO alert_deliveries_new
    (id, event_row_id, target_kind, target_id, critical, status, attempts, next_attempt_at_ms,
     last_error, created_at_ms, sent_at_ms, message_id)
SELECT id, event_row_id, target_kind, target_id, critical, status, attempts, next_attempt_at_ms,
       last_error, created_at_ms, sent_at_ms, message_id
FROM alert_deliveries;

DROP TABLE alert_deliveries;
ALTER TABLE alert_deliveries_new RENAME TO alert_deliveries;

CREATE INDEX alert_deliveries_due ON alert_deliveries (status, next_attempt_at_ms);
CREATE INDEX alert_deliveries_by_target ON alert_deliveries (target_kind, target_id, status);
