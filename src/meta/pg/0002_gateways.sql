-- Schema 2: the gateways' leases (src/meta/gateways.rs): gateway id -> expiry.
CREATE TABLE hoard.gateways (k bytea PRIMARY KEY, v bytea NOT NULL);
