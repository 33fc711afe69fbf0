-- Revocations of single bearer tokens by their `jti`, in force until
-- `expires_at` (then pruned). Times are Unix milliseconds.
CREATE TABLE jti_revocations (
    jti        TEXT    PRIMARY KEY,
    revoked_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX jti_revocations_expires_at ON jti_revocations (expires_at);
