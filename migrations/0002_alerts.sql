-- Alert preferences per linked user. Created with the product defaults when the user links,
-- kept on relink, deleted on unlink.
CREATE TABLE alert_preferences (
    discord_user_id   INTEGER PRIMARY KEY NOT NULL,
    delivery_failures INTEGER NOT NULL DEFAULT 1,
    opt_outs          INTEGER NOT NULL DEFAULT 1,
    inbound_sms       INTEGER NOT NULL DEFAULT 0,
    billing           INTEGER NOT NULL DEFAULT 1,
    spam_complaints   INTEGER NOT NULL DEFAULT 1,
    service           INTEGER NOT NULL DEFAULT 1,
    minimum_severity  TEXT    NOT NULL DEFAULT 'low'
        CHECK (minimum_severity IN ('low', 'medium', 'high', 'critical')),
    muted_until_ms    INTEGER,
    -- Set when Discord answered 50007 to a DM; cleared by the user's next command.
    dm_closed         INTEGER NOT NULL DEFAULT 0,
    updated_at_ms     INTEGER NOT NULL
) STRICT;

-- Feed position per account. A NULL cursor means the next poll starts at the newest event.
CREATE TABLE alert_cursors (
    account_id        TEXT    PRIMARY KEY NOT NULL,
    cursor            TEXT,
    last_polled_at_ms INTEGER,
    last_error        TEXT
) STRICT;

-- Every fetched event, once per account and event id: the feed delivers at least once, and a
-- repeated event must not create a second delivery.
CREATE TABLE alert_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id     TEXT    NOT NULL,
    account_name   TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    severity       TEXT    NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    occurred_at_ms INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    received_at_ms INTEGER NOT NULL,
    UNIQUE (account_id, event_id)
) STRICT;

-- The outbox: one row per event and recipient. A row becomes 'sent' only after Discord
-- confirmed the message.
CREATE TABLE alert_deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_row_id       INTEGER NOT NULL REFERENCES alert_events (id) ON DELETE CASCADE,
    target_kind        TEXT    NOT NULL
        CHECK (target_kind IN ('dm', 'account_channel', 'all_alerts', 'billing_alerts')),
    -- The user id for a DM, else the channel id.
    target_id          INTEGER NOT NULL,
    critical           INTEGER NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    last_error         TEXT,
    created_at_ms      INTEGER NOT NULL,
    sent_at_ms         INTEGER,
    message_id         INTEGER,
    UNIQUE (event_row_id, target_kind, target_id)
) STRICT;

CREATE INDEX alert_deliveries_due ON alert_deliveries (status, next_attempt_at_ms);
CREATE INDEX alert_deliveries_by_target ON alert_deliveries (target_kind, target_id, status);
