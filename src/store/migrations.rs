//! The schema, as forward migrations. `PRAGMA user_version` is the number of migrations
//! applied; opening a database applies the missing ones in one transaction. A migration, once
//! released, is never edited: changes are new entries at the end.
//!
//! Conventions: `STRICT` tables; times are Unix seconds (`INTEGER`); lists of validated values
//! are joined with a separator their alphabet excludes (`,` for E.164 numbers, `;` for e-mail
//! addresses, `\n` for outbox recipients).

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: everything the first release keeps.
    "
    CREATE TABLE agents (
        id                 TEXT PRIMARY KEY NOT NULL,
        name               TEXT,
        caller_id          TEXT NOT NULL DEFAULT '',
        capacity           INTEGER NOT NULL CHECK (capacity BETWEEN 0 AND 1000),
        mailbox            TEXT,
        emergency_contacts TEXT NOT NULL DEFAULT '',
        country            TEXT,
        address            TEXT,
        -- digest credentials: HA1 only, never the password
        realm              TEXT,
        ha1_md5            TEXT,
        ha1_sha256         TEXT,
        presence_state     TEXT NOT NULL DEFAULT 'available',
        presence_previous  TEXT,
        presence_set_by    TEXT NOT NULL DEFAULT 'system'
    ) STRICT;

    CREATE TABLE groups (
        id TEXT PRIMARY KEY NOT NULL
    ) STRICT;

    CREATE TABLE group_members (
        group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        agent    TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, agent)
    ) STRICT;
    CREATE INDEX group_members_agent ON group_members(agent);

    CREATE TABLE registrations (
        aor        TEXT NOT NULL,
        contact    TEXT NOT NULL,
        instance   TEXT,
        reg_id     INTEGER,
        flow       TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        q          INTEGER,
        path       TEXT,
        received   TEXT
    ) STRICT;

    CREATE TABLE calls (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        agent      TEXT,
        direction  TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        from_uri   TEXT NOT NULL,
        to_uri     TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        duration_s INTEGER NOT NULL,
        result     TEXT NOT NULL,
        trunk      TEXT
    ) STRICT;
    CREATE INDEX calls_newest ON calls(started_at, id);

    CREATE TABLE callback_leases (
        did              TEXT PRIMARY KEY NOT NULL,
        agent            TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        expires_at       INTEGER NOT NULL,
        -- expires_at + quarantine: until then the DID goes to nobody else
        quarantine_until INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX callback_leases_agent ON callback_leases(agent);

    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        to_addrs        TEXT NOT NULL,
        from_addr       TEXT NOT NULL,
        subject         TEXT NOT NULL,
        text_body       TEXT NOT NULL,
        html_body       TEXT
    ) STRICT;
    CREATE INDEX outbox_due ON outbox(next_attempt_at, id);

    CREATE TABLE templates (
        name      TEXT PRIMARY KEY NOT NULL,
        subject   TEXT NOT NULL,
        text_body TEXT NOT NULL,
        html_body TEXT NOT NULL
    ) STRICT;
    ",
    // 2: call history also records agent -> agent ("internal") and trunk -> trunk ("transit")
    // calls. SQLite cannot change a CHECK in place: the table is rebuilt, ids kept.
    "
    CREATE TABLE calls_v2 (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        agent      TEXT,
        direction  TEXT NOT NULL
                   CHECK (direction IN ('inbound', 'outbound', 'internal', 'transit')),
        from_uri   TEXT NOT NULL,
        to_uri     TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        duration_s INTEGER NOT NULL,
        result     TEXT NOT NULL,
        trunk      TEXT
    ) STRICT;
    INSERT INTO calls_v2 (id, agent, direction, from_uri, to_uri, started_at, duration_s, result,
                          trunk)
        SELECT id, agent, direction, from_uri, to_uri, started_at, duration_s, result, trunk
        FROM calls;
    DROP TABLE calls;
    ALTER TABLE calls_v2 RENAME TO calls;
    CREATE INDEX calls_newest ON calls(started_at, id);
    ",
    // 3: the same direction CHECK without an IN list: SQLite builds a temporary index of the
    // list's four values on every execution of the INSERT (an ephemeral b-tree per call
    // recorded, a third of the history writer's work). Rebuilt as in 2, ids kept.
    "
    CREATE TABLE calls_v3 (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        agent      TEXT,
        direction  TEXT NOT NULL
                   CHECK (direction = 'inbound' OR direction = 'outbound'
                          OR direction = 'internal' OR direction = 'transit'),
        from_uri   TEXT NOT NULL,
        to_uri     TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        duration_s INTEGER NOT NULL,
        result     TEXT NOT NULL,
        trunk      TEXT
    ) STRICT;
    INSERT INTO calls_v3 (id, agent, direction, from_uri, to_uri, started_at, duration_s, result,
                          trunk)
        SELECT id, agent, direction, from_uri, to_uri, started_at, duration_s, result, trunk
        FROM calls;
    DROP TABLE calls;
    ALTER TABLE calls_v3 RENAME TO calls;
    CREATE INDEX calls_newest ON calls(started_at, id);
    ",
];
