//! Start-up, signals, and the per-core accept loop: the top of the server, which builds the shared
//! and per-core [`super::context`] and hands each accepted connection to a session. Each core owns a SO_REUSEPORT listener (steered
//! with SO_INCOMING_CPU), so a connection is accepted, served and closed on one core, never migrating.
//!
//! Signals are blocked in every thread and taken synchronously by the starting thread: SIGTERM/SIGINT
//! stop accepting, tell idle sessions 421, let running transfers finish within the grace period, then
//! return; SIGHUP reloads the users file and the TLS certificate without touching sessions.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::engine::fd::SharedFd;
use crate::engine::sync::LocalEvent;
use crate::engine::{net, op, spawn, thread, time};

use super::auth::limits::Limits;
use super::auth::users;
use super::config::policies::StorageKind;
use super::config::server::ServerConfig;
use super::config::tls::LoadedTls;
use super::context::{CoreCtx, Shared};
use super::observe::metrics::{serve_http, Registry};
use super::observe::xferlog::XferLog;
use super::session;
use super::storage::s3::client::{S3Client, S3Config};
use super::storage::s3::credentials::S3Credentials;
use super::storage::{self, Backend, UserRoot};

/// What a running server tells its starter.
#[derive(Clone, Debug)]
pub struct Started {
    pub local_addr: SocketAddr,
    pub threads: usize,
    /// Where `/metrics` is served, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The implicit-TLS listener's address, if enabled.
    pub implicit_tls_addr: Option<SocketAddr>,
    /// The certificate in use (FTPS on).
    pub tls: Option<LoadedTls>,
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// The object store's client with `storage = "s3"`: its credentials must be there at start-up;
/// the store itself need not be up (uploads answer 451 until it is).
fn s3_client(cfg: &ServerConfig) -> io::Result<Option<Arc<S3Client>>> {
    if cfg.storage != StorageKind::S3 {
        return Ok(None);
    }
    let s3 = &cfg.s3;
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let creds = match &s3.credentials_file {
        Some(path) => S3Credentials::from_file(path),
        None => S3Credentials::from_env(),
    }
    .map_err(|e| bad(format!("S3 credentials: {e}")))?;
    let mut c = S3Config::new(&s3.endpoint, &s3.region, &s3.bucket, creds);
    c.threads = s3.threads;
    c.retry.total = s3.timeout;
    c.attempt_timeout = s3.timeout;
    c.io_timeout = c.io_timeout.min(s3.timeout);
    c.connect_timeout = c.connect_timeout.min(s3.timeout);
    let client = S3Client::new(c).map_err(|e| bad(format!("S3 client: {e}")))?;
    tracing::info!(endpoint = %s3.endpoint, bucket = %s3.bucket, prefix = %s3.prefix, part_size = s3.part_size, memory_cap = s3.memory_cap, "uploads land in the object store");
    Ok(Some(Arc::new(client)))
}

/// Runs the server until SIGTERM/SIGINT (then drains and returns) or a core thread fails.
/// `started` is called once the listeners are bound.
pub fn run(mut cfg: ServerConfig, started: impl FnOnce(&Started)) -> io::Result<()> {
    crate::engine::caps::check()?;
    let sigset = block_signals();
    let cpus = thread::allowed_cpus();
    let threads = if cfg.threads == 0 {
        cpus.len()
    } else {
        cfg.threads
    };
    fit_sessions_to_descriptors(&mut cfg, threads);
    std::fs::create_dir_all(&cfg.root).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("creating root {}: {e}", cfg.root.display()),
        )
    })?;
    let root = UserRoot::for_user(&cfg, &cfg.user, &cfg.root)?;
    let s3 = s3_client(&cfg)?;
    let users = users::load_for(&cfg)?;
    if cfg.proxy.mode != super::config::policies::ProxyMode::Off && cfg.proxy.from.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "proxy_protocol is on but proxy_from lists no balancer address: every PROXY header \
             would be refused",
        ));
    }
    let tls = cfg
        .tls
        .load(&cfg.root)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("TLS: {e}")))?;
    if cfg.storage == StorageKind::Local {
        storage::sweep_interrupted(users.roots());
    }
    let (listeners, addr) = listen_per_core(
        cfg.listen,
        &cpus,
        threads,
        cfg.listen_backlog,
        "listening on",
    )?;
    // The implicit-TLS listeners, one per core like the others.
    let (implicit, implicit_addr) = match cfg.tls.implicit_listen {
        Some(a) => {
            let (ls, a) = listen_per_core(
                a,
                &cpus,
                threads,
                cfg.listen_backlog,
                "implicit TLS listener",
            )?;
            (
                ls.into_iter().map(|l| Mutex::new(Some(l))).collect(),
                Some(a),
            )
        }
        None => (Vec::new(), None),
    };
    let implicit = Arc::new(implicit);
    let mut wakeups = Vec::with_capacity(threads);
    let mut core_parts = Vec::with_capacity(threads);
    for l in listeners {
        let efd = crate::engine::fd::eventfd()?;
        wakeups.push(efd.try_clone()?);
        core_parts.push(Mutex::new(Some((l, efd))));
    }
    let cfg = Arc::new(cfg);
    let p = &cfg.policies;
    let limits = Arc::new(Limits::new(
        p.max_sessions,
        p.max_sessions_per_ip,
        p.max_login_failures_per_ip,
        p.max_login_checks_per_ip,
    ));
    let xferlog = match &p.xferlog {
        Some(path) => Some(XferLog::open(path).map_err(|e| {
            io::Error::new(e.kind(), format!("opening xferlog {}: {e}", path.display()))
        })?),
        None => None,
    };
    let metrics_listener = match p.metrics_listen {
        Some(a) => Some(
            net::listen_exclusive(a, 64)
                .map_err(|e| io::Error::new(e.kind(), format!("metrics listener {a}: {e}")))?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(fd) => Some(net::local_addr(fd.as_raw_fd())?),
        None => None,
    };
    let metrics_listener = Mutex::new(metrics_listener);
    // Everything privileged is done: drop to run_as_user before the rings exist.
    super::service::after_bind(&cfg.policies, (&cfg.root, &root), &users)?;
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        limits: limits.clone(),
        users: RwLock::new(users),
        metrics: Arc::new(Registry::new()),
        xferlog,
        tls: RwLock::new(tls.clone()),
    });
    started(&Started {
        local_addr: addr,
        threads,
        metrics_addr,
        implicit_tls_addr: implicit_addr,
        tls,
    });
    let core_parts = Arc::new(core_parts);
    let shared_for_cores = shared.clone();
    let handles = thread::start_cores(
        threads,
        cfg.runtime.clone(),
        "ringest-core",
        move |core, _cpu| {
            let parts = core_parts[core].lock().ok().and_then(|mut l| l.take());
            let implicit_listener = implicit
                .get(core)
                .and_then(|m| m.lock().ok().and_then(|mut l| l.take()));
            let root = root.try_clone();
            let s3 = s3.clone();
            let shared = shared_for_cores.clone();
            let metrics_fd = if core == 0 {
                metrics_listener.lock().ok().and_then(|mut m| m.take())
            } else {
                None
            };
            async move {
                let (Some((listener, wakeup)), Ok(root)) = (parts, root) else {
                    tracing::error!(core, "core could not get its listener or root");
                    return;
                };
                let cfg = shared.cfg.clone();
                let passive = cfg.passive_ports;
                let first = cfg.passive_slice(core, threads).0;
                let metrics = shared.metrics.register(core);
                let share = cfg.s3.memory_cap / threads.max(1) as u64;
                let backend = Backend::new(&cfg, s3.clone().map(|c| (c, share)), metrics.clone());
                let storage = match backend.session(root) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(core, error = %e, "core could not open its storage");
                        return;
                    }
                };
                let ctx = Rc::new(CoreCtx {
                    cfg,
                    core,
                    backend,
                    storage,
                    passive,
                    passive_next: Cell::new(first),
                    shutdown: LocalEvent::new(),
                    force_close: LocalEvent::new(),
                    metrics,
                    shared,
                });
                if let Some(fd) = metrics_fd {
                    spawn(serve_http(Rc::new(fd), ctx.shared.metrics.clone())).detach();
                }
                spawn(watch_shutdown(ctx.clone(), Rc::new(wakeup))).detach();
                if let Some(l) = implicit_listener {
                    spawn(accept_loop(ctx.clone(), Rc::new(l), true)).detach();
                }
                accept_loop(ctx, Rc::new(listener), false).await;
                // Not accepting any more; sessions finish on their own, and the starting thread decides
                // when the process ends. Park this future forever without busy-waiting.
                std::future::pending::<()>().await;
            }
        },
    )?;
    // The core threads run until the process exits; their failure to start is the only early error.
    drop(handles);
    signal_loop(&sigset, &shared, &wakeups);
    let grace = shared.cfg.policies.shutdown_grace;
    let deadline = Instant::now() + grace;
    while limits.active() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if limits.active() > 0 {
        tracing::warn!(
            sessions = limits.active(),
            "grace period over; closing the remaining sessions"
        );
        // Second signal: every core aborts its transfers and tells each client why (426, 421)
        // before the process ends, instead of cutting the connections without a word.
        for w in &wakeups {
            crate::engine::fd::signal_eventfd(w);
        }
        let last_words = Instant::now() + FAREWELL;
        while limits.active() > 0 && Instant::now() < last_words {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(x) = &shared.xferlog {
        x.flush();
    }
    Ok(())
}

/// One SO_REUSEPORT listener per core thread on `addr`, each steered to its CPU. Thread 0's
/// listener resolves port 0; the others bind the same address into its reuseport group. Fails,
/// naming `what`, when another server already listens there.
fn listen_per_core(
    mut addr: SocketAddr,
    cpus: &[usize],
    threads: usize,
    backlog: i32,
    what: &str,
) -> io::Result<(Vec<OwnedFd>, SocketAddr)> {
    net::ensure_unused(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{what} {addr}: {e} (is another server running on this port?)"),
        )
    })?;
    let mut listeners = Vec::with_capacity(threads);
    for i in 0..threads {
        let cpu = cpus[i % cpus.len()];
        let l = net::listen_reuseport(addr, Some(cpu), backlog)
            .map_err(|e| io::Error::new(e.kind(), format!("{what} {addr}: {e}")))?;
        if i == 0 {
            addr = net::local_addr(l.as_raw_fd())?;
        }
        listeners.push(l);
    }
    Ok((listeners, addr))
}

