-- Schema 3 (src/meta/gateways.rs): cluster-wide single workers (worker name -> the
-- gateway running it), every gateway's ingest load (gateway id -> streams active,
-- stream limit), and the segment ids handed to a gateway and not named yet
-- (segment id -> gateway id, when); what each replication rule's sender reports of
-- its progress, and the manual runs asked of it (src/meta/replication.rs).
CREATE TABLE hoard.workers (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE hoard.gateway_streams (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE hoard.unnamed_segments (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE hoard.replication_sender_reports (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE hoard.replication_manual_runs (k bytea PRIMARY KEY, v bytea NOT NULL);
