//! The control connection: frames lines, feeds the sans-IO session, performs its actions, and sends
//! replies. Replies to pipelined commands are batched into one send, in order.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::{net, op};
use crate::proto::command::LineBuffer;
use crate::proto::reply::Reply;
use crate::proto::session::{Action, Session, SessionConfig};

use super::core::CoreCtx;
use super::data::{DataConn, PassiveListener};
use super::{fsops, transfer};

/// Bytes of one control-connection read; commands are short, so this bounds idle memory per session.
const READ_CHUNK: usize = 2048;

/// The I/O half of a control connection.
pub struct Control {
    pub fd: SharedFd,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    out: Vec<u8>,
}

impl Control {
    /// Queues a reply; it goes out with the next flush.
    pub fn queue(&mut self, reply: &Reply) {
        reply.encode(&mut self.out);
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.out);
        let (res, mut buf) = net::send_all(&self.fd, buf).await;
        buf.clear();
        self.out = buf;
        res
    }

    /// Queues and sends one reply now (preliminary replies such as 150 must not wait).
    pub async fn send(&mut self, reply: &Reply) -> io::Result<()> {
        self.queue(reply);
        self.flush().await
    }
}

/// Serves one control connection until QUIT, EOF, an error, or the idle timeout.
pub async fn serve(ctx: Rc<CoreCtx>, fd: OwnedFd) {
    let raw = fd.as_raw_fd();
    let (peer, local) = match (net::peer_addr(raw), net::local_addr(raw)) {
        (Ok(p), Ok(l)) => (p, l),
        _ => return, // the peer is already gone
    };
    let _ = net::set_nodelay(raw);
    let _ = net::set_keepalive(raw);
    let span = tracing::debug_span!("session", %peer, core = ctx.core);
    let _enter = span.enter();
    tracing::debug!("connected");
    let mut ctl = Control {
        fd: Rc::new(fd),
        peer,
        local,
        out: Vec::with_capacity(256),
    };
    let has_pool = crate::engine::runtime::with(|rt| rt.bufpool().is_some());
    let cfg = SessionConfig {
        block_mode: has_pool,
        ..SessionConfig::default()
    };
    let mut session = Session::new(cfg, peer);
    match drive(&ctx, &mut ctl, &mut session).await {
        Ok(()) => tracing::debug!("closed"),
        Err(e) => tracing::debug!(error = %e, "session ended"),
    }
}

async fn drive(ctx: &Rc<CoreCtx>, ctl: &mut Control, session: &mut Session) -> io::Result<()> {
    ctl.send(&session.greeting()).await?;
    let mut lines = LineBuffer::new(ctx.cfg.max_line);
    let mut passive: Option<PassiveListener> = None;
    let mut kept: Option<DataConn> = None;
    let mut rbuf = Vec::with_capacity(READ_CHUNK);
    loop {
        while let Some(line) = lines.next_line() {
            match session.on_line(line) {
                Action::Reply(r) => ctl.queue(&r),
                Action::Close(r) => {
                    ctl.queue(&r);
                    ctl.flush().await?;
                    return Ok(());
                }
                Action::Authenticate { user, password } => {
                    let ok = check_login(ctx, &user, &password);
                    if !ok {
                        tracing::info!(user = %user, "login failed");
                    }
                    ctl.queue(&session.login_done(ok));
                }
                Action::OpenPassive { extended } => {
                    passive = None; // a new PASV/EPSV replaces the previous listener
                    let addr = match PassiveListener::open(ctx, ctl.local.ip()) {
                        Ok(l) => {
                            let a = l.advertised(ctx, ctl.local.ip());
                            passive = Some(l);
                            Some(a)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "no passive port available");
                            None
                        }
                    };
                    ctl.queue(&session.passive_done(extended, addr));
                }
                Action::Transfer(t) => {
                    ctl.flush().await?;
                    let listener = passive.take();
                    let outcome = transfer::run(ctx, ctl, session, &t, listener, &mut kept).await?;
                    ctl.queue(&session.transfer_done(outcome));
                }
                Action::Fs(fsop) => {
                    let result = fsops::run(ctx, &fsop).await;
                    ctl.queue(&session.fs_done(result));
                }
            }
            if !session.keep_data_connection() {
                kept = None; // PASV/PORT/MODE S or a failed transfer ends a kept MODE B connection
            }
        }
        ctl.flush().await?;
        rbuf.clear();
        let (res, buf) =
            op::Op::with_timeout(op::recv::Recv::new(&ctl.fd, rbuf), ctx.cfg.idle_timeout).await;
        rbuf = buf;
        match res {
            Ok(0) => return Ok(()),
            Ok(_) => lines.push(&rbuf),
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {
                ctl.send(&Reply::new(421, "Timeout.")).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

fn check_login(ctx: &CoreCtx, user: &str, password: &str) -> bool {
    // Compare without early exit so timing does not reveal how much of the password matched.
    let a = password.as_bytes();
    let b = ctx.cfg.password.as_bytes();
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    user == ctx.cfg.user && diff == 0
}
