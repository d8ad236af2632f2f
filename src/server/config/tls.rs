//! FTPS settings (`tls`, `tls_data`, `tls_data_resumption`, `tls_cert`, `tls_key`,
//! `implicit_tls_listen`) and turning them into a rustls configuration at start-up and on SIGHUP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::proto::session::TlsMode;
use crate::tls::cert::{self, CertError, CertInfo};
use crate::tls::config::server_config;

/// FTPS as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// Control connections: off, optional (AUTH TLS accepted) or required (USER before AUTH: 530).
    pub mode: TlsMode,
    /// Data connections must be protected (PROT P).
    pub data_required: bool,
    /// A protected data connection must resume its control connection's TLS session.
    pub data_resumption: bool,
    /// PEM certificate chain and key; without them a self-signed pair is created beside the root.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A second listener where TLS starts at once (implicit FTPS, conventionally port 990).
    pub implicit_listen: Option<SocketAddr>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: TlsMode::Optional,
            data_required: false,
            data_resumption: true,
            cert: None,
            key: None,
            implicit_listen: None,
        }
    }
}

/// The server's TLS configuration and what it was built from.
#[derive(Clone, Debug)]
pub struct LoadedTls {
    pub config: Arc<rustls::ServerConfig>,
    pub info: CertInfo,
    pub cert_path: PathBuf,
    /// The self-signed pair was created by this load.
    pub created: bool,
}

impl TlsSettings {
    /// The certificate and key files: the configured ones, or the self-signed pair beside `root`.
    pub fn paths(&self, root: &Path) -> (PathBuf, PathBuf, bool) {
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => (c.clone(), k.clone(), false),
            // A chain file that also holds the key (as Pure-FTPd's) is allowed.
            (Some(c), None) => (c.clone(), c.clone(), false),
            _ => {
                let (c, k) = cert::default_paths(root);
                (c, k, true)
            }
        }
    }

    /// Loads (creating the self-signed pair when no certificate is configured) and checks the
    /// certificate; `None` when TLS is off.
    pub fn load(&self, root: &Path) -> Result<Option<LoadedTls>, CertError> {
        if self.mode == TlsMode::Off && self.implicit_listen.is_none() {
            return Ok(None);
        }
        let (cert_path, key_path, self_signed) = self.paths(root);
        let created = self_signed && cert::ensure_self_signed(&cert_path, &key_path, &[])?;
        let ck = cert::load(&cert_path, &key_path)?;
        let info = cert::inspect(&ck.chain[0], &cert_path)?;
        let config = server_config(&ck)?;
        Ok(Some(LoadedTls {
            config,
            info,
            cert_path,
            created,
        }))
    }
}

/// Problems `check-config` reports about a loaded certificate (empty: fine).
pub fn problems(info: &CertInfo, now: SystemTime) -> Vec<String> {
    let mut out = Vec::new();
    if info.expired(now) {
        out.push(format!("the certificate ({}) has expired", info.subject));
    } else if info.not_yet_valid(now) {
        out.push(format!(
            "the certificate ({}) is not valid yet",
            info.subject
        ));
    } else if let Ok(left) = info.not_after.duration_since(now) {
        if left.as_secs() < 14 * 86_400 {
            out.push(format!(
                "the certificate ({}) expires in {} days",
                info.subject,
                left.as_secs() / 86_400
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info(from_days: i64, to_days: i64) -> CertInfo {
        let now = SystemTime::now();
        let at = |d: i64| {
            if d >= 0 {
                now + Duration::from_secs(d as u64 * 86_400)
            } else {
                now - Duration::from_secs((-d) as u64 * 86_400)
            }
        };
        CertInfo {
            subject: "CN=test".into(),
            not_before: at(from_days),
            not_after: at(to_days),
            fingerprint: String::new(),
        }
    }

    #[test]
    fn expired_soon_to_expire_and_not_yet_valid_certificates_are_named() {
        let now = SystemTime::now();
        assert!(problems(&info(-30, 300), now).is_empty());
        let expired = problems(&info(-30, -1), now);
        assert!(expired[0].contains("has expired"), "{expired:?}");
        let soon = problems(&info(-30, 5), now);
        assert!(soon[0].contains("expires in"), "{soon:?}");
        let early = problems(&info(2, 30), now);
        assert!(early[0].contains("not valid yet"), "{early:?}");
    }
}
