//! The ordered key-value tables every metadata operation runs on, over one of two
//! engines: redb (embedded, the default) or PostgreSQL (`pg`). The domain operations
//! of `meta` are written once against these types; the types mirror redb's table API
//! (`open_table`, `get`, `insert`, `remove`, `range`, `retain_in`, guards with
//! `value()`), so on redb they are a thin enum around redb's own and cost nothing.
//!
//! Invariants kept here:
//! - Keys sort the same on both engines: a key's bytes on PostgreSQL (`bytea`,
//!   compared bytewise) are redb's bytes of it, except `u64`, which redb stores little
//!   endian and PostgreSQL gets big endian (`SortKey`), so ranges and listing pages
//!   are identical.
//! - A write transaction sees its own writes, and nothing of it is visible to readers
//!   before it commits; a read transaction sees one snapshot. On redb that is redb's
//!   MVCC; on PostgreSQL, `pg` runs writes under the cluster-wide writer lock and
//!   reads in REPEATABLE READ, READ ONLY transactions.

use std::borrow::{Borrow, Cow};
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use redb::{Key, ReadableTable as _, ReadableTableMetadata as _, Value};

use super::MetaResult;
use super::pg::{PgPool, PgRange, PgTable, PgTxn};

/// A key type of a metadata table, with the byte order PostgreSQL compares it by.
pub(super) trait SortKey: Key + 'static {
    /// redb's bytes of a key turned into bytes that sort bytewise as the key does
    /// (and back: the map is its own inverse).
    fn sortable(bytes: &[u8]) -> Cow<'_, [u8]>;
}

impl SortKey for u64 {
    fn sortable(bytes: &[u8]) -> Cow<'_, [u8]> {
        Cow::Owned(bytes.iter().rev().copied().collect())
    }
}

impl SortKey for &'static str {
    fn sortable(bytes: &[u8]) -> Cow<'_, [u8]> {
        Cow::Borrowed(bytes)
    }
}

impl SortKey for &'static [u8] {
    fn sortable(bytes: &[u8]) -> Cow<'_, [u8]> {
        Cow::Borrowed(bytes)
    }
}

fn key_bytes<K: SortKey>(key: &K::SelfType<'_>) -> Vec<u8> {
    K::sortable(K::as_bytes(key).as_ref()).into_owned()
}

fn value_bytes<V: Value>(value: &V::SelfType<'_>) -> Vec<u8> {
    V::as_bytes(value).as_ref().to_vec()
}

/// A table's name and its key and value types.
pub(super) struct TableDefinition<K: Key + 'static, V: Value + 'static> {
    name: &'static str,
    redb: redb::TableDefinition<'static, K, V>,
}

impl<K: Key + 'static, V: Value + 'static> TableDefinition<K, V> {
    pub(super) const fn new(name: &'static str) -> Self {
        TableDefinition {
            name,
            redb: redb::TableDefinition::new(name),
        }
    }
}

impl<K: Key + 'static, V: Value + 'static> Clone for TableDefinition<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Key + 'static, V: Value + 'static> Copy for TableDefinition<K, V> {}

/// A write transaction: one group of the committer's operations.
pub enum WriteTransaction {
    Redb(redb::WriteTransaction),
    Pg(PgTxn),
}

/// A read transaction: one consistent snapshot.
pub enum ReadTransaction {
    Redb(redb::ReadTransaction),
    Pg(PgTxn),
}

impl WriteTransaction {
    pub(super) fn open_table<K: SortKey, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> MetaResult<Table<'_, K, V>> {
        Ok(match self {
            WriteTransaction::Redb(t) => Table::Redb(t.open_table(def.redb)?),
            WriteTransaction::Pg(t) => Table::Pg(t.table(def.name), PhantomData),
        })
    }
}

impl ReadTransaction {
    pub(super) fn open_table<K: SortKey, V: Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> MetaResult<ReadOnlyTable<'_, K, V>> {
        Ok(match self {
            ReadTransaction::Redb(t) => ReadOnlyTable::Redb(t.open_table(def.redb)?, PhantomData),
            ReadTransaction::Pg(t) => ReadOnlyTable::Pg(t.table(def.name), PhantomData),
        })
    }
}

