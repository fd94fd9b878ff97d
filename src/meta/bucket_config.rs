//! A bucket's S3 configuration documents beyond its record: lifecycle rules, CORS
//! rules, its ACL, public access block, ownership controls and policy. Each is one row,
//! `bucket \0 kind` -> the document as the layer that owns it encodes it; the store
//! keeps the bytes and never reads them.
//!
//! Invariants: a document exists only for an existing bucket (`set` refuses a
//! missing one; `delete_bucket` removes every document with the bucket, in its
//! transaction), and a `set` replaces the whole document at once.

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};

use super::{BUCKETS, MetaError, MetaResult, MetaStore, bucket_in};

/// bucket \0 kind -> the document's bytes
pub(super) const BUCKET_CONFIGS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("bucket_configs");

/// Which document of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketConfigKind {
    Lifecycle,
    Cors,
    Acl,
    PublicAccessBlock,
    Ownership,
    Policy,
    /// The name of the principal who created the bucket (`root` for root).
    Creator,
}

impl BucketConfigKind {
    const ALL: [BucketConfigKind; 7] = [
        BucketConfigKind::Lifecycle,
        BucketConfigKind::Cors,
        BucketConfigKind::Acl,
        BucketConfigKind::PublicAccessBlock,
        BucketConfigKind::Ownership,
        BucketConfigKind::Policy,
        BucketConfigKind::Creator,
    ];

    fn name(self) -> &'static str {
        match self {
            BucketConfigKind::Lifecycle => "lifecycle",
            BucketConfigKind::Cors => "cors",
            BucketConfigKind::Acl => "acl",
            BucketConfigKind::PublicAccessBlock => "public-access-block",
            BucketConfigKind::Ownership => "ownership",
            BucketConfigKind::Policy => "policy",
            BucketConfigKind::Creator => "creator",
        }
    }
}

fn config_key(bucket: &str, kind: BucketConfigKind) -> Vec<u8> {
    super::object_key(bucket, kind.name())
}

/// Removes every document of `bucket` (the bucket is being deleted).
pub(super) fn forget_bucket_configs(txn: &WriteTransaction, bucket: &str) -> MetaResult<()> {
    let mut t = txn.open_table(BUCKET_CONFIGS)?;
    for kind in BucketConfigKind::ALL {
        t.remove(config_key(bucket, kind).as_slice())?;
    }
    Ok(())
}

impl MetaStore {
    /// Replaces `bucket`'s document of `kind` (`None` deletes it).
    pub async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfigKind,
        doc: Option<Vec<u8>>,
    ) -> MetaResult<()> {
        let bucket = bucket.to_owned();
        self.write(true, move |txn| {
            if bucket_in(&txn.open_table(BUCKETS)?, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let mut t = txn.open_table(BUCKET_CONFIGS)?;
            let key = config_key(&bucket, kind);
            match &doc {
                Some(d) => t.insert(key.as_slice(), d.as_slice())?,
                None => t.remove(key.as_slice())?,
            };
            Ok(())
        })
        .await
    }

    /// `bucket`'s document of `kind`, if it has one.
    pub async fn bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfigKind,
    ) -> MetaResult<Option<Vec<u8>>> {
        let key = config_key(bucket, kind);
        self.read(move |txn| {
            let t = txn.open_table(BUCKET_CONFIGS)?;
            Ok(t.get(key.as_slice())?.map(|v| v.value().to_vec()))
        })
        .await
    }

    /// Every bucket's document of `kind`: (bucket, document).
    pub async fn bucket_configs(
        &self,
        kind: BucketConfigKind,
    ) -> MetaResult<Vec<(String, Vec<u8>)>> {
        self.read(move |txn| {
            let t = txn.open_table(BUCKET_CONFIGS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let Some(split) = k.value().iter().position(|b| *b == 0) else {
                    continue;
                };
                let (bucket, name) = k.value().split_at(split);
                if &name[1..] == kind.name().as_bytes() {
                    let bucket = String::from_utf8_lossy(bucket).into_owned();
                    out.push((bucket, v.value().to_vec()));
                }
            }
            Ok(out)
        })
        .await
    }
}
