-- Schema 3 (src/meta/gateways.rs): cluster-wide single workers (worker name -> the
-- gateway running it) and every gateway's ingest load (gateway id -> streams active,
-- stream limit).
CREATE TABLE hoard.workers (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE hoard.gateway_streams (k bytea PRIMARY KEY, v bytea NOT NULL);
