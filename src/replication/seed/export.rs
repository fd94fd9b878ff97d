//! Export: one step at a time, a bucket's versions and the chunks not yet in the
//! seed into the step's files, then the step's state into `export.redb`.

use super::*;

pub(super) const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// chunk id -> the step that wrote it.
pub(super) const IDS: TableDefinition<&[u8], u64> = TableDefinition::new("ids");
/// step (u64 BE) ++ chunk id -> (): the ids of each step, to forget a step's ids
/// when it is run again.
pub(super) const STEP_IDS: TableDefinition<&[u8], ()> = TableDefinition::new("step_ids");

/// The export's state in `export.redb`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct ExportState {
    /// The last key exported.
    after: Option<String>,
    progress: SeedProgress,
}

/// Exports the next step of `req.bucket` into `req.dir`; returns the progress.
pub(super) async fn export(
    meta: &MetaStore,
    segments: &SegmentStore,
    req: ExportRequest,
) -> Result<SeedProgress, SeedError> {
    let dir = PathBuf::from(&req.dir);
    if meta.get_bucket(&req.bucket).await?.is_none() {
        return Err(SeedError::Invalid(format!(
            "no bucket named {}",
            req.bucket
        )));
    }
    let (manifest, sealer) = open_or_create(&dir, &req)?;
    let db = open_state(&dir)?;
    let state = read_state(&db)?;
    if state.progress.finished {
        return Ok(state.progress);
    }
    let page = meta
        .list_keys_with_markers(
            &req.bucket,
            ListQuery {
                prefix: String::new(),
                delimiter: None,
                after: state.after.clone(),
                max: STEP_KEYS,
            },
        )
        .await?;
    let step = state.progress.steps;
    forget_ids_from(&db, step)?;
    let mut w = StepWriter {
        dir: &dir,
        sealer: sealer.as_ref(),
        db: &db,
        written: db.begin_read()?.open_table(IDS)?,
        step,
        pack: (0, Vec::new()),
        objects: (0, Vec::new()),
        new_ids: std::collections::HashSet::new(),
        ids_held: IDS_HELD,
        progress: state.progress.clone(),
    };
    let (mut last, mut keys, mut stopped_early) = (state.after.clone(), 0, false);
    for entry in &page.entries {
        let ListEntry::Object(key, _) = entry else {
            continue;
        };
        if keys > 0 && w.progress.chunk_bytes >= state.progress.chunk_bytes + STEP_BYTES {
            stopped_early = true;
            break;
        }
        for rec in meta.key_versions(&req.bucket, key).await?.into_iter().rev() {
            w.push_version(meta, segments, key, &rec).await?;
        }
        w.progress.keys += 1;
        keys += 1;
        last = Some(key.clone());
    }
    let new_ids = w.finish()?;
    let mut progress = w.progress;
    progress.steps += 1;
    progress.finished = !page.truncated && !stopped_early;
    let next = ExportState {
        after: last,
        progress: progress.clone(),
    };
    commit_state(&db, step, &next, new_ids)?;
    if progress.finished {
        let done = SeedManifest {
            progress: progress.clone(),
            ..manifest
        };
        write_file(&dir, MANIFEST, &serde_json::to_vec_pretty(&done)?)?;
        tracing::info!(bucket = req.bucket, dir = req.dir, "seed export finished");
    }
    Ok(progress)
}

/// The files of one export step, as they are written: chunk files and objects
/// files, each (file number, bytes so far) closed at `PACK_BYTES`.
struct StepWriter<'a> {
    dir: &'a Path,
    sealer: Option<&'a SecretBox>,
    db: &'a redb::Database,
    /// The ids written by earlier steps (and flushed by this one).
    written: redb::ReadOnlyTable<&'static [u8], u64>,
    step: u64,
    pack: (u32, Vec<u8>),
    objects: (u32, Vec<u8>),
    /// Ids this step wrote and has not flushed to `IDS` yet (at most `ids_held`).
    new_ids: std::collections::HashSet<ChunkId>,
    ids_held: usize,
    progress: SeedProgress,
}

