//! `hoard cert`: the certificates clients and replication sources trust.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// Print the CA and server certificate paths and their SHA-256 fingerprints.
    Show {
        /// The server's data dir (its generated certificates are under tls/).
        #[arg(long, env = "HOARD_DATA_DIR", default_value = "./hoard-data")]
        data_dir: PathBuf,
        /// The server's own certificate, when it was given one with --tls-cert.
        #[arg(long, env = "HOARD_TLS_CERT")]
        tls_cert: Option<PathBuf>,
    },
}

/// `hoard cert show`.
pub fn run(cmd: Command) -> Result<(), String> {
    let Command::Show {
        data_dir,
        tls_cert: own,
    } = cmd;
    let generated = hoard::tls::TlsFiles::generated(&data_dir);
    let cert = own.unwrap_or(generated.cert);
    let chain = hoard::tls::read_certs(&cert).map_err(|e| e.to_string())?;
    if let Some(ca) = generated.ca.filter(|p| p.exists()) {
        let ca_certs = hoard::tls::read_certs(&ca).map_err(|e| e.to_string())?;
        println!("CA certificate (clients trust this file): {}", ca.display());
        if let Some(c) = ca_certs.first() {
            println!("CA SHA-256 fingerprint: {}", hoard::tls::fingerprint(c));
        }
    }
    println!("server certificate: {}", cert.display());
    if let Some(c) = chain.first() {
        println!("server SHA-256 fingerprint: {}", hoard::tls::fingerprint(c));
    }
    Ok(())
}
