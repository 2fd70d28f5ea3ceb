-- Web sessions and their events. Times are milliseconds since the Unix epoch; "time"
-- always means the clock-corrected event time.

CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY NOT NULL,  -- UUID v7
    short_id             TEXT NOT NULL,              -- 6 digits, read out on the phone
    deployment_id        TEXT NOT NULL,
    visitor_id           TEXT NOT NULL,
    first_ms             INTEGER NOT NULL,
    last_ms              INTEGER NOT NULL,
    ended_ms             INTEGER,                    -- set by the idle sweep
    event_count          INTEGER NOT NULL DEFAULT 0,
    pageview_count       INTEGER NOT NULL DEFAULT 0,
    -- Pointers to events that the session card shows. They are recomputed in the
    -- ingest transaction, so that reading a session is a lookup.
    last_event_id        TEXT,                       -- greatest time
    last_pageview_id     TEXT,                       -- pageview with the greatest time
    landing_pageview_id  TEXT,                       -- earliest pageview: referrer, campaign
    context_event_id     TEXT,                       -- latest event with a context
    search_terms_json    TEXT NOT NULL DEFAULT '[]'  -- distinct terms in time order
) STRICT;

-- Finding the sessions an incoming event may join.
CREATE INDEX sessions_by_visitor ON sessions (deployment_id, visitor_id, last_ms);
-- The idle sweep looks at open sessions only.
CREATE INDEX sessions_open_by_last ON sessions (last_ms) WHERE ended_ms IS NULL;
-- Short ids are unique per deployment among recent sessions.
CREATE INDEX sessions_by_short_id ON sessions (deployment_id, short_id);
-- Session listings, newest first.
CREATE INDEX sessions_by_created ON sessions (first_ms, id);

CREATE TABLE events (
    id                 TEXT PRIMARY KEY NOT NULL,    -- UUID v7 from the SDK
    session_id         TEXT NOT NULL REFERENCES sessions (id),
    deployment_id      TEXT NOT NULL,
    visitor_id         TEXT NOT NULL,
    kind               TEXT NOT NULL,                -- pageview, record, identify, logout
    name               TEXT NOT NULL,
    time_ms            INTEGER NOT NULL,             -- corrected time
    client_time_ms     INTEGER NOT NULL,             -- device time as sent
    received_ms        INTEGER NOT NULL,
    page_url           TEXT,                         -- NULL: the event had no page
    page_title         TEXT,
    page_referrer      TEXT,
    page_lang          TEXT,
    page_keywords      TEXT,
    page_search_query  TEXT,
    campaign_json      TEXT,
    context_json       TEXT,
    login_id           TEXT,
    attributes_json    TEXT NOT NULL,                -- {"name": {"dataType", "value"}}
    traits_json        TEXT NOT NULL,
    user_agent         TEXT,
    ip_address         TEXT
) STRICT;

CREATE INDEX events_by_session_time ON events (session_id, time_ms, id);
