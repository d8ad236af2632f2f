//! The control connection: frames lines, feeds the sans-IO session, performs its actions, and sends
//! replies. Replies to pipelined commands are batched into one send, in order.
//!
//! While a transfer runs, the control connection is still read: ABOR stops the transfer (426 then
//! 226), STAT reports it, a closed control connection aborts it, and any other command waits its turn.
//! The read in flight is never dropped between phases, so no pipelined byte is ever lost to a
//! cancelled recv.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use crate::engine::fd::SharedFd;
use crate::engine::op::recv::Recv;
use crate::engine::op::Op;
use crate::engine::sync::Listener;
use crate::engine::{blocking, net, op, time};
use crate::proto::command::{self, Command, LineBuffer, LineError};
use crate::proto::command::{TransferMode, TransferType};
use crate::proto::listing::FactPerms;
use crate::proto::path::VPath;
use crate::proto::reply::Reply;
use crate::proto::session::{
    Access, Action, Session, SessionConfig, Transfer, TransferKind, TransferOutcome,
};

use super::config::Overwrite;
use super::core::CoreCtx;
use super::data::{DataConn, PassiveListener};
use super::fsops::{self, FsContext};
use super::limits::Refusal;
use super::metrics::{CoreMetrics, Direction, Mode};
use super::transfer::{self, XferEnv};
use super::xferlog::{Direction as XDirection, XferRecord};

/// Bytes of one control-connection read; commands are short, so this bounds idle memory per session.
const READ_CHUNK: usize = 1024;

type Line = Result<Vec<u8>, LineError>;

/// The control connection's reading half: one recv kept in flight across every phase of the session.
struct Reader {
    fd: SharedFd,
    pending: Option<Op<Recv>>,
    spare: Vec<u8>,
}

impl Reader {
    /// Received bytes (empty at end of stream), appended to `lines`.
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        lines: &mut LineBuffer,
    ) -> Poll<io::Result<usize>> {
        let op = self.pending.get_or_insert_with(|| {
            let mut buf = std::mem::take(&mut self.spare);
            buf.clear();
            buf.reserve(READ_CHUNK);
            op::recv::recv(&self.fd, buf)
        });
        let Poll::Ready((res, buf)) = Pin::new(op).poll(cx) else {
            return Poll::Pending;
        };
        self.pending = None;
        let n = res?;
        lines.push(&buf);
        self.spare = buf;
        Poll::Ready(Ok(n))
    }
}

/// The I/O half of a control connection.
struct Control {
    fd: SharedFd,
    peer: SocketAddr,
    local: SocketAddr,
    out: Vec<u8>,
    metrics: Arc<CoreMetrics>,
}

impl Control {
    fn queue(&mut self, reply: &Reply) {
        self.metrics.reply(reply.wire_code());
        reply.encode(&mut self.out);
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.out);
        let (res, mut buf) = net::send_all(&self.fd, buf).await;
        buf.clear();
        self.out = buf;
        res
    }

    async fn send(&mut self, reply: &Reply) -> io::Result<()> {
        self.queue(reply);
        self.flush().await
    }
}

/// Serves one control connection until QUIT, EOF, an error, or a timeout.
pub async fn serve(ctx: Rc<CoreCtx>, fd: OwnedFd) {
    let raw = fd.as_raw_fd();
    let (peer, local) = match (net::peer_addr(raw), net::local_addr(raw)) {
        (Ok(p), Ok(l)) => (p, l),
        _ => return, // the peer is already gone
    };
    let _ = net::set_nodelay(raw);
    let _ = net::set_keepalive(raw);
    let _guard = match ctx.shared.limits.admit(peer.ip()) {
        Ok(g) => g,
        Err(why) => {
            let text = match why {
                Refusal::TooManySessions => "421 Too many users, try again later.\r\n",
                Refusal::TooManyFromIp => "421 Too many connections from your address.\r\n",
            };
            tracing::info!(%peer, ?why, "connection refused");
            let _ = net::send_all(&Rc::new(fd), text.as_bytes().to_vec()).await;
            return;
        }
    };
    if ctx.shutdown.is_set() {
        let _ = net::send_all(&Rc::new(fd), b"421 Server shutting down.\r\n".to_vec()).await;
        return;
    }
    let span = tracing::debug_span!("session", %peer, core = ctx.core);
    let _enter = span.enter();
    tracing::debug!("connected");
    let fd = Rc::new(fd);
    let ctl = Control {
        fd: fd.clone(),
        peer,
        local,
        out: Vec::with_capacity(256),
        metrics: ctx.metrics.clone(),
    };
    ctx.metrics.session_opened();
    let reader = Reader {
        fd,
        pending: None,
        spare: Vec::new(),
    };
    let has_pool = crate::engine::runtime::with(|rt| rt.bufpool().is_some());
    let cfg = SessionConfig {
        block_mode: has_pool,
        ..SessionConfig::default()
    };
    let mut s = SessionIo {
        ctx: ctx.clone(),
        ctl,
        reader,
        session: Session::new(cfg, peer),
        lines: LineBuffer::new(ctx.cfg.max_line),
        deferred: VecDeque::new(),
        passive: None,
        spare: None,
        kept: None,
        root: ctx.root.clone(),
        shutdown: ctx.shutdown.listen(),
    };
    match s.drive().await {
        Ok(()) => tracing::debug!("closed"),
        Err(e) => tracing::debug!(error = %e, "session ended"),
    }
    ctx.metrics.session_closed();
}