/// Descriptors kept back from sessions: listeners, rings, eventfds, the blocking pool, log files,
/// metrics, and a margin for pipes and files of uploads in flight.
const RESERVED_FDS: u64 = 128;
const RESERVED_FDS_PER_CORE: u64 = 32;

/// Raises the soft descriptor limit to the hard one (the soft default, often 1024, is far below
/// what thousands of sessions need), then lowers `max_sessions` to what the descriptors allow, with
/// a warning: a session needs one descriptor idle and three or four while it uploads, and a server
/// that accepts more sessions than it has descriptors fails them at random (a login or a transfer
/// that cannot open what it needs).
fn fit_sessions_to_descriptors(cfg: &mut ServerConfig, threads: usize) {
    let limit = match raise_nofile() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read RLIMIT_NOFILE; max_sessions left as configured");
            return;
        }
    };
    // A small limit (a test, a container) keeps at most a quarter back.
    let reserved = (RESERVED_FDS + RESERVED_FDS_PER_CORE * threads as u64).min(limit / 4);
    let fit = usize::try_from(limit.saturating_sub(reserved).max(1)).unwrap_or(usize::MAX);
    let wanted = cfg.policies.max_sessions;
    if wanted == 0 || wanted > fit {
        tracing::warn!(
            max_sessions = wanted,
            lowered_to = fit,
            rlimit_nofile = limit,
            "max_sessions lowered to what the descriptor limit allows (raise LimitNOFILE / ulimit -n to serve more)"
        );
        cfg.policies.max_sessions = fit;
    }
}

