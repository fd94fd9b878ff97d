//! Reading the chunks of a version as stored, for the replication link and for
//! seed export alike: chunks stored back to back in one segment are read with one
//! range read, a run at a time.

use crate::meta::{ChunkId, ChunkLocation};
use crate::segments::SegmentStore;

use super::wire;

/// A chunk that could not be read from its segment.
#[derive(Debug, thiserror::Error)]
#[error("reading chunk {chunk} from segment {segment}: {reason}")]
pub struct ChunkReadError {
    pub chunk: String,
    pub segment: u64,
    pub reason: String,
}

/// A chunk id and where it is stored (`None`: not indexed any more).
pub type Located = (ChunkId, Option<ChunkLocation>);

/// Most bytes one range read of consecutive chunks covers.
pub const RUN_BYTES: u64 = 2 << 20;

/// `located` cut into runs of chunks stored back to back in one segment (up to
/// `RUN_BYTES`), in order: a new object's chunks mostly are, so a run is read with
/// one range read instead of one read per chunk.
pub fn runs(located: &[Located]) -> Vec<&[Located]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=located.len() {
        let joins = located.get(i).is_some_and(|(_, next)| {
            match (located[start].1, located[i - 1].1, next) {
                (Some(first), Some(prev), Some(next)) => {
                    let end = u64::from(prev.offset) + u64::from(prev.stored_len);
                    next.segment == prev.segment
                        && u64::from(next.offset) == end
                        && end + u64::from(next.stored_len) - u64::from(first.offset) <= RUN_BYTES
                }
                _ => false,
            }
        });
        if !joins {
            out.push(&located[start..i]);
            start = i;
        }
    }
    out
}

/// The chunks of one run (`runs`), as stored, with one range read.
pub async fn read_run(
    segments: &SegmentStore,
    run: &[Located],
) -> Result<Vec<wire::ChunkFrame>, ChunkReadError> {
    let (first, last) = match (run.first(), run.last()) {
        (Some((_, Some(f))), Some((_, Some(l)))) if run.len() > 1 => (*f, *l),
        _ => {
            let mut out = Vec::with_capacity(run.len());
            for (id, loc) in run {
                out.push(read_frame(segments, *id, *loc).await?);
            }
            return Ok(out);
        }
    };
    let start = u64::from(first.offset);
    let end = u64::from(last.offset) + u64::from(last.stored_len);
    let bytes = segments
        .read_range(first.segment, start..end)
        .await
        .map_err(|e| ChunkReadError {
            chunk: hex::encode(run[0].0),
            segment: first.segment,
            reason: e.to_string(),
        })?;
    let mut out = Vec::with_capacity(run.len());
    for (id, loc) in run {
        // `runs` joined only located chunks.
        let Some(loc) = loc else { continue };
        let at = (loc.offset - first.offset) as usize;
        let stored = bytes
            .get(at..at + loc.stored_len as usize)
            .ok_or_else(|| ChunkReadError {
                chunk: hex::encode(id),
                segment: loc.segment,
                reason: "the segment is shorter than its index says".into(),
            })?;
        out.push(frame(segments, *id, *loc, bytes.slice_ref(stored))?);
    }
    Ok(out)
}

/// A chunk as stored, read from its segment.
async fn read_frame(
    segments: &SegmentStore,
    id: ChunkId,
    loc: Option<ChunkLocation>,
) -> Result<wire::ChunkFrame, ChunkReadError> {
    let loc = loc.ok_or_else(|| ChunkReadError {
        chunk: hex::encode(id),
        segment: 0,
        reason: "not indexed any more".into(),
    })?;
    let start = u64::from(loc.offset);
    let stored = segments
        .read_range(loc.segment, start..start + u64::from(loc.stored_len))
        .await
        .map_err(|e| ChunkReadError {
            chunk: hex::encode(id),
            segment: loc.segment,
            reason: e.to_string(),
        })?;
    frame(segments, id, loc, stored)
}

/// The wire frame of a chunk from what its segment holds (opened, when the store
/// seals: the wire carries the payload, each side seals under its own key).
fn frame(
    segments: &SegmentStore,
    id: ChunkId,
    loc: ChunkLocation,
    stored: bytes::Bytes,
) -> Result<wire::ChunkFrame, ChunkReadError> {
    let stored = segments
        .open_payload(loc.segment, &id, stored)
        .map_err(|e| ChunkReadError {
            chunk: hex::encode(id),
            segment: loc.segment,
            reason: e.to_string(),
        })?;
    Ok(wire::ChunkFrame {
        id,
        codec: loc.codec,
        raw_len: loc.raw_len,
        stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Codec;

    #[test]
    fn runs_join_only_chunks_stored_back_to_back_in_one_segment() {
        let at = |segment, offset, stored_len| {
            Some(ChunkLocation {
                segment,
                offset,
                stored_len,
                raw_len: stored_len,
                codec: Codec::Raw,
            })
        };
        let big = (RUN_BYTES / 2) as u32;
        let located: Vec<Located> = vec![
            ([0; 32], at(1, 0, 10)),
            ([1; 32], at(1, 10, 5)),
            ([2; 32], at(1, 15, 5)),
            ([3; 32], at(1, 30, 5)), // a gap
            ([4; 32], at(2, 35, 5)), // another segment
            ([5; 32], None),         // not indexed
            ([6; 32], at(2, 40, 5)),
            ([7; 32], at(2, 45, big)),
            ([8; 32], at(2, 45 + big, big)), // would pass RUN_BYTES
        ];
        let lens: Vec<usize> = runs(&located).iter().map(|r| r.len()).collect();
        assert_eq!(lens, [3, 1, 1, 1, 2, 1]);
        assert!(runs(&[]).is_empty());
    }
}
