-- Footpath on PostgreSQL: the schema the SQLite migrations 0001-0008 reach, made for
-- growth. Times are milliseconds since the Unix epoch; "time" always means the
-- clock-corrected event time. Never edit a released migration: add a new file.
--
-- Growth rules:
-- - events is partitioned by time (RANGE on time_ms, one partition per month, made
--   ahead by the store; see store/postgres/partitions.rs), so that retention drops
--   partitions instead of deleting rows;
-- - every hot table (sessions, events, event_ids, what matched in a session) carries
--   deployment_id and visitor_id, the key it could be distributed by; contacts and
--   definitions are small and would be reference tables.

CREATE TABLE sessions (
    id                   text PRIMARY KEY,           -- UUID v7
    short_id             text NOT NULL,              -- 6 digits, read out on the phone
    deployment_id        text NOT NULL,
    visitor_id           text NOT NULL,
    first_ms             bigint NOT NULL,
    last_ms              bigint NOT NULL,
    ended_ms             bigint,                     -- set by the idle sweep or a logout
    closed               boolean NOT NULL DEFAULT false, -- a logout or a full session
    event_count          bigint NOT NULL DEFAULT 0,
    pageview_count       bigint NOT NULL DEFAULT 0,
    -- Pointers to events that the session card shows, kept in the ingest transaction.
    last_event_id        text,
    last_event_ms        bigint,                     -- its time: read without a join
    last_pageview_id     text,
    landing_pageview_id  text,
    context_event_id     text,
    search_terms_json    text NOT NULL DEFAULT '[]',
    user_agent_json      text,
    geolocation_json     text,
    contact_id           text,
    contact_link         text,                       -- Verified, Cookie, Unverified
    authenticated        boolean NOT NULL DEFAULT false
);

-- The sessions an incoming event may join.
CREATE INDEX sessions_by_visitor ON sessions (deployment_id, visitor_id, last_ms);
-- The idle sweep looks at open sessions only.
CREATE INDEX sessions_open_by_last ON sessions (last_ms) WHERE ended_ms IS NULL;
-- Short ids are unique per deployment among recent sessions.
CREATE INDEX sessions_by_short_id ON sessions (deployment_id, short_id, last_ms);
-- Session listings, newest first.
CREATE INDEX sessions_by_created ON sessions (first_ms, id);
CREATE INDEX sessions_by_contact ON sessions (contact_id, first_ms, id)
    WHERE contact_id IS NOT NULL;

-- Every event id ever stored. A unique key on a partitioned table must hold the
-- partition key, and a resent event can come back with another corrected time, so
-- events cannot be deduplicated by their own primary key: this narrow table is the
-- one place an id is claimed (INSERT ... ON CONFLICT DO NOTHING inside the ingest
-- transaction; a concurrent claim of the same id waits for the first to commit and
-- then finds it).
CREATE TABLE event_ids (
    id             text PRIMARY KEY,
    deployment_id  text NOT NULL,
    visitor_id     text NOT NULL
);

CREATE TABLE events (
    id                 text NOT NULL,                -- UUID v7 from the SDK
    session_id         text NOT NULL,
    deployment_id      text NOT NULL,
    visitor_id         text NOT NULL,
    kind               text NOT NULL,                -- pageview, record, identify, logout
    name               text NOT NULL,
    time_ms            bigint NOT NULL,              -- corrected time: the partition key
    client_time_ms     bigint NOT NULL,
    received_ms        bigint NOT NULL,
    page_url           text,                         -- NULL: the event had no page
    page_title         text,
    page_referrer      text,
    page_lang          text,
    page_keywords      text,
    page_search_query  text,
    campaign_json      text,
    context_json       text,
    login_id           text,
    attributes_json    text NOT NULL,
    traits_json        text NOT NULL,
    user_agent         text,
    ip_address         text,
    authenticated      boolean NOT NULL DEFAULT false,
    identity_verified  boolean NOT NULL DEFAULT false,
    user_agent_json    text,
    geolocation_json   text,
    referrer_json      text,
    PRIMARY KEY (id, time_ms)
) PARTITION BY RANGE (time_ms);

CREATE INDEX events_by_session_time ON events (session_id, time_ms, id);

-- Events whose time falls in no monthly partition (far in the past or the future).
CREATE TABLE events_default PARTITION OF events DEFAULT;

