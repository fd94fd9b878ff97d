//! `tls` owns hoard's TLS: the rustls server configuration (TLS 1.2 and 1.3 only, the
//! ring provider), the private CA and server certificate generated on first start
//! under `<data-dir>/tls/`, a user's own PEM certificate and key, and their reload on
//! SIGHUP.
//!
//! Invariants:
//! - No protocol older than TLS 1.2 is ever negotiated.
//! - Generated files are written to a temporary name, fsynced and renamed; private keys
//!   are created mode 0600. Existing files are never overwritten: a restart reuses them.
//! - A reload swaps the certificate for new handshakes only; connections already
//!   established keep theirs. A reload that fails (unreadable or mismatched files)
//!   keeps the certificate in use and is logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_RSA_SHA256,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("generating the certificate failed: {0}")]
    Generate(String),
    #[error("the TLS configuration is invalid: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")]
    Fingerprint(String),
}

/// The key type of generated certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    #[default]
    EcdsaP256,
    /// RSA 4096, as the appliances hoard replaces use.
    Rsa4096,
}

/// Where the CA and the server certificate and key live.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA clients and replication peers trust (none for a user's own certificate).
    pub ca: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The generated files under `<data_dir>/tls/`.
    pub fn generated(data_dir: &Path) -> TlsFiles {
        let dir = data_dir.join("tls");
        TlsFiles {
            ca: Some(dir.join("ca.pem")),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn generate_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// Writes `data` to `path` durably (`durable`); `secret` makes it 0600.
fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), TlsError> {
    crate::durable::write(path, data, if secret { 0o600 } else { 0o644 }).map_err(io(path))
}

fn new_key(kind: KeyType) -> Result<KeyPair, TlsError> {
    match kind {
        KeyType::EcdsaP256 => KeyPair::generate().map_err(generate_error),
        KeyType::Rsa4096 => {
            use rsa::pkcs8::EncodePrivateKey as _;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 4096)
                .map_err(generate_error)?;
            let der = key.to_pkcs8_der().map_err(generate_error)?;
            KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &PKCS_RSA_SHA256)
                .map_err(generate_error)
        }
    }
}

/// The names a generated server certificate covers: the configured host names,
/// localhost, 127.0.0.1, ::1 and the machine's host name.
pub fn server_names(hostnames: &[String]) -> Vec<String> {
    let mut names: Vec<String> = hostnames.to_vec();
    names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    if let Some(h) = machine_hostname() {
        names.push(h);
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

fn machine_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    std::str::from_utf8(&buf[..end]).ok().map(str::to_owned)
}

/// Generates the private CA and a server certificate it signs, unless the files exist.
/// Returns true when it generated them.
pub fn ensure_generated(
    data_dir: &Path,
    hostnames: &[String],
    kind: KeyType,
) -> Result<bool, TlsError> {
    let files = TlsFiles::generated(data_dir);
    if files.cert.exists() && files.key.exists() {
        return Ok(false);
    }
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let now = time::OffsetDateTime::now_utc();

    let ca_key = new_key(kind)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(generate_error)?;
    let host = machine_hostname().unwrap_or_else(|| "hoard".into());
    ca.distinguished_name
        .push(DnType::CommonName, format!("hoard private CA ({host})"));
    ca.distinguished_name
        .push(DnType::OrganizationName, "hoard");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - time::Duration::hours(1);
    ca.not_after = now + time::Duration::days(20 * 365);
    let ca_cert = ca.self_signed(&ca_key).map_err(generate_error)?;

    let server_key = new_key(kind)?;
    let mut server = CertificateParams::new(server_names(hostnames)).map_err(generate_error)?;
    server
        .distinguished_name
        .push(DnType::CommonName, format!("hoard ({host})"));
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = now - time::Duration::hours(1);
    server.not_after = now + time::Duration::days(825);
    let issuer = Issuer::new(ca, &ca_key);
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .map_err(generate_error)?;

    write_file(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes(), true)?;
    if let Some(ca_path) = &files.ca {
        write_file(ca_path, ca_cert.pem().as_bytes(), false)?;
    }
    write_file(&files.key, server_key.serialize_pem().as_bytes(), true)?;
    // The chain: the server certificate, then the CA.
    let chain = format!("{}{}", server_cert.pem(), ca_cert.pem());
    write_file(&files.cert, chain.as_bytes(), false)?;
    tracing::info!(dir = %dir.display(), ?kind, "generated a private CA and server certificate");
    Ok(true)
}

/// Reads a PEM certificate chain.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_certs(&pem, path)
}

