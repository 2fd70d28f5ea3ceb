-- Data rights, retention and usage figures on PostgreSQL (see src/privacy.rs and
-- src/usage.rs): what SQLite's migrations 0009 and 0010 add.

-- Retention deletes a deployment's sessions oldest first; without an index led by
-- the deployment, each run would walk past the old sessions of every deployment
-- that keeps everything.
CREATE INDEX sessions_by_deployment_created ON sessions (deployment_id, first_ms, id);

-- Usage per deployment and UTC day. `day` counts days since the Unix epoch; `metric`
-- names the figure: 'accepted.<kind>', 'refused.<reason>', 'sessions.new',
-- 'sessions.total', 'sessions.identified'.
CREATE TABLE usage_counts (
    deployment_id  text NOT NULL,
    day            bigint NOT NULL,
    metric         text NOT NULL,
    count          bigint NOT NULL,
    PRIMARY KEY (deployment_id, day, metric)
);

-- The days before `summarised_until_day` have their accepted events and sessions in
-- usage_counts; retention deletes no session with an event received since.
CREATE TABLE usage_summary_state (
    one                   integer PRIMARY KEY CHECK (one = 1),
    summarised_until_day  bigint NOT NULL
);
