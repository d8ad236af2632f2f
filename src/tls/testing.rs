//! In-memory TLS for tests (here and in loadgen): a certificate pair and moving records between
//! two [`TlsConn`]s without sockets. Not part of the server.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};

use super::cert;
use super::config::{client_config, server_config, Verify};
use super::TlsConn;

/// A self-signed certificate in `dir`: a server configuration with it, and a client configuration
/// that trusts it.
pub fn configs(dir: &Path) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let (c, k) = cert::default_paths(&dir.join("test"));
    cert::ensure_self_signed(&c, &k, &[]).expect("self-signed certificate");
    let ck = cert::load(&c, &k).expect("load certificate");
    let server = server_config(&ck).expect("server configuration");
    let client = client_config(Verify::Roots(ck.chain.clone())).expect("client configuration");
    (server, client)
}

/// Moves queued records between the two ends until neither has anything to send; `a`'s records
/// are delivered 7 bytes at a time, to cross every record boundary.
pub fn exchange(a: &mut TlsConn, b: &mut TlsConn) {
    for _ in 0..20 {
        let ab = a.take_outgoing(Vec::new());
        let ba = b.take_outgoing(Vec::new());
        if ab.is_empty() && ba.is_empty() {
            return;
        }
        for chunk in ab.chunks(7) {
            b.received_bytes(chunk).expect("records from a");
        }
        a.received_bytes(&ba).expect("records from b");
    }
    panic!("the exchange did not settle");
}
