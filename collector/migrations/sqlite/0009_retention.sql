-- Retention (see src/privacy.rs) deletes a deployment's sessions oldest first. Without
-- an index led by the deployment, each run would walk past every old session of the
-- deployments that keep everything.
CREATE INDEX sessions_by_deployment_created ON sessions (deployment_id, first_ms, id);