/// When the first certificate of the PEM file `path` (a server's leaf) expires, in
/// unix seconds.
pub fn expiry(path: &Path) -> Result<i64, TlsError> {
    let certs = read_certs(path)?;
    let pem_error = |reason: String| TlsError::Pem {
        path: path.to_owned(),
        reason,
    };
    let first = certs
        .first()
        .ok_or_else(|| pem_error("no certificate".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref())
        .map_err(|e| pem_error(format!("unreadable certificate: {e}")))?;
    Ok(cert.validity().not_after.timestamp())
}

/// The certificates in PEM text that came from `path` (named in errors).
pub fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// Loads a certificate chain and its private key, checking that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, der, &provider)?;
    Ok(Arc::new(ck))
}

/// The SHA-256 fingerprint of a DER certificate, as colon-separated hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Serves the current certificate; `reload` swaps it for new handshakes.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn load(files: TlsFiles) -> Result<Arc<CertStore>, TlsError> {
        let current = RwLock::new(load_certified_key(&files.cert, &files.key)?);
        Ok(Arc::new(CertStore { files, current }))
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = load_certified_key(&self.files.cert, &self.files.key)?;
        let fp = ck.cert.first().map(fingerprint).unwrap_or_default();
        if let Ok(mut cur) = self.current.write() {
            *cur = ck;
        }
        tracing::info!(cert = %self.files.cert.display(), fingerprint = %fp, "TLS certificate reloaded");
        Ok(())
    }

    /// The rustls configuration: TLS 1.2 and 1.3, HTTP/1.1, this store's certificate,
    /// AES-128-GCM first whatever the client prefers (the bulk cipher is most of the
    /// cost of a large GET, and AES-128 does fewer rounds than AES-256).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        use rustls::crypto::ring::cipher_suite as cs;
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ];
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        cfg.ignore_client_order = true;
        Ok(Arc::new(cfg))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// A rustls client configuration trusting exactly the CA certificates in `ca` (for the
/// CLI and, later, replication peers); with no file, nothing is trusted.
pub fn client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let certs = match ca {
        Some(ca) => read_certs(ca)?,
        None => Vec::new(),
    };
    ca_client_config(certs)
}

/// A rustls client configuration trusting exactly `cas`.
pub fn ca_client_config(
    cas: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in cas {
        roots.add(c)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client configuration that trusts exactly one server certificate, named by the
/// SHA-256 of its DER (hex, colons and case ignored): a replication peer pinned with
/// `--target-fingerprint`. Handshake signatures are still verified with the
/// certificate's key.
pub fn pinned_client_config(fingerprint: &str) -> Result<rustls::ClientConfig, TlsError> {
    let want = normalize_fingerprint(fingerprint)
        .ok_or_else(|| TlsError::Fingerprint(fingerprint.to_owned()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCert {
        want,
        algorithms: provider.signature_verification_algorithms,
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Lowercase hex without separators, if `s` is 32 bytes of hex.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

#[derive(Debug)]
struct PinnedCert {
    want: String,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let got = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            end_entity.as_ref(),
        ));
        if got == self.want {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_server_certificate_expires_in_825_days() {
        let dir = tempfile::tempdir().unwrap();
        ensure_generated(dir.path(), &["localhost".into()], KeyType::EcdsaP256).unwrap();
        let files = TlsFiles::generated(dir.path());
        let at = expiry(&files.cert).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((at - now - 825 * 86_400).abs() < 60, "{at} vs {now}");
        let missing = expiry(&dir.path().join("none.pem")).unwrap_err();
        assert!(missing.to_string().contains("none.pem"));
    }
}
