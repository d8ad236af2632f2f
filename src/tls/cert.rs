//! Certificates: loading a PEM chain and key, checking them (dates, key against certificate), and the
//! self-signed certificate the embedded default creates so that `curl --ssl-reqd -k` works at once.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("{path}: no certificate in the file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: the certificate cannot be parsed: {why}")]
    Parse { path: PathBuf, why: String },
    #[error("the key does not match the certificate ({0})")]
    Mismatch(String),
    #[error("cannot create a self-signed certificate: {0}")]
    Generate(String),
}

/// A certificate chain and its key, as loaded from PEM files.
pub struct CertKey {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for CertKey {
    fn clone(&self) -> CertKey {
        CertKey {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// What an operator needs to know about the leaf certificate.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub subject: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// SHA-256 of the leaf's DER, as `AA:BB:...` (what browsers and `openssl x509 -fingerprint
    /// -sha256` print).
    pub fingerprint: String,
}

impl CertInfo {
    pub fn expired(&self, now: SystemTime) -> bool {
        now > self.not_after
    }
    pub fn not_yet_valid(&self, now: SystemTime) -> bool {
        now < self.not_before
    }
}

/// Loads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load(cert: &Path, key: &Path) -> Result<CertKey, CertError> {
    let read_err = |path: &Path, e: &dyn std::fmt::Display| CertError::Read {
        path: path.to_owned(),
        why: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read_err(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(cert, &e))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, &e))?;
    Ok(CertKey { chain, key })
}

/// Reads the leaf certificate's subject, validity and fingerprint.
pub fn inspect(leaf: &CertificateDer<'_>, path: &Path) -> Result<CertInfo, CertError> {
    let (_, x509) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| CertError::Parse {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    let at = |t: i64| UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    let validity = x509.validity();
    Ok(CertInfo {
        subject: x509.subject().to_string(),
        not_before: at(validity.not_before.timestamp()),
        not_after: at(validity.not_after.timestamp()),
        fingerprint: fingerprint(leaf.as_ref()),
    })
}

/// SHA-256 of `der` as colon-separated upper-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Where the embedded default keeps its certificate: beside its data directory, never inside it
/// (the key must not be downloadable).
pub fn default_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.parent().unwrap_or(Path::new("."));
    let base = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ringest-data".into());
    (
        dir.join(format!("{base}.tls-cert.pem")),
        dir.join(format!("{base}.tls-key.pem")),
    )
}

/// Creates a self-signed certificate (ECDSA P-256, one year, for localhost and the loopback
/// addresses plus `extra_names`) unless `cert` and `key` already exist. Returns whether it created
/// them. The key file is created 0600.
pub fn ensure_self_signed(
    cert: &Path,
    key: &Path,
    extra_names: &[String],
) -> Result<bool, CertError> {
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let gen = |e: &dyn std::fmt::Display| CertError::Generate(e.to_string());
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    names.extend(extra_names.iter().cloned());
    names.dedup();
    let key_pair = rcgen::KeyPair::generate().map_err(|e| gen(&e))?;
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| gen(&e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ringest self-signed");
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(365 * 86400)).into();
    let c = params.self_signed(&key_pair).map_err(|e| gen(&e))?;
    write_new(key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert, c.pem().as_bytes(), 0o644)?;
    Ok(true)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let err = |e: std::io::Error| CertError::Read {
        path: path.to_owned(),
        why: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_loads_matches_its_key_and_is_valid_now() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = default_paths(&dir.path().join("data"));
        assert!(ensure_self_signed(&c, &k, &[]).unwrap());
        assert!(
            !ensure_self_signed(&c, &k, &[]).unwrap(),
            "kept on the next start"
        );
        let ck = load(&c, &k).unwrap();
        let info = inspect(&ck.chain[0], &c).unwrap();
        let now = SystemTime::now();
        assert!(!info.expired(now) && !info.not_yet_valid(now));
        assert_eq!(info.fingerprint.len(), 32 * 3 - 1);
        crate::tls::config::server_config(&ck).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&k).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = default_paths(&dir.path().join("a"));
        let (c2, k2) = default_paths(&dir.path().join("b"));
        ensure_self_signed(&c1, &k1, &[]).unwrap();
        ensure_self_signed(&c2, &k2, &[]).unwrap();
        let mixed = load(&c1, &k2).unwrap();
        assert!(matches!(
            crate::tls::config::server_config(&mixed),
            Err(CertError::Mismatch(_))
        ));
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        fs::write(&p, "nothing here\n").unwrap();
        assert!(matches!(load(&p, &p), Err(CertError::NoCertificate { .. })));
    }
}
