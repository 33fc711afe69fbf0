-- Durable state of sse-ticket on SQLite. Times are Unix milliseconds.

-- Published events, kept for replay; `seq` is the order of acceptance.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    topic        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    data         TEXT    NOT NULL,
    published_at INTEGER NOT NULL
);
CREATE INDEX events_topic_seq ON events (topic, seq);
CREATE INDEX events_published_at ON events (published_at);

-- Subjects whose tokens issued before `revoked_at` are refused.
CREATE TABLE revocations (
    sub        TEXT    PRIMARY KEY,
    revoked_at INTEGER NOT NULL
);

-- One row per ticket issued, redeemed or rejected, and per revocation.
CREATE TABLE audit (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    at                 INTEGER NOT NULL,
    action             TEXT    NOT NULL,
    reason             TEXT,
    sub                TEXT,
    client_ip          TEXT,
    user_agent         TEXT,
    topics             TEXT    NOT NULL,
    ticket_fingerprint TEXT
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_sub_at ON audit (sub, at);