/// A table opened in a write transaction.
pub(super) enum Table<'t, K: Key + 'static, V: Value + 'static> {
    Redb(redb::Table<'t, K, V>),
    Pg(PgTable<'t>, PhantomData<(K, V)>),
}

/// A table opened in a read transaction.
pub(super) enum ReadOnlyTable<'t, K: Key + 'static, V: Value + 'static> {
    Redb(redb::ReadOnlyTable<K, V>, PhantomData<&'t ()>),
    Pg(PgTable<'t>, PhantomData<(K, V)>),
}

/// A stored key or value: borrowed from redb's pages, or fetched from PostgreSQL.
pub(super) enum AccessGuard<'a, V: Value + 'static> {
    Redb(redb::AccessGuard<'a, V>),
    Fetched(Vec<u8>),
}

impl<V: Value + 'static> AccessGuard<'_, V> {
    pub(super) fn value(&self) -> V::SelfType<'_> {
        match self {
            AccessGuard::Redb(g) => g.value(),
            AccessGuard::Fetched(bytes) => V::from_bytes(bytes),
        }
    }
}

fn fetched<'a, V: Value + 'static>(bytes: Option<Vec<u8>>) -> Option<AccessGuard<'a, V>> {
    bytes.map(AccessGuard::Fetched)
}

/// Rows of a table in key order.
pub(super) enum Range<'a, K: Key + 'static, V: Value + 'static> {
    Redb(redb::Range<'a, K, V>),
    Pg(PgRange<'a>, PhantomData<(K, V)>),
}

impl<'a, K: SortKey, V: Value + 'static> Iterator for Range<'a, K, V> {
    type Item = MetaResult<(AccessGuard<'a, K>, AccessGuard<'a, V>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Range::Redb(r) => r.next().map(|row| {
                let (k, v) = row?;
                Ok((AccessGuard::Redb(k), AccessGuard::Redb(v)))
            }),
            Range::Pg(r, _) => r.next().map(|row| {
                let (k, v) = row?;
                Ok((
                    AccessGuard::Fetched(K::sortable(&k).into_owned()),
                    AccessGuard::Fetched(v),
                ))
            }),
        }
    }
}

fn sortable_bounds<'a, K: SortKey, KR: Borrow<K::SelfType<'a>> + 'a>(
    range: &impl RangeBounds<KR>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let bound = |b: Bound<&KR>| match b {
        Bound::Included(k) => Bound::Included(key_bytes::<K>(k.borrow())),
        Bound::Excluded(k) => Bound::Excluded(key_bytes::<K>(k.borrow())),
        Bound::Unbounded => Bound::Unbounded,
    };
    (bound(range.start_bound()), bound(range.end_bound()))
}

/// What both kinds of table answer.
pub(super) trait ReadableTable<K: SortKey, V: Value + 'static> {
    fn get<'a>(&self, key: impl Borrow<K::SelfType<'a>>) -> MetaResult<Option<AccessGuard<'_, V>>>;

    fn range<'a, KR>(&self, range: impl RangeBounds<KR> + 'a) -> MetaResult<Range<'_, K, V>>
    where
        KR: Borrow<K::SelfType<'a>> + 'a;

    fn iter(&self) -> MetaResult<Range<'_, K, V>> {
        self.range::<K::SelfType<'_>>(..)
    }

    fn is_empty(&self) -> MetaResult<bool>;
}

macro_rules! readable_table {
    ($table:ident, $redb:pat => $inner:expr) => {
        impl<K: SortKey, V: Value + 'static> ReadableTable<K, V> for $table<'_, K, V> {
            fn get<'a>(
                &self,
                key: impl Borrow<K::SelfType<'a>>,
            ) -> MetaResult<Option<AccessGuard<'_, V>>> {
                match self {
                    $redb => Ok($inner.get(key)?.map(AccessGuard::Redb)),
                    $table::Pg(t, _) => Ok(fetched(t.get(&key_bytes::<K>(key.borrow()))?)),
                }
            }

            fn range<'a, KR>(&self, range: impl RangeBounds<KR> + 'a) -> MetaResult<Range<'_, K, V>>
            where
                KR: Borrow<K::SelfType<'a>> + 'a,
            {
                match self {
                    $redb => Ok(Range::Redb($inner.range(range)?)),
                    $table::Pg(t, _) => {
                        let (lo, hi) = sortable_bounds::<K, KR>(&range);
                        Ok(Range::Pg(t.range(lo, hi), PhantomData))
                    }
                }
            }

            fn is_empty(&self) -> MetaResult<bool> {
                match self {
                    $redb => Ok($inner.is_empty()?),
                    $table::Pg(t, _) => t.is_empty(),
                }
            }
        }
    };
}

