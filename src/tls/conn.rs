//! One TLS connection as pure state: ciphertext in, plaintext and ciphertext out, no sockets.
//!
//! Built on rustls' unbuffered API, so the caller owns every buffer: received ciphertext is appended
//! to [`TlsConn::incoming_buf`] by the caller's recv (no intermediate copy), records are decrypted in
//! that buffer, and what the peer must receive accumulates in [`TlsConn::outgoing`] until the caller
//! sends it. rustls 0.23 still hands out each decrypted record from a Vec of its own
//! (`ReadTraffic::next_record`), so plaintext costs one user-space copy; when rustls decrypts
//! in place for callers (its stated plan), [`TlsConn::pump`] is the only place that changes.
//!
//! The same type serves both ends (the server's sessions and loadgen's clients).

use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{ClientConfig, HandshakeKind, ServerConfig};

/// A TLS failure: the peer's (bad records, a failed handshake) or a misuse of the connection.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS: {0}")]
    State(&'static str),
}

/// Which end of the connection this is.
enum Side {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// The largest TLS record on the wire (16 KiB of plaintext plus the largest expansion).
pub const MAX_RECORD: usize = 16 * 1024 + 2048;

/// A TLS connection's state and buffers.
pub struct TlsConn {
    side: Side,
    /// Received ciphertext; `incoming[start..]` is not consumed yet (a partial record at most,
    /// between [`TlsConn::pump`]s). Consumed records are dropped from the front once per receive,
    /// not once per record: a receive holds many records, and moving the rest of the buffer after
    /// each one cost more than decrypting it.
    incoming: Vec<u8>,
    start: usize,
    /// Decrypted application data not yet taken by the caller.
    plain: Vec<u8>,
    /// Ciphertext the caller must send, in order.
    outgoing: Vec<u8>,
    handshake_done: bool,
    /// The peer sent close_notify: its data ended cleanly.
    peer_closed: bool,
    /// We queued close_notify.
    closing: bool,
}

/// Runs `process_tls_records` on whichever side this is, and hands the status to `$body`.
macro_rules! with_status {
    ($self:ident, $status:ident => $body:expr) => {
        match &mut $self.side {
            Side::Server(c) => {
                let $status = c.process_tls_records(&mut $self.incoming[$self.start..]);
                $body
            }
            Side::Client(c) => {
                let $status = c.process_tls_records(&mut $self.incoming[$self.start..]);
                $body
            }
        }
    };
}

/// A server connection's keys, taken from rustls after the handshake ([`TlsConn::into_kernel`]).
pub struct Kernel {
    pub secrets: rustls::ExtractedSecrets,
    /// rustls' side of the connection from here on (key updates, tickets); kept for a future
    /// kTLS path, unused by the software record layer.
    pub kernel: rustls::kernel::KernelConnection<rustls::server::ServerConnectionData>,
    pub version: rustls::ProtocolVersion,
    /// Received records after the handshake, not decrypted yet.
    pub leftover: Vec<u8>,
    /// Application data rustls had already decrypted.
    pub plaintext: Vec<u8>,
    /// The peer's close_notify was among them.
    pub peer_closed: bool,
}

/// What one step of record processing did.
enum Step {
    /// Something happened; process again.
    Progress(usize),
    /// Nothing more can happen without more input (or the caller wants to send).
    Idle(usize),
}

impl TlsConn {
    pub fn server(config: Arc<ServerConfig>) -> Result<TlsConn, TlsError> {
        Ok(TlsConn::new(Side::Server(UnbufferedServerConnection::new(
            config,
        )?)))
    }

    pub fn client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsConn, TlsError> {
        let mut c = TlsConn::new(Side::Client(UnbufferedClientConnection::new(config, name)?));
        // The client speaks first: its hello is ready at once.
        c.pump()?;
        Ok(c)
    }

    fn new(side: Side) -> TlsConn {
        TlsConn {
            side,
            incoming: Vec::new(),
            start: 0,
            plain: Vec::new(),
            outgoing: Vec::new(),
            handshake_done: false,
            peer_closed: false,
            closing: false,
        }
    }

