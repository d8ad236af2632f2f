//! ring vs aws-lc-rs under rustls 0.23, driven in memory (no sockets) through the
//! unbuffered API (`UnbufferedServerConnection` / `UnbufferedClientConnection`), the API
//! ringest's FTPS will use.
//!
//! Measures, for each provider available in this build:
//! 1. server-side CPU time per handshake (TLS 1.3 and 1.2, full and resumed; ECDSA P-256 and,
//!    with aws-lc-rs in the build, RSA-2048 certificates), median of N handshakes after warm-up;
//! 2. server-side bulk throughput: decryption of 64 KiB application-data chunks sent by the
//!    client (16 KiB records), and encryption of 64 KiB chunks, per cipher suite.
//!
//! Only the server's calls are timed, with the thread CPU clock (`CLOCK_THREAD_CPUTIME_ID`);
//! the client runs in the same thread, untimed.
//!
//! Usage: `tls-providers [--reps N] [--handshakes N] [--warmup N] [--bulk-mib N]`

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::UnbufferedClientConnection;
use rustls::client::{ClientConnectionData, ClientSessionMemoryCache, Resumption};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ServerConnectionData, ServerSessionMemoryCache, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{
    CipherSuite, ClientConfig, DigitallySignedStruct, Error, HandshakeKind, ServerConfig,
    SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};

const CHUNK: usize = 64 * 1024;
/// Chunks the client encrypts before the server decrypts them in one timed call sequence
/// (1 MiB of ciphertext: stays in cache, like a socket receive buffer would).
const BATCH: usize = 16;

// ---------------------------------------------------------------------------------------------
// clock

fn cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// providers

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Prov {
    #[cfg(feature = "ring")]
    Ring,
    #[cfg(feature = "aws-lc-rs")]
    AwsLc,
}

impl Prov {
    fn all() -> Vec<Prov> {
        vec![
            #[cfg(feature = "ring")]
            Prov::Ring,
            #[cfg(feature = "aws-lc-rs")]
            Prov::AwsLc,
        ]
    }

    fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "ring")]
            Prov::Ring => "ring",
            #[cfg(feature = "aws-lc-rs")]
            Prov::AwsLc => "aws-lc-rs",
        }
    }

    fn base(self) -> CryptoProvider {
        match self {
            #[cfg(feature = "ring")]
            Prov::Ring => rustls::crypto::ring::default_provider(),
            #[cfg(feature = "aws-lc-rs")]
            Prov::AwsLc => rustls::crypto::aws_lc_rs::default_provider(),
        }
    }

    fn kx(self, kx: Kx) -> Option<&'static dyn SupportedKxGroup> {
        match (self, kx) {
            #[cfg(feature = "ring")]
            (Prov::Ring, Kx::X25519) => Some(rustls::crypto::ring::kx_group::X25519),
            #[cfg(feature = "ring")]
            (Prov::Ring, Kx::X25519MlKem768) => None,
            #[cfg(feature = "aws-lc-rs")]
            (Prov::AwsLc, Kx::X25519) => Some(rustls::crypto::aws_lc_rs::kx_group::X25519),
            #[cfg(feature = "aws-lc-rs")]
            (Prov::AwsLc, Kx::X25519MlKem768) => {
                Some(rustls::crypto::aws_lc_rs::kx_group::X25519MLKEM768)
            }
        }
    }

    /// The base provider restricted to one key-exchange group and one cipher suite.
    fn restricted(self, kx: Kx, suite: CipherSuite) -> Option<Arc<CryptoProvider>> {
        let mut p = self.base();
        let kx = self.kx(kx)?;
        p.kx_groups = vec![kx];
        let s: Vec<SupportedCipherSuite> = p
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.suite() == suite)
            .collect();
        if s.is_empty() {
            return None;
        }
        p.cipher_suites = s;
        Some(Arc::new(p))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kx {
    X25519,
    X25519MlKem768,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KeyKind {
    EcdsaP256,
    #[cfg(feature = "aws-lc-rs")]
    Rsa2048,
}

impl KeyKind {
    fn all() -> Vec<KeyKind> {
        vec![
            KeyKind::EcdsaP256,
            #[cfg(feature = "aws-lc-rs")]
            KeyKind::Rsa2048,
        ]
    }
    fn name(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            #[cfg(feature = "aws-lc-rs")]
            KeyKind::Rsa2048 => "RSA-2048",
        }
    }
}

