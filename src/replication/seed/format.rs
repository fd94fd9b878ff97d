//! The seed's files: `seed.json`, the names of chunk and objects files, the entries
//! of an objects file, and sealing each file under the passphrase's key.

use super::*;

/// One entry of an objects file.
pub(super) enum Entry<'a> {
    /// A part (not the last) of the version that follows: its index and manifest.
    Part(u32, &'a [u8]),
    /// A version: `wire::encode_object` with the manifest of its last part.
    Version(&'a [u8]),
}

pub(super) fn pack_name(step: u64, file: u32) -> String {
    format!("{step:08}-{file:04}.chunks")
}

pub(super) fn objects_name(step: u64, file: u32) -> String {
    format!("{step:08}-{file:04}.objects")
}

pub(super) fn decode_objects(mut b: &[u8]) -> Result<Vec<(String, Entry<'_>)>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key =
            String::from_utf8(take_item(&mut b)?.to_vec()).map_err(|_| "a key is not UTF-8")?;
        let entry = match take_item(&mut b)?.split_first() {
            Some((b'V', object)) => Entry::Version(object),
            Some((b'P', rest)) if rest.len() >= 4 => {
                let (n, manifest) = rest.split_at(4);
                Entry::Part(u32::from_le_bytes([n[0], n[1], n[2], n[3]]), manifest)
            }
            _ => return Err("an entry of unknown kind".into()),
        };
        out.push((key, entry));
    }
    Ok(out)
}

/// A length-prefixed (u32 LE) item from the front of `b`.
pub(super) fn take_item<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let (len, rest) = b.split_at_checked(4).ok_or("an entry is cut short")?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (item, rest) = rest.split_at_checked(len).ok_or("an entry is cut short")?;
    *b = rest;
    Ok(item)
}

/// Reads `seed.json`, or writes a new one for a new export; checks that the
/// request matches it, and returns the sealer.
pub(super) fn open_or_create(
    dir: &Path,
    req: &ExportRequest,
) -> Result<(SeedManifest, Option<SecretBox>), SeedError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(m) = read_manifest(dir)? {
        if m.bucket != req.bucket {
            return Err(SeedError::Invalid(format!(
                "{} holds a seed of bucket {}; use another directory",
                dir.display(),
                m.bucket
            )));
        }
        let sealer = unsealer(&m, req.passphrase.as_deref())?;
        return Ok((m, sealer));
    }
    let (salt, sealer) = match req.passphrase.as_deref() {
        Some(p) => {
            use ring::rand::SecureRandom;
            let mut salt = [0u8; 16];
            ring::rand::SystemRandom::new()
                .fill(&mut salt)
                .map_err(|_| SeedError::Invalid("no randomness for the salt".into()))?;
            (
                Some(hex::encode(salt)),
                Some(SecretBox::from_passphrase(p, &salt)),
            )
        }
        None => (None, None),
    };
    let check = match &sealer {
        Some(s) => Some(hex::encode(
            s.seal_bytes(MANIFEST, CHECK.as_bytes().to_vec())
                .map_err(|e| SeedError::Invalid(e.to_string()))?,
        )),
        None => None,
    };
    let m = SeedManifest {
        format: FORMAT,
        bucket: req.bucket.clone(),
        created_ms: crate::meta::now_ms(),
        salt,
        check,
        progress: SeedProgress::default(),
    };
    write_file(dir, MANIFEST, &serde_json::to_vec_pretty(&m)?)?;
    Ok((m, sealer))
}

pub(super) fn read_manifest(dir: &Path) -> Result<Option<SeedManifest>, SeedError> {
    let path = dir.join(MANIFEST);
    match std::fs::read(&path) {
        Ok(b) => {
            let m: SeedManifest = serde_json::from_slice(&b)
                .map_err(|e| SeedError::Invalid(format!("{}: {e}", path.display())))?;
            if m.format != FORMAT {
                return Err(SeedError::Invalid(format!(
                    "seed format {} is not {FORMAT}, the one this hoard reads",
                    m.format
                )));
            }
            Ok(Some(m))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// The sealer of a seed: `None` for a plain seed; refuses a passphrase that does
/// not open it, a missing one, or one given for a plain seed.
pub(super) fn unsealer(
    m: &SeedManifest,
    passphrase: Option<&str>,
) -> Result<Option<SecretBox>, SeedError> {
    match (&m.salt, &m.check, passphrase) {
        (None, _, None) => Ok(None),
        (None, _, Some(_)) => Err(SeedError::Invalid(
            "this seed is not encrypted; give no passphrase".into(),
        )),
        (Some(_), _, None) => Err(SeedError::Invalid(
            "this seed is encrypted; give its passphrase".into(),
        )),
        (Some(salt), check, Some(p)) => {
            let salt = hex::decode(salt).map_err(|_| SeedError::Invalid("bad salt".into()))?;
            let sealer = SecretBox::from_passphrase(p, &salt);
            let opened = check
                .as_deref()
                .and_then(|c| hex::decode(c).ok())
                .and_then(|c| sealer.open_bytes(MANIFEST, c));
            match opened.as_deref() == Some(CHECK.as_bytes()) {
                true => Ok(Some(sealer)),
                false => Err(SeedError::WrongPassphrase),
            }
        }
    }
}

pub(super) fn write_sealed(
    dir: &Path,
    name: &str,
    data: Vec<u8>,
    sealer: Option<&SecretBox>,
) -> Result<(), SeedError> {
    let data = match sealer {
        Some(s) => s
            .seal_bytes(name, data)
            .map_err(|e| SeedError::Invalid(e.to_string()))?,
        None => data,
    };
    write_file(dir, name, &data)
}

pub(super) fn read_sealed(
    dir: &Path,
    name: &str,
    sealer: Option<&SecretBox>,
) -> Result<Option<Vec<u8>>, SeedError> {
    let data = match std::fs::read(dir.join(name)) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&dir.join(name))(e)),
    };
    match sealer {
        None => Ok(Some(data)),
        Some(s) => s.open_bytes(name, data).map(Some).ok_or_else(|| {
            SeedError::Import(format!(
                "{name} does not open: altered, or not of this seed"
            ))
        }),
    }
}

pub(super) fn write_file(dir: &Path, name: &str, data: &[u8]) -> Result<(), SeedError> {
    let path = dir.join(name);
    crate::durable::write_via(&dir.join(format!(".{name}.tmp")), &path, data, 0o644)
        .map_err(io_err(&path))
}

pub(super) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SeedError + '_ {
    move |source| SeedError::Io {
        path: path.to_owned(),
        source,
    }
}
