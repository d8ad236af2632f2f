//! Logging in: the password check off the core, the user's root opened with it, and the failed-login
//! delay and per-IP limit.

use std::net::IpAddr;

use crate::engine::{blocking, time};
use crate::proto::session::Access;
use crate::server::context::CoreCtx;
use crate::server::storage::{Storage, UserRoot};

/// Checks the password on a blocking worker (hashes are slow by design), opens the user's root
/// there too, and applies the failed-login delay and per-IP limit. On success: what the user may
/// do and their storage.
pub async fn authenticate(
    ctx: &CoreCtx,
    ip: IpAddr,
    user: &str,
    password: &str,
) -> Option<(Access, Storage)> {
    let limits = ctx.shared.limits.clone();
    if !limits.login_allowed(ip) {
        tracing::warn!(%ip, "too many failed logins; refusing further attempts for now");
        time::sleep(ctx.cfg.policies.login_fail_delay).await;
        return None;
    }
    let db = ctx.shared.users();
    let default_root = ctx.cfg.root.clone();
    let (u, p) = (user.to_owned(), password.to_owned());
    let verified = blocking::spawn_blocking(move || {
        let info = db.verify(&u, &p)?;
        let root = if info.root == default_root {
            None
        } else {
            Some(UserRoot::open(&info.root))
        };
        Some((info, root))
    })
    .await
    .ok()
    .flatten();
    let Some((info, root)) = verified else {
        limits.login_failed(ip);
        tracing::info!(user = %user, %ip, "login failed");
        time::sleep(ctx.cfg.policies.login_fail_delay).await;
        return None;
    };
    let storage = match root {
        None => ctx.storage.clone(),
        Some(Ok(root)) => ctx.backend.session(root),
        Some(Err(e)) => {
            tracing::error!(user = %user, root = %info.root.display(), error = %e, "cannot open the user's root");
            return None;
        }
    };
    let access = info.access()?;
    limits.login_succeeded(ip);
    tracing::debug!(user = %info.name, %ip, "logged in");
    Some((access, storage))
}
