//! The state a session runs with: [`Shared`] by all cores (configuration, limits, users, metrics
//! registry, xferlog), and [`CoreCtx`], one core's own (its storage backend, the default user's
//! storage, its passive ports, its shutdown flag and counters). `start` builds them; everything
//! below receives a `CoreCtx` and nothing below builds one, so this file is where any shared state
//! is found.

use std::cell::Cell;
use std::sync::{Arc, RwLock};

use crate::engine::sync::LocalEvent;

use super::auth::limits::Limits;
use super::auth::users::UserDb;
use super::config::server::ServerConfig;
use super::config::tls::LoadedTls;
use super::observe::metrics::{CoreMetrics, Registry};
use super::observe::xferlog::XferLog;
use super::storage::seam::{Backend, Storage};

/// State shared by all cores; touched once per connection or login, never per transfer.
pub struct Shared {
    pub cfg: Arc<ServerConfig>,
    pub limits: Arc<Limits>,
    pub users: RwLock<UserDb>,
    pub metrics: Arc<Registry>,
    pub xferlog: Option<XferLog>,
    /// The TLS configuration (`None`: FTPS off); SIGHUP swaps it, sessions keep the one they began
    /// with.
    pub tls: RwLock<Option<LoadedTls>>,
}

impl Shared {
    /// The current users database (a cheap clone; SIGHUP swaps it).
    pub fn users(&self) -> UserDb {
        self.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current TLS server configuration, if FTPS is on.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        let guard = self.tls.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|t| t.config.clone())
    }

    /// Replaces the users database (SIGHUP); sessions already logged in keep their access.
    pub fn replace_users(&self, db: UserDb) {
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = db;
    }
}

/// State of one core, shared by its sessions.
pub struct CoreCtx {
    pub shared: Arc<Shared>,
    pub cfg: Arc<ServerConfig>,
    pub core: usize,
    /// This core's storage backend (the local file system's per-core settings and state).
    pub backend: Backend,
    /// The default user's storage (the single CLI user's root), for sessions until they log in
    /// as a user with a root of their own.
    pub storage: Storage,
    /// The passive port range (all of it: any core may use any port) and the next port this core
    /// tries, which starts in its own slice.
    pub passive: (u16, u16),
    pub passive_next: Cell<u16>,
    /// Set when the server is shutting down: no new sessions, idle ones are told 421.
    pub shutdown: LocalEvent,
    /// Set when the shutdown grace period is over: running transfers are aborted (426, 421).
    pub force_close: LocalEvent,
    /// This core's counters (written only here, summed by the scraper).
    pub metrics: Arc<CoreMetrics>,
}
