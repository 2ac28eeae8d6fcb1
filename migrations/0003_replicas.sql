-- Several replicas on one database. Portable SQL like 0001 and 0002: SQLite and PostgreSQL run
-- these files as they are. A single replica uses the same tables; it only never finds another's
-- rows in them.

-- Failed attempts under `[server]`'s brute-force limits, as each replica counted them, written in
-- batches: every replica adds the others' counts to its own, so the limits hold for the whole
-- service. The key is a keyed hash (the store's `limits_key`) of the limit and the address or
-- name: no address or user name is kept in the clear.
CREATE TABLE limit_failures (
    key        TEXT NOT NULL,
    replica    TEXT NOT NULL,
    failures   BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rev        BIGINT NOT NULL,
    PRIMARY KEY (key, replica)
);
CREATE INDEX limit_failures_by_rev ON limit_failures (rev);
INSERT INTO revisions (name, value) VALUES ('failures', 0);

-- An account source's per-name attempts, failed or in flight, across replicas: a login reserves
-- its place here before the upstream call (a conditional upsert), so that replicas together never
-- send a media server or directory more wrong passwords than the limit. Keyed hash as above.
CREATE TABLE name_attempts (
    key        TEXT PRIMARY KEY,
    attempts   BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Which replica let a live session in: that replica kicks it. A replica that has not been seen for
-- a while is gone; a live one adopts its sessions.
ALTER TABLE sessions ADD COLUMN replica TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_by_replica ON sessions (replica);
CREATE TABLE replicas (
    id      TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
