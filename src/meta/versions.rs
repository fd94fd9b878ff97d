//! Object versions, delete markers, versioning state and tags.
//!
//! Layout: `objects` holds each key's current version (which may be a delete
//! marker); `versions` holds the noncurrent ones under `bucket \0 key \0 !seq` (u64
//! BE, so a key's newest noncurrent version sorts first). `seq` comes from one
//! store-wide counter at commit; an enabled bucket's version id is `seq` in 16 hex
//! digits, so a lookup by id is one `get`. Versions written while versioning was off
//! or suspended have the id "null".
//!
//! Invariants:
//! - A key with noncurrent versions has a current version: removing the current one
//!   by id promotes the newest noncurrent version in the same transaction. So
//!   "bucket empty" is "no row in `objects`", and listing keys needs `objects` only.
//! - A key has at most one "null" version: a write or delete marker with the null id
//!   replaces it (releasing its references) wherever it is.
//! - Every version that is not a delete marker holds its manifests' references until
//!   it is removed by id (or replaced as the null version).

use super::kv::{ReadableTable, Table, WriteTransaction};

use super::{
    BUCKETS, BucketStats, C_INLINE_BYTES, C_NEXT_VERSION, CounterTable, EventKind, MetaError,
    MetaResult, MetaStore, NULL_VERSION, OBJECTS, ObjectData, ObjectRecord, OutboxEvent, VERSIONS,
    VersionLock, Versioning, append_outbox, bucket_in, bucket_stats_w, bump, count_locked,
    decode_record, encode_record, forget_object, get_bucket, get_bucket_w, list, next_ids,
    object_key, put_bucket_stats,
};

/// Where a version was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Current,
    Noncurrent(u64),
}

/// What deleting one key (or one version of it) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The version removed, or of the delete marker added; `None` when an
    /// unversioned bucket's object was removed.
    pub version_id: Option<String>,
    /// A delete marker was added, or the version removed was one.
    pub delete_marker: bool,
}

/// What a removal of a version may override, and the time locks are judged at: the
/// retention clock's reading (ms) and whether a governance bypass was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockCheck {
    pub now_ms: i64,
    pub bypass_governance: bool,
}

impl LockCheck {
    /// For removals no request asked for: any retention a version ever had counts
    /// as in force, and nothing is bypassed.
    pub const STRICT: LockCheck = LockCheck {
        now_ms: i64::MIN,
        bypass_governance: false,
    };

    /// Refuses the removal of `rec` when its lock forbids it.
    pub(super) fn allow_removal(&self, rec: &ObjectRecord) -> MetaResult<()> {
        match rec
            .lock
            .and_then(|l| l.forbids_removal(self.now_ms, self.bypass_governance))
        {
            Some(why) => Err(MetaError::ObjectLocked(format!(
                "Access Denied because object protected by object lock: {why}"
            ))),
            None => Ok(()),
        }
    }
}

/// A conditional write's precondition on the key's current version, checked in
/// the commit's transaction, so of two racing writers exactly one can win.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// `If-None-Match: *`: the key has no current version (a delete marker is none).
    Absent,
    /// `If-Match`: the current version has this ETag (`None`: any ETag, `*`).
    Matches(Option<String>),
}

impl WriteCondition {
    /// Whether a key whose current version is `current` satisfies the condition.
    pub fn holds(&self, current: Option<&ObjectRecord>) -> bool {
        let current = current.filter(|r| !r.delete_marker);
        match (self, current) {
            (WriteCondition::Absent, c) => c.is_none(),
            (WriteCondition::Matches(_), None) => false,
            (WriteCondition::Matches(None), Some(_)) => true,
            (WriteCondition::Matches(Some(etag)), Some(c)) => c.etag == *etag,
        }
    }

    /// Refuses with `PreconditionFailed` when the key's current version does not
    /// satisfy the condition; reads only.
    pub(super) fn check(&self, txn: &WriteTransaction, bucket: &str, key: &str) -> MetaResult<()> {
        let current = txn
            .open_table(OBJECTS)?
            .get(object_key(bucket, key).as_slice())?
            .map(|v| decode_record::<ObjectRecord>(v.value()))
            .transpose()?;
        match self.holds(current.as_ref()) {
            true => Ok(()),
            false => Err(MetaError::PreconditionFailed),
        }
    }
}

