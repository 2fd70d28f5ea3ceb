-- Server-side enrichment (see src/enrich/), stored as JSON in the Journey API's shapes
-- so that a later update of the vendored lists or of the GeoIP file does not rewrite
-- history. Rows stored before this migration have NULLs: reads then classify the
-- referrer from its URL, and show no parsed user agent or geolocation.

-- The parsed User-Agent header: browser family and version, OS, device category,
-- type and manufacturer.
ALTER TABLE events ADD COLUMN user_agent_json TEXT;
-- JourneyGeolocation of the client's IP address, when a GeoIP database is configured.
ALTER TABLE events ADD COLUMN geolocation_json TEXT;
-- The referrer's name, medium and search terms.
ALTER TABLE events ADD COLUMN referrer_json TEXT;

-- Copied from the session's earliest event that has them, in the ingest transaction.
ALTER TABLE sessions ADD COLUMN user_agent_json TEXT;
ALTER TABLE sessions ADD COLUMN geolocation_json TEXT;
