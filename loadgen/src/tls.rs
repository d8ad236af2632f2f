//! FTPS (RFC 4217) settings: explicit (`AUTH TLS`) or implicit TLS, how the server's certificate is
//! checked, and the client configuration each control session gets for itself.
//!
//! **Data-channel resumption.** Servers require every data connection to resume the TLS session of
//! its own control connection (vsftpd's `require_ssl_reuse`, ringest's default). rustls resumes when a
//! connection uses the same `Arc<ClientConfig>` and server name as an earlier one, taking the session
//! from that configuration's cache. A cache shared by all sessions could hand one session's data
//! connection another session's ticket, which the server refuses; so each control connection gets
//! its own copy of the base configuration with a cache of its own ([`session_config`]), used by that
//! control connection and its data connections only.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ringest::tls::config::{client_config, Verify};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;

/// Sessions (TLS 1.2 sessions and TLS 1.3 tickets) cached per control session: one server name, and
/// rustls keeps up to 8 TLS 1.3 tickets for it.
const SESSIONS_PER_CONTROL: usize = 8;

/// When TLS starts on the control connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `AUTH TLS` after the greeting.
    Explicit,
    /// The handshake right after connecting, before the greeting.
    Implicit,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Explicit => "explicit",
            Mode::Implicit => "implicit",
        }
    }
}

/// A run's TLS settings.
#[derive(Clone, Debug)]
pub struct TlsOpts {
    pub mode: Mode,
    /// The base configuration; never used for a connection itself (see [`session_config`]).
    pub base: Arc<ClientConfig>,
    /// The name the certificate is checked against (and the key of the session cache).
    pub name: ServerName<'static>,
}

/// A control session's own configuration: the base with a session cache of its own.
pub fn session_config(base: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut cfg = (**base).clone();
    cfg.resumption = Resumption::in_memory_sessions(SESSIONS_PER_CONTROL);
    Arc::new(cfg)
}

/// Loads the PEM certificates in `path` (roots to trust).
pub fn load_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading --ca {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing --ca {}", path.display()))?;
    if certs.is_empty() {
        bail!("--ca {}: no PEM certificate in the file", path.display());
    }
    Ok(certs)
}

/// The server name to verify: `--tls-name` when given, else the host as given on the command line
/// (an IP address, checked against the certificate's IP SANs, or a DNS name), else the address it
/// resolved to.
pub fn server_name(
    tls_name: Option<&str>,
    host: &str,
    resolved: IpAddr,
) -> Result<ServerName<'static>> {
    if let Some(n) = tls_name {
        return ServerName::try_from(n.to_string())
            .map_err(|e| anyhow::anyhow!("--tls-name {n:?}: {e}"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    Ok(ServerName::try_from(host.to_string()).unwrap_or(ServerName::IpAddress(resolved.into())))
}

/// Builds the run's TLS settings from the command line, or `None` without TLS.
pub fn from_flags(
    mode: Option<Mode>,
    insecure: bool,
    ca: Option<&Path>,
    tls_name: Option<&str>,
    host: &str,
    resolved: IpAddr,
) -> Result<Option<Arc<TlsOpts>>> {
    let Some(mode) = mode else {
        if insecure || ca.is_some() || tls_name.is_some() {
            bail!("--insecure, --ca and --tls-name need --tls or --tls-implicit");
        }
        return Ok(None);
    };
    let verify = match (insecure, ca) {
        (true, None) => Verify::Insecure,
        (false, Some(path)) => Verify::Roots(load_roots(path)?),
        (true, Some(_)) => bail!("--insecure and --ca exclude each other"),
        (false, None) => bail!(
            "TLS needs a way to check the server's certificate: pass --ca FILE (PEM roots, e.g. the \
             server's self-signed certificate) or --insecure (accept any certificate)"
        ),
    };
    let base = client_config(verify).context("building the TLS client configuration")?;
    let name = server_name(tls_name, host, resolved)?;
    Ok(Some(Arc::new(TlsOpts { mode, base, name })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringest::tls::testing::exchange;
    use ringest::tls::TlsConn;
    use rustls::ServerConfig;

    /// A server configuration whose session store is shared by every connection (so the server
    /// would resume any session the client offers: only the client's cache decides), and a base
    /// client configuration that trusts its certificate.
    fn configs(dir: &Path) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        ringest::tls::testing::configs(dir)
    }

    fn name() -> ServerName<'static> {
        ServerName::try_from("localhost").unwrap()
    }

    /// A control connection: handshake, then one reply so TLS 1.3 tickets reach the client.
    fn control(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) {
        let mut s = TlsConn::server(server.clone()).unwrap();
        let mut c = TlsConn::client(client.clone(), name()).unwrap();
        exchange(&mut c, &mut s);
        assert!(!c.is_handshaking() && !c.resumed());
        s.encrypt(b"200 PBSZ=0\r\n").unwrap();
        exchange(&mut s, &mut c);
        assert_eq!(c.plaintext(), b"200 PBSZ=0\r\n");
    }

    /// A data connection's handshake; whether it resumed. The server's post-handshake messages (new
    /// tickets) are delivered too, as loadgen absorbs them.
    fn data_resumed(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> bool {
        let mut s = TlsConn::server(server.clone()).unwrap();
        let mut c = TlsConn::client(client.clone(), name()).unwrap();
        exchange(&mut c, &mut s);
        assert!(!c.is_handshaking());
        c.resumed()
    }

    #[test]
    fn two_sessions_do_not_share_a_session_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (server, base) = configs(dir.path());
        let a = session_config(&base);
        let b = session_config(&base);
        // Session A logs in; B has not.
        control(&server, &a);
        assert!(
            data_resumed(&server, &a),
            "A's data connection resumes A's session"
        );
        assert!(
            !data_resumed(&server, &b),
            "B's data connection must not find A's session"
        );
        // The base configuration is untouched by either.
        assert!(!data_resumed(&server, &base), "the base cache stays empty");
    }

    #[test]
    fn every_data_connection_of_a_long_session_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (server, base) = configs(dir.path());
        let a = session_config(&base);
        control(&server, &a);
        // More data connections than tickets sent on the control connection: the tickets each
        // resumed data connection brings keep the cache filled.
        for i in 0..20 {
            assert!(data_resumed(&server, &a), "data connection {i} resumed");
        }
    }

    #[test]
    fn flags_need_a_way_to_verify() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let e = from_flags(Some(Mode::Explicit), false, None, None, "127.0.0.1", ip).unwrap_err();
        assert!(e.to_string().contains("--ca"), "{e}");
        assert!(from_flags(None, true, None, None, "127.0.0.1", ip).is_err());
        assert!(from_flags(None, false, None, None, "127.0.0.1", ip)
            .unwrap()
            .is_none());
        let t = from_flags(Some(Mode::Implicit), true, None, None, "127.0.0.1", ip)
            .unwrap()
            .unwrap();
        assert_eq!(t.name, ServerName::IpAddress(ip.into()));
        let t = from_flags(
            Some(Mode::Explicit),
            true,
            None,
            Some("ftp.example"),
            "127.0.0.1",
            ip,
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.name, ServerName::try_from("ftp.example").unwrap());
    }
}