impl StepWriter<'_> {
    /// Writes one version a part at a time (only one part's manifest is held): the
    /// chunks of each part not in the seed yet, each part but the last as a `Part`
    /// entry, then the version with its last part.
    async fn push_version(
        &mut self,
        meta: &MetaStore,
        segments: &SegmentStore,
        key: &str,
        rec: &crate::meta::ObjectRecord,
    ) -> Result<(), SeedError> {
        let pieces = rec.manifests();
        let mut last = Vec::new();
        for (i, (manifest, _)) in pieces.iter().enumerate() {
            let refs = meta.get_manifest(*manifest).await?;
            let mut fresh: Vec<ChunkId> = Vec::new();
            for r in &refs {
                if self.is_new(&r.id)? {
                    fresh.push(r.id);
                }
            }
            let locs = meta.chunk_locations(fresh.clone()).await?;
            let located: Vec<Located> = fresh.into_iter().zip(locs).collect();
            for run in runs(&located) {
                for frame in read_run(segments, run).await? {
                    self.push_chunk(frame)?;
                }
            }
            if i + 1 == pieces.len() {
                last = refs;
            } else {
                let mut entry = vec![b'P'];
                entry.extend_from_slice(&(i as u32).to_le_bytes());
                entry.extend_from_slice(&crate::meta::encode_manifest(&refs));
                self.push_entry(key, &entry)?;
            }
        }
        let mut entry = vec![b'V'];
        entry.extend(wire::encode_object(rec, &last).map_err(SeedError::Invalid)?);
        self.push_entry(key, &entry)?;
        self.progress.versions += 1;
        self.progress.logical_bytes += rec.size;
        Ok(())
    }

    /// Not written by an earlier step nor by this one; noted as written now. Past
    /// `ids_held` ids this step's set is flushed to `IDS`, so it stays bounded.
    fn is_new(&mut self, id: &ChunkId) -> Result<bool, SeedError> {
        if self.new_ids.contains(id) || self.written.get(id.as_slice())?.is_some() {
            return Ok(false);
        }
        self.new_ids.insert(*id);
        if self.new_ids.len() >= self.ids_held {
            let ids: Vec<ChunkId> = self.new_ids.drain().collect();
            record_ids(self.db, self.step, &ids, None)?;
            self.written = self.db.begin_read()?.open_table(IDS)?;
        }
        Ok(true)
    }

    fn push_chunk(&mut self, frame: wire::ChunkFrame) -> Result<(), SeedError> {
        self.progress.chunks += 1;
        self.progress.chunk_bytes += frame.stored.len() as u64;
        wire::push_frame(&mut self.pack.1, &frame);
        if self.pack.1.len() >= PACK_BYTES {
            self.flush_pack()?;
        }
        Ok(())
    }

    fn push_entry(&mut self, key: &str, entry: &[u8]) -> Result<(), SeedError> {
        for item in [key.as_bytes(), entry] {
            self.objects
                .1
                .extend_from_slice(&(item.len() as u32).to_le_bytes());
            self.objects.1.extend_from_slice(item);
        }
        if self.objects.1.len() >= PACK_BYTES {
            self.flush_objects()?;
        }
        Ok(())
    }

    fn flush_pack(&mut self) -> Result<(), SeedError> {
        flush_file(self.dir, self.sealer, self.step, &mut self.pack, pack_name)
    }

    fn flush_objects(&mut self) -> Result<(), SeedError> {
        flush_file(
            self.dir,
            self.sealer,
            self.step,
            &mut self.objects,
            objects_name,
        )
    }

    /// Writes the last files; returns the chunk ids the step wrote and has not
    /// flushed yet.
    fn finish(&mut self) -> Result<Vec<ChunkId>, SeedError> {
        if !self.pack.1.is_empty() {
            self.flush_pack()?;
        }
        if !self.objects.1.is_empty() || self.objects.0 == 0 {
            self.flush_objects()?;
        }
        // A rerun of a step that wrote more files before must not leave them behind.
        let _ = std::fs::remove_file(self.dir.join(pack_name(self.step, self.pack.0)));
        let _ = std::fs::remove_file(self.dir.join(objects_name(self.step, self.objects.0)));
        Ok(self.new_ids.drain().collect())
    }
}

/// Writes a step's file `file.0` (named by `name`) and starts the next one.
fn flush_file(
    dir: &Path,
    sealer: Option<&SecretBox>,
    step: u64,
    file: &mut (u32, Vec<u8>),
    name: fn(u64, u32) -> String,
) -> Result<(), SeedError> {
    write_sealed(
        dir,
        &name(step, file.0),
        std::mem::take(&mut file.1),
        sealer,
    )?;
    file.0 += 1;
    Ok(())
}

/// Opens (or creates) `export.redb` with its tables.
pub(super) fn open_state(dir: &Path) -> Result<redb::Database, SeedError> {
    let path = dir.join(STATE_DB);
    let db = redb::Database::create(&path)
        .map_err(|e| SeedError::State(format!("{}: {e}", path.display())))?;
    let txn = db.begin_write()?;
    txn.open_table(STATE)?;
    txn.open_table(IDS)?;
    txn.open_table(STEP_IDS)?;
    txn.commit()?;
    Ok(db)
}

pub(super) fn read_state(db: &redb::Database) -> Result<ExportState, SeedError> {
    let txn = db.begin_read()?;
    Ok(match txn.open_table(STATE)?.get("export")? {
        Some(v) => serde_json::from_slice(v.value())?,
        None => ExportState::default(),
    })
}

