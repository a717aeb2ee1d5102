-- The digest window of each recipient, so that a restart continues it: without it, a restarted
-- bot would send up to the threshold again individually, held alerts included. A row is written
-- when the dispatcher's window of the target changes and deleted when the window ends. Targets
-- are stored as in alert_deliveries.
CREATE TABLE digest_windows (
    target_kind   TEXT    NOT NULL
        CHECK (target_kind IN ('dm', 'account_channel', 'all_alerts', 'billing_alerts')),
    -- The user id for a DM, else the channel id.
    target_id     INTEGER NOT NULL,
    started_at_ms INTEGER NOT NULL,
    -- Alerts sent individually in the window.
    sent_count    INTEGER NOT NULL CHECK (sent_count >= 0),
    -- 1 when the window held alerts for a digest at its end.
    overflowed    INTEGER NOT NULL CHECK (overflowed IN (0, 1)),
    PRIMARY KEY (target_kind, target_id)
) STRICT;
