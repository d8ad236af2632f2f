//! Directory listing formats (LIST in `ls -l` style, NLST names), pure so they are tested without a
//! filesystem. Names that contain CR or LF cannot be listed without breaking the client's parser, so
//! they are skipped.

/// What kind of directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry as the server read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// Permission bits (the low 12 bits of st_mode).
    pub perm: u32,
    pub nlink: u64,
    /// Inode number, for the MLSx `unique` fact.
    pub ino: u64,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const HALF_YEAR: i64 = 183 * 86400;

/// Civil date (year, month 1-12, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYYMMDDHHMMSS` (UTC), the MDTM / MLST time format.
pub fn timeval(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86400));
    let s = t.rem_euclid(86400);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn perm_string(kind: EntryKind, perm: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
        EntryKind::Other => '?',
    });
    for shift in [6, 3, 0] {
        let bits = (perm >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn listable(name: &str) -> bool {
    !name.contains(['\r', '\n'])
}

/// Appends one `ls -l` style line. `now` decides between "HH:MM" and " YYYY" as ls does.
/// STAT with a path: the `list_line`s of `entries`, one string each (they go out as a
/// multi-line control reply, not over a data connection).
pub fn stat_lines(entries: &[Entry], now: i64) -> Vec<String> {
    let mut out = Vec::new();
    for e in entries {
        list_line(e, now, &mut out);
    }
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn list_line(e: &Entry, now: i64, out: &mut Vec<u8>) {
    if !listable(&e.name) {
        return;
    }
    let (y, m, d) = civil_from_days(e.mtime.div_euclid(86400));
    let month = MONTHS
        .get((m as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("Jan");
    let when = if (now - e.mtime).abs() < HALF_YEAR {
        let s = e.mtime.rem_euclid(86400);
        format!("{:02}:{:02}", s / 3600, s / 60 % 60)
    } else {
        format!(" {y}")
    };
    let line = format!(
        "{} {:>3} ftp ftp {:>12} {month} {d:>2} {when:>5} {}\r\n",
        perm_string(e.kind, e.perm),
        e.nlink,
        e.size,
        e.name
    );
    out.extend_from_slice(line.as_bytes());
}

/// What the logged-in user may do with an entry, for the MLSx `perm` fact (RFC 3659 7.5.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FactPerms {
    pub read: bool,
    pub write: bool,
    pub delete: bool,
    pub mkdir: bool,
}

/// Which MLSx facts to send (RFC 3659 7.9: the client selects them with `OPTS MLST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FactSet(u8);

const FACT_NAMES: [&str; 5] = ["type", "size", "modify", "perm", "unique"];

impl FactSet {
    pub const ALL: FactSet = FactSet(0b1_1111);

    fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    /// Parses `type;size;` (case-insensitive; unknown facts are ignored, as the RFC asks).
    pub fn parse(list: &str) -> FactSet {
        let mut bits = 0u8;
        for f in list.split(';').map(str::trim).filter(|f| !f.is_empty()) {
            if let Some(i) = FACT_NAMES.iter().position(|n| n.eq_ignore_ascii_case(f)) {
                bits |= 1 << i;
            }
        }
        FactSet(bits)
    }

    /// `type;size;` as the OPTS MLST reply lists them.
    pub fn names(self) -> String {
        FACT_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.has(*i))
            .map(|(_, n)| format!("{n};"))
            .collect()
    }

    /// The FEAT line: every supported fact, selected ones marked with `*`.
    pub fn feat(self) -> String {
        let list: String = FACT_NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}{};", if self.has(i) { "*" } else { "" }))
            .collect();
        format!("MLST {list}")
    }
}

impl Default for FactSet {
    fn default() -> Self {
        FactSet::ALL
    }
}

/// The MLSx facts line of an entry: `type=file;size=N;modify=YYYYMMDDHHMMSS;perm=..;unique=..; name`
/// with the facts in `set`. `cdir` marks the listed directory itself (MLSD's first line); `None` when
/// the name cannot be sent.
pub fn facts(e: &Entry, perms: FactPerms, cdir: bool, set: FactSet) -> Option<String> {
    if !listable(&e.name) {
        return None;
    }
    let ty = match (cdir, e.kind) {
        (true, _) => "cdir",
        (false, EntryKind::Dir) => "dir",
        (false, EntryKind::File) => "file",
        (false, _) => "OS.unix=other",
    };
    let mut perm = String::new();
    let dir = e.kind == EntryKind::Dir;
    for (ok, c) in [
        (perms.read && !dir, 'r'),
        (perms.write && !dir, 'w'),
        (perms.write && !dir, 'a'),
        (perms.delete, 'd'),
        (perms.delete, 'f'),
        (dir, 'e'),
        (perms.read && dir, 'l'),
        (perms.write && dir, 'c'),
        (perms.mkdir && dir, 'm'),
        (perms.delete && dir, 'p'),
    ] {
        if ok {
            perm.push(c);
        }
    }
    let mut out = String::with_capacity(96 + e.name.len());
    if set.has(0) {
        out.push_str(&format!("type={ty};"));
    }
    if set.has(1) && !dir {
        out.push_str(&format!("size={};", e.size));
    }
    if set.has(2) {
        out.push_str(&format!("modify={};", timeval(e.mtime)));
    }
    if set.has(3) {
        out.push_str(&format!("perm={perm};"));
    }
    if set.has(4) {
        out.push_str(&format!("unique={:x};", e.ino));
    }
    out.push(' ');
    out.push_str(&e.name);
    Some(out)
}

/// Appends one NLST line: `prefix` (see [`nlst_prefix`]) and the name.
pub fn name_line(prefix: &str, e: &Entry, out: &mut Vec<u8>) {
    if !listable(&e.name) {
        return;
    }
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(e.name.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// What NLST puts before each name so that its output can be fed back to RETR, as vsftpd and
/// ProFTPD answer and as `mget` in tnftp and ncftp relies on: `NLST sub` gives `sub/f.bin`,
/// `NLST sub/*.bin` gives `sub/f.bin`, `NLST *.bin` and a bare `NLST` give `f.bin`, and a file
/// argument comes back as written. `arg` is the argument as the client wrote it; `pattern` says its
/// last component was a wildcard; `is_dir` that it named a directory whose entries are listed.
pub fn nlst_prefix(arg: Option<&str>, pattern: bool, is_dir: bool) -> String {
    let Some(arg) = arg else {
        return String::new();
    };
    let dir_part = |a: &str| a.rfind('/').map_or("", |i| &a[..=i]).to_owned();
    if pattern || !is_dir {
        return dir_part(arg);
    }
    let trimmed = arg.trim_end_matches('/');
    match trimmed {
        "" if arg.starts_with('/') => "/".to_owned(),
        "" | "." => String::new(),
        t => format!("{t}/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(name: &str, kind: EntryKind, mtime: i64) -> Entry {
        Entry {
            name: name.into(),
            kind,
            size: 1234,
            mtime,
            perm: 0o644,
            nlink: 1,
            ino: 0x2a,
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(timeval(1_700_000_000), "20231114221320");
    }

    #[test]
    fn ls_style_lines() {
        let now = 1_700_000_000;
        let mut out = Vec::new();
        list_line(&entry("a b.txt", EntryKind::File, now - 60), now, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "-rw-r--r--   1 ftp ftp         1234 Nov 14 22:12 a b.txt\r\n"
        );
        let mut out = Vec::new();
        list_line(&entry("old", EntryKind::Dir, 0), now, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "drw-r--r--   1 ftp ftp         1234 Jan  1  1970 old\r\n"
        );
    }

    #[test]
    fn mlsx_facts() {
        let all = FactPerms {
            read: true,
            write: true,
            delete: true,
            mkdir: true,
        };
        let f = facts(
            &entry("a b", EntryKind::File, 1_700_000_000),
            all,
            false,
            FactSet::ALL,
        )
        .unwrap();
        assert_eq!(
            f,
            "type=file;size=1234;modify=20231114221320;perm=rwadf;unique=2a; a b"
        );
        let d = facts(
            &entry("d", EntryKind::Dir, 0),
            FactPerms {
                read: true,
                ..Default::default()
            },
            false,
            FactSet::ALL,
        )
        .unwrap();
        assert_eq!(d, "type=dir;modify=19700101000000;perm=el;unique=2a; d");
        assert!(facts(
            &entry("x\r\ny", EntryKind::File, 0),
            all,
            false,
            FactSet::ALL
        )
        .is_none());
    }

    #[test]
    fn opts_mlst_selects_facts() {
        let set = FactSet::parse("Type;size;bogus;");
        assert_eq!(set.names(), "type;size;");
        assert_eq!(set.feat(), "MLST type*;size*;modify;perm;unique;");
        let all = FactPerms {
            read: true,
            write: true,
            delete: true,
            mkdir: true,
        };
        let f = facts(&entry("a", EntryKind::File, 0), all, false, set).unwrap();
        assert_eq!(f, "type=file;size=1234; a");
        assert_eq!(FactSet::parse("").names(), "");
    }

    #[test]
    fn names_with_newlines_are_skipped() {
        let mut out = Vec::new();
        name_line("", &entry("evil\r\n226 ok", EntryKind::File, 0), &mut out);
        list_line(&entry("evil\nx", EntryKind::File, 0), 0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn nlst_names_can_be_fed_back() {
        for (arg, pattern, is_dir, want) in [
            (None, false, true, ""),
            (Some("sub"), false, true, "sub/"),
            (Some("sub/"), false, true, "sub/"),
            (Some("/abs/dir"), false, true, "/abs/dir/"),
            (Some("/"), false, true, "/"),
            (Some("."), false, true, ""),
            (Some("./"), false, true, ""),
            (Some("*.bin"), true, true, ""),
            (Some("sub/*.bin"), true, true, "sub/"),
            (Some("sub/f.bin"), false, false, "sub/"),
            (Some("f.bin"), false, false, ""),
        ] {
            assert_eq!(nlst_prefix(arg, pattern, is_dir), want, "{arg:?}");
        }
        let mut out = Vec::new();
        name_line("sub/", &entry("g0.bin", EntryKind::File, 0), &mut out);
        assert_eq!(out, b"sub/g0.bin\r\n");
    }

    proptest! {
        #[test]
        fn any_entry_formats_to_one_line(name in "\\PC{0,40}", mtime in any::<i32>(), now in any::<i32>(), perm in any::<u32>()) {
            let e = Entry { name, kind: EntryKind::File, size: 7, mtime: i64::from(mtime), perm, nlink: 1, ino: 1 };
            let mut out = Vec::new();
            list_line(&e, i64::from(now), &mut out);
            let s = String::from_utf8(out).unwrap();
            prop_assert!(s.is_empty() || (s.ends_with("\r\n") && s.matches('\n').count() == 1));
        }
    }
}
