-- How a session's contact link was made (identity::LinkKind): 'Verified' (a valid
-- identity token), 'Cookie' (a recognised browser) or 'Unverified' (traits typed into
-- the page), shown to agents. Links made before this migration were made by the old
-- rules, which did not tell these apart: they are marked 'Unverified' unless the
-- session was authenticated.
ALTER TABLE sessions ADD COLUMN contact_link TEXT;
UPDATE sessions SET contact_link = CASE WHEN authenticated = 1 THEN 'Verified' ELSE 'Unverified' END
    WHERE contact_id IS NOT NULL;
