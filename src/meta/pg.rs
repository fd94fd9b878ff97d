//! The PostgreSQL engine of the metadata tables (`hoard serve --meta postgres://…`):
//! one PostgreSQL table per metadata table in the schema `hoard` (`k bytea PRIMARY
//! KEY, v bytea`), a pool of connections (r2d2) for reads, versioned schema
//! migrations, and the cluster-wide writer lock.
//!
//! Invariants kept here:
//! - Write transactions of every gateway are serialised by one transaction-level
//!   advisory lock (`WRITER_LOCK`), taken first in each transaction: a gateway's
//!   group of operations runs as if it were the only writer, as on redb, so every
//!   domain operation keeps its atomicity and its re-checks unchanged. READ COMMITTED
//!   is enough under that lock: no other writer commits while it is held.
//! - Reads run in REPEATABLE READ, READ ONLY transactions: one snapshot per read,
//!   pages of a range included.
//! - A group that asked for no durability commits with `synchronous_commit = off`:
//!   PostgreSQL may lose it in a crash only together with every later commit (its
//!   WAL is one sequence), which is what `meta` requires of non-durable operations.
//! - Migrations run at start-up under a session-level advisory lock
//!   (`MIGRATION_LOCK`), each in its own transaction with its version row; a schema
//!   newer than this binary knows is refused, never touched.
//! - The connection is encrypted when the URL says `sslmode=require` (refused if the
//!   server does not offer TLS) and the server's certificate chains to the CA file
//!   the gateway was given (`meta_ca`); without a CA file, TLS is not attempted.
//! - No call waits forever: statements, lock waits and idle transactions have
//!   timeouts (`SESSION_SETTINGS`), and the pool's `get` a connection timeout.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::time::Duration;

use postgres::{Client, NoTls, Statement};
use r2d2::{ManageConnection, Pool, PooledConnection};

use super::{MetaError, MetaResult};

/// Key of the transaction-level advisory lock every write transaction takes.
const WRITER_LOCK: i64 = 0x686f_6172_6401;
/// Key of the session-level advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x686f_6172_6402;
/// Rows fetched per round trip while a range is read.
const RANGE_PAGE: i64 = 1000;

/// Set on every connection: no statement, lock wait or forgotten transaction lasts
/// for ever (a gateway that dies mid-transaction loses the writer lock with it).
const SESSION_SETTINGS: &str = "SET statement_timeout = '120s'; SET lock_timeout = '120s'; \
     SET idle_in_transaction_session_timeout = '60s'; SET client_min_messages = warning";

/// The schema migrations, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("pg/0001_tables.sql")),
    (2, include_str!("pg/0002_gateways.sql")),
    (3, include_str!("pg/0003_workers.sql")),
    (4, include_str!("pg/0004_rule_cursors.sql")),
    (5, include_str!("pg/0005_stats_history.sql")),
];

/// The newest schema this binary knows.
pub(super) const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

impl From<postgres::Error> for MetaError {
    fn from(e: postgres::Error) -> Self {
        let unreachable = e.is_closed()
            || e.code().is_some_and(|c| {
                let code = c.code();
                code.starts_with("08") || code.starts_with("57P") || code == "53300"
            })
            || e.as_db_error().is_none();
        if unreachable {
            MetaError::Unavailable(e.to_string())
        } else {
            MetaError::Database(e.to_string())
        }
    }
}

impl From<r2d2::Error> for MetaError {
    fn from(e: r2d2::Error) -> Self {
        MetaError::Unavailable(e.to_string())
    }
}

/// One connection and the statements prepared on it.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PgConn {
    fn statement(&mut self, sql: &str) -> MetaResult<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> MetaResult<Vec<postgres::Row>> {
        let s = self.statement(sql)?;
        Ok(self.client.query(&s, params)?)
    }
}

/// Opens connections for the pool: over TLS when the URL's `sslmode` asks for it
/// (`require`; `prefer`, the default, uses TLS when the server offers it) and a TLS
/// configuration was given, else in the clear.
pub struct PgManager {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// A connection that could not be made, with the whole chain of causes in its text
/// (the pool keeps only the text: "error performing TLS handshake" alone would not
/// say that the certificate was refused).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(String);

impl From<postgres::Error> for ConnectError {
    fn from(e: postgres::Error) -> Self {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text = format!("{text}: {c}");
            cause = c.source();
        }
        ConnectError(text)
    }
}

