//! Unit tests of the store as a whole: its format check, holds, the committer's
//! failure paths and reference-count underflow.

use super::*;

#[tokio::test]
async fn a_store_written_with_another_record_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    {
        let meta = MetaStore::open(&path, 1 << 20).unwrap();
        meta.create_bucket("b", test_bucket()).await.unwrap();
    }
    // The committer thread lets go of the file once it sees the store dropped.
    let reopen = || {
        for _ in 0..100 {
            match MetaStore::open(&path, 1 << 20) {
                Err(MetaError::Storage(redb::Error::DatabaseAlreadyOpen)) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other,
            }
        }
        Err(MetaError::Closed)
    };
    // Reopening the same format works; a store claiming format 1 is refused.
    drop(reopen().unwrap());
    {
        let db = (0..100)
            .find_map(|_| {
                let db = redb::Database::create(&path).ok();
                if db.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                db
            })
            .expect("database released");
        let txn = kv::WriteTransaction::Redb(db.begin_write().unwrap());
        txn.open_table(COUNTERS)
            .unwrap()
            .insert(C_SCHEMA, 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = reopen().err().expect("refused");
    assert!(err.to_string().contains("format 1"), "{err}");
}

/// Reopens a store whose previous handle was just dropped (its committer thread
/// lets go of the file shortly after).
fn reopen(path: &Path) -> MetaStore {
    for _ in 0..200 {
        match MetaStore::open(path, 1 << 20) {
            Err(MetaError::Storage(redb::Error::DatabaseAlreadyOpen)) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    panic!("store not released");
}

fn new_chunk(id: ChunkId, offset: u32) -> NewChunk {
    NewChunk {
        id,
        offset,
        stored_len: 1,
        raw_len: 1,
        codec: Codec::Raw,
        refs: 1,
    }
}

fn chunked_record() -> ObjectRecord {
    let mut rec = ObjectRecord::delete_marker(1);
    rec.delete_marker = false;
    rec.version_id = NULL_VERSION.into();
    rec.size = 3;
    rec
}

async fn refs(meta: &MetaStore, id: ChunkId) -> u32 {
    meta.read(move |txn| Ok(chunk_row(txn, &id)?.map_or(0, |r| r.refs)))
        .await
        .unwrap()
}

/// Takes one reference on `id` under an upload hold's batch.
pub(super) async fn take(meta: &MetaStore, id: ChunkId, batch: HeldBatch) {
    let m = meta.clone();
    let found = tokio::task::spawn_blocking(move || m.take_refs_blocking(vec![(id, 1)], batch))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, vec![true]);
}

/// An upload's references are counted while in flight (a recount does not
/// lower them), taken over by its commit (a release afterwards changes
/// nothing), released when it does not commit, and released at the next start
/// when the process stopped first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_holds_are_counted_taken_over_by_their_commit_or_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let meta = MetaStore::open(&path, 1 << 20).unwrap();
    meta.create_bucket("b", test_bucket()).await.unwrap();
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let hold = UploadHold::new().unwrap();
    let seal = Holder::Upload(hold.next_batch());
    meta.add_segment(
        "b",
        1,
        2,
        vec![new_chunk(a, 0), new_chunk(b, 1)],
        Some(seal),
    )
    .await
    .unwrap();
    take(&meta, a, hold.next_batch()).await;
    assert_eq!((refs(&meta, a).await, refs(&meta, b).await), (2, 1));
    let m = meta.clone();
    let audit = tokio::task::spawn_blocking(move || m.audit_refs_blocking());
    assert_eq!(
        audit.await.unwrap().unwrap(),
        Vec::new(),
        "held references are counted"
    );
    assert_eq!(meta.fix_counts().await.unwrap().fixed, 0);
    assert_eq!(
        refs(&meta, a).await,
        2,
        "a recount does not undo an upload's take"
    );

    // A commit that fails keeps the hold; the commit that succeeds takes it over.
    let manifest = vec![
        ChunkRef { id: a, len: 1 },
        ChunkRef { id: a, len: 1 },
        ChunkRef { id: b, len: 1 },
    ];
    let failed = meta
        .commit_object(
            "nobucket",
            "k",
            chunked_record(),
            Some(manifest.clone()),
            Some(hold.id()),
            None,
        )
        .await;
    assert!(matches!(failed, Err(MetaError::NoSuchBucket)));
    meta.commit_object(
        "b",
        "k",
        chunked_record(),
        Some(manifest),
        Some(hold.id()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(meta.release_upload_hold(hold.id()).await.unwrap(), 0);
    assert_eq!((refs(&meta, a).await, refs(&meta, b).await), (2, 1));

    // An upload that does not commit: its release gives back exactly its takes.
    let dropped = UploadHold::new().unwrap();
    take(&meta, b, dropped.next_batch()).await;
    assert_eq!(meta.release_upload_hold(dropped.id()).await.unwrap(), 1);
    assert_eq!(refs(&meta, b).await, 1);

    // One in flight when the process stops is released at the next start.
    let interrupted = UploadHold::new().unwrap();
    take(&meta, b, interrupted.next_batch()).await;
    take(&meta, a, interrupted.next_batch()).await;
    assert_eq!((refs(&meta, a).await, refs(&meta, b).await), (3, 2));
    drop(meta);
    let meta = reopen(&path);
    assert_eq!((refs(&meta, a).await, refs(&meta, b).await), (2, 1));
    let audit = tokio::task::spawn_blocking(move || meta.audit_refs_blocking());
    assert_eq!(audit.await.unwrap().unwrap(), Vec::new());
}

#[tokio::test]
async fn a_panicking_operation_fails_alone_and_later_writes_commit() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
    let panicked: MetaResult<()> = meta.write(true, |_| panic!("an operation's bug")).await;
    assert!(panicked.is_err());
    meta.create_bucket("after", test_bucket()).await.unwrap();
    assert!(meta.get_bucket("after").await.unwrap().is_some());
}

/// A release that would take a count below zero is refused with the metric
/// raised, and the delete that asked for it changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_below_zero_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
    meta.create_bucket("b", test_bucket()).await.unwrap();
    let a = [9u8; 32];
    let hold = UploadHold::new().unwrap();
    meta.add_segment(
        "b",
        1,
        1,
        vec![new_chunk(a, 0)],
        Some(Holder::Upload(hold.next_batch())),
    )
    .await
    .unwrap();
    let manifest = vec![ChunkRef { id: a, len: 1 }];
    meta.commit_object(
        "b",
        "k",
        chunked_record(),
        Some(manifest),
        Some(hold.id()),
        None,
    )
    .await
    .unwrap();
    // A bug elsewhere left the count at zero.
    meta.write(true, move |txn| {
        let mut chunks = txn.open_table(CHUNKS)?;
        let mut segments = txn.open_table(SEGMENTS)?;
        adjust_refs(&mut chunks, &mut segments, &a, -1, 0).map(drop)
    })
    .await
    .unwrap();
    let before = REFCOUNT_UNDERFLOWS.get();
    let any = LockCheck {
        now_ms: 0,
        bypass_governance: false,
    };
    let err = meta
        .delete_object("b", DeleteTarget::new("k", None), any)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&hex::encode(a)), "{err}");
    assert_eq!(REFCOUNT_UNDERFLOWS.get(), before + 1);
    assert!(meta.get_version("b", "k", None).await.unwrap().is_some());
}

