//! Logging in: the per-IP limits, the password check off the core with the user's root opened
//! beside it, and the failed-login delay. A wrong password is the client's failure (530, counted);
//! a login the server cannot serve (no descriptors or threads, a missing home directory, too many
//! checks at once from one address) is the server's (421 with the reason, not counted, logged).

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::engine::{blocking, time};
use crate::proto::session::Access;
use crate::server::auth::limits::LoginRefusal;
use crate::server::auth::users::UserTls;
use crate::server::config::policies::StorageKind;
use crate::server::context::CoreCtx;
use crate::server::storage::{errno_of, Storage, UserRoot};

/// How long a login waits before it asks again for one of its address's password-check slots.
const BUSY_RETRY: Duration = Duration::from_millis(2);

/// How a login attempt ended.
pub enum Login {
    Granted(Access, Storage, UserTls),
    /// Wrong name or password, or the IP's failed-login budget is spent: 530.
    Denied,
    /// The server could not serve this login now: 421 with this reason, then the connection closes.
    Unavailable(String),
}

/// Checks the password on a blocking worker (hashes are slow by design), opens the user's root
/// there too, and applies the failed-login delay and per-IP limits.
pub async fn authenticate(ctx: &CoreCtx, ip: IpAddr, user: &str, password: &str) -> Login {
    let limits = ctx.shared.limits.clone();
    let give_up = Instant::now() + ctx.cfg.policies.login_timeout;
    let attempt = loop {
        match limits.begin_login(ip) {
            Ok(a) => break a,
            Err(LoginRefusal::TooManyFailures) => {
                tracing::warn!(%ip, "too many failed logins; refusing further attempts for now");
                time::sleep(ctx.cfg.policies.login_fail_delay).await;
                return Login::Denied;
            }
            // The slots are shared by every core, so there is no local waker to wait on; the
            // wait is rare (a burst from one address) and a short sleep is cheap.
            Err(LoginRefusal::Busy) if Instant::now() < give_up => {
                time::sleep(BUSY_RETRY).await;
            }
            Err(LoginRefusal::Busy) => {
                tracing::warn!(%ip, "login waited the whole login timeout for a password-check slot");
                return Login::Unavailable(
                    "Too many logins at once from your address; try again later.".into(),
                );
            }
        }
    };
    let db = ctx.shared.users();
    let cfg = ctx.cfg.clone();
    let (u, p) = (user.to_owned(), password.to_owned());
    ctx.metrics.password_check();
    let checked = blocking::spawn_blocking(move || {
        let info = db.verify(&u, &p)?;
        // The default user's root is the core's own; an object store's root is its prefix,
        // which is per user name.
        let shared_root = info.root == cfg.root && cfg.storage == StorageKind::Local;
        let root = if shared_root {
            None
        } else {
            Some(UserRoot::for_user(&cfg, &info.name, &info.root))
        };
        Some((info, root))
    })
    .await;
    let verified = match checked {
        Ok(v) => v,
        Err(e) => {
            attempt.not_checked();
            tracing::error!(user = %user, %ip, error = %e, "cannot check a password: no worker could run it");
            return Login::Unavailable(format!(
                "Cannot check your password now ({}); try again later.",
                why(&e)
            ));
        }
    };
    let Some((info, root)) = verified else {
        tracing::info!(user = %user, %ip, "login failed");
        time::sleep(ctx.cfg.policies.login_fail_delay).await;
        // Counted as a failure now; its slot is held through the delay, so one address cannot run
        // more than its share of checks by not waiting for the answers.
        drop(attempt);
        return Login::Denied;
    };
    let storage = match root {
        None => ctx.storage.clone(),
        Some(Ok(root)) => match ctx.backend.session(root) {
            Ok(s) => s,
            Err(e) => {
                attempt.not_checked();
                tracing::error!(user = %user, error = %e, "cannot open the user's storage");
                return Login::Unavailable("Home directory not available.".into());
            }
        },
        Some(Err(e)) => {
            attempt.not_checked();
            tracing::error!(user = %user, root = %info.root.display(), error = %e, "cannot open the user's root");
            return Login::Unavailable(format!("Home directory not available ({}).", why(&e)));
        }
    };
    let Some(access) = info.access() else {
        attempt.not_checked();
        tracing::error!(user = %user, "the user's incoming directory is not a valid path");
        return Login::Unavailable("Account misconfigured.".into());
    };
    attempt.succeeded();
    tracing::debug!(user = %info.name, %ip, "logged in");
    Login::Granted(access, storage, info.tls)
}

/// What a client may be told about a server-side error: its kind, never a server path.
fn why(e: &io::Error) -> &'static str {
    match errno_of(e) {
        Some(libc::EMFILE | libc::ENFILE) => "server out of file descriptors",
        Some(libc::ENOMEM | libc::EAGAIN) => "server out of memory or threads",
        Some(libc::ENOENT) => "it does not exist",
        Some(libc::ENOTDIR) => "it is not a directory",
        Some(libc::EACCES | libc::EPERM) => "permission denied",
        _ => "server error",
    }
}
