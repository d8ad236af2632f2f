//! The client side of one FTP session on the engine: connecting from a chosen source address, the
//! control connection (commands out, replies in through `proto::client::ReplyParser`) and the
//! classification of what went wrong.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use ringest::engine::fd::SharedFd;
use ringest::engine::net::{self, SockAddr};
use ringest::engine::op::{self, Op};
use ringest::engine::time;
use ringest::proto::client::{parse_epsv, parse_pasv, ReplyParser};
use ringest::proto::reply::Reply;

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
            Fail::Protocol { step, msg } => format!("{step}: {msg}"),
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

/// A data connection that is reset (SO_LINGER 0) when dropped without [`DataConn::finish`]: in MODE S
/// a plain close would tell the server "end of file" and a transfer cut short by an error or the
/// deadline would land as a complete, truncated file.
pub struct DataConn {
    fd: SharedFd,
    finished: bool,
}

impl DataConn {
    pub fn new(fd: SharedFd) -> DataConn {
        DataConn {
            fd,
            finished: false,
        }
    }

    /// The socket, for sends and receives.
    pub fn fd(&self) -> &SharedFd {
        &self.fd
    }

    /// Ends the file the MODE S way: half-close (FIN after the last byte), then close.
    pub fn finish(mut self) {
        self.finished = true;
        // SAFETY: shutdown on a descriptor we own.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_WR) };
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

/// One control connection.
pub struct Control {
    fd: SharedFd,
    parser: ReplyParser,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    peer: IpAddr,
    timeout: Duration,
}

impl Control {
    /// Connects and reads the greeting.
    pub async fn open(
        server: SocketAddr,
        src: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Control, Fail> {
        let fd = connect(server, src, timeout, "control connect").await?;
        let mut c = Control {
            fd,
            parser: ReplyParser::new(),
            rbuf: Vec::with_capacity(2048),
            wbuf: Vec::with_capacity(256),
            peer: server.ip(),
            timeout,
        };
        let r = c.reply("greeting").await?;
        if r.code != 220 {
            return Err(reply_fail("greeting", &r));
        }
        Ok(c)
    }

    /// Sends one command line (CRLF appended).
    pub async fn send(&mut self, line: &str, step: &'static str) -> Result<(), Fail> {
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
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

    /// USER, PASS, TYPE I. A refused login is fatal: every retry would be refused too.
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
