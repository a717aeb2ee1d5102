-- Support tickets.
--
-- Ticket numbers come from a one-row counter. `/support new` first reserves a number (and a slot
-- under the requester's open-ticket limit) in `ticket_reservations`, then asks Discord for the
-- thread, and inserts the ticket row only after Discord accepted it. A failed creation marks its
-- reservation 'failed' with the reason, so a number is never handed out twice and no ticket row
-- exists without its thread.
CREATE TABLE ticket_counter (
    id          INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    next_number INTEGER NOT NULL
) STRICT;

CREATE TABLE ticket_reservations (
    number         INTEGER PRIMARY KEY NOT NULL,
    requester_id   INTEGER NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('pending', 'created', 'failed')),
    failure        TEXT,
    reserved_at_ms INTEGER NOT NULL,
    resolved_at_ms INTEGER
) STRICT;

CREATE INDEX ticket_reservations_by_requester ON ticket_reservations (requester_id, state);

CREATE TABLE tickets (
    number            INTEGER PRIMARY KEY NOT NULL REFERENCES ticket_reservations (number),
    requester_id      INTEGER NOT NULL,
    account_id        TEXT    NOT NULL,
    account_name      TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    priority          TEXT    NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    category          TEXT    NOT NULL CHECK (category IN ('general', 'billing', 'technical', 'api')),
    status            TEXT    NOT NULL CHECK (status IN ('open', 'closed')),
    claimant_id       INTEGER,
    thread_id         INTEGER NOT NULL UNIQUE,
    summary_message_id INTEGER NOT NULL,
    -- The staff notification; NULL when posting it failed.
    staff_channel_id  INTEGER,
    staff_message_id  INTEGER,
    close_reason      TEXT,
    closed_by_id      INTEGER,
    -- 1 when a staff member closed the ticket: then only staff may reopen it.
    closed_by_staff   INTEGER NOT NULL DEFAULT 0 CHECK (closed_by_staff IN (0, 1)),
    created_at_ms     INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL,
    closed_at_ms      INTEGER
) STRICT;

CREATE INDEX tickets_by_requester ON tickets (requester_id, status);
CREATE INDEX tickets_by_account ON tickets (account_id, status);