    /// The buffer a recv appends ciphertext to (its spare capacity is at least one record). Give it
    /// back with [`TlsConn::received`].
    pub fn incoming_buf(&mut self) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.incoming);
        b.drain(..self.start);
        self.start = 0;
        if b.capacity() - b.len() < MAX_RECORD {
            b.reserve(MAX_RECORD);
        }
        b
    }

    /// Takes back the buffer from [`TlsConn::incoming_buf`], with what was received appended, and
    /// processes it.
    pub fn received(&mut self, buf: Vec<u8>) -> Result<(), TlsError> {
        self.incoming = buf;
        self.pump()
    }

    /// Appends ciphertext received elsewhere (bytes that arrived before TLS began) and processes it.
    pub fn received_bytes(&mut self, bytes: &[u8]) -> Result<(), TlsError> {
        self.incoming.drain(..self.start);
        self.start = 0;
        self.incoming.extend_from_slice(bytes);
        self.pump()
    }

    /// Processes what has been received: handshake messages (their answers go to `outgoing`),
    /// application data (to the plaintext), close_notify.
    pub fn pump(&mut self) -> Result<(), TlsError> {
        self.run(None)
    }

    /// Processes records until nothing more can happen; with `write`, until it is written (which
    /// needs the handshake done: an error before that).
    fn run(&mut self, mut write: Option<WriteOp<'_>>) -> Result<(), TlsError> {
        loop {
            let step = self.step(&mut write)?;
            let (Step::Progress(discard) | Step::Idle(discard)) = step;
            self.start += discard;
            if let Step::Idle(_) = step {
                return Ok(());
            }
        }
    }

    /// One call of `process_tls_records` and the handling of the state it returns. A pending
    /// `write` is done (and taken) when the connection can send application data.
    fn step(&mut self, write: &mut Option<WriteOp<'_>>) -> Result<Step, TlsError> {
        let (plain, outgoing) = (&mut self.plain, &mut self.outgoing);
        let (handshake_done, peer_closed) = (&mut self.handshake_done, &mut self.peer_closed);
        let writing = write.is_some();
        with_status!(self, status => {
            let UnbufferedStatus { mut discard, state } = status;
            match state? {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec?;
                        discard += rec.discard;
                        plain.extend_from_slice(rec.payload);
                    }
                    Ok(Step::Progress(discard))
                }
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    Ok(Step::Progress(discard))
                }
                ConnectionState::Closed if writing => Err(TlsError::State("the connection is closed")),
                ConnectionState::Closed => {
                    *peer_closed = true;
                    Ok(Step::Idle(discard))
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    grow_into(outgoing, |out| e.encode(out).map_err(|err| match err {
                        EncodeError::InsufficientSize(s) => Grow::By(s),
                        EncodeError::AlreadyEncoded => Grow::Fail("handshake record encoded twice"),
                    }))?;
                    Ok(Step::Progress(discard))
                }
                // The encoded records stay queued in `outgoing`, which the caller sends in order.
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    Ok(Step::Progress(discard))
                }
                ConnectionState::WriteTraffic(mut w) => {
                    *handshake_done = true;
                    if let Some(what) = write.take() {
                        grow_into(outgoing, |out| match what {
                            WriteOp::Data(d) => w.encrypt(d, out),
                            WriteOp::CloseNotify => w.queue_close_notify(out),
                        }.map_err(|err| match err {
                            EncryptError::InsufficientSize(s) => Grow::By(s),
                            _ => Grow::Fail("encryption exhausted"),
                        }))?;
                    }
                    Ok(Step::Idle(discard))
                }
                ConnectionState::BlockedHandshake if writing => {
                    Err(TlsError::State("cannot send before the handshake completes"))
                }
                ConnectionState::BlockedHandshake => Ok(Step::Idle(discard)),
                // Early data is never enabled; a state this version does not know ends the loop.
                _ if writing => Err(TlsError::State("cannot send in this state")),
                _ => Ok(Step::Idle(discard)),
            }
        })
    }

    /// Encrypts `data` into `outgoing`. Only after the handshake.
    pub fn encrypt(&mut self, data: &[u8]) -> Result<(), TlsError> {
        self.run(Some(WriteOp::Data(data)))
    }

    /// Queues close_notify: the end of our data, which a stream-mode peer needs to tell a complete
    /// file from a cut connection.
    pub fn close_notify(&mut self) -> Result<(), TlsError> {
        if self.closing {
            return Ok(());
        }
        self.closing = true;
        self.run(Some(WriteOp::CloseNotify))
    }

    /// Decrypted application data not yet consumed.
    pub fn plaintext(&self) -> &[u8] {
        &self.plain
    }

    /// Drops the first `n` bytes of the plaintext (the caller used them).
    pub fn consume(&mut self, n: usize) {
        self.plain.drain(..n.min(self.plain.len()));
    }

    /// Takes all the plaintext, leaving `spare` (cleared) in its place so its allocation is reused.
    pub fn take_plaintext(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        spare.clear();
        std::mem::replace(&mut self.plain, spare)
    }

    /// Ciphertext waiting to be sent.
    pub fn outgoing(&self) -> &[u8] {
        &self.outgoing
    }

    /// Takes the ciphertext to send, leaving `spare` (cleared) in its place.
    pub fn take_outgoing(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        spare.clear();
        std::mem::replace(&mut self.outgoing, spare)
    }

    pub fn is_handshaking(&self) -> bool {
        !self.handshake_done
    }

    /// The peer ended its data with close_notify.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Whether the handshake resumed an earlier session (the data-channel rule of RFC 4217 servers:
    /// only the control connection's client holds its session).
    pub fn resumed(&self) -> bool {
        let kind = match &self.side {
            Side::Server(c) => c.handshake_kind(),
            Side::Client(c) => c.handshake_kind(),
        };
        kind == Some(HandshakeKind::Resumed)
    }

    /// Hands the connection's traffic keys over (rustls' kernel-connection API, made for kTLS), for
    /// a record layer that decrypts in place ([`crate::tls::record`]). Only a server connection
    /// whose handshake is done and whose output has been sent; the configuration must allow
    /// secret extraction. Whatever was received beyond the handshake comes along: undecrypted
    /// records (`leftover`) and what rustls already decrypted (`plaintext`).
    pub fn into_kernel(mut self) -> Result<Kernel, TlsError> {
        if self.is_handshaking() || !self.outgoing.is_empty() {
            return Err(TlsError::State(
                "keys can only be taken after the handshake is sent",
            ));
        }
        let leftover = self.incoming.split_off(self.start);
        let plaintext = std::mem::take(&mut self.plain);
        let Side::Server(c) = self.side else {
            return Err(TlsError::State(
                "only a server connection hands its keys over",
            ));
        };
        let version = c
            .protocol_version()
            .ok_or(TlsError::State("no protocol version"))?;
        let (secrets, kernel) = c.dangerous_into_kernel_connection()?;
        Ok(Kernel {
            secrets,
            kernel,
            version,
            leftover,
            plaintext,
            peer_closed: self.peer_closed,
        })
    }

    /// The negotiated protocol version and cipher suite, for logs.
    pub fn describe(&self) -> String {
        let (v, s) = match &self.side {
            Side::Server(c) => (c.protocol_version(), c.negotiated_cipher_suite()),
            Side::Client(c) => (c.protocol_version(), c.negotiated_cipher_suite()),
        };
        match (v, s) {
            (Some(v), Some(s)) => format!("{v:?} {:?}", s.suite()),
            _ => "handshaking".into(),
        }
    }
}