CREATE TABLE contacts (
    id                text PRIMARY KEY,              -- UUID v4
    contact_type      text NOT NULL,
    first_name        text,
    middle_name       text,
    last_name         text,
    salutation        text,
    title             text,
    work_email        text,
    personal_email    text,
    other_email       text,
    work_phone_json   text,
    cell_phone_json   text,
    home_phone_json   text,
    other_phone_json  text,
    search_text       text NOT NULL DEFAULT '',
    search_phones     text NOT NULL DEFAULT '',
    create_ms         bigint NOT NULL,
    modify_ms         bigint NOT NULL
);

CREATE INDEX contacts_by_created ON contacts (create_ms, id);

CREATE TABLE contact_identifiers (
    contact_id  text NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    type        text NOT NULL,                       -- Email, Phone, Cookie
    value       text NOT NULL,
    created_ms  bigint NOT NULL,
    PRIMARY KEY (contact_id, type, value)
);

CREATE INDEX contact_identifiers_by_value ON contact_identifiers (type, value);
-- A cookie belongs to one contact at most: identity resolution moves it, never copies it.
CREATE UNIQUE INDEX contact_identifiers_one_contact_per_cookie
    ON contact_identifiers (value) WHERE type = 'Cookie';

CREATE TABLE journey_definitions (
    id               text PRIMARY KEY,
    kind             text NOT NULL,                  -- segment, outcome
    definition_json  text NOT NULL,
    version          bigint NOT NULL,
    created_ms       bigint NOT NULL,
    modified_ms      bigint NOT NULL,
    -- Insertion order, the tie-break of listings (SQLite's rowid).
    position         bigserial NOT NULL
);

CREATE INDEX journey_definitions_by_kind ON journey_definitions (kind, created_ms, position);

-- Moves on every change of a definition, so that every collector on the database
-- knows when to rebuild its in-memory index of them. Starts at a random number, so
-- that an index cached for another database is never mistaken for this one's.
CREATE TABLE journey_definitions_generation (
    one         integer PRIMARY KEY CHECK (one = 1),
    generation  bigint NOT NULL
);
INSERT INTO journey_definitions_generation (one, generation)
    VALUES (1, floor(random() * 1000000000000)::bigint);

CREATE TABLE session_segment_assignments (
    session_id               text NOT NULL,
    segment_id               text NOT NULL,
    deployment_id            text NOT NULL,
    visitor_id               text NOT NULL,
    id                       text NOT NULL,          -- UUID v7 of the event
    display_name             text NOT NULL,
    color                    text NOT NULL,
    should_display_to_agent  boolean NOT NULL,
    assigned_ms              bigint NOT NULL,
    trigger_event_id         text NOT NULL,
    PRIMARY KEY (session_id, segment_id)
);

CREATE TABLE session_outcome_achievements (
    session_id        text NOT NULL,
    outcome_id        text NOT NULL,
    deployment_id     text NOT NULL,
    visitor_id        text NOT NULL,
    id                text NOT NULL,                 -- UUID v7 of the event
    display_name      text NOT NULL,
    version           bigint NOT NULL,
    is_positive       boolean NOT NULL,
    associated_value  text,
    achieved_ms       bigint NOT NULL,
    trigger_event_id  text NOT NULL,
    PRIMARY KEY (session_id, outcome_id)
);

CREATE TABLE customer_segment_assignments (
    customer_key             text NOT NULL,
    segment_id               text NOT NULL,
    display_name             text NOT NULL,
    color                    text NOT NULL,
    should_display_to_agent  boolean NOT NULL,
    assigned_ms              bigint NOT NULL,
    expires_ms               bigint,
    PRIMARY KEY (customer_key, segment_id)
);

CREATE TABLE journey_pattern_counts (
    scope_key      text NOT NULL,
    definition_id  text NOT NULL,
    version        bigint NOT NULL,
    pattern_index  integer NOT NULL,
    count          bigint NOT NULL,
    PRIMARY KEY (scope_key, definition_id, version, pattern_index)
);

CREATE TABLE session_visit_evaluations (
    session_id   text PRIMARY KEY,
    fingerprint  text NOT NULL
);

CREATE TABLE desk_presentation (
    id                      integer PRIMARY KEY CHECK (id = 1),
    presentation_json       text NOT NULL,
    file_presentation_json  text NOT NULL,
    saved_ms                bigint NOT NULL
);
