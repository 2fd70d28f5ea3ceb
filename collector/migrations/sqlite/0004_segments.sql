-- Segments and outcomes (see src/segments/): their definitions, what matched in which
-- session, and the counters that journey patterns count with. Times are milliseconds
-- since the Unix epoch.

-- Definitions of both kinds, as the JSON of their Journey API shape (without id,
-- version and dates, which have their own columns).
CREATE TABLE journey_definitions (
    id               TEXT PRIMARY KEY NOT NULL,    -- UUID
    kind             TEXT NOT NULL,                -- segment, outcome
    definition_json  TEXT NOT NULL,
    version          INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL,
    modified_ms      INTEGER NOT NULL
) STRICT;

CREATE INDEX journey_definitions_by_kind ON journey_definitions (kind, created_ms, id);

-- Moves on every change of a definition, so that ingest knows when to rebuild its
-- in-memory index of them.
CREATE TABLE journey_definitions_generation (
    one         INTEGER PRIMARY KEY CHECK (one = 1),
    generation  INTEGER NOT NULL
) STRICT;
-- Starts at a random number, so that an index cached for another database file that
-- once had the same path is never mistaken for this one's.
INSERT INTO journey_definitions_generation (one, generation) VALUES (1, abs(random() % 1000000000000));

-- A segment assigned to a session: one row per segment and session, which is also the
-- session's SegmentAssignment event (its id). The segment's name, color and display
-- flag are kept as they were, so that a later change or deletion leaves the past as
-- it was.
CREATE TABLE session_segment_assignments (
    id                       TEXT PRIMARY KEY NOT NULL,  -- UUID v7 of the event
    session_id               TEXT NOT NULL REFERENCES sessions (id),
    segment_id               TEXT NOT NULL,
    display_name             TEXT NOT NULL,
    color                    TEXT NOT NULL,
    should_display_to_agent  INTEGER NOT NULL,
    assigned_ms              INTEGER NOT NULL,
    trigger_event_id         TEXT NOT NULL,              -- the event that completed the match
    UNIQUE (session_id, segment_id)
) STRICT;

-- An outcome achieved in a session, at most once per session.
CREATE TABLE session_outcome_achievements (
    id                TEXT PRIMARY KEY NOT NULL,         -- UUID v7 of the event
    session_id        TEXT NOT NULL REFERENCES sessions (id),
    outcome_id        TEXT NOT NULL,
    display_name      TEXT NOT NULL,
    version           INTEGER NOT NULL,
    is_positive       INTEGER NOT NULL,
    associated_value  TEXT,
    achieved_ms       INTEGER NOT NULL,
    trigger_event_id  TEXT NOT NULL,
    UNIQUE (session_id, outcome_id)
) STRICT;

-- Customer-scope segments of a customer ("contact:<id>" or
-- "visitor:<deploymentId>:<visitorId>"), carried into the customer's sessions until
-- they expire.
CREATE TABLE customer_segment_assignments (
    customer_key             TEXT NOT NULL,
    segment_id               TEXT NOT NULL,
    display_name             TEXT NOT NULL,
    color                    TEXT NOT NULL,
    should_display_to_agent  INTEGER NOT NULL,
    assigned_ms              INTEGER NOT NULL,
    expires_ms               INTEGER,                    -- NULL: never
    PRIMARY KEY (customer_key, segment_id)
) STRICT, WITHOUT ROWID;

-- How many events matched a journey pattern, per scope ("session:<id>" or a customer
-- key), definition version and pattern: updated in the ingest transaction, so that
-- evaluating a count never rescans events.
CREATE TABLE journey_pattern_counts (
    scope_key      TEXT NOT NULL,
    definition_id  TEXT NOT NULL,
    version        INTEGER NOT NULL,
    pattern_index  INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    PRIMARY KEY (scope_key, definition_id, version, pattern_index)
) STRICT, WITHOUT ROWID;

-- What the visit looked like (and which definitions existed) when the session's
-- context-only definitions and carried Customer-scope segments were last evaluated.
CREATE TABLE session_visit_evaluations (
    session_id   TEXT PRIMARY KEY NOT NULL REFERENCES sessions (id),
    fingerprint  TEXT NOT NULL
) STRICT, WITHOUT ROWID;
