//! The client side of one FTP session on the engine: connecting from a chosen source address, the
//! control connection (commands out, replies in through `proto::client::ReplyParser`), data
//! connections, TLS on either (FTPS, through `ringest::tls::stream::TlsStream`) and the
//! classification of what went wrong.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ringest::engine::fd::SharedFd;
use ringest::engine::net::{self, SockAddr};
use ringest::engine::op::{self, Op};
use ringest::engine::time;
use ringest::proto::client::{parse_epsv, parse_pasv, ReplyParser};
use ringest::proto::reply::Reply;
use ringest::tls::stream::{End, TlsStream};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::tls::{self, Mode, TlsOpts};

/// Why one attempt at a file (or a session's setup) failed.
#[derive(Debug)]
pub enum Fail {
    /// A system call failed.
    Io { step: &'static str, err: io::Error },
    /// No progress within the per-operation timeout.
    Timeout { step: &'static str },
    /// The server closed the control connection (or the data connection early).
    Eof { step: &'static str },
    /// The server answered with an unexpected code.
    Reply {
        step: &'static str,
        code: u16,
        text: String,
    },
    /// The server's bytes did not parse.
    Protocol { step: &'static str, msg: String },
    /// A TLS handshake failed (certificate refused, no resumption, the peer hung up).
    Tls { step: &'static str, msg: String },
    /// Retrying cannot help (login refused, MODE B unsupported): stop the run.
    Fatal(String),
}

impl Fail {
    /// The key this failure is counted under in "errors by kind" (reply errors are counted by code).
    pub fn kind(&self) -> String {
        match self {
            Fail::Io { step, err } => format!("{} ({step})", errno_kind(err)),
            Fail::Timeout { step } => format!("timeout ({step})"),
            Fail::Eof { step } => format!("closed by server ({step})"),
            Fail::Reply { step, code, .. } => format!("reply {code} ({step})"),
            Fail::Protocol { step, .. } => format!("protocol error ({step})"),
            Fail::Tls { step, .. } => format!("TLS handshake failed ({step})"),
            Fail::Fatal(_) => "fatal".into(),
        }
    }

    /// A one-line description with detail, for the first-errors log.
    pub fn describe(&self) -> String {
        match self {
            Fail::Io { step, err } => format!("{step}: {err}"),
            Fail::Timeout { step } => format!("{step}: timed out"),
            Fail::Eof { step } => format!("{step}: connection closed by server"),
            Fail::Reply { step, code, text } => format!("{step}: {code} {text}"),
            Fail::Protocol { step, msg } | Fail::Tls { step, msg } => format!("{step}: {msg}"),
            Fail::Fatal(m) => m.clone(),
        }
    }

    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Fail::Io { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

/// Names the errnos that mean a client-side or network limit.
pub fn errno_kind(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connect refused".into(),
        Some(libc::ETIMEDOUT) | Some(libc::ECANCELED) => "timeout".into(),
        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL".into(),
        Some(libc::EADDRINUSE) => "EADDRINUSE".into(),
        Some(libc::EMFILE) => "EMFILE".into(),
        Some(libc::ENFILE) => "ENFILE".into(),
        Some(libc::ECONNRESET) => "connection reset".into(),
        Some(libc::EPIPE) => "broken pipe".into(),
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => "out of kernel memory".into(),
        _ => format!("io: {}", err.kind()),
    }
}

fn io_fail(step: &'static str) -> impl FnOnce(io::Error) -> Fail {
    move |err| {
        if err.raw_os_error() == Some(libc::ECANCELED) {
            Fail::Timeout { step }
        } else {
            Fail::Io { step, err }
        }
    }
}

/// A failure of a read or write on a TLS connection (whose timeouts are `TimedOut` errors).
fn tls_io_fail(step: &'static str) -> impl FnOnce(io::Error) -> Fail {
    move |err| {
        if err.kind() == io::ErrorKind::TimedOut {
            Fail::Timeout { step }
        } else {
            io_fail(step)(err)
        }
    }
}

fn setsockopt_int(fd: i32, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Connects to `addr` from source address `src` (port chosen at connect time, so the kernel picks a
/// free 4-tuple and may reuse TIME_WAIT ports: IP_BIND_ADDRESS_NO_PORT), with TCP_NODELAY, within
/// `dur`.
pub async fn connect(
    addr: SocketAddr,
    src: Option<IpAddr>,
    dur: Duration,
    step: &'static str,
) -> Result<SharedFd, Fail> {
    let fd = net::tcp_socket(&addr).map_err(io_fail(step))?;
    let raw = fd.as_raw_fd();
    if let Some(ip) = src {
        if ip.is_ipv4() {
            // Best effort: without it the bind below picks the port, which only costs port reuse.
            let _ = setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
        }
        let sa = SockAddr::from(SocketAddr::new(ip, 0));
        // SAFETY: `sa` is a valid sockaddr of `sa.len()` bytes.
        if unsafe { libc::bind(raw, sa.as_ptr(), sa.len()) } < 0 {
            return Err(Fail::Io {
                step,
                err: io::Error::last_os_error(),
            });
        }
    }
    let _ = net::set_nodelay(raw);
    let fd = Rc::new(fd);
    match time::timeout(dur, op::connect::connect(&fd, addr)).await {
        Ok(Ok(())) => Ok(fd),
        Ok(Err(e)) => Err(io_fail(step)(e)),
        Err(_) => Err(Fail::Timeout { step }),
    }
}

/// Sends all of `buf` within `dur`; hands the buffer back.
pub async fn send_all(
    fd: &SharedFd,
    buf: Vec<u8>,
    dur: Duration,
    step: &'static str,
) -> (Result<(), Fail>, Option<Vec<u8>>) {
    match time::timeout(dur, net::send_all(fd, buf, dur)).await {
        Ok((Ok(()), b)) => (Ok(()), Some(b)),
        Ok((Err(e), b)) => (Err(io_fail(step)(e)), Some(b)),
        Err(_) => (Err(Fail::Timeout { step }), None),
    }
}

/// A data connection, with TLS when the session has it, that is reset (SO_LINGER 0) when dropped
/// before [`DataConn::end`]: in MODE S a plain close would tell the server "end of file" and a
/// transfer cut short by an error or the deadline would land as a complete, truncated file.
pub struct DataConn {
    fd: SharedFd,
    tls: Option<TlsStream>,
    finished: bool,
}

impl DataConn {
    pub fn new(fd: SharedFd) -> DataConn {
        DataConn {
            fd,
            tls: None,
            finished: false,
        }
    }

    /// The client's TLS handshake on this connection; returns whether it resumed a session (the
    /// control connection's, when `config` is that session's own).
    pub async fn handshake(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        limit: Duration,
    ) -> Result<bool, Fail> {
        let s = TlsStream::connect(self.fd.clone(), config, name, limit)
            .await
            .map_err(|e| Fail::Tls {
                step: "data TLS handshake",
                msg: e.to_string(),
            })?;
        let resumed = s.tls.resumed();
        self.tls = Some(s);
        Ok(resumed)
    }

    /// Sends all of `buf` (encrypted with TLS) within `dur`; hands the buffer back.
    pub async fn send(
        &mut self,
        buf: Vec<u8>,
        dur: Duration,
        step: &'static str,
    ) -> (Result<(), Fail>, Option<Vec<u8>>) {
        match self.tls.as_mut() {
            None => send_all(&self.fd, buf, dur, step).await,
            Some(t) => {
                let res = t.write_all(&buf, dur).await.map_err(tls_io_fail(step));
                (res, Some(buf))
            }
        }
    }

    /// Receives into `buf` (replacing its contents); `Ok(0)` is the end of the data: the socket's end
    /// without TLS, close_notify with it. A TLS connection that ends without close_notify is an
    /// error: what arrived may be cut short.
    pub async fn recv(
        &mut self,
        mut buf: Vec<u8>,
        dur: Duration,
    ) -> (Result<usize, Fail>, Vec<u8>) {
        const STEP: &str = "data recv";
        buf.clear();
        match self.tls.as_mut() {
            None => {
                buf.reserve(256 * 1024);
                let (res, b) = Op::with_timeout(op::recv::Recv::new(&self.fd, buf), dur).await;
                (res.map_err(io_fail(STEP)), b)
            }
            Some(t) => match t.fill(dur).await {
                Ok(None) => {
                    let b = t.tls.take_plaintext(buf);
                    (Ok(b.len()), b)
                }
                Ok(Some(End::Clean)) => (Ok(0), buf),
                Ok(Some(End::Cut)) => (
                    Err(Fail::Protocol {
                        step: STEP,
                        msg: "TLS data connection closed without close_notify (data may be cut short)"
                            .into(),
                    }),
                    buf,
                ),
                Err(e) => (Err(tls_io_fail(STEP)(e)), buf),
            },
        }
    }

    /// Ends our data: close_notify with TLS (the server refuses a TLS stream upload without it),
    /// then a half-close (FIN after the last byte). The connection stays open for reading until it
    /// is dropped, which then closes it without a reset.
    pub async fn end(&mut self, dur: Duration) -> Result<(), Fail> {
        if let Some(t) = self.tls.as_mut() {
            t.shutdown(dur)
                .await
                .map_err(tls_io_fail("data close_notify"))?;
        }
        self.finished = true;
        // SAFETY: shutdown on a descriptor we own.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_WR) };
        Ok(())
    }

    /// Processes what the server sent on this connection and we have not read (with TLS 1.3, the
    /// session tickets that follow each handshake: they refill the session's cache, so its later data
    /// connections can resume too), without waiting. Also keeps unread bytes from turning the close
    /// into a reset.
    pub fn absorb(&mut self) {
        let Some(t) = self.tls.as_mut() else { return };
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: receives into a live buffer of `buf.len()` bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 || t.tls.received_bytes(&buf[..n as usize]).is_err() {
                return;
            }
        }
    }
}

impl Drop for DataConn {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: passes a pointer to a live linger struct and its size.
        unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }
}

/// A control session's TLS: its own configuration (and so its own session cache) and the server
/// name, for its data connections.
#[derive(Clone)]
pub struct SessionTls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

/// One control connection.
pub struct Control {
    fd: SharedFd,
    tls: Option<TlsStream>,
    session: Option<SessionTls>,
    parser: ReplyParser,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    peer: IpAddr,
    timeout: Duration,
}

impl Control {
    /// Connects and reads the greeting; with `tls`, TLS first (implicit) or `AUTH TLS` after the
    /// greeting (explicit), with a configuration of this session's own.
    pub async fn open(
        server: SocketAddr,
        src: Option<IpAddr>,
        timeout: Duration,
        tls: Option<&TlsOpts>,
    ) -> Result<Control, Fail> {
        let fd = connect(server, src, timeout, "control connect").await?;
        let mut c = Control {
            fd,
            tls: None,
            session: None,
            parser: ReplyParser::new(),
            rbuf: Vec::with_capacity(2048),
            wbuf: Vec::with_capacity(256),
            peer: server.ip(),
            timeout,
        };
        if let Some(opts) = tls.filter(|o| o.mode == Mode::Implicit) {
            c.start_tls(opts).await?;
        }
        let r = c.reply("greeting").await?;
        if r.code != 220 {
            return Err(reply_fail("greeting", &r));
        }
        if let Some(opts) = tls.filter(|o| o.mode == Mode::Explicit) {
            let r = c.cmd("AUTH TLS", "AUTH TLS").await?;
            if r.code != 234 {
                return Err(Fail::Fatal(format!(
                    "the server refused TLS: AUTH TLS answered {} {}",
                    r.code,
                    r.lines.join(" ")
                )));
            }
            c.start_tls(opts).await?;
        }
        Ok(c)
    }

    /// The control connection's handshake, with a new configuration for this session.
    async fn start_tls(&mut self, opts: &TlsOpts) -> Result<(), Fail> {
        let session = SessionTls {
            config: tls::session_config(&opts.base),
            name: opts.name.clone(),
        };
        let s = TlsStream::connect(
            self.fd.clone(),
            session.config.clone(),
            session.name.clone(),
            self.timeout,
        )
        .await
        .map_err(|e| Fail::Tls {
            step: "control TLS handshake",
            msg: e.to_string(),
        })?;
        self.tls = Some(s);
        self.session = Some(session);
        Ok(())
    }

    /// The session's TLS settings for its data connections (`None`: plain FTP).
    pub fn session_tls(&self) -> Option<&SessionTls> {
        self.session.as_ref()
    }

    /// The negotiated TLS version and cipher suite of the control connection.
    pub fn tls_describe(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.tls.describe())
    }

    /// Sends one command line (CRLF appended).
    pub async fn send(&mut self, line: &str, step: &'static str) -> Result<(), Fail> {
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
        if let Some(t) = self.tls.as_mut() {
            let res = t
                .write_all(&buf, self.timeout)
                .await
                .map_err(tls_io_fail(step));
            self.wbuf = buf;
            return res;
        }
        let (res, buf) = send_all(&self.fd, buf, self.timeout, step).await;
        if let Some(b) = buf {
            self.wbuf = b;
        }
        res
    }

    /// The next complete reply.
    pub async fn reply(&mut self, step: &'static str) -> Result<Reply, Fail> {
        loop {
            match self.parser.next_reply() {
                Some(Ok(r)) => return Ok(r),
                Some(Err(e)) => {
                    return Err(Fail::Protocol {
                        step,
                        msg: e.to_string(),
                    })
                }
                None => {}
            }
            if let Some(t) = self.tls.as_mut() {
                // Reading also processes what else the server sent (TLS 1.3 session tickets).
                match t.fill(self.timeout).await {
                    Ok(None) => {
                        self.parser.push(t.tls.plaintext());
                        let n = t.tls.plaintext().len();
                        t.tls.consume(n);
                    }
                    Ok(Some(_)) => return Err(Fail::Eof { step }),
                    Err(e) => return Err(tls_io_fail(step)(e)),
                }
                continue;
            }
            let mut buf = std::mem::take(&mut self.rbuf);
            buf.clear();
            let (res, buf) =
                Op::with_timeout(op::recv::Recv::new(&self.fd, buf), self.timeout).await;
            match res {
                Ok(0) => return Err(Fail::Eof { step }),
                Ok(_) => self.parser.push(&buf),
                Err(e) => return Err(io_fail(step)(e)),
            }
            self.rbuf = buf;
        }
    }

    /// Sends a command and reads its reply.
    pub async fn cmd(&mut self, line: &str, step: &'static str) -> Result<Reply, Fail> {
        self.send(line, step).await?;
        self.reply(step).await
    }

    /// USER, PASS, (with TLS: PBSZ 0, PROT P,) TYPE I. A refused login is fatal: every retry would
    /// be refused too.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), Fail> {
        let r = self.cmd(&format!("USER {user}"), "USER").await?;
        match r.code {
            230 => {}
            331 | 332 => {
                let r = self.cmd(&format!("PASS {password}"), "PASS").await?;
                match r.code {
                    230 | 202 => {}
                    530 => {
                        return Err(Fail::Fatal(format!(
                            "login refused: {} {}",
                            r.code,
                            r.lines.join(" ")
                        )))
                    }
                    _ => return Err(reply_fail("PASS", &r)),
                }
            }
            530 => {
                return Err(Fail::Fatal(format!(
                    "login refused: {} {}",
                    r.code,
                    r.lines.join(" ")
                )))
            }
            _ => return Err(reply_fail("USER", &r)),
        }
        if self.tls.is_some() {
            // RFC 4217: protect the data connections (as curl does, after the login).
            self.expect("PBSZ 0", "PBSZ", &[200]).await?;
            self.expect("PROT P", "PROT", &[200]).await?;
        }
        self.expect("TYPE I", "TYPE", &[200]).await?;
        Ok(())
    }

    /// Sends a command and fails unless the reply code is one of `ok`.
    pub async fn expect(
        &mut self,
        line: &str,
        step: &'static str,
        ok: &[u16],
    ) -> Result<Reply, Fail> {
        let r = self.cmd(line, step).await?;
        if ok.contains(&r.code) {
            Ok(r)
        } else {
            Err(reply_fail(step, &r))
        }
    }

    /// PASV or EPSV: the address to connect the data connection to.
    pub async fn passive(&mut self, epsv: bool) -> Result<SocketAddr, Fail> {
        if epsv {
            let r = self.cmd("EPSV", "EPSV").await?;
            if r.code != 229 {
                return Err(reply_fail("EPSV", &r));
            }
            parse_epsv(&r, self.peer).map_err(|e| Fail::Protocol {
                step: "EPSV",
                msg: e.to_string(),
            })
        } else {
            let r = self.cmd("PASV", "PASV").await?;
            if r.code != 227 {
                return Err(reply_fail("PASV", &r));
            }
            parse_pasv(&r)
                .map(SocketAddr::V4)
                .map_err(|e| Fail::Protocol {
                    step: "PASV",
                    msg: e.to_string(),
                })
        }
    }

    /// QUIT, waiting briefly for 221; errors are ignored (the session is over anyway).
    pub async fn quit(mut self) {
        self.timeout = self.timeout.min(Duration::from_secs(2));
        let _ = self.cmd("QUIT", "QUIT").await;
        if let Some(t) = self.tls.as_mut() {
            let _ = t.shutdown(self.timeout).await;
        }
    }
}

/// A failure for an unexpected reply.
pub fn reply_fail(step: &'static str, r: &Reply) -> Fail {
    Fail::Reply {
        step,
        code: r.code,
        text: r.lines.join(" "),
    }
}
