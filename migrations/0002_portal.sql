-- The viewer portal: web sessions, second factors, and what a sign-in needs before it succeeds.
-- Same portable SQL as 0001. A person is "source:stable id" (`users:alice`, `jellyfin:<user id>`,
-- `portal_oidc:<sub>`), the owner column of the credentials they make.

-- A stream credential made through the portal keeps the `ips` rule of the entry that granted it
-- (JSON array of CIDRs; NULL: any address), and what granted it, so that it can be revoked when
-- that grant ends (JSON, as sessions.grant_info).
ALTER TABLE credentials ADD COLUMN ips TEXT;
ALTER TABLE credentials ADD COLUMN grant_info TEXT;

-- Signed-in browsers. The cookie carries an id of 256 random bits; only its SHA-256 is here.
CREATE TABLE web_sessions (
    digest      TEXT PRIMARY KEY,
    person      TEXT NOT NULL,
    -- What the person is called and holds, as signed in (JSON): name, source, admin, e-mail,
    -- permissions with their ips and grant. Never a password or an upstream token.
    profile     TEXT NOT NULL,
    -- 0: the second factor is still due (only /mfa* and /logout); 1: signed in.
    complete    BIGINT NOT NULL,
    -- Wrong codes while the second factor is due; the fifth ends the pending sign-in.
    failures    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX web_sessions_by_person ON web_sessions (person);

-- A person's TOTP secret, encrypted (XChaCha20-Poly1305 under the portal's MFA key), and the
-- last time step accepted: a code is good once, on every replica (the update is conditional).
CREATE TABLE mfa (
    person      TEXT PRIMARY KEY,
    secret      TEXT NOT NULL,
    -- NULL while the enrollment waits for its first code.
    enrolled_at BIGINT,
    last_step   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Single-use recovery codes, as SHA-256 digests.
CREATE TABLE recovery_codes (
    person  TEXT NOT NULL,
    digest  TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (person, digest)
);

-- What a sign-in through another site needs before it succeeds (OIDC state, nonce and PKCE
-- verifier; a Plex PIN), bound to a short-lived cookie whose digest is the key; usable once.
CREATE TABLE pending_signins (
    digest     TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    data       TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
