//! rustls configurations: the server's (one base per certificate, and one per control session for
//! the data-channel resumption rule) and the client's (loadgen).
//!
//! **The data-channel rule.** A data connection must resume the TLS session of its own control
//! connection (vsftpd's `require_ssl_reuse`): that proves the data connection comes from the client
//! that logged in, not from another host racing it for the passive port. Each control session gets
//! its own copy of the server configuration whose session store holds only the sessions that control
//! connection created; a data handshake that resumes at all therefore resumed this session's.
//! Tickets in that store may be used more than once (every file of a stream-mode session resumes
//! the same control session; curl and lftp reuse one ticket), which is safe because early data is
//! never accepted, so there is nothing to replay.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::StoresServerSessions;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::cert::{CertError, CertKey};

/// The crypto provider: aws-lc-rs, which measured 25-32% less server CPU than ring per ECDSA
/// handshake (2.2x less with RSA-2048) and ~10% faster AES-GCM (bench/tls-providers/README.md).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Session tickets sent on each control connection: a few, so a client that uses one per data
/// connection still has spares.
const TICKETS: usize = 4;
/// Sessions kept per control connection.
const SESSIONS_PER_CONTROL: usize = 16;

/// The base server configuration for a certificate (TLS 1.3 and 1.2). Fails when the key does not
/// match the certificate.
pub fn server_config(ck: &CertKey) -> Result<Arc<ServerConfig>, CertError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| CertError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(ck.chain.clone(), ck.key.clone_key())
        .map_err(|e| CertError::Mismatch(e.to_string()))?;
    cfg.send_tls13_tickets = TICKETS;
    cfg.max_early_data_size = 0;
    cfg.session_storage = Arc::new(SessionStore::default());
    Ok(Arc::new(cfg))
}

/// One control session's configurations, sharing a session store of their own.
#[derive(Clone)]
pub struct SessionTls {
    /// For the control connection: issues the tickets its data connections resume.
    pub control: Arc<ServerConfig>,
    /// For its data connections, normally: issues no tickets. A ticket sent on a data connection
    /// is unread data when a client that only uploads closes it, and a close with unread data is
    /// a reset that can destroy the end of the upload (seen with vsftpd under TLS 1.3 and curl).
    data_quiet: Arc<ServerConfig>,
    /// For a data connection of a client about to run out of tickets (see [`SessionTls::data`]).
    data_refill: Arc<ServerConfig>,
    store: Arc<SessionStore>,
}

impl SessionTls {
    /// The configuration for the next data connection. Clients differ in how they resume: curl
    /// (OpenSSL), lftp (GnuTLS) and Python reuse one ticket for every data connection, while
    /// rustls clients use each ticket once. When the client has used all but one of the tickets
    /// it was given, this data connection issues new ones (such a client reads them: it must, to
    /// keep going); otherwise none, so a client that never reads its upload connection never
    /// has unread tickets on it.
    pub fn data(&self) -> Arc<ServerConfig> {
        if self.store.running_low() {
            self.data_refill.clone()
        } else {
            self.data_quiet.clone()
        }
    }
}

/// A control session's own configurations: the base with a session store of its own.
pub fn for_control_session(base: &Arc<ServerConfig>) -> SessionTls {
    let store = Arc::new(SessionStore::default());
    let mut control = (**base).clone();
    control.session_storage = store.clone();
    // Data connections hand their keys to the in-place record layer (`tls::record`) for uploads.
    let mut data_refill = control.clone();
    data_refill.enable_secret_extraction = true;
    let mut data_quiet = data_refill.clone();
    data_quiet.send_tls13_tickets = 0;
    SessionTls {
        control: Arc::new(control.clone()),
        data_quiet: Arc::new(data_quiet),
        data_refill: Arc::new(data_refill),
        store,
    }
}

/// A small session store whose entries survive use (see the module docs for why that is safe
/// here), which also notes which tickets the client has used.
#[derive(Debug, Default)]
struct SessionStore {
    inner: Mutex<StoreInner>,
}

#[derive(Debug, Default)]
struct StoreInner {
    entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Entries resumed at least once.
    used: VecDeque<Vec<u8>>,
}

impl SessionStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, StoreInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client has resumed all but at most one of the sessions it holds.
    fn running_low(&self) -> bool {
        let s = self.lock();
        let unused = s
            .entries
            .iter()
            .filter(|(k, _)| !s.used.contains(k))
            .count();
        !s.used.is_empty() && unused <= 1
    }
}

impl StoresServerSessions for SessionStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut s = self.lock();
        s.entries.retain(|(k, _)| *k != key);
        if s.entries.len() >= SESSIONS_PER_CONTROL {
            if let Some((old, _)) = s.entries.pop_front() {
                s.used.retain(|k| *k != old);
            }
        }
        s.entries.push_back((key, value));
        true
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let s = self.lock();
        s.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut s = self.lock();
        let v = s
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())?;
        if !s.used.iter().any(|k| k == key) {
            s.used.push_back(key.to_vec());
        }
        Some(v)
    }
    fn can_cache(&self) -> bool {
        true
    }
}

/// How a client checks the server's certificate.
pub enum Verify {
    /// The system's usual way against these roots (PEM certificates).
    Roots(Vec<CertificateDer<'static>>),
    /// Accept any certificate (benchmarks against self-signed servers; `--insecure`).
    Insecure,
}

/// A client configuration (loadgen): TLS 1.3 and 1.2, sessions cached for resumption on data
/// connections.
pub fn client_config(verify: Verify) -> Result<Arc<ClientConfig>, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let cfg = match verify {
        Verify::Roots(certs) => {
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots.add(c)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verify::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
