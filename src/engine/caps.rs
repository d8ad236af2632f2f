//! What the running kernel's io_uring can do, checked before the first op instead of discovered by
//! a session as `-EINVAL` in the middle of an upload.
//!
//! Two kinds of requirement, with the kernel that introduced each:
//!
//! - The ring itself: `IORING_SETUP_DEFER_TASKRUN` (6.1) with `SINGLE_ISSUER` (6.0),
//!   `TASKRUN_FLAG` (5.19), `SUBMIT_ALL` (5.18) and `CQSIZE` (5.5); the provided-buffer ring
//!   behind multishot recv (`IORING_REGISTER_PBUF_RING`, 5.19); registered buffers (5.1); waiting
//!   with a timeout (`IORING_ENTER_EXT_ARG`, 5.11); multishot accept (5.19) and multishot recv
//!   (6.0), which are flags of ACCEPT and RECV that the probe cannot see. All are in 6.1, and an
//!   older kernel already fails ring setup on DEFER_TASKRUN, so [`setup_error`] turns that failure
//!   into the minimum kernel, [`MIN_KERNEL`].
//! - The opcodes in [`OPS`], asked of the ring with `IORING_REGISTER_PROBE` (5.6). All but
//!   FTRUNCATE exist in every kernel that can set the ring up; a kernel can still lack one (built
//!   without networking, or with ops disabled), and then the engine refuses to start, naming it.
//!   FTRUNCATE (6.9) is newer than the minimum; without it the engine truncates with a direct
//!   ftruncate(2) on the core thread, a call that is rare (REST/APPE) and usually short.

use std::io;

use io_uring::{opcode, IoUring, Probe};

/// The oldest kernel the engine runs on: DEFER_TASKRUN, the newest ring feature it needs.
pub const MIN_KERNEL: &str = "6.1";

/// What the engine does when the kernel lacks an opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the engine cannot run without it.
    Required,
    /// It makes the same call directly (see [`Caps`]).
    Fallback,
}

/// One opcode the engine submits.
#[derive(Debug)]
pub struct RingOp {
    /// The kernel's name, without `IORING_OP_`.
    pub name: &'static str,
    pub code: u8,
    /// The kernel release that introduced it.
    pub since: &'static str,
    pub need: Need,
    /// The `io_uring::opcode` builders that submit it (the multishot variants share an opcode).
    pub builders: &'static [&'static str],
}

const fn required(
    name: &'static str,
    code: u8,
    since: &'static str,
    builders: &'static [&'static str],
) -> RingOp {
    RingOp {
        name,
        code,
        since,
        need: Need::Required,
        builders,
    }
}

/// Every opcode under `src/engine/op`, oldest first.
pub const OPS: &[RingOp] = &[
    required("READ_FIXED", opcode::ReadFixed::CODE, "5.1", &["ReadFixed"]),
    required(
        "WRITE_FIXED",
        opcode::WriteFixed::CODE,
        "5.1",
        &["WriteFixed"],
    ),
    required("FSYNC", opcode::Fsync::CODE, "5.1", &["Fsync"]),
    required("POLL_ADD", opcode::PollAdd::CODE, "5.1", &["PollAdd"]),
    required("TIMEOUT", opcode::Timeout::CODE, "5.4", &["Timeout"]),
    required("ACCEPT", opcode::Accept::CODE, "5.5", &["AcceptMulti"]),
    required(
        "ASYNC_CANCEL",
        opcode::AsyncCancel::CODE,
        "5.5",
        &["AsyncCancel"],
    ),
    required(
        "LINK_TIMEOUT",
        opcode::LinkTimeout::CODE,
        "5.5",
        &["LinkTimeout"],
    ),
    required("CONNECT", opcode::Connect::CODE, "5.5", &["Connect"]),
    required("FALLOCATE", opcode::Fallocate::CODE, "5.6", &["Fallocate"]),
    required("OPENAT2", opcode::OpenAt2::CODE, "5.6", &["OpenAt2"]),
    required("CLOSE", opcode::Close::CODE, "5.6", &["Close"]),
    required("STATX", opcode::Statx::CODE, "5.6", &["Statx"]),
    required("READ", opcode::Read::CODE, "5.6", &["Read"]),
    required("WRITE", opcode::Write::CODE, "5.6", &["Write"]),
    required("SEND", opcode::Send::CODE, "5.6", &["Send"]),
    required("RECV", opcode::Recv::CODE, "5.6", &["Recv", "RecvMulti"]),
    required("SPLICE", opcode::Splice::CODE, "5.7", &["Splice"]),
    required("RENAMEAT", opcode::RenameAt::CODE, "5.11", &["RenameAt"]),
    required("UNLINKAT", opcode::UnlinkAt::CODE, "5.11", &["UnlinkAt"]),
    required("MKDIRAT", opcode::MkDirAt::CODE, "5.15", &["MkDirAt"]),
    required("LINKAT", opcode::LinkAt::CODE, "5.15", &["LinkAt"]),
    // Only stored checksums with `fs_ops = ring` use it; in every kernel the ring needs.
    required("FSETXATTR", opcode::FSetXattr::CODE, "5.19", &["FSetXattr"]),
    RingOp {
        name: "FTRUNCATE",
        code: opcode::Ftruncate::CODE,
        since: "6.9",
        need: Need::Fallback,
        builders: &["Ftruncate"],
    },
];

