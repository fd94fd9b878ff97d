//! Import: one step of a finished seed into a replica bucket, chunks stored only
//! where missing, versions applied by id, so that running it again is safe.

use super::*;

/// Loads step `req.step` of a finished seed into `req.bucket`, which becomes a
/// replica bucket (it must be empty, or a replica already).
pub(super) async fn import(
    store: &Store,
    replicas: &crate::replication::ReplicaBuckets,
    req: ImportRequest,
) -> Result<ImportProgress, SeedError> {
    let dir = PathBuf::from(&req.dir);
    let manifest = read_manifest(&dir)?
        .ok_or_else(|| SeedError::Invalid(format!("{} holds no {MANIFEST}", req.dir)))?;
    if !manifest.progress.finished {
        return Err(SeedError::Invalid(
            "the export of this seed has not finished; run it again until it does".into(),
        ));
    }
    let sealer = unsealer(&manifest, req.passphrase.as_deref())?;
    if req.step >= manifest.progress.steps {
        return Err(SeedError::Invalid(format!(
            "the seed has {} steps",
            manifest.progress.steps
        )));
    }
    let source = crate::replication::Hello {
        software: format!("seed of bucket {}", manifest.bucket),
        ..crate::replication::Hello::ours()
    };
    replicas
        .mark(&req.bucket, &source)
        .await
        .map_err(|e| match e {
            MetaError::BucketNotEmpty => SeedError::Invalid(format!(
                "bucket {} holds objects of its own; import into an empty bucket",
                req.bucket
            )),
            MetaError::NoSuchBucket => {
                SeedError::Invalid(format!("no bucket named {}", req.bucket))
            }
            other => SeedError::Meta(other),
        })?;
    let mut out = ImportProgress {
        step: req.step,
        steps: manifest.progress.steps,
        ..Default::default()
    };
    for part in 0.. {
        let name = pack_name(req.step, part);
        let Some(body) = read_sealed(&dir, &name, sealer.as_ref())? else {
            break;
        };
        let frames = wire::decode_frames(Bytes::from(body))
            .map_err(|why| SeedError::Import(format!("{name}: {why}")))?;
        let stored = store
            .store_frames(&req.bucket, frames, None)
            .await
            .map_err(|e| SeedError::Import(format!("{name}: {}", e_message(&e))))?;
        out.chunks_stored += stored as u64;
    }
    // The parts of a version staged ahead of its record, all in this step.
    let mut hold: Option<HoldId> = None;
    for file in 0.. {
        let name = objects_name(req.step, file);
        let Some(body) = read_sealed(&dir, &name, sealer.as_ref())? else {
            if file == 0 {
                return Err(SeedError::Import(format!("{name} is missing")));
            }
            break;
        };
        let entries =
            decode_objects(&body).map_err(|why| SeedError::Import(format!("{name}: {why}")))?;
        for (key, entry) in entries {
            let failed = |why: String| SeedError::Import(format!("{name}, {key:?}: {why}"));
            match entry {
                Entry::Part(part, manifest) => {
                    let refs = crate::meta::decode_manifest(manifest)
                        .map_err(|e| failed(e.to_string()))?;
                    let h = match (part, hold) {
                        (0, _) | (_, None) => *hold.insert(crate::meta::new_hold_id()?),
                        (_, Some(h)) => h,
                    };
                    let lacking = store.meta.stage_part(h, part, refs).await?;
                    if lacking > 0 {
                        return Err(failed(format!(
                            "{lacking} chunks are in no file of the seed"
                        )));
                    }
                }
                Entry::Version(object) => {
                    let (rec, refs) = wire::decode_object(object).map_err(failed)?;
                    store
                        .commit_version(&req.bucket, &key, rec, refs, hold.take())
                        .await
                        .map_err(|e| failed(e_message(&e)))?;
                    out.versions += 1;
                }
            }
        }
    }
    Ok(out)
}

pub(super) fn e_message(e: &s3s::S3Error) -> String {
    e.message().unwrap_or("failed").to_owned()
}
