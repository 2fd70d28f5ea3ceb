-- External contacts, their identifiers, and the link from a web session to the contact
-- that identity resolution found for it. Times are milliseconds since the Unix epoch.

CREATE TABLE contacts (
    id                TEXT PRIMARY KEY NOT NULL,     -- UUID v4
    contact_type      TEXT NOT NULL,                 -- Curated: created through the API
    first_name        TEXT,
    middle_name       TEXT,
    last_name         TEXT,
    salutation        TEXT,
    title             TEXT,
    work_email        TEXT,
    personal_email    TEXT,
    other_email       TEXT,
    -- Phone numbers as JSON {"e164", "display", "countryCode", "userInput"}.
    work_phone_json   TEXT,
    cell_phone_json   TEXT,
    home_phone_json   TEXT,
    other_phone_json  TEXT,
    -- Written by the store for the `q` search: lowercased names and emails, one per
    -- line, and the digits of every E.164 phone number, space separated.
    search_text       TEXT NOT NULL DEFAULT '',
    search_phones     TEXT NOT NULL DEFAULT '',
    create_ms         INTEGER NOT NULL,
    modify_ms         INTEGER NOT NULL
) STRICT;

CREATE INDEX contacts_by_created ON contacts (create_ms, id);

-- Email and Phone identifiers mirror the contact's emails (lowercased) and phones
-- (E.164); Cookie identifiers are visitor ids added by identity resolution.
CREATE TABLE contact_identifiers (
    contact_id  TEXT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    type        TEXT NOT NULL,                       -- Email, Phone, Cookie
    value       TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (contact_id, type, value)
) STRICT;

-- Resolution looks identifiers up by value.
CREATE INDEX contact_identifiers_by_value ON contact_identifiers (type, value);
-- A cookie belongs to one contact at most: identity resolution moves it, never copies it.
CREATE UNIQUE INDEX contact_identifiers_one_contact_per_cookie
    ON contact_identifiers (value) WHERE type = 'Cookie';

-- The contact the session is linked to (NULL: unknown visitor). Deleting a contact
-- clears the link; the session and its events stay.
ALTER TABLE sessions ADD COLUMN contact_id TEXT;
-- 1 once an event of the session carried a valid identity signature.
ALTER TABLE sessions ADD COLUMN authenticated INTEGER NOT NULL DEFAULT 0;
-- 1 when a logout ended the session: no later event may join it.
ALTER TABLE sessions ADD COLUMN closed INTEGER NOT NULL DEFAULT 0;

-- A contact's sessions, newest first.
CREATE INDEX sessions_by_contact ON sessions (contact_id, first_ms, id);

-- Whether the session was authenticated once this event was stored.
ALTER TABLE events ADD COLUMN authenticated INTEGER NOT NULL DEFAULT 0;
-- Whether the event itself carried a valid identity signature (which is not stored).
ALTER TABLE events ADD COLUMN identity_verified INTEGER NOT NULL DEFAULT 0;
