//! TLS for FTPS (RFC 4217): a sans-IO connection ([`conn`]), the server's and clients'
//! configurations with the data-channel resumption rule ([`config`]), certificates ([`cert`]), the
//! in-place record layer of protected uploads ([`record`]), and
//! the I/O that drives a connection over an engine socket ([`stream`]).
//!
//! Owns: everything rustls. May use: the engine (only `stream`). The FTP layers above see plaintext.

pub mod cert;
pub mod config;
pub mod conn;
pub mod record;
pub mod stream;
#[doc(hidden)]
pub mod testing;

pub use conn::{TlsConn, TlsError};
