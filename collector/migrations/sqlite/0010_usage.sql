-- Usage per deployment and UTC day (see src/usage.rs). `day` counts days since the
-- Unix epoch; `metric` names the figure: 'accepted.<kind>', 'refused.<reason>',
-- 'sessions.new', 'sessions.total', 'sessions.identified'.
CREATE TABLE usage_counts (
    deployment_id  TEXT NOT NULL,
    day            INTEGER NOT NULL,
    metric         TEXT NOT NULL,
    count          INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, day, metric)
) STRICT, WITHOUT ROWID;

-- The days before `summarised_until_day` have their accepted events and sessions in
-- usage_counts; retention deletes no session with an event received since.
CREATE TABLE usage_summary_state (
    one                   INTEGER PRIMARY KEY CHECK (one = 1),
    summarised_until_day  INTEGER NOT NULL
) STRICT;