/// What to put through `WriteTraffic`.
#[derive(Clone, Copy)]
enum WriteOp<'d> {
    Data(&'d [u8]),
    CloseNotify,
}

enum Grow {
    By(InsufficientSizeError),
    Fail(&'static str),
}

/// Appends to `buf` what `f` writes into its spare room, growing the room when `f` says how much it
/// needs.
fn grow_into(
    buf: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Grow>,
) -> Result<(), TlsError> {
    let len = buf.len();
    let mut room = 4096usize;
    loop {
        buf.resize(len + room, 0);
        match f(&mut buf[len..]) {
            Ok(n) => {
                buf.truncate(len + n);
                return Ok(());
            }
            Err(Grow::By(s)) if s.required_size > room => room = s.required_size,
            Err(Grow::By(_)) => {
                buf.truncate(len);
                return Err(TlsError::State(
                    "record encoder asked for less room than it had",
                ));
            }
            Err(Grow::Fail(why)) => {
                buf.truncate(len);
                return Err(TlsError::State(why));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::config::for_control_session;
    use crate::tls::testing::exchange;

    fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let dir = tempfile::tempdir().unwrap();
        crate::tls::testing::configs(dir.path())
    }

    fn name() -> ServerName<'static> {
        ServerName::try_from("localhost").unwrap()
    }

    #[test]
    fn a_handshake_then_data_both_ways_then_close_notify() {
        let (s, c) = configs();
        let mut server = TlsConn::server(s).unwrap();
        let mut client = TlsConn::client(c, name()).unwrap();
        exchange(&mut client, &mut server);
        assert!(!server.is_handshaking() && !client.is_handshaking());
        assert!(!server.resumed());
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        client.encrypt(&big).unwrap();
        client.close_notify().unwrap();
        exchange(&mut client, &mut server);
        assert_eq!(server.plaintext(), &big[..]);
        assert!(server.peer_closed());
        server.encrypt(b"226 ok\r\n").unwrap();
        exchange(&mut server, &mut client);
        assert_eq!(client.plaintext(), b"226 ok\r\n");
    }

    #[test]
    fn a_data_connection_resumes_only_its_own_control_session() {
        let (base, c) = configs();
        let st = for_control_session(&base);
        let mut control = TlsConn::server(st.control.clone()).unwrap();
        let mut client = TlsConn::client(c.clone(), name()).unwrap();
        exchange(&mut client, &mut control);
        // TLS 1.3 tickets come after the handshake; a round of app data carries them.
        control.encrypt(b"220\r\n").unwrap();
        exchange(&mut control, &mut client);
        // A rustls client uses each ticket once: far more data connections than the control
        // connection's tickets all resume, because a client about to run out gets new ones on
        // its data connection (it reads them, as `exchange` does).
        let mut refills = 0;
        for _ in 0..20 {
            let cfg = st.data();
            refills += usize::from(cfg.send_tls13_tickets > 0);
            let mut data = TlsConn::server(cfg).unwrap();
            let mut dclient = TlsConn::client(c.clone(), name()).unwrap();
            exchange(&mut dclient, &mut data);
            assert!(data.resumed(), "same control session: resumed");
            assert!(dclient.plaintext().is_empty());
        }
        assert!(
            (1..=10).contains(&refills),
            "refilled {refills} times in 20"
        );
        // Another control session's configuration has none of these sessions.
        let other = for_control_session(&base);
        let mut data = TlsConn::server(other.data()).unwrap();
        let mut dclient = TlsConn::client(c, name()).unwrap();
        exchange(&mut dclient, &mut data);
        assert!(!data.is_handshaking());
        assert!(
            !data.resumed(),
            "another session's data connection: full handshake"
        );
    }

    #[test]
    fn garbage_instead_of_a_client_hello_is_an_error_not_a_panic() {
        let (s, _) = configs();
        let mut server = TlsConn::server(s).unwrap();
        assert!(server.received_bytes(b"USER anonymous\r\n").is_err());
        let (s, _) = configs();
        let mut server = TlsConn::server(s).unwrap();
        assert!(server
            .received_bytes(&[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5])
            .is_err());
    }

    proptest::proptest! {
        /// Whatever bytes a client sends, cut anywhere, the server's TLS state never panics: it
        /// errs or waits for more.
        #[test]
        fn arbitrary_bytes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..8),
            hello_prefix in proptest::prelude::any::<bool>(),
        ) {
            let (s, _) = configs();
            let mut server = TlsConn::server(s).unwrap();
            if hello_prefix {
                // A plausible record header, so the bytes reach the handshake parser.
                let _ = server.received_bytes(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03]);
            }
            for c in chunks {
                if server.received_bytes(&c).is_err() {
                    break;
                }
            }
            proptest::prop_assert!(server.is_handshaking());
        }
    }

    #[test]
    fn sending_before_the_handshake_is_refused() {
        let (s, _) = configs();
        let mut server = TlsConn::server(s).unwrap();
        assert!(server.encrypt(b"x").is_err());
    }
}
