//! One session's loop: frames the control connection's lines, feeds the sans-IO session, performs
//! its actions (login, passive listeners, transfers, file commands), and sends the replies.
//! Replies to pipelined commands are batched into one send, in order.
//!
//! While a transfer runs, the control connection is still read: ABOR stops the transfer (426 then
//! 226), STAT reports it, a closed control connection aborts it, and any other command waits its turn.
//! The read in flight is never dropped between phases, so no pipelined byte is ever lost to a
//! cancelled recv.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use tracing::Instrument;

use crate::engine::fd::SharedFd;
use crate::engine::sync::Listener;
use crate::engine::{net, time};
use crate::proto::command::{LineBuffer, TransferMode};
use crate::proto::listing::FactPerms;
use crate::proto::reply::Reply;
use crate::proto::session::{
    Access, Action, DataEndpoint, Session, SessionConfig, TlsMode, TlsPolicy, TransferOutcome,
};
use crate::server::auth::limits::Refusal;
use crate::server::balancer;
use crate::server::context::CoreCtx;
use crate::server::storage::Storage;
use crate::server::transfer::{self, DataConn, DataTls, PassiveListener, Preface, XferEnv};
use crate::tls::config::{for_control_session, SessionTls};

use super::account::account;
use super::io::{Control, Line, Reader};
use super::login::{authenticate, Login};
use super::watch::{watch, Replies, Watched};

/// Replies held back while pipelined commands are run (see `drive`): past this many bytes they
/// are sent whatever follows, so a client that never stops sending cannot grow them without bound.
const MAX_HELD_REPLIES: usize = 4096;

/// Serves one control connection until QUIT, EOF, an error, or a timeout.
/// `implicit`: the connection came in on the implicit-TLS listener.
pub async fn serve(ctx: Rc<CoreCtx>, fd: OwnedFd, implicit: bool) {
    let raw = fd.as_raw_fd();
    let (tcp_peer, local) = match (net::peer_addr(raw), net::local_addr(raw)) {
        (Ok(p), Ok(l)) => (p, l),
        _ => return, // the peer is already gone
    };
    let _ = net::set_nodelay(raw);
    let _ = net::set_keepalive(raw);
    if let Err(e) = net::set_oobinline(raw) {
        tracing::warn!(error = %e, "SO_OOBINLINE failed: an ABOR sent as urgent data will not be seen");
    }
    let fd = Rc::new(fd);
    // Behind a balancer, the client is the one its PROXY header names, for everything below.
    let origin = match balancer::origin(&fd, tcp_peer, &ctx.cfg.proxy).await {
        Ok(o) => o,
        Err(why) => {
            tracing::warn!(%tcp_peer, error = %why, "connection refused");
            return;
        }
    };
    let peer = origin.client;
    let _guard = match ctx.shared.limits.admit(peer.ip()) {
        Ok(g) => g,
        Err(why) => {
            let text = match why {
                Refusal::TooManySessions => "421 Too many users, try again later.\r\n",
                Refusal::TooManyFromIp => "421 Too many connections from your address.\r\n",
            };
            tracing::info!(%peer, ?why, "connection refused");
            let stall = ctx.cfg.control_send_timeout;
            let _ = net::send_all(&fd, text.as_bytes().to_vec(), stall).await;
            return;
        }
    };
    if ctx.shutdown.is_set() {
        let bye = b"421 Server shutting down.\r\n".to_vec();
        let _ = net::send_all(&fd, bye, ctx.cfg.control_send_timeout).await;
        return;
    }
    // Instrumented, not entered: a span entered across an `.await` stays entered while the core
    // runs other sessions' tasks, and their log lines would carry this session's tag.
    let span = tracing::debug_span!("session", %peer, core = ctx.core);
    let advertise = origin.via.map(|v| v.ip());
    run_session(ctx, fd, peer, local, advertise, implicit)
        .instrument(span)
        .await;
}