struct Cert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn make_cert(kind: KeyKind) -> Cert {
    let alg = match kind {
        KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        #[cfg(feature = "aws-lc-rs")]
        KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
    };
    let key = rcgen::KeyPair::generate_for(alg).expect("key generation");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).expect("self-signed cert");
    Cert {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// Accepts the self-signed certificate (no chain building) but checks the handshake
/// signatures with the provider's own algorithms, so the client does the real crypto work.
#[derive(Debug)]
struct SelfSignedOk(Arc<CryptoProvider>);

impl ServerCertVerifier for SelfSignedOk {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
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
    ) -> Result<HandshakeSignatureValid, Error> {
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

struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn configs(
    provider: Arc<CryptoProvider>,
    version: &'static SupportedProtocolVersion,
    cert: &Cert,
    resume: bool,
) -> Configs {
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), cert.key.clone_key())
        .unwrap();
    // The default, made explicit: stateful session cache (TLS 1.2 session ids, TLS 1.3
    // tickets that are keys into this cache, sent after the handshake).
    server.session_storage = ServerSessionMemoryCache::new(256);
    let mut client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SelfSignedOk(provider)))
        .with_no_client_auth();
    client.resumption = if resume {
        Resumption::store(Arc::new(ClientSessionMemoryCache::new(256)))
    } else {
        Resumption::disabled()
    };
    Configs {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

// ---------------------------------------------------------------------------------------------
// in-memory transport

/// A byte queue: `data[start..end]` is pending input for the peer.
struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new(cap: usize) -> Self {
        Buf {
            data: vec![0; cap],
            start: 0,
            end: 0,
        }
    }
    fn is_empty(&self) -> bool {
        self.start == self.end
    }
    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
    /// Spare room of at least `n` bytes after `end`.
    fn reserve(&mut self, n: usize) {
        if self.is_empty() {
            self.clear();
        }
        if self.data.len() - self.end < n {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.data.len() - self.end < n {
                self.data.resize(self.end + n, 0);
            }
        }
    }
    fn discard(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
    }
}

trait Conn {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Conn for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Conn for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    /// Needs more input from the peer.
    Blocked,
    /// All input consumed, may write application data.
    Writable,
    Closed,
}

/// Runs one side until it needs input or may write: consumes `incoming`, appends what it
/// sends to `outgoing`, counts received plaintext into `plain`.
fn step<C: Conn>(conn: &mut C, incoming: &mut Buf, outgoing: &mut Buf, plain: &mut u64) -> Stop {
    loop {
        let (start, end) = (incoming.start, incoming.end);
        let UnbufferedStatus { discard, state } = conn.process(&mut incoming.data[start..end]);
        let state = state.expect("TLS error");
        let stop = match state {
            ConnectionState::EncodeTlsData(mut enc) => {
                let mut need = 4096;
                loop {
                    outgoing.reserve(need);
                    let end = outgoing.end;
                    match enc.encode(&mut outgoing.data[end..]) {
                        Ok(n) => {
                            outgoing.end += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(e)) => need = e.required_size,
                        Err(e) => panic!("encode: {e}"),
                    }
                }
                None
            }
            // In memory, "transmitting" is the append already done by the encode above.
            ConnectionState::TransmitTlsData(t) => {
                t.done();
                None
            }
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    let rec = rec.expect("decrypt");
                    assert_eq!(rec.discard, 0);
                    *plain += rec.payload.len() as u64;
                }
                None
            }
            ConnectionState::BlockedHandshake => Some(Stop::Blocked),
            ConnectionState::WriteTraffic(_) => Some(Stop::Writable),
            ConnectionState::PeerClosed | ConnectionState::Closed => Some(Stop::Closed),
            other => panic!("unexpected state {other:?}"),
        };
        incoming.discard(discard);
        if let Some(stop) = stop {
            return stop;
        }
    }
}