#[tokio::test]
async fn a_counter_that_cannot_advance_fails_the_operation() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
    meta.create_bucket("b", test_bucket()).await.unwrap();
    meta.write(true, |txn| {
        txn.open_table(COUNTERS)?
            .insert(C_NEXT_MANIFEST, u64::MAX)?;
        Ok(())
    })
    .await
    .unwrap();
    let err = meta
        .commit_object("b", "k", chunked_record(), Some(Vec::new()), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exhausted"), "{err}");
    assert!(meta.get_version("b", "k", None).await.unwrap().is_none());
}

/// Chunks of a version Object Lock protects are counted apart from their
/// references, and the cleaner keeps them even when a (broken) reference count says
/// nobody needs them; removing the version after its retention counts them down.
#[tokio::test]
async fn the_cleaner_keeps_chunks_of_locked_versions_whatever_their_counts_say() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
    let mut bucket = test_bucket();
    bucket.versioning = Versioning::Enabled;
    bucket.object_lock = Some(BucketLock::default());
    meta.create_bucket("b", bucket).await.unwrap();
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let hold = UploadHold::new().unwrap();
    meta.add_segment(
        "b",
        1,
        2,
        vec![new_chunk(a, 0), new_chunk(b, 1)],
        Some(Holder::Upload(hold.next_batch())),
    )
    .await
    .unwrap();
    let mut rec = chunked_record();
    rec.size = 2;
    rec.lock = Some(VersionLock {
        retention: Some((LockMode::Compliance, 5_000)),
        legal_hold: false,
    });
    let manifest = vec![ChunkRef { id: a, len: 1 }, ChunkRef { id: b, len: 1 }];
    let version = meta
        .commit_object("b", "k", rec, Some(manifest), Some(hold.id()), None)
        .await
        .unwrap();
    let row = |id: ChunkId| {
        let m = meta.clone();
        async move { m.read(move |txn| chunk_row(txn, &id)).await.unwrap() }
    };
    assert_eq!(row(a).await.map(|r| (r.refs, r.locked)), Some((1, 1)));
    // Break the reference counts: both chunks look unreferenced since long ago.
    meta.write(true, move |txn| {
        let mut chunks = txn.open_table(CHUNKS)?;
        for id in [a, b] {
            let mut r = ChunkRow::decode(chunks.get(id.as_slice())?.unwrap().value())?;
            r.refs = 0;
            r.zero_since = 1;
            chunks.insert(id.as_slice(), r.encode().as_slice())?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let m = meta.clone();
    let audit = tokio::task::spawn_blocking(move || m.audit_refs_blocking())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audit.len(), 2, "the broken counts are reported: {audit:?}");
    let removed = meta.remove_dead_segments(vec![1], u64::MAX).await.unwrap();
    assert_eq!(removed, vec![(1, None)], "a locked chunk was removed");
    assert!(row(a).await.is_some() && row(b).await.is_some());
    let kept = meta.chunks_to_keep(1, u64::MAX).await.unwrap();
    assert_eq!(kept.len(), 2, "compaction would drop a locked chunk");

    // Repaired counts; then the retention ends and the version can go.
    meta.fix_counts().await.unwrap();
    assert_eq!(row(a).await.map(|r| (r.refs, r.locked)), Some((1, 1)));
    let early = LockCheck {
        now_ms: 4_999,
        bypass_governance: true,
    };
    let err = meta
        .delete_object("b", DeleteTarget::new("k", Some(version.clone())), early)
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::ObjectLocked(_)), "{err}");
    let late = LockCheck {
        now_ms: 5_000,
        bypass_governance: false,
    };
    meta.delete_object("b", DeleteTarget::new("k", Some(version)), late)
        .await
        .unwrap()
        .expect("deleted");
    assert_eq!(row(a).await.map(|r| (r.refs, r.locked)), Some((0, 0)));
    let removed = meta.remove_dead_segments(vec![1], u64::MAX).await.unwrap();
    assert!(removed[0].1.is_some(), "unlocked and unreferenced: freed");
}