async fn run_session(
    ctx: Rc<CoreCtx>,
    fd: SharedFd,
    peer: SocketAddr,
    local: SocketAddr,
    advertise: Option<IpAddr>,
    implicit: bool,
) {
    tracing::debug!(tcp = ?advertise, "connected");
    let stall = ctx.cfg.control_send_timeout;
    let ctl = Control::new(fd.clone(), peer, local, ctx.metrics.clone(), stall);
    ctx.metrics.session_opened();
    let reader = Reader::new(ctl.chan.clone());
    let has_pool = crate::engine::runtime::with(|rt| rt.bufpool().is_some());
    // The certificate of this session's whole life (SIGHUP changes only later sessions').
    let base_tls = ctx.shared.tls();
    let settings = &ctx.cfg.tls;
    let tls = TlsPolicy {
        control: if base_tls.is_some() {
            settings.mode
        } else {
            TlsMode::Off
        },
        data_required: settings.data_required,
        implicit,
    };
    let cfg = SessionConfig {
        block_mode: has_pool,
        tls,
        checksums: ctx.cfg.checksums.clone(),
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
        storage: ctx.storage.clone(),
        shutdown: ctx.shutdown.listen(),
        force_close: ctx.force_close.listen(),
        base_tls,
        tls: None,
        advertise,
    };
    match s.drive(implicit).await {
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
    /// The logged-in user's storage.
    storage: Storage,
    shutdown: Listener,
    /// The shutdown grace period is over: a running transfer is aborted.
    force_close: Listener,
    /// The server's TLS configuration when this session began (`None`: FTPS off).
    base_tls: Option<Arc<rustls::ServerConfig>>,
    /// This session's TLS configurations, once TLS is on.
    tls: Option<SessionTls>,
    /// The balancer's address the client connected to (PROXY header): what PASV advertises
    /// unless `passive_address` is set.
    advertise: Option<IpAddr>,
}

impl SessionIo {
    async fn drive(&mut self, implicit: bool) -> io::Result<()> {
        let connected = Instant::now();
        if implicit && (!self.start_tls(&[]) || !self.handshake(connected).await?) {
            return Ok(());
        }
        self.ctl.send(&self.session.greeting()).await?;
        loop {
            if self.deferred.is_empty() && self.reader.holding() && !self.ctl.chan.is_tls() {
                // The AUTH line was answered without starting TLS: what followed it is commands.
                self.reader.release(&mut self.lines);
            }
            while let Some(line) = self.deferred.pop_front().or_else(|| self.lines.next_line()) {
                // Checked between queued commands too: a client that pipelines login attempts (each
                // one waits out the failed-login delay) must not outstay the login timeout.
                if self.login_expired(connected, Instant::now()) {
                    self.ctl.queue(&Reply::new(421, "Login timeout."));
                    self.ctl.flush().await?;
                    return Ok(());
                }
                if !self.handle(line).await? {
                    return Ok(());
                }
            }
            if self.ctl.queued() > 0 && self.ctl.queued() < MAX_HELD_REPLIES {
                // Bytes that already arrived are commands pipelined behind the ones just answered:
                // run them first, so their replies share one send (a MODE B client that sends the
                // next STOR before reading the last 250 gets the 250 and the 125 together).
                let (reader, lines) = (&mut self.reader, &mut self.lines);
                match poll_fn(|cx| Poll::Ready(reader.poll_read(cx, lines))).await {
                    Poll::Ready(Ok(n)) if n > 0 => continue,
                    Poll::Ready(Ok(_)) => {
                        self.ctl.flush().await?;
                        return Ok(());
                    }
                    Poll::Ready(Err(e)) => {
                        let _ = self.ctl.flush().await;
                        return Err(e);
                    }
                    Poll::Pending => {}
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

    /// Turns TLS on for the control connection with this session's own configuration; `early`:
    /// bytes of the client's handshake that arrived with the AUTH line. False: no TLS possible.
    fn start_tls(&mut self, early: &[u8]) -> bool {
        let Some(base) = &self.base_tls else {
            return false;
        };
        let st = for_control_session(base);
        if let Err(e) = self.ctl.chan.start_tls(st.control.clone(), early) {
            tracing::info!(error = %e, "TLS handshake failed on the control connection");
            return false;
        }
        self.tls = Some(st);
        true
    }

    /// Runs the control connection's handshake to its end (implicit TLS, before the greeting),
    /// within the login timeout. False: the client went away or the handshake failed.
    async fn handshake(&mut self, connected: Instant) -> io::Result<bool> {
        let deadline = connected + self.ctx.cfg.policies.login_timeout;
        loop {
            self.ctl.flush().await?;
            if !self.ctl.chan.handshaking() {
                tracing::debug!(
                    tls = self.ctl.chan.describe().as_deref().unwrap_or(""),
                    "TLS on"
                );
                return Ok(true);
            }
            let (reader, lines) = (&mut self.reader, &mut self.lines);
            let left = deadline.saturating_duration_since(Instant::now());
            match time::timeout(left, poll_fn(|cx| reader.poll_read(cx, lines))).await {
                Ok(Ok(0)) => return Ok(false),
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Ok(false),
                Err(_) => {
                    tracing::info!("TLS handshake not completed within the login timeout; closing");
                    return Ok(false);
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

    /// Whether the session is still not logged in when its login time is up.
    fn login_expired(&self, connected: Instant, now: Instant) -> bool {
        self.session.user().is_none() && now >= connected + self.ctx.cfg.policies.login_timeout
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
        if self.login_expired(connected, now) {
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
                self.ctl.chan.close_notify().await;
                return Ok(false);
            }
            Action::StartTls(r) => {
                // The 234 goes out in clear; everything after it is TLS.
                self.ctl.queue(&r);
                self.ctl.flush().await?;
                let early = self.reader.take_held();
                if !self.start_tls(&early) {
                    return Ok(false);
                }
            }
            Action::Authenticate { user, password } => {
                let ip = self.ctl.peer.ip();
                let access = match authenticate(&self.ctx, ip, &user, &password.0).await {
                    Login::Granted(_, _, rules)
                        if rules.login_required && !self.session.is_secure() =>
                    {
                        tracing::info!(user = %user, "login refused: the account requires TLS");
                        let r = self
                            .session
                            .login_refused("This account requires TLS: send AUTH TLS before USER.");
                        self.ctl.queue(&r);
                        return Ok(true);
                    }
                    Login::Granted(access, storage, rules) => {
                        self.storage = storage;
                        if let Some(required) = rules.data_required {
                            self.session.set_data_required(required);
                        }
                        Some(access)
                    }
                    Login::Denied => None,
                    Login::Unavailable(why) => {
                        self.ctx.metrics.login(false);
                        let r = self.session.login_unavailable(&why);
                        self.ctl.queue(&r);
                        self.ctl.flush().await?;
                        return Ok(false);
                    }
                };
                self.ctx.metrics.login(access.is_some());
                let r = self.session.login_done(access);
                self.ctl.queue(&r);
            }
            Action::OpenPassive { style } => {
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
                        let a = l.advertised(&self.ctx, self.advertise.unwrap_or(ip));
                        self.passive = Some((l, Instant::now()));
                        Some(a)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no passive port available");
                        None
                    }
                };
                let r = self.session.passive_done(style, addr);
                self.ctl.queue(&r);
            }
            Action::Transfer(t) => {
                // On a kept MODE B connection the 150/125 goes out before anything waits for the
                // client, so replies still queued (the last file's 250, when the client pipelined
                // this command) go with it: one send per file instead of two. Anything else may
                // wait for the client first (a data connection, TLS, the object store's memory),
                // and must not hold a reply back meanwhile.
                let coalesce = t.mode == TransferMode::Block
                    && t.endpoint == DataEndpoint::Open
                    && matches!(self.storage, Storage::Local(_))
                    && !self.ctl.chan.is_tls();
                let preface = if coalesce {
                    self.ctl.take_queued()
                } else {
                    self.ctl.flush().await?;
                    Vec::new()
                };
                let opening = self.session.transfer_opening();
                let listener = self.passive.take().map(|(l, _)| l);
                let data_tls = match (&self.tls, t.protected) {
                    (Some(st), true) => Some(DataTls {
                        config: st.data(),
                        require_resumption: self.ctx.cfg.tls.data_resumption,
                    }),
                    _ => None,
                };
                let env = XferEnv {
                    ctx: &self.ctx,
                    storage: &self.storage,
                    ctl: &self.ctl.chan,
                    tls: data_tls,
                    peer: self.ctl.peer,
                    local: self.ctl.local,
                    perms: fact_perms(self.session.access()),
                    facts: self.session.mlst_facts(),
                    preface: Preface::new(preface),
                };
                let started = Instant::now();
                let fut = transfer::run(&env, opening, &t, listener.as_ref(), &mut self.kept);
                let watched = watch(
                    &mut self.reader,
                    &mut self.lines,
                    &mut self.deferred,
                    &self.session,
                    Replies {
                        ctl: &self.ctl,
                        held: &env.preface,
                    },
                    &self.force_close,
                    fut,
                )
                .await;
                let unsent = env.preface.take();
                self.ctl.requeue(unsent);
                let watched = watched?;
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
                    Watched::ShuttingDown | Watched::Flooded => {
                        let why = if matches!(watched, Watched::Flooded) {
                            tracing::warn!(peer = %self.ctl.peer, "too many commands during a transfer; closing");
                            "Too many commands during a transfer; closing."
                        } else {
                            "Server shutting down."
                        };
                        self.account(&t, &TransferOutcome::Aborted, started);
                        let r = self.session.transfer_done(TransferOutcome::Aborted);
                        self.ctl.queue(&r);
                        self.ctl.queue(&Reply::new(421, why));
                        self.ctl.flush().await?;
                        return Ok(false);
                    }
                }
            }
            Action::Fs(fsop) => {
                let perms = fact_perms(self.session.access());
                let facts = self.session.mlst_facts();
                let result = self.storage.run(&fsop, perms, facts).await;
                let r = self.session.fs_done(result);
                self.ctl.queue(&r);
            }
        }
        if !self.session.keep_data_connection() {
            self.kept = None; // PASV/PORT/MODE S/ABOR or a failed transfer ends a kept MODE B connection
        }
        Ok(true)
    }

    fn account(
        &self,
        t: &crate::proto::session::Transfer,
        outcome: &TransferOutcome,
        started: Instant,
    ) {
        account(
            &self.ctx,
            &self.session,
            self.ctl.peer.ip(),
            t,
            outcome,
            started,
        );
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
