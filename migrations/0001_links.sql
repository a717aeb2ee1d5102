-- Account links: one row per Discord user. The API key is stored only sealed (nonce and
-- ciphertext), with the id of the encryption key that sealed it.
CREATE TABLE links (
    discord_user_id   INTEGER PRIMARY KEY NOT NULL,
    account_id        TEXT    NOT NULL,
    account_name      TEXT    NOT NULL,
    role              TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    key_sealed        BLOB    NOT NULL,
    key_masked        TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('active', 'revoked', 'suspended')),
    linked_at_ms      INTEGER NOT NULL,
    validated_at_ms   INTEGER NOT NULL,
    status_changed_at_ms INTEGER NOT NULL
) STRICT;

CREATE INDEX links_by_account ON links (account_id);

-- The private text channel of each account, created under the customer category on first link.
CREATE TABLE account_channels (
    account_id    TEXT    PRIMARY KEY NOT NULL,
    guild_id      INTEGER NOT NULL,
    channel_id    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- Link attempts per user, for the limit on failed attempts. A row is 'pending' while Trackly
-- is being asked, and pending rows count against the limit so that parallel attempts cannot
-- exceed it.
CREATE TABLE link_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    discord_user_id INTEGER NOT NULL,
    attempted_at_ms INTEGER NOT NULL,
    outcome         TEXT    NOT NULL CHECK (outcome IN ('pending', 'failed', 'succeeded', 'inconclusive'))
) STRICT;

CREATE INDEX link_attempts_by_user ON link_attempts (discord_user_id, attempted_at_ms);
