-- Agents' desk sign-ins (desk/auth.rs), kept in the database rather than in a file
-- beside it, so that a sign-in outlives a restart exactly when the data does. Only
-- hashes: the SHA-256 (hex) of the session id that the agent's cookie holds, and of
-- the token it signed in with, so that nothing here can be presented to sign in.
CREATE TABLE desk_sign_ins (
    session_sha256  TEXT PRIMARY KEY NOT NULL,
    token_sha256    TEXT NOT NULL,
    expires_ms      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
