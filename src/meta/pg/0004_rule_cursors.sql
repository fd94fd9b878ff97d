-- Schema 4 (src/meta/replication.rs): each replication rule's cursor into the
-- outbox (rule key -> the sequence number below which it dealt with every event of
-- its bucket), so several rules per bucket drain the outbox each at its own pace;
-- and, for rules towards plain S3 buckets, the newest source version of each key
-- the target has (rule key \0 key -> seq).
CREATE TABLE hoard.replication_cursors (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE hoard.replication_target_seqs (k bytea PRIMARY KEY, v bytea NOT NULL);
