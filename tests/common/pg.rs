//! A real PostgreSQL as the metadata engine: `HOARD_TEST_POSTGRES` names a cluster
//! (scripts/test.sh starts a private one with scripts/pg-cluster.sh); every server
//! then gets a database of its own in it, so the same tests run against both engines.

use std::sync::atomic::{AtomicU32, Ordering};

use super::{S3Fs, Server};

const SHARED_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// A site of gateways: one database, one object store (s3s-fs), and the secrets
/// key they share as they share the segments.
pub struct Site {
    pub store: S3Fs,
    _conf: tempfile::TempDir,
    envs: Vec<(String, String)>,
}

impl Site {
    pub fn new(url: &str, extra: &[(&str, &str)]) -> Site {
        let store = S3Fs::start("segs");
        let conf = tempfile::tempdir().unwrap();
        let config = store.hoard_config(conf.path(), "segs", "hoard");
        let mut envs = vec![
            ("HOARD_META".to_owned(), url.to_owned()),
            ("HOARD_SECRETS_KEY".to_owned(), SHARED_KEY.to_owned()),
            ("HOARD_CONFIG".to_owned(), config.display().to_string()),
        ];
        envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Site {
            store,
            _conf: conf,
            envs,
        }
    }

    /// A gateway of the site, with `extra` settings of its own.
    pub fn gateway_with(&self, extra: &[(&str, &str)]) -> Server {
        let mut envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        envs.extend_from_slice(extra);
        Server::start_with_env(&[], &envs)
    }

    pub fn gateway(&self) -> Server {
        self.gateway_with(&[])
    }
}

/// A gateway's id, as its log announces it at start (hex).
pub fn gateway_id(s: &Server) -> String {
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("this gateway holds its lease"))
        .unwrap_or_else(|| panic!("no lease line in the log: {log}"));
    let at = line.find("gateway=").expect("a gateway field") + "gateway=".len();
    line[at..]
        .trim_start_matches('"')
        .chars()
        .take(16)
        .collect()
}

/// The cluster's URL, when the tests run against PostgreSQL.
pub fn cluster_url() -> Option<String> {
    std::env::var("HOARD_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A fresh, empty database in the cluster, as a URL `hoard serve --meta` takes.
pub fn fresh_database() -> Option<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = cluster_url()?;
    let name = format!(
        "hoard_t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    // The synchronous client must not block an async test's thread.
    let (url, db) = (base.clone(), name.clone());
    std::thread::spawn(move || {
        let mut admin = postgres::Client::connect(&url, postgres::NoTls)
            .expect("connect to the cluster of HOARD_TEST_POSTGRES");
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .expect("create a test database");
    })
    .join()
    .expect("test database created");
    let (cluster, _) = base.rsplit_once('/').expect("a URL ending in /database");
    Some(format!("{cluster}/{name}"))
}

/// Every key and value stored in the database at `url`, concatenated: what a reader
/// of the database (or of its files) could see.
pub fn database_bytes(url: &str) -> Vec<u8> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        let tables: Vec<String> = c
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'hoard'",
                &[],
            )
            .expect("list tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = Vec::new();
        for t in tables.iter().filter(|t| *t != "schema_migrations") {
            for row in c
                .query(&format!("SELECT k, v FROM hoard.{t}"), &[])
                .expect("read table")
            {
                out.extend_from_slice(row.get::<_, &[u8]>(0));
                out.extend_from_slice(row.get::<_, &[u8]>(1));
            }
        }
        out
    })
    .join()
    .expect("database read")
}

/// A private cluster of this test process's own (scripts/pg-cluster.sh), for tests
/// that stop and start PostgreSQL or need it whatever `HOARD_TEST_POSTGRES` says.
/// It stops by itself when the process exits.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub url: String,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("hoard-pg")
            .tempdir()
            .expect("tempdir");
        let out = std::process::Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/pg-cluster.sh"
            ))
            .arg("start")
            .arg(dir.path())
            .arg(std::process::id().to_string())
            .output()
            .expect("run scripts/pg-cluster.sh");
        assert!(
            out.status.success(),
            "the cluster did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Cluster { dir, url }
    }

    fn ctl(&self, verb: &str) {
        let out = std::process::Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/pg-cluster.sh"
            ))
            .arg(verb)
            .arg(self.dir.path())
            .output()
            .expect("run scripts/pg-cluster.sh");
        assert!(
            out.status.success(),
            "pg-cluster.sh {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops PostgreSQL (fast shutdown: sessions are cut, as in a restart).
    pub fn stop(&self) {
        self.ctl("stop");
    }

    /// Starts it again on the same port and data.
    pub fn resume(&self) {
        self.ctl("resume");
    }

    /// Runs `sql` on the database `db` of the cluster.
    pub fn execute(&self, db: &str, sql: &str) {
        self.with_client(db, sql, |c, sql| c.batch_execute(sql).expect("sql runs"));
    }

    /// The first column of the first row `sql` answers on database `db`, as text.
    pub fn query_text(&self, db: &str, sql: &str) -> String {
        self.with_client(db, sql, |c, sql| {
            c.query_one(sql, &[]).expect("sql runs").get::<_, String>(0)
        })
    }

    /// Runs `f` with a client of database `db` on a thread of its own (the
    /// synchronous client cannot run on the test's runtime).
    fn with_client<T: Send + 'static>(
        &self,
        db: &str,
        sql: &str,
        f: impl FnOnce(&mut postgres::Client, &str) -> T + Send + 'static,
    ) -> T {
        let (url, sql) = (self.url_of(db), sql.to_owned());
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            f(&mut c, &sql)
        })
        .join()
        .expect("sql thread")
    }

    fn url_of(&self, db: &str) -> String {
        let (cluster, _) = self
            .url
            .rsplit_once('/')
            .expect("a URL ending in /database");
        format!("{cluster}/{db}")
    }

    /// Turns TLS on with this certificate and key (PEM), as the server's.
    pub fn enable_tls(&self, cert: &std::path::Path, key: &std::path::Path) {
        let (cert_at, key_at) = (
            self.dir.path().join("tls.crt"),
            self.dir.path().join("tls.key"),
        );
        std::fs::copy(cert, &cert_at).expect("copy the certificate");
        std::fs::copy(key, &key_at).expect("copy the key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_at, std::fs::Permissions::from_mode(0o600)).unwrap();
        // As root the cluster runs as `postgres` (scripts/pg-cluster.sh).
        let owner = std::fs::metadata(self.dir.path().join("data")).expect("data dir");
        use std::os::unix::fs::MetadataExt;
        for f in [&cert_at, &key_at] {
            std::os::unix::fs::chown(f, Some(owner.uid()), Some(owner.gid())).expect("chown");
        }
        for sql in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert_at.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key_at.display()),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            self.execute("postgres", &sql);
        }
    }

    /// A URL of database `db` in the cluster (created when missing).
    pub fn database(&self, db: &str) -> String {
        self.execute("postgres", &format!("CREATE DATABASE {db}"));
        self.url_of(db)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/pg-cluster.sh"
            ))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
