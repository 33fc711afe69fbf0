-- `Idempotency-Key`s of /publish (and the outbox), when there is no Redis.
-- `key_digest` is the SHA-256 (hex) of the key's scope and the key, never the
-- key. `state` is 'pending' (a publish under way by `owner`, until
-- `lease_until`) or 'done'; `event_id` is the event's id; `fingerprint` the
-- SHA-256 of what was published. Rows past `expires_at` are pruned. Times
-- are Unix milliseconds.
CREATE TABLE idempotency_keys (
    key_digest  TEXT    PRIMARY KEY,
    state       TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    owner       TEXT    NOT NULL,
    lease_until BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
