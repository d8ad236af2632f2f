//! Start-up and the per-core accept loop. Each core owns a SO_REUSEPORT listener (steered with
//! SO_INCOMING_CPU), so a connection is accepted, served and closed on one core, never migrating.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::fd::SharedFd;
use crate::engine::{net, op, spawn, thread, time};

use super::config::ServerConfig;
use super::control;

/// What a running server tells its starter.
#[derive(Clone, Debug)]
pub struct Started {
    pub local_addr: SocketAddr,
    pub threads: usize,
}

/// State shared by all sessions of one core.
pub struct CoreCtx {
    pub cfg: Arc<ServerConfig>,
    pub core: usize,
    /// The user's root, opened O_PATH; every path is resolved beneath it with RESOLVE_IN_ROOT.
    pub root: SharedFd,
    /// This core's slice of the passive port range and the next port to try.
    pub passive: (u16, u16),
    pub passive_next: Cell<u16>,
}

/// Runs the server until every core thread ends (normally never). `started` is called once the
/// listeners are bound.
pub fn run(cfg: ServerConfig, started: impl FnOnce(&Started)) -> io::Result<()> {
    let cpus = thread::allowed_cpus();
    let threads = if cfg.threads == 0 {
        cpus.len()
    } else {
        cfg.threads
    };
    std::fs::create_dir_all(&cfg.root).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("creating root {}: {e}", cfg.root.display()),
        )
    })?;
    let root = open_root(&cfg)?;
    // Thread 0's listener resolves port 0; the others bind the same address into its reuseport group.
    let mut listeners = Vec::with_capacity(threads);
    let mut addr = cfg.listen;
    for i in 0..threads {
        let cpu = cpus[i % cpus.len()];
        let l = net::listen_reuseport(addr, Some(cpu), cfg.listen_backlog)
            .map_err(|e| io::Error::new(e.kind(), format!("listening on {addr}: {e}")))?;
        if i == 0 {
            addr = net::local_addr(l.as_raw_fd())?;
        }
        listeners.push(l);
    }
    started(&Started {
        local_addr: addr,
        threads,
    });
    let cfg = Arc::new(cfg);
    let listeners: Vec<std::sync::Mutex<Option<OwnedFd>>> = listeners
        .into_iter()
        .map(|l| std::sync::Mutex::new(Some(l)))
        .collect();
    let listeners = Arc::new(listeners);
    let runtime_cfg = cfg.runtime.clone();
    let handles = thread::start_cores(threads, runtime_cfg, "ringest-core", move |core, _cpu| {
        let listener = listeners[core].lock().ok().and_then(|mut l| l.take());
        let root = root.try_clone();
        let cfg = cfg.clone();
        async move {
            let (Some(listener), Ok(root)) = (listener, root) else {
                tracing::error!(core, "core could not get its listener or root");
                return;
            };
            let passive = cfg.passive_slice(core, threads);
            let ctx = Rc::new(CoreCtx {
                cfg,
                core,
                root: Rc::new(root),
                passive,
                passive_next: Cell::new(passive.0),
            });
            accept_loop(ctx, Rc::new(listener)).await;
        }
    })?;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::other("a core thread panicked")),
        }
    }
    Ok(())
}

fn open_root(cfg: &ServerConfig) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(&cfg.root)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening root {}: {e}", cfg.root.display()),
            )
        })?;
    Ok(OwnedFd::from(f))
}

async fn accept_loop(ctx: Rc<CoreCtx>, listener: SharedFd) {
    tracing::debug!(core = ctx.core, "accepting");
    loop {
        let mut accepts = op::accept::accept_multi(&listener);
        while let Some(res) = accepts.next().await {
            match res {
                Ok(fd) => {
                    spawn(control::serve(ctx.clone(), fd)).detach();
                }
                Err(e) => {
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
