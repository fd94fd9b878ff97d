//! Listing keys of a bucket in order, with prefix, delimiter and a start marker.
//!
//! Keys are stored as `bucket \0 key`; object keys are UTF-8 and never hold the byte
//! 0xFF, so `P ++ 0xFF` sorts after every key that starts with `P`, which is how a
//! listing skips the rest of a common prefix in one seek.

use super::kv::ReadableTable;

use super::{MetaResult, ObjectRecord, decode_record};

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    /// `None` (or empty) lists flat.
    pub delimiter: Option<String>,
    /// Exclusive: only entries after this key or common prefix.
    pub after: Option<String>,
    pub max: usize,
}

#[derive(Debug, Clone)]
pub enum ListEntry {
    Object(String, ObjectRecord),
    Prefix(String),
}

impl ListEntry {
    /// The key or common prefix, which is what a continuation marker names.
    pub fn name(&self) -> &str {
        match self {
            ListEntry::Object(k, _) | ListEntry::Prefix(k) => k,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub entries: Vec<ListEntry>,
    pub truncated: bool,
}

/// The key range holding `bucket`'s keys that start with `prefix`.
pub(super) fn bucket_bounds(bucket: &str, prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let mut lo = bucket.as_bytes().to_vec();
    lo.push(0);
    lo.extend_from_slice(prefix.as_bytes());
    let mut hi = lo.clone();
    if prefix.is_empty() {
        // bucket \x01 sorts after every bucket \0 ...
        if let Some(last) = hi.last_mut() {
            *last = 1;
        }
    } else {
        hi.push(0xff);
    }
    (lo, hi)
}

/// Lists keys whose current version is an object (delete markers hide a key).
pub(super) fn list(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    q: &ListQuery,
) -> MetaResult<ListPage> {
    scan(table, bucket, q, false)
}

/// Lists every key with a current version, delete markers included.
pub(super) fn list_all(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    q: &ListQuery,
) -> MetaResult<ListPage> {
    scan(table, bucket, q, true)
}

fn scan(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    q: &ListQuery,
    markers: bool,
) -> MetaResult<ListPage> {
    let mut page = ListPage::default();
    if q.max == 0 {
        return Ok(page);
    }
    let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
    let (lo, hi) = bucket_bounds(bucket, &q.prefix);
    let base = bucket.len() + 1;
    // The next key to look at, and whether that key itself is excluded.
    let mut start = lo.clone();
    let mut exclusive = false;
    if let Some(after) = q.after.as_deref()
        && after.as_bytes() >= q.prefix.as_bytes()
    {
        start.truncate(base);
        start.extend_from_slice(after.as_bytes());
        exclusive = true;
    }
    'scan: loop {
        let lower = if exclusive {
            std::ops::Bound::Excluded(start.as_slice())
        } else {
            std::ops::Bound::Included(start.as_slice())
        };
        let range = table.range::<&[u8]>((lower, std::ops::Bound::Excluded(hi.as_slice())))?;
        for row in range {
            let (k, v) = row?;
            let Ok(key) = std::str::from_utf8(&k.value()[base..]) else {
                continue;
            };
            if let Some(d) = delimiter
                && let Some(pos) = key[q.prefix.len()..].find(d)
            {
                let cp = &key[..q.prefix.len() + pos + d.len()];
                let seen = q.after.as_deref().is_some_and(|a| cp <= a);
                if !seen {
                    if page.entries.len() == q.max {
                        page.truncated = true;
                        break 'scan;
                    }
                    page.entries.push(ListEntry::Prefix(cp.to_owned()));
                }
                start.truncate(base);
                start.extend_from_slice(cp.as_bytes());
                start.push(0xff);
                exclusive = false;
                continue 'scan;
            }
            let rec: ObjectRecord = decode_record(v.value())?;
            if rec.delete_marker && !markers {
                continue;
            }
            if page.entries.len() == q.max {
                page.truncated = true;
                break 'scan;
            }
            page.entries.push(ListEntry::Object(key.to_owned(), rec));
        }
        break;
    }
    Ok(page)
}
