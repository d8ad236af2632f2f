//! The transfer log in the wu-ftpd/vsftpd `xferlog` format, one line per file transfer, which
//! existing log analysers and billing scripts read:
//!
//! ```text
//! Wed Nov 25 16:01:15 2026 1 127.0.0.1 1048577 /f1 b _ i r alice ftp 0 * c
//! ```
//!
//! Fields: current time, transfer time (whole seconds, at least 1), remote host (always an IP:
//! the server never resolves names), bytes, file name, transfer type (`a` ASCII / `b` binary),
//! special action (`_`: none), direction (`i` in / `o` out), access mode (`a` anonymous / `r` real),
//! user name, service (`ftp`), authentication method (`0`), authenticated user id (`*`),
//! completion (`c` complete / `i` incomplete).
//!
//! The time is UTC rather than local time: the server has no time zone code, and UTC lines sort and
//! compare across machines. Fields never contain spaces (replaced by `_`, as vsftpd does) or control
//! characters (replaced by `?`), so a file name cannot break a line or forge another one.
//!
//! Writing happens on one background thread fed through a bounded channel: a core never waits for
//! the disk, and if the disk falls behind by [`QUEUE`] lines, further lines are dropped and counted
//! rather than stalling transfers.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::labels::Direction;

/// Lines that may wait for the writer before new ones are dropped.
pub const QUEUE: usize = 65536;

/// One finished (or failed) file transfer.
#[derive(Clone, Debug)]
pub struct XferRecord<'a> {
    /// When the transfer ended.
    pub time: SystemTime,
    /// How long it took.
    pub duration: Duration,
    pub remote: IpAddr,
    /// Bytes actually transferred.
    pub bytes: u64,
    /// The file as the client named it (virtual path inside the user's root).
    pub path: &'a str,
    /// TYPE I (`b`) rather than TYPE A (`a`).
    pub binary: bool,
    pub direction: Direction,
    /// Anonymous session (`a`) rather than a real user (`r`).
    pub anonymous: bool,
    /// The user name; for anonymous sessions, traditionally the password given (an e-mail).
    pub user: &'a str,
    /// The transfer completed (`c`) rather than failed or was aborted (`i`).
    pub complete: bool,
}