/// Records ids step `step` wrote, with the export's state when given, in one
/// transaction.
pub(super) fn record_ids(
    db: &redb::Database,
    step: u64,
    new_ids: &[ChunkId],
    state: Option<&ExportState>,
) -> Result<(), SeedError> {
    let txn = db.begin_write()?;
    {
        let mut ids = txn.open_table(IDS)?;
        let mut by_step = txn.open_table(STEP_IDS)?;
        for id in new_ids {
            ids.insert(id.as_slice(), step)?;
            by_step.insert(step_id_key(step, id).as_slice(), ())?;
        }
        if let Some(state) = state {
            txn.open_table(STATE)?
                .insert("export", serde_json::to_vec(state)?.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

pub(super) fn commit_state(
    db: &redb::Database,
    step: u64,
    state: &ExportState,
    new_ids: Vec<ChunkId>,
) -> Result<(), SeedError> {
    record_ids(db, step, &new_ids, Some(state))
}

pub(super) fn step_id_key(step: u64, id: &ChunkId) -> Vec<u8> {
    let mut k = step.to_be_bytes().to_vec();
    k.extend_from_slice(id);
    k
}

/// Forgets the ids recorded by step `step` and later ones: a step run again
/// (after an interruption) writes its chunks again.
pub(super) fn forget_ids_from(db: &redb::Database, step: u64) -> Result<(), SeedError> {
    let txn = db.begin_write()?;
    {
        let from = step.to_be_bytes().to_vec();
        let mut by_step = txn.open_table(STEP_IDS)?;
        let mut ids = txn.open_table(IDS)?;
        for row in by_step.range(from.as_slice()..)? {
            ids.remove(&row?.0.value()[8..])?;
        }
        by_step.retain_in(from.as_slice().., |_, _| false)?;
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids_recorded(db: &redb::Database) -> usize {
        let txn = db.begin_read().unwrap();
        let n = txn.open_table(IDS).unwrap().iter().unwrap().count();
        n
    }

    /// A seed step's blocking work (here PBKDF2 over the passphrase, a file and redb
    /// writes) runs off the executor: on a single-threaded runtime a ticker keeps
    /// ticking throughout, where before it stood still for the whole derivation.
    #[test]
    fn a_seed_step_leaves_the_executor_free() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        SecretBox::from_passphrase("pass", b"salt");
        let derivation = started.elapsed();
        assert!(
            derivation > std::time::Duration::from_millis(20),
            "{derivation:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let gap = rt.block_on(async {
            let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
            meta.create_bucket("b", crate::meta::test_bucket())
                .await
                .unwrap();
            let segments = SegmentStore::open_local(dir.path()).unwrap();
            let ticks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let ticker = {
                let ticks = ticks.clone();
                tokio::spawn(async move {
                    loop {
                        ticks.lock().unwrap().push(std::time::Instant::now());
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                })
            };
            tokio::task::yield_now().await;
            let req = ExportRequest {
                bucket: "b".into(),
                dir: dir.path().join("seed").display().to_string(),
                passphrase: Some("pass".into()),
            };
            let progress = export_step(meta, segments, req).await.unwrap();
            assert!(progress.finished);
            ticker.abort();
            let ticks = ticks.lock().unwrap();
            ticks
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default()
        });
        assert!(
            gap < derivation / 2,
            "the executor stood still for {gap:?} (a derivation takes {derivation:?})"
        );
    }

    /// A step's ids flushed past the bound still count as written, and a step run
    /// again forgets the ids it recorded before, but not those of earlier steps.
    #[test]
    fn a_steps_ids_stay_bounded_and_a_rerun_step_forgets_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_state(dir.path()).unwrap();
        record_ids(&db, 0, &[[1; 32], [2; 32]], None).unwrap();
        let mut w = StepWriter {
            dir: dir.path(),
            sealer: None,
            db: &db,
            written: db.begin_read().unwrap().open_table(IDS).unwrap(),
            step: 1,
            pack: (0, Vec::new()),
            objects: (0, Vec::new()),
            new_ids: std::collections::HashSet::new(),
            ids_held: 2,
            progress: SeedProgress::default(),
        };
        let fresh: Vec<bool> = [
            [1; 32], [3; 32], [4; 32], [5; 32], [3; 32], [4; 32], [5; 32],
        ]
        .iter()
        .map(|id| w.is_new(id).unwrap())
        .collect();
        assert_eq!(fresh, [false, true, true, true, false, false, false]);
        assert!(w.new_ids.len() < 2, "the set was flushed");
        assert_eq!(ids_recorded(&db), 4);
        drop(w);
        forget_ids_from(&db, 1).unwrap();
        assert_eq!(ids_recorded(&db), 2, "step 0's ids stay");
    }
}
