-- Schema 5 (src/meta/history.rs): the storage history the dashboard charts (unix
-- seconds -> the store's logical, unique and stored bytes), thinned as it ages.
CREATE TABLE hoard.stats_history (k bytea PRIMARY KEY, v bytea NOT NULL);