readable_table!(Table, Table::Redb(t) => t);
readable_table!(ReadOnlyTable, ReadOnlyTable::Redb(t, _) => t);

impl<K: SortKey, V: Value + 'static> Table<'_, K, V> {
    /// Sets `key` to `value`; answers the value it replaced.
    pub(super) fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> MetaResult<Option<AccessGuard<'_, V>>> {
        match self {
            Table::Redb(t) => Ok(t.insert(key, value)?.map(AccessGuard::Redb)),
            Table::Pg(t, _) => Ok(fetched(t.insert(
                &key_bytes::<K>(key.borrow()),
                &value_bytes::<V>(value.borrow()),
            )?)),
        }
    }

    /// Removes `key`; answers the value it had.
    pub(super) fn remove<'a>(
        &mut self,
        key: impl Borrow<K::SelfType<'a>>,
    ) -> MetaResult<Option<AccessGuard<'_, V>>> {
        match self {
            Table::Redb(t) => Ok(t.remove(key)?.map(AccessGuard::Redb)),
            Table::Pg(t, _) => Ok(fetched(t.remove(&key_bytes::<K>(key.borrow()))?)),
        }
    }

    /// Keeps the rows for which `keep` answers true.
    pub(super) fn retain<F>(&mut self, keep: F) -> MetaResult<()>
    where
        F: for<'f> FnMut(K::SelfType<'f>, V::SelfType<'f>) -> bool,
    {
        self.retain_in::<K::SelfType<'_>, F>(.., keep)
    }

    /// Keeps the rows of `range` for which `keep` answers true.
    pub(super) fn retain_in<'a, KR, F>(
        &mut self,
        range: impl RangeBounds<KR> + 'a,
        mut keep: F,
    ) -> MetaResult<()>
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
        F: for<'f> FnMut(K::SelfType<'f>, V::SelfType<'f>) -> bool,
    {
        match self {
            Table::Redb(t) => Ok(t.retain_in(range, keep)?),
            Table::Pg(t, _) => {
                let (lo, hi) = sortable_bounds::<K, KR>(&range);
                let mut doomed = Vec::new();
                for row in t.range(lo, hi) {
                    let (k, v) = row?;
                    let redb_key = K::sortable(&k);
                    if !keep(K::from_bytes(&redb_key), V::from_bytes(&v)) {
                        doomed.push(k);
                    }
                }
                t.remove_all(&doomed)
            }
        }
    }
}

/// The engine under the tables.
pub(super) enum Engine {
    Redb(redb::Database),
    Pg(PgPool),
}

impl Engine {
    /// A write transaction; `durable` asks that its commit survive a crash.
    pub(super) fn begin_write(&self, durable: bool) -> MetaResult<WriteTransaction> {
        match self {
            Engine::Redb(db) => {
                let mut txn = db.begin_write()?;
                txn.set_durability(if durable {
                    redb::Durability::Immediate
                } else {
                    redb::Durability::None
                })?;
                Ok(WriteTransaction::Redb(txn))
            }
            Engine::Pg(pool) => Ok(WriteTransaction::Pg(pool.begin_write(durable)?)),
        }
    }

    pub(super) fn begin_read(&self) -> MetaResult<ReadTransaction> {
        match self {
            Engine::Redb(db) => Ok(ReadTransaction::Redb(redb::ReadableDatabase::begin_read(
                db,
            )?)),
            Engine::Pg(pool) => Ok(ReadTransaction::Pg(pool.begin_read()?)),
        }
    }

    /// Whether the engine answers now: always for redb; a round trip for PostgreSQL.
    pub(super) fn ping(&self) -> MetaResult<()> {
        match self {
            Engine::Redb(_) => Ok(()),
            Engine::Pg(pool) => pool.ping(),
        }
    }
}

impl WriteTransaction {
    pub(super) fn commit(self) -> MetaResult<()> {
        match self {
            WriteTransaction::Redb(t) => Ok(t.commit()?),
            WriteTransaction::Pg(t) => t.commit(),
        }
    }

    /// Discards every change; dropping a PostgreSQL transaction rolls it back.
    pub(super) fn abort(self) {
        if let WriteTransaction::Redb(t) = self {
            t.abort().ok();
        }
    }
}