/// Sets the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force.
fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the live struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one live rlimit struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

/// Waits for signals; returns on SIGTERM/SIGINT after telling every core.
fn signal_loop(set: &libc::sigset_t, shared: &Shared, wakeups: &[OwnedFd]) {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is a valid signal set; sigwait writes the signal number into `sig`.
        if unsafe { libc::sigwait(set, &mut sig) } != 0 {
            continue;
        }
        if sig == libc::SIGHUP {
            if let Some(x) = &shared.xferlog {
                x.reopen();
            }
            if shared.cfg.tls.mode != crate::proto::session::TlsMode::Off
                || shared.cfg.tls.implicit_listen.is_some()
            {
                match shared.cfg.tls.load(&shared.cfg.root) {
                    Ok(t) => {
                        let fp = t.as_ref().map(|t| t.info.fingerprint.clone());
                        *shared.tls.write().unwrap_or_else(|e| e.into_inner()) = t;
                        tracing::info!(
                            sha256 = fp.as_deref().unwrap_or("-"),
                            "SIGHUP: TLS certificate reloaded"
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded, keeping the old one")
                    }
                }
            }
            match users::load_for(&shared.cfg) {
                Ok(db) => {
                    shared.replace_users(db);
                    tracing::info!("SIGHUP: users reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: users file not reloaded, keeping the old one")
                }
            }
            continue;
        }
        tracing::info!(
            signal = sig,
            sessions = shared.limits.active(),
            "shutting down"
        );
        for w in wakeups {
            crate::engine::fd::signal_eventfd(w);
        }
        return;
    }
}

