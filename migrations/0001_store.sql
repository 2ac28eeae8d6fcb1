-- The store's first schema. Portable SQL on purpose: PostgreSQL's migration (issue "several
-- replicas") differs only where the dialects do. Times are seconds since 1970 (BIGINT), flags are
-- the presence of a time, identifiers are TEXT.

-- One counter per kind of change: a writer bumps it in the same transaction as the rows it
-- changes and stamps them with the new value, so a reader asks "anything after N?" cheaply.
CREATE TABLE revisions (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO revisions (name, value) VALUES ('credentials', 0);

-- Stream credentials (`mtx-auth token issue`). Only the SHA-256 of the credential is kept.
CREATE TABLE credentials (
    id          TEXT PRIMARY KEY,
    digest      TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    -- [{"action": "read", "path": "cam"}, …], as `token list --json` prints them.
    permissions TEXT NOT NULL,
    -- Who made it: NULL for the command line; "source:stable id" for the portal.
    owner       TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT,
    rev         BIGINT NOT NULL
);
CREATE INDEX credentials_by_rev ON credentials (rev);

-- Secrets mtx-auth makes for itself, such as the one its calls to MediaMTX's API carry.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Live MediaMTX sessions mtx-auth let in, so that a restarted server can still kick them.
-- Never a password or a token: what granted the session is named, not carried.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    -- Which control API; the kind to kick (rtspsessions, …) follows from the protocol.
    api_url     TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    action      TEXT NOT NULL,
    path        TEXT NOT NULL,
    -- The client's address as MediaMTX sent it ('' if none): a [[users]] entry's ips rule.
    ip          TEXT NOT NULL,
    identity    TEXT NOT NULL,
    -- What granted it, as JSON: {"user": {"index", "digest"}} | {"credential": id} | {"jwt": exp}
    -- | {"account": source}.
    grant_info  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
