//! Running as a system service: switching from root to the configured user once the listeners are
//! bound (so port 21 needs no capability afterwards and uploaded files belong to that user), telling
//! systemd the server is ready (`Type=notify`), and warning at start about roots the server will not
//! be able to write.
//!
//! The switch happens after the listeners, the roots and the logs are open and before the core
//! threads create their rings, so every io_uring worker runs with the reduced credentials too.
//! glibc applies `setgroups`/`setgid`/`setuid` to every thread of the process, so the helper threads
//! that may already exist (the crash sweep) are switched as well.

use std::ffi::{CStr, CString};
use std::io;
use std::path::PathBuf;

use super::auth::users::UserDb;
use super::config::policies::Policies;
use super::storage::{check_root, UserRoot, Writer};

/// A system account looked up by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// The primary group, or the configured `run_as_group`.
    pub gid: u32,
    /// Supplementary groups of the user (for judging who may write a root).
    pub groups: Vec<u32>,
}

/// Why switching users failed; start-up stops with it rather than serving as root by mistake.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("run_as_user {0:?}: no such user")]
    NoUser(String),
    #[error("run_as_group {0:?}: no such group")]
    NoGroup(String),
    #[error(
        "cannot switch to user {user}: {source} (start the server as root to use run_as_user)"
    )]
    Switch {
        user: String,
        #[source]
        source: io::Error,
    },
}