struct SessionIo {
    ctx: Rc<CoreCtx>,
    ctl: Control,
    reader: Reader,
    session: Session,
    lines: LineBuffer,
    /// Commands that arrived during a transfer, run after it.
    deferred: VecDeque<Line>,
    passive: Option<(PassiveListener, Instant)>,
    /// The listener of the last completed passive transfer and when it completed: the next
    /// PASV/EPSV offers its port again instead of binding a new one (see `data::PassiveListener`).
    /// Released like an unused PASV port, after the data timeout.
    spare: Option<(PassiveListener, Instant)>,
    kept: Option<DataConn>,
    /// The logged-in user's root.
    root: SharedFd,
    shutdown: Listener,
}

/// What happened to a transfer while the control connection was watched.
enum Watched<T> {
    Done(T),
    Aborted,
    Closed,
}

impl SessionIo {
    async fn drive(&mut self) -> io::Result<()> {
        self.ctl.send(&self.session.greeting()).await?;
        let connected = Instant::now();
        loop {
            while let Some(line) = self.deferred.pop_front().or_else(|| self.lines.next_line()) {
                if !self.handle(line).await? {
                    return Ok(());
                }
            }
            self.ctl.flush().await?;
            let deadline = self.next_deadline(connected);
            let read = time::timeout(deadline.saturating_duration_since(Instant::now()), async {
                let (reader, lines, stop) = (&mut self.reader, &mut self.lines, &self.shutdown);
                poll_fn(|cx| {
                    if stop.poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    reader.poll_read(cx, lines).map(Some)
                })
                .await
            })
            .await;
            match read {
                Ok(None) => {
                    self.ctl
                        .send(&Reply::new(421, "Server shutting down."))
                        .await?;
                    return Ok(());
                }
                Ok(Some(Ok(0))) => return Ok(()),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(e),
                Err(_) => {
                    if !self.on_timeout(connected).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// When to wake up without input: the idle (or login) timeout, or a passive listener's expiry.
    fn next_deadline(&self, connected: Instant) -> Instant {
        let cfg = &self.ctx.cfg;
        let mut at = if self.session.user().is_some() {
            Instant::now() + cfg.idle_timeout
        } else {
            (connected + cfg.policies.login_timeout).min(Instant::now() + cfg.idle_timeout)
        };
        for (_, since) in self.passive.iter().chain(self.spare.iter()) {
            at = at.min(*since + cfg.data_timeout);
        }
        at
    }

    /// Returns false when the session must end.
    async fn on_timeout(&mut self, connected: Instant) -> io::Result<bool> {
        let now = Instant::now();
        let cfg = &self.ctx.cfg;
        if let Some((_, opened)) = &self.passive {
            if now >= *opened + cfg.data_timeout {
                // A PASV nobody connected to releases its port.
                self.passive = None;
                return Ok(true);
            }
        }
        if let Some((_, done)) = &self.spare {
            if now >= *done + cfg.data_timeout {
                self.spare = None;
                return Ok(true);
            }
        }
        if self.session.user().is_none() && now >= connected + cfg.policies.login_timeout {
            self.ctl.send(&Reply::new(421, "Login timeout.")).await?;
            return Ok(false);
        }
        self.ctl.send(&Reply::new(421, "Timeout.")).await?;
        Ok(false)
    }

    /// Runs one command line; returns false when the session must end.
    async fn handle(&mut self, line: Line) -> io::Result<bool> {
        let action = self.session.on_line(line);
        match action {
            Action::Reply(r) => self.ctl.queue(&r),
            Action::Close(r) => {
                self.ctl.queue(&r);
                self.ctl.flush().await?;
                return Ok(false);
            }
            Action::Authenticate { user, password } => {
                let access = self.authenticate(&user, &password.0).await;
                self.ctx.metrics.login(access.is_some());
                let r = self.session.login_done(access);
                self.ctl.queue(&r);
            }
            Action::OpenPassive { extended } => {
                self.passive = None; // a new PASV/EPSV replaces the previous listener
                let ip = self.ctl.local.ip();
                let reused = self.spare.take().and_then(|(l, _)| {
                    let ok = l.ip() == ip && l.drain_stale().is_ok();
                    ok.then_some(l)
                });
                let opened = match reused {
                    Some(l) => Ok(l),
                    None => PassiveListener::open(&self.ctx, ip),
                };
                let addr = match opened {
                    Ok(l) => {
                        let a = l.advertised(&self.ctx, ip);
                        self.passive = Some((l, Instant::now()));
                        Some(a)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no passive port available");
                        None
                    }
                };
                let r = self.session.passive_done(extended, addr);
                self.ctl.queue(&r);
            }
            Action::Transfer(t) => {
                self.ctl.flush().await?;
                let opening = self.session.transfer_opening();
                let listener = self.passive.take().map(|(l, _)| l);
                let env = XferEnv {
                    ctx: &self.ctx,
                    root: &self.root,
                    ctl: &self.ctl.fd,
                    peer: self.ctl.peer,
                    local: self.ctl.local,
                    perms: fact_perms(self.session.access()),
                    facts: self.session.mlst_facts(),
                    refuse_overwrite: self.ctx.cfg.policies.overwrite == Overwrite::Refuse,
                };
                let started = Instant::now();
                let fut = transfer::run(&env, opening, &t, listener.as_ref(), &mut self.kept);
                let watched = watch(
                    &mut self.reader,
                    &mut self.lines,
                    &mut self.deferred,
                    &self.session,
                    &self.ctl.fd,
                    fut,
                )
                .await?;
                match watched {
                    Watched::Done(fin) => {
                        let fin = fin?;
                        if matches!(fin.outcome, TransferOutcome::Complete { .. }) {
                            self.spare = listener.map(|l| (l, Instant::now()));
                        }
                        self.account(&t, &fin.outcome, started);
                        for m in &fin.marks {
                            self.ctl.queue(m);
                        }
                        if let Some(p) = fin.unique {
                            self.session.set_unique_path(p);
                        }
                        let r = self.session.transfer_done(fin.outcome);
                        self.ctl.queue(&r);
                    }
                    Watched::Aborted => {
                        self.account(&t, &TransferOutcome::Aborted, started);
                        self.kept = None;
                        let r = self.session.transfer_done(TransferOutcome::Aborted);
                        self.ctl.queue(&r);
                        let r = self.session.abort_reply();
                        self.ctl.queue(&r);
                    }
                    Watched::Closed => {
                        self.account(&t, &TransferOutcome::ConnectionLost, started);
                        return Ok(false);
                    }
                }
            }
            Action::Fs(fsop) => {
                let fx = FsContext {
                    root: &self.root,
                    perms: fact_perms(self.session.access()),
                    facts: self.session.mlst_facts(),
                    refuse_overwrite: self.ctx.cfg.policies.overwrite == Overwrite::Refuse,
                    list_limit: self.ctx.cfg.max_list_entries,
                };
                let result = fsops::run(&fx, &fsop).await;
                let r = self.session.fs_done(result);
                self.ctl.queue(&r);
            }
        }
        if !self.session.keep_data_connection() {
            self.kept = None; // PASV/PORT/MODE S/ABOR or a failed transfer ends a kept MODE B connection
        }
        Ok(true)
    }

    /// Counts a finished transfer and writes its xferlog line (file transfers only, as xferlog does).
    fn account(&self, t: &Transfer, outcome: &TransferOutcome, started: Instant) {
        let took = started.elapsed();
        let mode = match t.mode {
            TransferMode::Stream => Mode::Stream,
            TransferMode::Block => Mode::Block,
        };
        let (dir, xdir) = match t.kind {
            TransferKind::Store | TransferKind::Append | TransferKind::StoreUnique => {
                (Direction::In, XDirection::Incoming)
            }
            TransferKind::Retrieve => (Direction::Out, XDirection::Outgoing),
            _ => return,
        };
        let (bytes, complete) = match outcome {
            TransferOutcome::Complete { bytes, .. } => (*bytes, true),
            _ => (0, false),
        };
        let m = &self.ctx.metrics;
        if complete {
            m.bytes(dir, mode, bytes);
            m.file_done(dir, mode, took);
        } else {
            m.transfer_failed();
        }
        if let Some(x) = &self.ctx.shared.xferlog {
            let anonymous = self
                .session
                .access()
                .is_some_and(|a| a.upload_only.is_some());
            x.log(&XferRecord {
                time: SystemTime::now(),
                duration: took,
                remote: self.ctl.peer.ip(),
                bytes,
                path: t.path.as_str(),
                binary: t.ttype == TransferType::Image,
                direction: xdir,
                anonymous,
                user: self.session.user().unwrap_or("-"),
                complete,
            });
        }
    }

    /// Checks the password on a blocking worker (hashes are slow by design), opens the user's root
    /// there too, and applies the failed-login delay and per-IP limit.
    async fn authenticate(&mut self, user: &str, password: &str) -> Option<Access> {
        let ip = self.ctl.peer.ip();
        let limits = self.ctx.shared.limits.clone();
        if !limits.login_allowed(ip) {
            tracing::warn!(%ip, "too many failed logins; refusing further attempts for now");
            time::sleep(self.ctx.cfg.policies.login_fail_delay).await;
            return None;
        }
        let db = self.ctx.shared.users();
        let default_root = self.ctx.cfg.root.clone();
        let (u, p) = (user.to_owned(), password.to_owned());
        let verified = blocking::spawn_blocking(move || {
            let info = db.verify(&u, &p)?;
            let root = if info.root == default_root {
                None
            } else {
                Some(fsops::open_root_dir(&info.root))
            };
            Some((info, root))
        })
        .await
        .ok()
        .flatten();
        let Some((info, root)) = verified else {
            limits.login_failed(ip);
            tracing::info!(user = %user, %ip, "login failed");
            time::sleep(self.ctx.cfg.policies.login_fail_delay).await;
            return None;
        };
        match root {
            None => self.root = self.ctx.root.clone(),
            Some(Ok(fd)) => self.root = Rc::new(fd),
            Some(Err(e)) => {
                tracing::error!(user = %user, root = %info.root.display(), error = %e, "cannot open the user's root");
                return None;
            }
        }
        limits.login_succeeded(ip);
        tracing::debug!(user = %info.name, %ip, "logged in");
        Some(match &info.anonymous {
            Some(anon) => match VPath::root().resolve(&anon.incoming) {
                Ok(dir) => Access::drop_box(dir),
                Err(_) => return None,
            },
            None => Access {
                read: info.perms.read,
                write: info.perms.write,
                delete: info.perms.delete,
                mkdir: info.perms.mkdir,
                upload_only: None,
            },
        })
    }
}

fn fact_perms(access: Option<&Access>) -> FactPerms {
    match access {
        Some(a) => FactPerms {
            read: a.read,
            write: a.write,
            delete: a.delete,
            mkdir: a.mkdir,
        },
        None => FactPerms::default(),
    }
}

/// Runs `fut` (a transfer) while reading the control connection: ABOR aborts it, STAT is answered
/// at once, the connection's close aborts it, and other commands are kept for afterwards.
async fn watch<F: Future>(
    reader: &mut Reader,
    lines: &mut LineBuffer,
    deferred: &mut VecDeque<Line>,
    session: &Session,
    ctl: &SharedFd,
    fut: F,
) -> io::Result<Watched<F::Output>> {
    let mut fut = pin!(fut);
    loop {
        let ev = poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(Some(v)));
            }
            match reader.poll_read(cx, lines) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Err(())),
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(None)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match ev {
            Ok(Some(v)) => return Ok(Watched::Done(v)),
            Err(()) => return Ok(Watched::Closed),
            Ok(None) => {}
        }
        while let Some(line) = lines.next_line() {
            match line.as_ref().ok().map(|l| command::parse(l)) {
                Some(Ok(Command::Abor)) => return Ok(Watched::Aborted),
                Some(Ok(Command::Stat(None))) => {
                    let r = transfer_status(session);
                    let (res, _) = net::send_all(ctl, r.to_bytes()).await;
                    res?;
                }
                _ => deferred.push_back(line),
            }
        }
    }
}

fn transfer_status(session: &Session) -> Reply {
    let what = match session.pending_transfer() {
        Some(t) => format!("Transfer in progress: {:?} {}", t.kind, t.path),
        None => "Transfer in progress".into(),
    };
    Reply::multi(213, vec!["Status:".into(), what, "End of status".into()])
}