/// How long sessions get, once the grace period is over, to send their 426/421 and close.
const FAREWELL: Duration = Duration::from_secs(2);

/// The starting thread signals a core's eventfd once to stop (no new sessions, idle ones told 421)
/// and once more when the grace period is over (transfers aborted with 426 + 421).
async fn watch_shutdown(ctx: Rc<CoreCtx>, wakeup: SharedFd) {
    let mut seen = 0u64;
    while seen < 2 {
        let (res, buf) = op::read::read(&wakeup, Vec::with_capacity(8), u64::MAX).await;
        if res.is_err() {
            return;
        }
        let count = buf
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_ne_bytes)
            .unwrap_or(1);
        seen += count.max(1);
        ctx.shutdown.set();
        if seen >= 2 {
            ctx.force_close.set();
        }
    }
}

/// Accepts control connections; `implicit`: TLS starts before the greeting (implicit FTPS).
async fn accept_loop(ctx: Rc<CoreCtx>, listener: SharedFd, implicit: bool) {
    tracing::debug!(core = ctx.core, "accepting");
    let stop = ctx.shutdown.listen();
    loop {
        let mut accepts = op::accept::accept_multi(&listener);
        loop {
            let next = std::future::poll_fn(|cx| {
                if stop.poll(cx).is_ready() {
                    return std::task::Poll::Ready(None);
                }
                accepts.poll_next(cx).map(Some)
            })
            .await;
            match next {
                None => return, // shutting down: the listener closes with this function
                Some(None) => break,
                Some(Some(Ok(fd))) => {
                    spawn(session::serve(ctx.clone(), fd, implicit)).detach();
                }
                Some(Some(Err(e))) => {
                    tracing::warn!(core = ctx.core, error = %e, "accept failed");
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) {
                        // Out of descriptors or memory: back off instead of spinning on the error.
                        time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        // The kernel ended the multishot (after an error, or a full CQ): arm it again.
    }
}