/// One key (or one version of it) a DeleteObject or DeleteObjects asks to remove.
#[derive(Debug, Clone, Default)]
pub struct DeleteTarget {
    pub key: String,
    pub version: Option<String>,
    pub condition: DeleteCondition,
}

impl DeleteTarget {
    /// An unconditional delete of `key` (of one version of it when `version` is set).
    pub fn new(key: &str, version: Option<String>) -> DeleteTarget {
        DeleteTarget {
            key: key.to_owned(),
            version,
            condition: DeleteCondition::default(),
        }
    }
}

/// A conditional delete's precondition on the version it would remove: the key's
/// current version, or the version the request names. Empty: no precondition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteCondition {
    /// `If-Match`: `Some(None)` for `*` (any ETag), `Some(Some(etag))` for one.
    pub etag: Option<Option<String>>,
    /// `x-amz-if-match-last-modified-time`, compared in whole seconds as HTTP dates carry it.
    pub modified_secs: Option<i64>,
    /// `x-amz-if-match-size`.
    pub size: Option<u64>,
}

impl DeleteCondition {
    /// Whether the delete goes on (`Ok(true)`) or finds nothing to delete and changes
    /// nothing (`Ok(false)`). A target that is absent or a delete marker fails an
    /// `If-Match` with `NoSuchKey`, and satisfies a size or time condition vacuously,
    /// as S3 answers; a target that does not match fails with `PreconditionFailed`.
    fn check(&self, target: Option<&ObjectRecord>) -> MetaResult<bool> {
        let Some(rec) = target.filter(|r| !r.delete_marker) else {
            return match self.etag {
                Some(_) => Err(MetaError::NoSuchKey),
                None => Ok(false),
            };
        };
        let etag_ok = match &self.etag {
            Some(Some(etag)) => rec.etag == *etag,
            _ => true,
        };
        let time_ok = self
            .modified_secs
            .is_none_or(|s| rec.modified_ms.div_euclid(1000) == s);
        let size_ok = self.size.is_none_or(|s| rec.size == s);
        match etag_ok && time_ok && size_ok {
            true => Ok(true),
            false => Err(MetaError::PreconditionFailed),
        }
    }
}

/// A "null" version replaced by a write is never locked: locks exist only in
/// buckets whose versioning is Enabled for good, where no write replaces a version.
/// Finding one is a broken invariant, and fails the whole transaction group (the
/// write has already changed rows).
fn refuse_locked_replacement(rec: &ObjectRecord) -> MetaResult<()> {
    match LockCheck::STRICT.allow_removal(rec) {
        Ok(()) => Ok(()),
        Err(e) => Err(MetaError::Corrupt(format!(
            "a write would replace a locked null version: {e}"
        ))),
    }
}

/// Which versions a ListObjectVersions page asks for.
#[derive(Debug, Clone, Default)]
pub struct VersionQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub version_id_marker: Option<String>,
    pub max: usize,
}

#[derive(Debug, Clone)]
pub enum VersionEntry {
    Version {
        key: String,
        rec: ObjectRecord,
        latest: bool,
    },
    Prefix(String),
}

#[derive(Debug, Clone, Default)]
pub struct VersionPage {
    pub entries: Vec<VersionEntry>,
    pub truncated: bool,
}

/// `Some(None)` for "null", `Some(Some(seq))` for an id hoard issued, `None` for
/// anything else.
pub fn parse_version_id(v: &str) -> Option<Option<u64>> {
    if v == NULL_VERSION {
        return Some(None);
    }
    if v.len() != 16 {
        return None;
    }
    u64::from_str_radix(v, 16).ok().map(Some)
}

fn version_prefix(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = object_key(bucket, key);
    k.push(0);
    k
}

pub(super) fn version_key(bucket: &str, key: &str, seq: u64) -> Vec<u8> {
    let mut k = version_prefix(bucket, key);
    k.extend_from_slice(&(!seq).to_be_bytes());
    k
}

type RecTable<'t> = Table<'t, &'static [u8], &'static [u8]>;