const NAME: &str = "localhost";

struct Pair {
    server: UnbufferedServerConnection,
    client: UnbufferedClientConnection,
    c2s: Buf,
    s2c: Buf,
    /// Server-side CPU time spent in the handshake (connection creation included).
    server_ns: u64,
    /// How many timed intervals `server_ns` adds up.
    intervals: u32,
}

fn handshake(cfg: &Configs) -> Pair {
    let mut c2s = Buf::new(64 * 1024);
    let mut s2c = Buf::new(64 * 1024);
    let mut client =
        UnbufferedClientConnection::new(cfg.client.clone(), ServerName::try_from(NAME).unwrap())
            .unwrap();
    let t0 = cpu_ns();
    let mut server = UnbufferedServerConnection::new(cfg.server.clone()).unwrap();
    let mut server_ns = cpu_ns() - t0;
    let mut sink = 0;
    // Timed intervals so far: the connection's creation, then one per round.
    for round in 1..=16 {
        let cs = step(&mut client, &mut s2c, &mut c2s, &mut sink);
        let t0 = cpu_ns();
        let ss = step(&mut server, &mut c2s, &mut s2c, &mut sink);
        server_ns += cpu_ns() - t0;
        // TLS 1.3 session tickets come after the server's handshake: loop until the client
        // has consumed them too, so the next connection can resume.
        if cs == Stop::Writable
            && ss == Stop::Writable
            && c2s.is_empty()
            && s2c.is_empty()
            && !client.is_handshaking()
            && !server.is_handshaking()
        {
            return Pair {
                server,
                client,
                c2s,
                s2c,
                server_ns,
                intervals: 1 + round,
            };
        }
    }
    panic!("handshake did not complete");
}

// ---------------------------------------------------------------------------------------------
// cases

struct HsCase {
    version: &'static SupportedProtocolVersion,
    key: KeyKind,
    kx: Kx,
    resumed: bool,
}

impl HsCase {
    fn label(&self) -> String {
        format!(
            "{} {} {} {}",
            if self.version == &rustls::version::TLS13 {
                "TLS1.3"
            } else {
                "TLS1.2"
            },
            if self.resumed { "resumed" } else { "full" },
            self.key.name(),
            match self.kx {
                Kx::X25519 => "X25519",
                Kx::X25519MlKem768 => "X25519MLKEM768",
            }
        )
    }
    fn suite(&self) -> CipherSuite {
        if self.version == &rustls::version::TLS13 {
            CipherSuite::TLS13_AES_128_GCM_SHA256
        } else {
            match self.key {
                KeyKind::EcdsaP256 => CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                #[cfg(feature = "aws-lc-rs")]
                KeyKind::Rsa2048 => CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            }
        }
    }
}

/// Median server-side microseconds per handshake, or None if the provider lacks the group.
fn bench_handshake(
    prov: Prov,
    case: &HsCase,
    cert: &Cert,
    warmup: usize,
    n: usize,
    clock_ns: f64,
) -> Option<f64> {
    let provider = prov.restricted(case.kx, case.suite())?;
    let cfg = configs(provider, case.version, cert, case.resumed);
    let want_kind = if case.resumed {
        HandshakeKind::Resumed
    } else {
        HandshakeKind::Full
    };
    // One priming handshake so that resumed cases start with a ticket / session id.
    let _ = handshake(&cfg);
    let mut samples = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let p = handshake(&cfg);
        assert_eq!(
            p.server.handshake_kind(),
            Some(want_kind),
            "{}",
            case.label()
        );
        assert_eq!(
            p.server.negotiated_cipher_suite().map(|s| s.suite()),
            Some(case.suite())
        );
        if i >= warmup {
            samples.push((p.server_ns as f64 - p.intervals as f64 * clock_ns) / 1000.0);
        }
    }
    Some(median(&mut samples))
}

fn bulk_provider(prov: Prov, suite: CipherSuite) -> Option<Arc<CryptoProvider>> {
    prov.restricted(Kx::X25519, suite)
}