impl ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = ConnectError;

    fn connect(&self) -> Result<PgConn, ConnectError> {
        let mut client = match &self.tls {
            Some(tls) => self.config.connect(tls.clone())?,
            None => self.config.connect(NoTls)?,
        };
        client.batch_execute(SESSION_SETTINGS)?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), ConnectError> {
        Ok(conn.client.simple_query("").map(|_| ())?)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// The connection pool of one gateway.
pub struct PgPool {
    pool: Pool<PgManager>,
}

impl PgPool {
    /// Connects to `url` (a libpq URL or key=value string), over TLS with `tls` when
    /// given, runs the migrations and answers the pool.
    pub(super) fn open(
        url: &str,
        size: u32,
        tls: Option<rustls::ClientConfig>,
    ) -> MetaResult<PgPool> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| MetaError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_ssl_mode() == postgres::config::SslMode::Require && tls.is_none() {
            return Err(MetaError::Database(
                "the URL asks for sslmode=require: give the CA certificates the server's certificate chains to (meta_ca, --meta-ca, HOARD_META_CA)".into(),
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("hoard");
        let pool = Pool::builder()
            .max_size(size.max(2))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(5))
            // No round trip to test a connection on every checkout: a broken one is
            // known by its closed socket, and a statement on it fails the request
            // with 503 once.
            .test_on_check_out(false)
            // A request that cannot get a connection says so itself (503).
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(PgManager {
                config,
                tls: tls.map(tokio_postgres_rustls::MakeRustlsConnect::new),
            })?;
        let mut conn = pool.get()?;
        migrate(&mut conn.client)?;
        Ok(PgPool { pool })
    }

    /// A write transaction holding the cluster-wide writer lock.
    pub(super) fn begin_write(&self, durable: bool) -> MetaResult<PgTxn> {
        let sync = if durable { "on" } else { "off" };
        self.begin(&format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = {sync}; \
             SELECT pg_advisory_xact_lock({WRITER_LOCK})"
        ))
    }

    /// A read transaction on one snapshot.
    pub(super) fn begin_read(&self) -> MetaResult<PgTxn> {
        self.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    }

    /// Begins a transaction with `sql` on a pooled connection. Connections are not
    /// tested when taken from the pool (that would cost a round trip each time): one
    /// the database dropped (a restart) fails its BEGIN, is discarded, and the next
    /// is tried, so a restart fails no request once the database is back.
    fn begin(&self, sql: &str) -> MetaResult<PgTxn> {
        let mut dropped = None;
        for _ in 0..=self.pool.max_size() {
            let txn = PgTxn::new(self.pool.get()?);
            let begun = txn.conn.borrow_mut().client.batch_execute(sql);
            match begun {
                Ok(()) => {
                    txn.open.set(true);
                    return Ok(txn);
                }
                Err(e) if e.is_closed() || e.as_db_error().is_none() => dropped = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(dropped.map_or_else(
            || MetaError::Unavailable("no usable connection".into()),
            MetaError::from,
        ))
    }

    /// Whether the database answers now (the gateway's `/ready`).
    pub(super) fn ping(&self) -> MetaResult<()> {
        self.begin_read().map(drop)
    }
}

fn migrate(client: &mut Client) -> MetaResult<()> {
    client.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    let result = apply_migrations(client);
    let unlocked = client.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    result?;
    unlocked?;
    Ok(())
}

fn apply_migrations(client: &mut Client) -> MetaResult<()> {
    client.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS hoard; \
         CREATE TABLE IF NOT EXISTS hoard.schema_migrations \
           (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )?;
    let current: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM hoard.schema_migrations",
            &[],
        )?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(MetaError::Corrupt(format!(
            "the metadata database has schema version {current}; this hoard knows versions up to {SCHEMA_VERSION} and will not touch it (upgrade hoard)"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let mut txn = client.transaction()?;
        txn.batch_execute(sql)?;
        txn.execute(
            "INSERT INTO hoard.schema_migrations (version) VALUES ($1)",
            &[version],
        )?;
        txn.commit()?;
        tracing::info!(version, "metadata database: schema migration applied");
    }
    Ok(())
}

/// A transaction on one pooled connection: a write group or a read snapshot. Dropped
/// without `commit`, it rolls back.
pub struct PgTxn {
    conn: RefCell<PooledConnection<PgManager>>,
    open: Cell<bool>,
}

impl PgTxn {
    fn new(conn: PooledConnection<PgManager>) -> PgTxn {
        PgTxn {
            conn: RefCell::new(conn),
            open: Cell::new(false),
        }
    }

    pub(super) fn table(&self, name: &'static str) -> PgTable<'_> {
        PgTable { txn: self, name }
    }

    pub(super) fn commit(self) -> MetaResult<()> {
        self.open.set(false);
        self.conn.borrow_mut().client.batch_execute("COMMIT")?;
        Ok(())
    }

    fn query(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> MetaResult<Vec<postgres::Row>> {
        self.conn.borrow_mut().query(sql, params)
    }
}

impl Drop for PgTxn {
    fn drop(&mut self) {
        if self.open.get() {
            let conn = self.conn.get_mut();
            if conn.client.batch_execute("ROLLBACK").is_err() {
                tracing::warn!("metadata database: a transaction could not be rolled back");
            }
        }
    }
}

/// One metadata table inside a transaction.
#[derive(Clone, Copy)]
pub struct PgTable<'t> {
    txn: &'t PgTxn,
    name: &'static str,
}

fn first_bytes(rows: &[postgres::Row]) -> MetaResult<Option<Vec<u8>>> {
    rows.first().map(|r| Ok(r.try_get(0)?)).transpose()
}

impl<'t> PgTable<'t> {
    pub(super) fn get(&self, key: &[u8]) -> MetaResult<Option<Vec<u8>>> {
        let sql = format!("SELECT v FROM hoard.{} WHERE k = $1", self.name);
        first_bytes(&self.txn.query(&sql, &[&key])?)
    }

    pub(super) fn insert(&self, key: &[u8], value: &[u8]) -> MetaResult<Option<Vec<u8>>> {
        let sql = format!(
            "WITH old AS (SELECT v FROM hoard.{t} WHERE k = $1), \
             put AS (INSERT INTO hoard.{t} (k, v) VALUES ($1, $2) \
                     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v) \
             SELECT v FROM old",
            t = self.name
        );
        first_bytes(&self.txn.query(&sql, &[&key, &value])?)
    }

    pub(super) fn remove(&self, key: &[u8]) -> MetaResult<Option<Vec<u8>>> {
        let sql = format!("DELETE FROM hoard.{} WHERE k = $1 RETURNING v", self.name);
        first_bytes(&self.txn.query(&sql, &[&key])?)
    }

    pub(super) fn remove_all(&self, keys: &[Vec<u8>]) -> MetaResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let sql = format!("DELETE FROM hoard.{} WHERE k = ANY($1)", self.name);
        self.txn.query(&sql, &[&keys])?;
        Ok(())
    }

    pub(super) fn is_empty(&self) -> MetaResult<bool> {
        let sql = format!("SELECT 1 FROM hoard.{} LIMIT 1", self.name);
        Ok(self.txn.query(&sql, &[])?.is_empty())
    }

    /// The rows between `lo` and `hi` (sortable key bytes), in key order, fetched a
    /// page at a time.
    pub(super) fn range(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> PgRange<'t> {
        PgRange {
            table: *self,
            lo,
            hi,
            page: VecDeque::new(),
            done: false,
        }
    }

    fn page(&self, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> MetaResult<Vec<postgres::Row>> {
        let mut sql = format!("SELECT k, v FROM hoard.{} WHERE true", self.name);
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = Vec::new();
        for (bound, incl, excl) in [(lo, ">=", ">"), (hi, "<=", "<")] {
            let (op, key) = match bound {
                Bound::Included(k) => (incl, k),
                Bound::Excluded(k) => (excl, k),
                Bound::Unbounded => continue,
            };
            params.push(key);
            sql.push_str(&format!(" AND k {op} ${}", params.len()));
        }
        sql.push_str(&format!(" ORDER BY k LIMIT {RANGE_PAGE}"));
        self.txn.query(&sql, &params)
    }
}

/// Rows of a range, fetched `RANGE_PAGE` at a time.
pub struct PgRange<'t> {
    table: PgTable<'t>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    page: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl Iterator for PgRange<'_> {
    type Item = MetaResult<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            match self.table.page(&self.lo, &self.hi) {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < RANGE_PAGE;
                    let page: Result<VecDeque<_>, postgres::Error> = rows
                        .iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                        .collect();
                    match page {
                        Ok(p) => self.page = p,
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e.into()));
                        }
                    }
                    if let Some((k, _)) = self.page.back() {
                        self.lo = Bound::Excluded(k.clone());
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}
