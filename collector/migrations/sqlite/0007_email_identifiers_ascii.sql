-- Email identifiers were kept lowercased with Unicode case folding, which turned an
-- address such as "\u{212A}ate@example.com" (Kelvin sign) into "kate@example.com": a
-- verified claim of one address became another customer's identifier. They are now
-- kept with ASCII letters folded and nothing else (contacts::email_identifier), which
-- is what SQLite's lower() does. Recompute them from the contacts' own fields; the ones
-- that do not change keep their created_ms.
CREATE TEMP TABLE wanted_email_identifiers AS
    SELECT id AS contact_id, lower(work_email) AS value, modify_ms FROM contacts
        WHERE work_email IS NOT NULL
    UNION SELECT id, lower(personal_email), modify_ms FROM contacts
        WHERE personal_email IS NOT NULL
    UNION SELECT id, lower(other_email), modify_ms FROM contacts
        WHERE other_email IS NOT NULL;

DELETE FROM contact_identifiers
    WHERE type = 'Email'
      AND (contact_id, value) NOT IN (SELECT contact_id, value FROM wanted_email_identifiers);

INSERT OR IGNORE INTO contact_identifiers (contact_id, type, value, created_ms)
    SELECT contact_id, 'Email', value, modify_ms FROM wanted_email_identifiers;

DROP TABLE wanted_email_identifiers;