/// (server decrypt MB/s, server encrypt MB/s), thread CPU time of the server's calls only.
fn bench_bulk(prov: Prov, suite: CipherSuite, cert: &Cert, bytes: u64) -> (f64, f64) {
    let provider = bulk_provider(prov, suite).expect("suite");
    let version = if suite.as_str().unwrap_or("").starts_with("TLS13_") {
        &rustls::version::TLS13
    } else {
        &rustls::version::TLS12
    };
    let cfg = configs(provider, version, cert, false);
    let mut p = handshake(&cfg);
    assert_eq!(
        p.server.negotiated_cipher_suite().map(|s| s.suite()),
        Some(suite)
    );
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + 3) as u8).collect();
    let chunks = bytes.div_ceil(CHUNK as u64);
    let batches = chunks.div_ceil(BATCH as u64);
    let mut sink = 0u64;

    // Receive path: the client encrypts a batch of 64 KiB chunks (untimed), the server
    // deframes, decrypts and hands out every record (timed).
    let mut dec_ns = 0u64;
    let mut received = 0u64;
    for _ in 0..batches {
        p.c2s.clear();
        for _ in 0..BATCH {
            encrypt_into(&mut p.client, &chunk, &mut p.c2s);
        }
        let t0 = cpu_ns();
        let st = step(&mut p.server, &mut p.c2s, &mut p.s2c, &mut received);
        dec_ns += cpu_ns() - t0;
        assert_eq!(st, Stop::Writable);
        assert!(p.c2s.is_empty() && p.s2c.is_empty());
    }
    assert_eq!(received, batches * (BATCH * CHUNK) as u64);

    // Send path: the server encrypts 64 KiB chunks into one reused buffer (timed). The first
    // chunk goes to the client to check it decrypts; the rest is dropped unread.
    let mut out = Buf::new(CHUNK + 4096);
    encrypt_into(&mut p.server, &chunk, &mut out);
    let mut got = 0;
    let st = step(&mut p.client, &mut out, &mut p.c2s, &mut got);
    assert_eq!((st, got), (Stop::Writable, CHUNK as u64));
    let total_chunks = batches * BATCH as u64;
    let t0 = cpu_ns();
    for _ in 0..total_chunks {
        out.clear();
        encrypt_into(&mut p.server, &chunk, &mut out);
        sink = sink.wrapping_add(out.data[out.end - 1] as u64);
    }
    let enc_ns = cpu_ns() - t0;
    std::hint::black_box(sink);

    let mb = |ns: u64, n: u64| (n * CHUNK as u64) as f64 / 1e6 / (ns as f64 / 1e9);
    (mb(dec_ns, total_chunks), mb(enc_ns, total_chunks))
}