/// What one ring supports beyond the minimum: which optional opcodes go through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// FTRUNCATE goes through the ring; otherwise [`crate::engine::direct::ftruncate`].
    pub ring_ftruncate: bool,
}

impl Caps {
    /// Everything through the ring.
    pub const ALL: Caps = Caps {
        ring_ftruncate: true,
    };
}

/// The outcome of a probe: what is missing and what falls back.
#[derive(Debug)]
pub struct Decision {
    /// Required opcodes the kernel lacks: the engine cannot start.
    pub missing: Vec<&'static RingOp>,
    /// Optional opcodes the kernel lacks: the engine makes those calls directly.
    pub fallbacks: Vec<&'static RingOp>,
}

/// Sorts [`OPS`] by what the kernel supports (`supported(code)`); pure, so it is testable without an
/// old kernel.
pub fn decide(supported: impl Fn(u8) -> bool) -> Decision {
    let mut d = Decision {
        missing: Vec::new(),
        fallbacks: Vec::new(),
    };
    for op in OPS.iter().filter(|op| !supported(op.code)) {
        match op.need {
            Need::Required => d.missing.push(op),
            Need::Fallback => d.fallbacks.push(op),
        }
    }
    d
}

impl Decision {
    /// The ring's capabilities, when nothing required is missing.
    pub fn caps(&self) -> Caps {
        let lacks = |code| self.fallbacks.iter().any(|op| op.code == code);
        Caps {
            ring_ftruncate: !lacks(opcode::Ftruncate::CODE),
        }
    }

    /// One line naming every missing opcode and the minimum kernel, or `None` when the engine can
    /// run.
    pub fn error(&self, kernel: &str) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let ops: Vec<String> = self
            .missing
            .iter()
            .map(|op| format!("IORING_OP_{} (Linux {})", op.name, op.since))
            .collect();
        Some(format!(
            "io_uring of this kernel ({kernel}) lacks {}; ringest needs Linux {MIN_KERNEL} or newer",
            ops.join(", ")
        ))
    }
}

/// The running kernel's release (`uname -r`), for messages.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: uname NUL-terminates `release` within the array.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Whether a release string (`uname -r`, e.g. "5.15.0-91-generic") names a kernel older than
/// [`MIN_KERNEL`]; false when it cannot be read.
pub fn older_than_min(release: &str) -> bool {
    let version = |s: &str| -> Option<(u32, u32)> {
        let mut parts = s.split(|c: char| !c.is_ascii_digit());
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (version(release), version(MIN_KERNEL)) {
        (Some(have), Some(need)) => have < need,
        _ => false,
    }
}

/// Asks `ring` which opcodes it supports.
fn ask(ring: &IoUring) -> io::Result<Decision> {
    let mut p = Probe::new();
    ring.submitter().register_probe(&mut p).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "io_uring probe failed ({e}) on kernel {}; ringest needs Linux {MIN_KERNEL} or newer",
                kernel_release()
            ),
        )
    })?;
    Ok(decide(|code| p.is_supported(code)))
}

/// Probes `ring` (every runtime does, on its own ring): its capabilities, or one line naming the
/// missing opcodes.
pub fn probe(ring: &IoUring) -> io::Result<Caps> {
    let d = ask(ring)?;
    match d.error(&kernel_release()) {
        Some(msg) => Err(io::Error::new(io::ErrorKind::Unsupported, msg)),
        None => Ok(d.caps()),
    }
}

/// Turns a failed ring setup into the likely cause: an old kernel (EINVAL for an unknown setup
/// flag) or io_uring switched off (ENOSYS, EPERM).
pub fn setup_error(e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        // EINVAL also means a bad size; blame the flags only on a kernel older than the minimum.
        Some(libc::EINVAL) if older_than_min(&kernel_release()) => format!(
            "kernel {} rejects the ring's setup flags (SINGLE_ISSUER|DEFER_TASKRUN); ringest \
             needs Linux {MIN_KERNEL} or newer",
            kernel_release()
        ),
        Some(libc::ENOSYS | libc::EPERM) => {
            "io_uring is unavailable: kernel built without it, disabled by the sysctl \
             kernel.io_uring_disabled, or blocked by a seccomp profile (containers)"
                .into()
        }
        _ => return io::Error::new(e.kind(), format!("io_uring setup failed: {e}")),
    };
    io::Error::new(e.kind(), format!("io_uring setup failed ({e}): {why}"))
}