impl From<ServiceError> for io::Error {
    fn from(e: ServiceError) -> io::Error {
        let kind = match &e {
            ServiceError::Switch { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// Looks up `user` (and `group`, by default the user's primary group) in the system databases.
pub fn lookup_account(user: &str, group: Option<&str>) -> Result<Account, ServiceError> {
    let cuser = CString::new(user).map_err(|_| ServiceError::NoUser(user.to_owned()))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain data, filled by getpwnam_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live buffer of the size passed; the strings getpwnam_r
    // stores in `pw` point into `buf`, which outlives their use below.
    let r = unsafe {
        libc::getpwnam_r(
            cuser.as_ptr(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if r != 0 || found.is_null() {
        return Err(ServiceError::NoUser(user.to_owned()));
    }
    let (uid, primary) = (pw.pw_uid, pw.pw_gid);
    let gid = match group {
        Some(g) => lookup_group(g)?,
        None => primary,
    };
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: `groups` has room for `n` entries; getgrouplist writes at most that many and sets `n`.
    let r = unsafe { libc::getgrouplist(cuser.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
    groups.truncate(if r < 0 { 0 } else { n.max(0) as usize });
    Ok(Account {
        name: user.to_owned(),
        uid,
        gid,
        groups,
    })
}

fn lookup_group(group: &str) -> Result<u32, ServiceError> {
    let cgroup = CString::new(group).map_err(|_| ServiceError::NoGroup(group.to_owned()))?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: group is plain data, filled by getgrnam_r.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `lookup_account`: live buffers of the sizes passed.
    let r = unsafe {
        libc::getgrnam_r(
            cgroup.as_ptr(),
            &mut gr,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if r != 0 || found.is_null() {
        return Err(ServiceError::NoGroup(group.to_owned()));
    }
    Ok(gr.gr_gid)
}

/// The account `run_as_user`/`run_as_group` name, if set.
pub fn run_as(p: &Policies) -> Result<Option<Account>, ServiceError> {
    match &p.run_as_user {
        Some(u) => lookup_account(u, p.run_as_group.as_deref()).map(Some),
        None => Ok(None),
    }
}

fn last_error(user: &str) -> ServiceError {
    ServiceError::Switch {
        user: user.to_owned(),
        source: io::Error::last_os_error(),
    }
}

/// Linux capability number of CAP_IPC_LOCK (`linux/capability.h`).
const CAP_IPC_LOCK: u32 = 14;

/// Limits this thread's capabilities to CAP_IPC_LOCK alone (permitted and effective; nothing
/// inheritable), through capset(2) with the version 3 structures.
fn keep_only_ipc_lock() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let bit = 1u32 << CAP_IPC_LOCK;
    let data = [
        Data {
            effective: bit,
            permitted: bit,
            inheritable: 0,
        },
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads a version 3 header and two data structs, which live on the stack.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Switches the whole process to `account`: supplementary groups first (only the target group, so
/// no group of root's survives), then the group, then the user; and checks that root cannot be
/// regained.
///
/// Registered buffers are pinned memory, which the kernel charges against RLIMIT_MEMLOCK for a
/// user without CAP_IPC_LOCK (a default 8 MiB does not hold one core's pool). The limit is lifted
/// while root still may (the unit also sets LimitMEMLOCK=infinity); where even root may not (a
/// container without CAP_SYS_RESOURCE), the process keeps CAP_IPC_LOCK, and only it, across the
/// switch.
pub fn switch_to(account: &Account) -> Result<(), ServiceError> {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct passed.
    let keep_ipc_lock = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0;
    // SAFETY: prctl with integer arguments; keeps the permitted set across setuid (this thread).
    if keep_ipc_lock && unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(last_error(&account.name));
    }
    let gid = account.gid as libc::gid_t;
    // SAFETY: setgroups reads one gid from the pointer given.
    if unsafe { libc::setgroups(1, &gid) } != 0 {
        return Err(last_error(&account.name));
    }
    // SAFETY: plain system calls with integer arguments.
    if unsafe { libc::setgid(gid) } != 0 {
        return Err(last_error(&account.name));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(account.uid as libc::uid_t) } != 0 {
        return Err(last_error(&account.name));
    }
    if keep_ipc_lock {
        keep_only_ipc_lock().map_err(|source| ServiceError::Switch {
            user: account.name.clone(),
            source,
        })?;
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
        tracing::info!("RLIMIT_MEMLOCK could not be lifted; keeping CAP_IPC_LOCK (only) for the registered buffers");
    }
    // SAFETY: plain system calls with integer arguments.
    let regained = account.uid != 0 && unsafe { libc::setuid(0) } == 0;
    if regained {
        return Err(ServiceError::Switch {
            user: account.name.clone(),
            source: io::Error::other("root could be regained after the switch"),
        });
    }
    // A credential change makes the process non-dumpable, which hands /proc/self to root; the
    // landing code links O_TMPFILE uploads through /proc/self/fd once CAP_DAC_READ_SEARCH is gone,
    // so give the process its own /proc entries back. Nothing is exposed that the user does not
    // already own.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    Ok(())
}

/// What start-up does once the listeners are bound and the roots and logs are open: switch to
/// `run_as_user` if configured, then warn about every root the server cannot use.
/// `default_root` is the open root of the command-line user, judged through its descriptor (it is
/// already open, so the directories above it no longer matter).
pub fn after_bind(
    p: &Policies,
    default_root: (&PathBuf, &UserRoot),
    users: &UserDb,
) -> io::Result<()> {
    if let Some(account) = run_as(p)? {
        switch_to(&account)?;
        tracing::info!(user = %account.name, uid = account.uid, gid = account.gid, "switched to run_as_user");
    }
    warn_about_roots(default_root, users);
    Ok(())
}

/// Logs a warning for each root that is missing, not a directory or not writable by this process.
pub fn warn_about_roots(default_root: (&PathBuf, &UserRoot), users: &UserDb) {
    if let UserRoot::S3 { .. } = default_root.1 {
        // Users' roots are key prefixes; the local directories are not used for files.
        return;
    }
    for root in users.roots() {
        let problem = if &root == default_root.0 {
            (!default_root.1.is_writable()).then(|| {
                // SAFETY: geteuid has no arguments and cannot fail.
                let euid = unsafe { libc::geteuid() };
                format!(
                    "root {} is not writable by this process (uid {euid}): uploads into it will fail",
                    root.display()
                )
            })
        } else {
            check_root(&root, &Writer::ThisProcess)
                .err()
                .map(|e| e.to_string())
        };
        if let Some(problem) = problem {
            tracing::warn!("{problem}");
        }
    }
}

/// Tells systemd (when started with `Type=notify`, i.e. `NOTIFY_SOCKET` is set) that the server is
/// ready: its listeners are bound. Without systemd this does nothing.
pub fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not notify systemd of readiness");
    }
}

/// The name of a user id, for messages; the number when it has none.
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: passwd is plain data, filled by getpwuid_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: live buffers of the sizes passed, as in `lookup_account`.
    let r = unsafe {
        libc::getpwuid_r(
            uid as libc::uid_t,
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if r != 0 || found.is_null() || pw.pw_name.is_null() {
        return uid.to_string();
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points at a NUL-terminated string inside `buf`.
    unsafe { CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_root_and_refuses_unknown_names() {
        let root = lookup_account("root", None).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(user_name(0), "root");
        assert!(matches!(
            lookup_account("no-such-user-ringest", None),
            Err(ServiceError::NoUser(_))
        ));
        assert!(matches!(
            lookup_account("root", Some("no-such-group-ringest")),
            Err(ServiceError::NoGroup(_))
        ));
        assert!(matches!(
            lookup_account("a\0b", None),
            Err(ServiceError::NoUser(_))
        ));
    }
}
