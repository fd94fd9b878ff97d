//! A second real S3 server for the cloud tier: moto's server (PyPI `moto[server]`,
//! installed by scripts/test.sh) on 127.0.0.1, objects in its memory. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts moto_server and creates `bucket` in it.
    pub async fn start(bucket: &str) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server runs (pip install 'moto[server]')");
        let moto = Moto { child, port };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        moto.client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("moto creates the bucket");
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An S3 client of the moto server itself (any key will do for moto).
    pub fn client(&self) -> aws_sdk_s3::Client {
        super::client_for(&self.endpoint(), "motokey", "motosecret", true)
    }

    /// A hoard config file that keeps segments in `bucket` under `prefix`.
    pub fn hoard_config(&self, dir: &Path, bucket: &str, prefix: &str) -> PathBuf {
        let path = dir.join("moto.toml");
        let text = format!(
            "[segments]\nbackend = \"s3\"\n[segments.s3]\nendpoint = \"{}\"\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\nregion = \"us-east-1\"\naccess_key = \"motokey\"\nsecret_key = \"motosecret\"\ntimeout_secs = 10\nretries = 2\n",
            self.endpoint()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Keys of the objects in `bucket` under `prefix`.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