/// The start-up check: sets up a ring the way every core will and probes it, so a kernel that
/// cannot run the engine stops the server with one line before it binds anything. Logs the
/// fallbacks once and returns what the cores will find.
pub fn check() -> io::Result<Caps> {
    let ring = ring_builder(2).build(2).map_err(setup_error)?;
    let d = ask(&ring)?;
    if let Some(msg) = d.error(&kernel_release()) {
        return Err(io::Error::new(io::ErrorKind::Unsupported, msg));
    }
    for op in &d.fallbacks {
        tracing::info!(
            op = op.name,
            since = op.since,
            kernel = %kernel_release(),
            "io_uring lacks this op; the engine makes the call directly on the core thread"
        );
    }
    Ok(d.caps())
}

/// A ring builder with the engine's setup flags and a completion queue twice `entries`; the start-up
/// check builds its probe ring with it too, so it tests exactly what the cores will ask for. It lives
/// here, beside the probe, so the runtime depends on the capability check and not the reverse.
pub(crate) fn ring_builder(entries: u32) -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    b.setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_cqsize(entries.saturating_mul(2))
        .setup_submit_all();
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(codes: &[u8]) -> impl Fn(u8) -> bool + '_ {
        move |c| codes.contains(&c)
    }

    fn names(ops: &[&RingOp]) -> Vec<&'static str> {
        ops.iter().map(|op| op.name).collect()
    }

    #[test]
    fn a_kernel_with_every_op_needs_no_fallback() {
        let d = decide(|_| true);
        assert!(d.missing.is_empty() && d.fallbacks.is_empty());
        assert_eq!(d.caps(), Caps::ALL);
        assert_eq!(d.error("6.18"), None);
    }

    #[test]
    fn a_kernel_without_ftruncate_falls_back_to_the_direct_call() {
        // 6.1 to 6.8: everything but FTRUNCATE.
        let d = decide(|c| c != opcode::Ftruncate::CODE);
        assert!(d.missing.is_empty());
        assert_eq!(names(&d.fallbacks), ["FTRUNCATE"]);
        assert!(!d.caps().ring_ftruncate);
        assert_eq!(d.error("6.6.0"), None, "a fallback is not an error");
    }

    #[test]
    fn a_kernel_missing_required_ops_is_refused_in_one_line_naming_them() {
        // 5.10: no RENAMEAT, UNLINKAT (5.11), MKDIRAT, LINKAT (5.15), FSETXATTR (5.19), nor
        // FTRUNCATE.
        let old: Vec<u8> = OPS
            .iter()
            .filter(|op| matches!(op.since, "5.1" | "5.4" | "5.5" | "5.6" | "5.7"))
            .map(|op| op.code)
            .collect();
        let d = decide(only(&old));
        assert_eq!(
            names(&d.missing),
            ["RENAMEAT", "UNLINKAT", "MKDIRAT", "LINKAT", "FSETXATTR"]
        );
        assert_eq!(names(&d.fallbacks), ["FTRUNCATE"]);
        let msg = d.error("5.10.0").unwrap();
        assert!(!msg.contains('\n'));
        assert!(msg.contains("IORING_OP_MKDIRAT (Linux 5.15)"), "{msg}");
        assert!(
            msg.contains("5.10.0") && msg.contains("Linux 6.1 or newer"),
            "{msg}"
        );

        // A kernel built without networking lacks the socket ops, whatever its version.
        let no_net = [
            opcode::Send::CODE,
            opcode::Recv::CODE,
            opcode::Accept::CODE,
            opcode::Connect::CODE,
        ];
        let d = decide(|c| !no_net.contains(&c));
        assert_eq!(names(&d.missing), ["ACCEPT", "CONNECT", "SEND", "RECV"]);
        assert!(d.fallbacks.is_empty());
    }

    #[test]
    fn only_an_older_kernel_is_blamed_for_a_refused_setup() {
        assert!(older_than_min("5.15.0-91-generic"));
        assert!(older_than_min("6.0.19"));
        assert!(!older_than_min("6.1.0"));
        assert!(!older_than_min("6.18.44-fc-v669"));
        assert!(!older_than_min("10.0"));
        assert!(!older_than_min("weird"));
        let e = setup_error(io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(e.to_string().contains("io_uring is unavailable"), "{e}");
    }

    #[test]
    fn the_table_lists_every_opcode_the_engine_builds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/engine/op");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let src = std::fs::read_to_string(&path).unwrap();
            for (at, _) in src.match_indices("opcode::") {
                let rest = &src[at + "opcode::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                // `use io_uring::{opcode, ...}` and `opcode::X::CODE` are not builders.
                if !rest[name.len()..].starts_with("::new") {
                    continue;
                }
                seen += 1;
                assert!(
                    OPS.iter().any(|op| op.builders.contains(&name.as_str())),
                    "{}: opcode::{name} is not in caps::OPS",
                    path.display()
                );
            }
        }
        assert!(seen >= OPS.len(), "found only {seen} builders");
        // No code twice: each row is one opcode.
        let mut codes: Vec<u8> = OPS.iter().map(|op| op.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), OPS.len());
    }
}
