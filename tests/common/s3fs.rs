//! A real S3 server for the cloud tier: `s3s-fs` (installed by scripts/test.sh)
//! on 127.0.0.1, serving the directories under its root as buckets. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const S3FS_ACCESS_KEY: &str = "tieraccesskey";
pub const S3FS_SECRET_KEY: &str = "tiersecretkey0123456789";

pub struct S3Fs {
    child: Option<Child>,
    pub port: u16,
    root: tempfile::TempDir,
}

impl S3Fs {
    /// Starts s3s-fs with one bucket, `bucket`.
    pub fn start(bucket: &str) -> S3Fs {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join(bucket)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut store = S3Fs {
            child: None,
            port,
            root,
        };
        store.restart();
        store
    }

    /// Starts the server (again) on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(std::env::var("S3S_FS").unwrap_or_else(|_| "s3s-fs".into()))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                S3FS_ACCESS_KEY,
                "--secret-key",
                S3FS_SECRET_KEY,
            ])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs runs (cargo install s3s-fs@0.14.1 --features binary --locked)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("s3s-fs did not listen on {}", self.port);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory holding the objects of `bucket`.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.path().join(bucket)
    }

    /// The settings of `bucket` under `prefix` on this server, as `[segments.s3]`
    /// and `[tier.s3]` take them.
    fn s3_settings(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "endpoint = \"{}\"\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\nregion = \"us-east-1\"\naccess_key = \"{S3FS_ACCESS_KEY}\"\nsecret_key = \"{S3FS_SECRET_KEY}\"\ntimeout_secs = 10\nretries = 2\n",
            self.endpoint()
        )
    }

    /// A hoard config file that keeps segments in `bucket` under `prefix`.
    pub fn hoard_config(&self, dir: &Path, bucket: &str, prefix: &str) -> PathBuf {
        let path = dir.join("cloud.toml");
        let text = format!(
            "[segments]\nbackend = \"s3\"\n[segments.s3]\n{}",
            self.s3_settings(bucket, prefix)
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A hoard config file for mode "tiered": local segments, and a cloud tier in
    /// `bucket` under `prefix`, with `tier` the other keys of `[tier]`.
    pub fn tiered_config(&self, dir: &Path, bucket: &str, prefix: &str, tier: &str) -> PathBuf {
        let path = dir.join("tiered.toml");
        let text = format!(
            "[tier]\n{tier}\n[tier.s3]\n{}",
            self.s3_settings(bucket, prefix)
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Freezes the server (SIGSTOP): requests hang until `thaw`.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("s3s-fs runs").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3Fs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every file below `dir` (an object store's objects), sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
