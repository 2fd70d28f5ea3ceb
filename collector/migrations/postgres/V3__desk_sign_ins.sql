-- Agents' desk sign-ins (desk/auth.rs), shared by every collector on the database:
-- an agent signed in through one collector is signed in on all of them. Only hashes:
-- the SHA-256 (hex) of the session id that the agent's cookie holds, and of the token
-- it signed in with, so that nothing here can be presented to sign in.
CREATE TABLE desk_sign_ins (
    session_sha256  text PRIMARY KEY,
    token_sha256    text NOT NULL,
    expires_ms      bigint NOT NULL
);