/// Formats one xferlog line, without the trailing newline.
pub fn format_line(rec: &XferRecord) -> String {
    let mut out = String::with_capacity(96 + rec.path.len() + rec.user.len());
    let secs = rec
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    write_ctime(&mut out, secs);
    // Whole seconds, rounded, at least 1 (as vsftpd writes it).
    let took = ((rec.duration.as_millis() + 500) / 1000).max(1);
    let remote = match rec.remote {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let _ = write!(out, " {took} {remote} {} ", rec.bytes);
    push_field(&mut out, rec.path);
    out.push_str(if rec.binary { " b _ " } else { " a _ " });
    out.push_str(match rec.direction {
        Direction::In => "i ",
        Direction::Out => "o ",
    });
    out.push_str(if rec.anonymous { "a " } else { "r " });
    push_field(&mut out, rec.user);
    out.push_str(" ftp 0 * ");
    out.push(if rec.complete { 'c' } else { 'i' });
    out
}

/// Appends `s` as one field: whitespace becomes `_`, other control characters `?`, and an empty
/// value `*`, so the line always has the same number of space-separated fields.
fn push_field(out: &mut String, s: &str) {
    if s.is_empty() {
        out.push('*');
        return;
    }
    out.extend(s.chars().map(|c| {
        if c.is_whitespace() {
            '_'
        } else if c.is_control() {
            '?'
        } else {
            c
        }
    }));
}

/// Appends the UTC time `secs` after the epoch in ctime layout: `Wed Nov  5 16:01:15 2026` (the
/// day of the month is space-padded, as with strftime's `%e`).
fn write_ctime(out: &mut String, secs: u64) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let weekday = DAYS[(days % 7) as usize];
    let month = MONTHS[(m - 1) as usize % 12];
    let _ = write!(
        out,
        "{weekday} {month} {d:>2} {:02}:{:02}:{:02} {y}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

/// Year, month (1..=12) and day (1..=31) of the day `days` after 1970-01-01 (proleptic Gregorian;
/// Howard Hinnant's `civil_from_days`, restricted to non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

enum Msg {
    Line(String),
    /// Reopen the file (after log rotation moved it away).
    Reopen,
    /// Write out everything queued so far, then acknowledge.
    Flush(mpsc::Sender<()>),
}

/// The xferlog writer. Cheap to clone; all clones feed the same background thread, which exits
/// after the last clone is dropped (flushing first).
#[derive(Clone, Debug)]
pub struct XferLog {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

impl XferLog {
    /// Opens (creating if needed) `path` for appending and starts the writer thread. The file is
    /// opened here, so a bad path fails start-up rather than every later line.
    pub fn open(path: impl AsRef<Path>) -> io::Result<XferLog> {
        let path = path.as_ref().to_owned();
        let file = open_append(&path).map_err(|e| {
            io::Error::new(e.kind(), format!("opening xferlog {}: {e}", path.display()))
        })?;
        let (log, rx) = Self::channel(QUEUE);
        std::thread::Builder::new()
            .name("ringest-xferlog".to_owned())
            .spawn(move || writer(path, file, rx))?;
        Ok(log)
    }

    fn channel(capacity: usize) -> (XferLog, Receiver<Msg>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let log = XferLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (log, rx)
    }

    /// Queues the line for `rec`; never blocks. If the writer is more than [`QUEUE`] lines behind
    /// (or gone), the line is dropped and counted in [`dropped`](Self::dropped).
    pub fn log(&self, rec: &XferRecord) {
        self.send(Msg::Line(format_line(rec)));
    }

    fn send(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Line(_)) | TrySendError::Disconnected(Msg::Line(_))) => {
                // Rare by design (only when the disk falls far behind), so a shared counter is fine.
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen the file, for log rotation (SIGHUP); never blocks.
    pub fn reopen(&self) {
        self.send(Msg::Reopen);
    }

    /// Waits until every line queued so far is written to the file; `false` if the writer is gone.
    /// Blocking: for shutdown and tests, not for core threads.
    pub fn flush(&self) -> bool {
        let (ack, done) = mpsc::channel();
        if self.tx.send(Msg::Flush(ack)).is_err() {
            return false;
        }
        done.recv().is_ok()
    }
}

/// The writer thread: appends lines, flushing whenever the queue runs empty so lines reach the file
/// promptly without a syscall per line under load.
fn writer(path: PathBuf, file: File, rx: Receiver<Msg>) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut failing = false;
    let report = |res: io::Result<()>, failing: &mut bool| match res {
        Ok(()) => {
            if *failing {
                tracing::info!(path = %path.display(), "xferlog writable again");
            }
            *failing = false;
        }
        Err(e) => {
            if !*failing {
                tracing::warn!(path = %path.display(), error = %e, "xferlog write failed");
            }
            *failing = true;
        }
    };
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(mut line) => {
                    line.push('\n');
                    let res = out.write_all(line.as_bytes());
                    report(res, &mut failing);
                }
                Msg::Reopen => {
                    let res = out.flush();
                    report(res, &mut failing);
                    match open_append(&path) {
                        Ok(f) => out = BufWriter::with_capacity(64 * 1024, f),
                        Err(e) => report(Err(e), &mut failing),
                    }
                }
                Msg::Flush(ack) => {
                    let res = out.flush();
                    report(res, &mut failing);
                    let _ = ack.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        let res = out.flush();
        report(res, &mut failing);
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(path: &'a str, user: &'a str) -> XferRecord<'a> {
        XferRecord {
            // 2026-11-25 16:01:15 UTC, a Wednesday.
            time: UNIX_EPOCH + Duration::from_secs(1_795_622_475),
            duration: Duration::from_millis(300),
            remote: "127.0.0.1".parse().unwrap(),
            bytes: 1_048_577,
            path,
            binary: true,
            direction: Direction::In,
            anonymous: false,
            user,
            complete: true,
        }
    }

    #[test]
    fn formats_the_standard_line() {
        assert_eq!(
            format_line(&rec("/f1", "alice")),
            "Wed Nov 25 16:01:15 2026 1 127.0.0.1 1048577 /f1 b _ i r alice ftp 0 * c"
        );
        let mut r = rec("/pub/x.txt", "me@example.org");
        r.time = UNIX_EPOCH + Duration::from_secs(1_762_358_400 + 59); // 2025-11-05 16:00:59
        r.duration = Duration::from_millis(2_600);
        r.remote = "::ffff:192.0.2.9".parse().unwrap();
        r.binary = false;
        r.direction = Direction::Out;
        r.anonymous = true;
        r.complete = false;
        r.bytes = 0;
        assert_eq!(
            format_line(&r),
            "Wed Nov  5 16:00:59 2025 3 192.0.2.9 0 /pub/x.txt a _ o a me@example.org ftp 0 * i"
        );
        r.remote = "2001:db8::1".parse().unwrap();
        assert!(format_line(&r).contains(" 2001:db8::1 "));
    }

    #[test]
    fn hostile_names_cannot_break_the_line() {
        let line = format_line(&rec("/a b\tc\r\nWed Nov 25 fake\u{7}", "x y"));
        assert!(!line.contains(['\r', '\n', '\t', '\u{7}']), "{line}");
        assert_eq!(line.split(' ').count(), 18, "{line}");
        assert!(line.contains(" /a_b_c__Wed_Nov_25_fake? "), "{line}");
        assert!(line.contains(" x_y ftp "), "{line}");
        let line = format_line(&rec("/f", ""));
        assert!(line.contains(" r * ftp "), "{line}");
    }

    #[test]
    fn calendar() {
        let mut s = String::new();
        write_ctime(&mut s, 0);
        assert_eq!(s, "Thu Jan  1 00:00:00 1970");
        s.clear();
        write_ctime(&mut s, 951_782_400); // leap day
        assert_eq!(s, "Tue Feb 29 00:00:00 2000");
        s.clear();
        write_ctime(&mut s, 4_107_542_399);
        assert_eq!(s, "Sun Feb 28 23:59:59 2100");
        s.clear();
        write_ctime(&mut s, 4_107_542_400); // 2100 is not a leap year
        assert_eq!(s, "Mon Mar  1 00:00:00 2100");
        // Before the epoch clamps to it rather than failing.
        let mut r = rec("/f", "u");
        r.time = UNIX_EPOCH - Duration::from_secs(10);
        assert!(format_line(&r).starts_with("Thu Jan  1 00:00:00 1970 "));
    }

    #[test]
    fn lines_land_in_the_file_and_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xferlog");
        std::fs::write(&path, "old line\n").unwrap();
        let log = XferLog::open(&path).unwrap();
        let other = log.clone();
        log.log(&rec("/f1", "alice"));
        other.log(&rec("/f2", "bob"));
        assert!(log.flush());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "old line");
        assert!(lines[1].contains(" /f1 ") && lines[1].ends_with(" alice ftp 0 * c"));
        assert!(lines[2].contains(" /f2 ") && lines[2].contains(" bob "));
        assert_eq!(log.dropped(), 0);

        let rotated = dir.path().join("xferlog.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.log(&rec("/f3", "carol"));
        assert!(log.flush());
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert_eq!(fresh.lines().count(), 1);
        assert!(fresh.contains(" /f3 "));
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), text);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (log, rx) = XferLog::channel(2);
        for _ in 0..5 {
            log.log(&rec("/f", "u"));
        }
        assert_eq!(log.dropped(), 3);
        drop(rx);
        log.log(&rec("/f", "u"));
        assert_eq!(log.dropped(), 4);
        assert!(!log.flush());
    }

    #[test]
    fn open_fails_on_a_bad_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = XferLog::open(dir.path().join("no/such/dir/xferlog")).unwrap_err();
        assert!(e.to_string().contains("xferlog"), "{e}");
    }
}