/// A key's noncurrent versions, newest first.
pub(super) fn noncurrent(
    versions: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    key: &str,
) -> MetaResult<Vec<ObjectRecord>> {
    let lo = version_prefix(bucket, key);
    let mut hi = lo.clone();
    hi.extend_from_slice(&[0xff; 8]);
    let mut out = Vec::new();
    for row in versions.range(lo.as_slice()..=hi.as_slice())? {
        let (k, v) = row?;
        if k.value().len() != lo.len() + 8 {
            continue;
        }
        out.push(decode_record(v.value())?);
    }
    Ok(out)
}

/// Finds the current version (`version` None) or the one with that id.
pub(super) fn find_version(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    versions: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> MetaResult<Option<(Slot, ObjectRecord)>> {
    let current: Option<ObjectRecord> = objects
        .get(object_key(bucket, key).as_slice())?
        .map(|v| decode_record(v.value()))
        .transpose()?;
    let Some(v) = version else {
        return Ok(current.map(|c| (Slot::Current, c)));
    };
    if let Some(c) = current
        && c.version_id == v
    {
        return Ok(Some((Slot::Current, c)));
    }
    let found = match parse_version_id(v) {
        None => None,
        Some(Some(seq)) => versions
            .get(version_key(bucket, key, seq).as_slice())?
            .map(|r| decode_record::<ObjectRecord>(r.value()))
            .transpose()?
            .filter(|r| r.version_id == v),
        Some(None) => noncurrent(versions, bucket, key)?
            .into_iter()
            .find(|r| r.version_id == NULL_VERSION),
    };
    Ok(found.map(|r| (Slot::Noncurrent(r.seq), r)))
}

pub(super) fn count_in(
    stats: &mut BucketStats,
    counters: &mut CounterTable<'_>,
    rec: &ObjectRecord,
) -> MetaResult<()> {
    if rec.delete_marker {
        return Ok(());
    }
    stats.objects += 1;
    stats.logical_bytes += rec.size;
    if let ObjectData::Inline(d) = &rec.data {
        stats.stored_bytes += d.len() as u64;
        stats.inline_bytes += d.len() as u64;
        bump(counters, C_INLINE_BYTES, d.len() as i64)?;
    }
    Ok(())
}

/// Stores `rec` as the key's current version under the bucket's versioning state:
/// the previous current version becomes noncurrent, or (when both are "null"
/// versions) is forgotten with its references. Counts the version in the bucket's
/// stats and appends one outbox event. Returns the new version's id.
pub(super) fn put_object_record(
    txn: &WriteTransaction,
    counters: &mut CounterTable<'_>,
    bucket: &str,
    key: &str,
    rec: &ObjectRecord,
    now: u64,
) -> MetaResult<String> {
    let versioning = get_bucket_w(txn, bucket)?
        .ok_or(MetaError::NoSuchBucket)?
        .versioning;
    let mut rec = rec.clone();
    rec.seq = next_ids(counters, C_NEXT_VERSION, 1)?.start;
    rec.version_id = match versioning {
        Versioning::Enabled => format!("{:016x}", rec.seq),
        _ => NULL_VERSION.to_owned(),
    };
    let old = txn
        .open_table(OBJECTS)?
        .insert(
            object_key(bucket, key).as_slice(),
            encode_record(&rec)?.as_slice(),
        )?
        .map(|v| decode_record::<ObjectRecord>(v.value()))
        .transpose()?;
    let mut stats = bucket_stats_w(txn, bucket)?;
    count_in(&mut stats, counters, &rec)?;
    let mut versions = txn.open_table(VERSIONS)?;
    if versioning == Versioning::Suspended {
        // The null version is replaced wherever it is (a never-versioned bucket has
        // no noncurrent versions).
        if let Some(n) = noncurrent(&versions, bucket, key)?
            .into_iter()
            .find(|r| r.version_id == NULL_VERSION)
        {
            refuse_locked_replacement(&n)?;
            versions.remove(version_key(bucket, key, n.seq).as_slice())?;
            forget_object(txn, counters, &mut stats, &n, now)?;
        }
    }
    if let Some(old) = old {
        if old.version_id == NULL_VERSION && versioning != Versioning::Enabled {
            refuse_locked_replacement(&old)?;
            forget_object(txn, counters, &mut stats, &old, now)?;
        } else {
            versions.insert(
                version_key(bucket, key, old.seq).as_slice(),
                encode_record(&old)?.as_slice(),
            )?;
        }
    }
    drop(versions);
    put_bucket_stats(txn, bucket, &stats)?;
    if VersionLock::protects(rec.lock) {
        count_locked(txn, &rec, 1)?;
    }
    let kind = if rec.delete_marker {
        EventKind::Delete
    } else {
        EventKind::Put {
            etag: rec.etag.clone(),
            size: rec.size,
        }
    };
    append_outbox(
        txn,
        counters,
        &OutboxEvent {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: rec.version_id.clone(),
            kind,
            time_ms: rec.modified_ms,
        },
    )?;
    Ok(rec.version_id)
}

/// Deletes a key as DeleteObject does: without a version id, an unversioned bucket
/// forgets the object and a versioned one adds a delete marker; with one, that
/// version is removed (the newest noncurrent version becomes current if it was the
/// current one). `None` when there was nothing to delete.
pub(super) fn delete_key(
    txn: &WriteTransaction,
    counters: &mut CounterTable<'_>,
    bucket: &str,
    target: &DeleteTarget,
    lock: LockCheck,
    now: u64,
) -> MetaResult<Option<DeleteOutcome>> {
    let (key, version, condition) = (
        target.key.as_str(),
        target.version.as_deref(),
        &target.condition,
    );
    let versioning = get_bucket_w(txn, bucket)?
        .ok_or(MetaError::NoSuchBucket)?
        .versioning;
    if *condition != DeleteCondition::default() {
        let objects = txn.open_table(OBJECTS)?;
        let versions = txn.open_table(VERSIONS)?;
        let target = find_version(&objects, &versions, bucket, key, version)?;
        if !condition.check(target.as_ref().map(|(_, rec)| rec))? {
            return Ok(None);
        }
    }
    if version.is_none() && versioning != Versioning::Unversioned {
        let marker = ObjectRecord::delete_marker(super::now_ms());
        let id = put_object_record(txn, counters, bucket, key, &marker, now)?;
        return Ok(Some(DeleteOutcome {
            version_id: Some(id),
            delete_marker: true,
        }));
    }
    let found = {
        let objects = txn.open_table(OBJECTS)?;
        let versions = txn.open_table(VERSIONS)?;
        find_version(&objects, &versions, bucket, key, version)?
    };
    let Some((slot, old)) = found else {
        return Ok(None);
    };
    lock.allow_removal(&old)?;
    {
        let mut objects = txn.open_table(OBJECTS)?;
        let mut versions: RecTable<'_> = txn.open_table(VERSIONS)?;
        match slot {
            Slot::Noncurrent(seq) => {
                versions.remove(version_key(bucket, key, seq).as_slice())?;
            }
            Slot::Current => {
                objects.remove(object_key(bucket, key).as_slice())?;
                if let Some(newest) = noncurrent(&versions, bucket, key)?.into_iter().next() {
                    versions.remove(version_key(bucket, key, newest.seq).as_slice())?;
                    objects.insert(
                        object_key(bucket, key).as_slice(),
                        encode_record(&newest)?.as_slice(),
                    )?;
                }
            }
        }
    }
    let mut stats = bucket_stats_w(txn, bucket)?;
    forget_object(txn, counters, &mut stats, &old, now)?;
    put_bucket_stats(txn, bucket, &stats)?;
    let kind = if version.is_some() {
        EventKind::DeleteVersion
    } else {
        EventKind::Delete
    };
    append_outbox(
        txn,
        counters,
        &OutboxEvent {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: old.version_id.clone(),
            kind,
            time_ms: super::now_ms(),
        },
    )?;
    Ok(Some(DeleteOutcome {
        version_id: version.map(|_| old.version_id.clone()),
        delete_marker: old.delete_marker,
    }))
}

/// Validates object or bucket tags as S3 does.
pub fn check_tags(tags: &[(String, String)], max: usize) -> Result<(), String> {
    if tags.len() > max {
        return Err(format!("Object tags cannot be greater than {max}"));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > 128 {
            return Err("The TagKey you have provided is invalid".into());
        }
        if v.chars().count() > 256 {
            return Err("The TagValue you have provided is invalid".into());
        }
        if tags[..i].iter().any(|(other, _)| other == k) {
            return Err("Cannot provide multiple Tags with the same key".into());
        }
    }
    Ok(())
}

impl MetaStore {
    /// Sets a bucket's versioning state; a bucket with Object Lock stays Enabled.
    pub async fn set_versioning(&self, bucket: &str, state: Versioning) -> MetaResult<()> {
        self.update_bucket(bucket, move |rec| {
            if rec.object_lock.is_some() && state != Versioning::Enabled {
                return Err(MetaError::InvalidBucketState(
                    "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.".into(),
                ));
            }
            rec.versioning = state;
            Ok(())
        })
        .await
    }

    pub async fn set_bucket_tags(
        &self,
        bucket: &str,
        tags: Vec<(String, String)>,
    ) -> MetaResult<()> {
        self.update_bucket(bucket, move |rec| {
            rec.tags = tags;
            Ok(())
        })
        .await
    }

    /// Enables Object Lock on a bucket (for good) or replaces its default
    /// retention; the bucket's versioning must be Enabled.
    pub async fn set_object_lock(&self, bucket: &str, lock: super::BucketLock) -> MetaResult<()> {
        self.update_bucket(bucket, move |rec| {
            if rec.versioning != Versioning::Enabled {
                return Err(MetaError::InvalidBucketState(
                    "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration".into(),
                ));
            }
            rec.object_lock = Some(lock);
            Ok(())
        })
        .await
    }

    /// Changes a bucket's record in one durable transaction; `change` may refuse.
    async fn update_bucket(
        &self,
        bucket: &str,
        change: impl FnOnce(&mut super::BucketRecord) -> MetaResult<()> + Send + 'static,
    ) -> MetaResult<()> {
        let bucket = bucket.to_owned();
        self.write(true, move |txn| {
            let mut buckets = txn.open_table(BUCKETS)?;
            let mut rec = bucket_in(&buckets, &bucket)?.ok_or(MetaError::NoSuchBucket)?;
            change(&mut rec)?;
            buckets.insert(bucket.as_str(), encode_record(&rec)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Replaces the tags of the current version or of `version`; returns the
    /// version's id. Delete markers have no tags (`NoSuchKey`/`NoSuchVersion` like
    /// an absent version, as S3 answers MethodNotAllowed there; the caller maps it).
    pub async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<String>,
        tags: Vec<(String, String)>,
    ) -> MetaResult<String> {
        self.update_version(bucket, key, version, EventKind::Tags, move |rec| {
            rec.tags = tags;
            Ok(())
        })
        .await
    }

    /// Replaces the access control list of the current version or of `version`
    /// (`None`: private); returns the version's id.
    pub async fn set_object_acl(
        &self,
        bucket: &str,
        key: &str,
        version: Option<String>,
        acl: Option<super::Acl>,
    ) -> MetaResult<String> {
        self.update_version(bucket, key, version, EventKind::Acl, move |rec| {
            rec.acl = acl;
            Ok(())
        })
        .await
    }

    /// Changes the Object Lock state of the current version or of `version`;
    /// `change` gets the state as stored and returns the new one or refuses.
    pub async fn set_version_lock(
        &self,
        bucket: &str,
        key: &str,
        version: Option<String>,
        change: impl FnOnce(Option<super::VersionLock>) -> MetaResult<super::VersionLock>
        + Send
        + 'static,
    ) -> MetaResult<String> {
        self.update_version(bucket, key, version, EventKind::Lock, move |rec| {
            rec.lock = Some(change(rec.lock)?);
            Ok(())
        })
        .await
    }

    /// Changes one version's record in place (never a delete marker's) with one
    /// outbox event of `kind`, in one durable transaction; returns its id.
    async fn update_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<String>,
        kind: EventKind,
        change: impl FnOnce(&mut ObjectRecord) -> MetaResult<()> + Send + 'static,
    ) -> MetaResult<String> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let mut objects = txn.open_table(OBJECTS)?;
            let mut versions = txn.open_table(VERSIONS)?;
            let found = find_version(&objects, &versions, &bucket, &key, version.as_deref())?;
            let (slot, mut rec) = match found {
                Some((_, r)) if r.delete_marker => return Err(MetaError::DeleteMarker),
                Some(f) => f,
                None if version.is_some() => return Err(MetaError::NoSuchVersion),
                None => return Err(MetaError::NoSuchKey),
            };
            let protected = VersionLock::protects(rec.lock);
            change(&mut rec)?;
            match (protected, VersionLock::protects(rec.lock)) {
                (false, true) => count_locked(txn, &rec, 1)?,
                (true, false) => count_locked(txn, &rec, -1)?,
                _ => {}
            }
            let value = encode_record(&rec)?;
            match slot {
                Slot::Current => {
                    objects.insert(object_key(&bucket, &key).as_slice(), value.as_slice())?
                }
                Slot::Noncurrent(seq) => {
                    versions.insert(version_key(&bucket, &key, seq).as_slice(), value.as_slice())?
                }
            };
            append_outbox(
                txn,
                &mut txn.open_table(super::COUNTERS)?,
                &OutboxEvent {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    version_id: rec.version_id.clone(),
                    kind,
                    time_ms: super::now_ms(),
                },
            )?;
            Ok(rec.version_id)
        })
        .await
    }

    /// The record of the current version, or of `version`; delete markers included.
    pub async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<String>,
    ) -> MetaResult<Option<ObjectRecord>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.read(move |txn| {
            if get_bucket(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let objects = txn.open_table(OBJECTS)?;
            let versions = txn.open_table(VERSIONS)?;
            Ok(
                find_version(&objects, &versions, &bucket, &key, version.as_deref())?
                    .map(|(_, r)| r),
            )
        })
        .await
    }

    /// Versions in key order, each key's newest first, after the markers.
    pub async fn list_versions(&self, bucket: &str, q: VersionQuery) -> MetaResult<VersionPage> {
        let bucket = bucket.to_owned();
        self.read(move |txn| {
            if get_bucket(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let objects = txn.open_table(OBJECTS)?;
            let versions = txn.open_table(VERSIONS)?;
            let mut page = VersionPage::default();
            let push = |page: &mut VersionPage, e: VersionEntry| {
                if page.entries.len() == q.max {
                    page.truncated = true;
                    return false;
                }
                page.entries.push(e);
                true
            };
            let key_marker = q.key_marker.clone().filter(|k| !k.is_empty());
            let id_marker = q.version_id_marker.clone().filter(|v| !v.is_empty());
            // The rest of the marker key's versions, after the marker version.
            if let (Some(km), Some(vm)) = (&key_marker, &id_marker)
                && km.starts_with(&q.prefix)
            {
                let all = key_versions(&objects, &versions, &bucket, km)?;
                let after = all
                    .iter()
                    .position(|(r, _)| &r.version_id == vm)
                    .map(|i| i + 1)
                    .unwrap_or(all.len());
                for (rec, latest) in all.into_iter().skip(after) {
                    if !push(
                        &mut page,
                        VersionEntry::Version {
                            key: km.clone(),
                            rec,
                            latest,
                        },
                    ) {
                        return Ok(page);
                    }
                }
            }
            let keys = list::list_all(
                &objects,
                &bucket,
                &list::ListQuery {
                    prefix: q.prefix.clone(),
                    delimiter: q.delimiter.clone(),
                    after: key_marker,
                    max: q.max.saturating_add(1),
                },
            )?;
            for e in keys.entries {
                match e {
                    list::ListEntry::Prefix(p) => {
                        if !push(&mut page, VersionEntry::Prefix(p)) {
                            return Ok(page);
                        }
                    }
                    list::ListEntry::Object(key, _) => {
                        for (rec, latest) in key_versions(&objects, &versions, &bucket, &key)? {
                            if !push(
                                &mut page,
                                VersionEntry::Version {
                                    key: key.clone(),
                                    rec,
                                    latest,
                                },
                            ) {
                                return Ok(page);
                            }
                        }
                    }
                }
            }
            page.truncated |= keys.truncated;
            Ok(page)
        })
        .await
    }
}

/// All versions of a key, newest first, with "is latest".
pub(super) fn key_versions(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    versions: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    key: &str,
) -> MetaResult<Vec<(ObjectRecord, bool)>> {
    let mut out = Vec::new();
    if let Some((_, cur)) = find_version(objects, versions, bucket, key, None)? {
        out.push((cur, true));
    }
    out.extend(
        noncurrent(versions, bucket, key)?
            .into_iter()
            .map(|r| (r, false)),
    );
    Ok(out)
}
