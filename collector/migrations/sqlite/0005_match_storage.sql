-- Cheaper storage of what matched in a session. A new session can earn a couple of
-- hundred assignments and achievements in its first batch; as rowid tables with a
-- primary key on `id` and a unique (session_id, ...) each row cost three B-tree
-- inserts. Keyed by (session_id, segment_id | outcome_id) WITHOUT ROWID it costs one:
-- every query reads them by session, and none by `id` alone, so `id` (the UUID v7 of
-- the SegmentAssignment / OutcomeAchieved event, made in increasing order) needs no
-- index of its own. Readers order by (assigned_ms | achieved_ms, id), which for rows
-- written from now on is the order they were made in.
--
-- `session_id` no longer declares a foreign key to sessions: checking it cost a lookup
-- in sessions per row, and the only writer is ingest, which inserts these rows for the
-- session it has just written in the same transaction (sessions are never deleted).

CREATE TABLE session_segment_assignments_new (
    session_id               TEXT NOT NULL,
    segment_id               TEXT NOT NULL,
    id                       TEXT NOT NULL,              -- UUID v7 of the event
    display_name             TEXT NOT NULL,
    color                    TEXT NOT NULL,
    should_display_to_agent  INTEGER NOT NULL,
    assigned_ms              INTEGER NOT NULL,
    trigger_event_id         TEXT NOT NULL,              -- the event that completed the match
    PRIMARY KEY (session_id, segment_id)
) STRICT, WITHOUT ROWID;

INSERT INTO session_segment_assignments_new (
    session_id, segment_id, id, display_name, color, should_display_to_agent, assigned_ms,
    trigger_event_id
)
SELECT session_id, segment_id, id, display_name, color, should_display_to_agent, assigned_ms,
       trigger_event_id
FROM session_segment_assignments;

DROP TABLE session_segment_assignments;
ALTER TABLE session_segment_assignments_new RENAME TO session_segment_assignments;

CREATE TABLE session_outcome_achievements_new (
    session_id        TEXT NOT NULL,
    outcome_id        TEXT NOT NULL,
    id                TEXT NOT NULL,                     -- UUID v7 of the event
    display_name      TEXT NOT NULL,
    version           INTEGER NOT NULL,
    is_positive       INTEGER NOT NULL,
    associated_value  TEXT,
    achieved_ms       INTEGER NOT NULL,
    trigger_event_id  TEXT NOT NULL,
    PRIMARY KEY (session_id, outcome_id)
) STRICT, WITHOUT ROWID;

INSERT INTO session_outcome_achievements_new (
    session_id, outcome_id, id, display_name, version, is_positive, associated_value,
    achieved_ms, trigger_event_id
)
SELECT session_id, outcome_id, id, display_name, version, is_positive, associated_value,
       achieved_ms, trigger_event_id
FROM session_outcome_achievements;

DROP TABLE session_outcome_achievements;
ALTER TABLE session_outcome_achievements_new RENAME TO session_outcome_achievements;