/// Gets `WriteTraffic` from the connection (no input pending) and encrypts `data` into `out`.
fn encrypt_into<C: Conn>(conn: &mut C, data: &[u8], out: &mut Buf) {
    let UnbufferedStatus { discard, state } = conn.process(&mut []);
    assert_eq!(discard, 0);
    match state.expect("TLS error") {
        ConnectionState::WriteTraffic(mut w) => {
            let mut need = data.len() + 1024;
            loop {
                out.reserve(need);
                let end = out.end;
                match w.encrypt(data, &mut out.data[end..]) {
                    Ok(n) => {
                        out.end += n;
                        return;
                    }
                    Err(EncryptError::InsufficientSize(e)) => need = e.required_size,
                    Err(e) => panic!("encrypt: {e}"),
                }
            }
        }
        other => panic!("not writable: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("number"))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps = arg(&args, "--reps", 3);
    let n_hs = arg(&args, "--handshakes", 500);
    let warmup = arg(&args, "--warmup", 50);
    let bulk_mib = arg(&args, "--bulk-mib", 1024) as u64;
    let provs = Prov::all();

    // What an empty timed interval reads (a clock read is a syscall, ~0.5 µs in this VM):
    // subtracted from each handshake once per timed interval.
    let mut empty: Vec<f64> = (0..20_000)
        .map(|_| {
            let t0 = cpu_ns();
            (cpu_ns() - t0) as f64
        })
        .collect();
    let clock_ns = median(&mut empty);

    let certs: Vec<(KeyKind, Cert)> = KeyKind::all()
        .into_iter()
        .map(|k| (k, make_cert(k)))
        .collect();
    let ecdsa = &certs[0].1;

    let mut hs_cases = Vec::new();
    for (key, _) in &certs {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            for resumed in [false, true] {
                hs_cases.push(HsCase {
                    version,
                    key: *key,
                    kx: Kx::X25519,
                    resumed,
                });
            }
        }
    }
    // aws-lc-rs' default first group (ring has none post-quantum).
    for resumed in [false, true] {
        hs_cases.push(HsCase {
            version: &rustls::version::TLS13,
            key: KeyKind::EcdsaP256,
            kx: Kx::X25519MlKem768,
            resumed,
        });
    }
    let bulk_suites = [
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];

    // results[case][prov] = per-rep values
    let mut hs: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); provs.len()]; hs_cases.len()];
    let mut dec: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); provs.len()]; bulk_suites.len()];
    let mut enc = dec.clone();

    eprintln!(
        "reps={reps} handshakes={n_hs} (+{warmup} warm-up) bulk={bulk_mib} MiB per case and direction"
    );
    for rep in 1..=reps {
        for (ci, case) in hs_cases.iter().enumerate() {
            let cert = &certs.iter().find(|(k, _)| *k == case.key).unwrap().1;
            for (pi, prov) in provs.iter().enumerate() {
                if let Some(us) = bench_handshake(*prov, case, cert, warmup, n_hs, clock_ns) {
                    eprintln!(
                        "rep {rep} hs   {:<44} {:<10} {us:>9.1} us",
                        case.label(),
                        prov.name()
                    );
                    hs[ci][pi].push(us);
                }
            }
        }
        for (si, suite) in bulk_suites.iter().enumerate() {
            for (pi, prov) in provs.iter().enumerate() {
                let (d, e) = bench_bulk(*prov, *suite, ecdsa, bulk_mib << 20);
                eprintln!(
                    "rep {rep} bulk {:<44} {:<10} decrypt {d:>7.0} MB/s  encrypt {e:>7.0} MB/s",
                    suite.as_str().unwrap_or("?"),
                    prov.name()
                );
                dec[si][pi].push(d);
                enc[si][pi].push(e);
            }
        }
    }

    let header: String = provs.iter().map(|p| format!(" {} |", p.name())).collect();
    let rule: String = provs.iter().map(|_| " ---: |").collect();
    let cell = |v: &mut Vec<f64>, prec: usize| {
        if v.is_empty() {
            " n/a |".to_string()
        } else {
            format!(" {:.*} |", prec, median(v))
        }
    };
    println!("\nMedians of {reps} runs. Empty timed interval (subtracted per interval from handshakes): {clock_ns:.0} ns.\n");
    println!("Server CPU time per handshake, µs (median of {n_hs} after {warmup} warm-up):\n");
    println!("| handshake |{header}");
    println!("| --- |{rule}");
    for (ci, case) in hs_cases.iter().enumerate() {
        let cells: String = hs[ci].iter_mut().map(|v| cell(v, 0)).collect();
        println!("| {} |{cells}", case.label());
    }
    println!(
        "\nServer bulk throughput, MB/s (10^6 B/s of thread CPU time; {bulk_mib} MiB per case, 64 KiB chunks, 16 KiB records):\n"
    );
    let header2: String = provs
        .iter()
        .map(|p| format!(" {} decrypt | {} encrypt |", p.name(), p.name()))
        .collect();
    let rule2: String = provs.iter().map(|_| " ---: | ---: |").collect();
    println!("| suite |{header2}");
    println!("| --- |{rule2}");
    for (si, suite) in bulk_suites.iter().enumerate() {
        let cells: String = (0..provs.len())
            .map(|pi| {
                let d = cell(&mut dec[si][pi], 0);
                let e = cell(&mut enc[si][pi], 0);
                format!("{d}{e}")
            })
            .collect();
        println!("| {} |{cells}", suite.as_str().unwrap_or("?"));
    }
}
