//! Arguments of the commands that change a file's attributes, so mirroring clients keep
//! modification times and modes: `MFMT time path` (FileZilla, ftputil, lftp), `MDTM time path`
//! with two arguments (ncftpput's fallback), and the SITE subcommands `CHMOD` and both forms of
//! `UTIME` (lftp, ncftp). Pure parsing, so every odd argument is tested without a file system; the
//! server only performs the result.
//!
//! Times are `YYYYMMDDHHMMSS` in UTC with an optional fraction (RFC 3659's `time-val`), checked
//! field by field (a 31st of February is refused) and turned into seconds since the epoch.

use std::fmt;

/// Why a time or SITE argument was refused; each maps to a 501 naming what was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SiteError {
    /// The subcommand is known but its argument is not what it takes; the payload is the usage.
    #[error("{0}")]
    Usage(&'static str),
}

/// A parsed `SITE` subcommand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteCmd {
    /// `SITE CHMOD mode path`: the mode as given (octal), not yet masked by the server's policy.
    Chmod { mode: u32, path: String },
    /// `SITE UTIME time path` (ProFTPD) or `SITE UTIME path atime mtime ctime UTC` (the form lftp
    /// and ncftp send). `atime` is set only by the second form.
    Utime {
        path: String,
        mtime: i64,
        atime: Option<i64>,
    },
    /// `SITE HELP`: the subcommands we know.
    Help,
    /// What GridFTP clients send that needs no action here: `SITE CLIENTINFO` (the client's name
    /// and version, 250) and the buffer-size hints `SITE STORBUFSIZE`/`RETRBUFSIZE`/`BUFSIZE`
    /// (200: the kernel autotunes socket buffers).
    Noted { clientinfo: bool },
    /// Anything else: the subcommand's name, uppercased and made safe to echo.
    Unknown(String),
}

/// The usage line of each subcommand, shown after a bad argument and by `SITE HELP`.
pub const CHMOD_USAGE: &str = "SITE CHMOD <octal mode> <path>";
pub const UTIME_USAGE: &str =
    "SITE UTIME <YYYYMMDDHHMMSS> <path> or SITE UTIME <path> <atime> <mtime> <ctime> UTC";

/// Parses the argument of `SITE` (everything after `SITE `).
pub fn parse_site(arg: &str) -> Result<SiteCmd, SiteError> {
    let arg = arg.trim_start_matches(' ');
    let (name, rest) = arg.split_once(' ').unwrap_or((arg, ""));
    let rest = rest.trim_start_matches(' ');
    match name.to_ascii_uppercase().as_str() {
        "CHMOD" => parse_chmod(rest),
        "UTIME" => parse_utime(rest),
        "HELP" => Ok(SiteCmd::Help),
        "CLIENTINFO" => Ok(SiteCmd::Noted { clientinfo: true }),
        "STORBUFSIZE" | "RETRBUFSIZE" | "BUFSIZE" => Ok(SiteCmd::Noted { clientinfo: false }),
        _ => Ok(SiteCmd::Unknown(
            name.chars()
                .take(16)
                .map(|c| {
                    if c.is_ascii_graphic() {
                        c.to_ascii_uppercase()
                    } else {
                        '?'
                    }
                })
                .collect(),
        )),
    }
}

fn parse_chmod(rest: &str) -> Result<SiteCmd, SiteError> {
    const BAD: SiteError = SiteError::Usage(CHMOD_USAGE);
    let (mode, path) = rest.split_once(' ').ok_or(BAD)?;
    let path = path.trim_start_matches(' ');
    let octal = mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if mode.is_empty() || mode.len() > 4 || !octal || path.is_empty() {
        return Err(BAD);
    }
    let mode = u32::from_str_radix(mode, 8).map_err(|_| BAD)?;
    Ok(SiteCmd::Chmod {
        mode,
        path: path.to_owned(),
    })
}

fn parse_utime(rest: &str) -> Result<SiteCmd, SiteError> {
    const BAD: SiteError = SiteError::Usage(UTIME_USAGE);
    // The five-argument form ends in "UTC"; its path is everything before the three times, so a
    // path with spaces still parses.
    let words: Vec<&str> = rest.rsplitn(5, ' ').collect();
    if let [utc, ctime, mtime, atime, path] = words.as_slice() {
        if utc.eq_ignore_ascii_case("UTC") && !path.is_empty() {
            if let (Some(a), Some(m), Some(_)) =
                (parse_time(atime), parse_time(mtime), parse_time(ctime))
            {
                return Ok(SiteCmd::Utime {
                    path: (*path).to_owned(),
                    mtime: m,
                    atime: Some(a),
                });
            }
        }
    }
    let (time, path) = split_time_and_path(rest).ok_or(BAD)?;
    Ok(SiteCmd::Utime {
        path: path.to_owned(),
        mtime: time,
        atime: None,
    })
}

/// `TIME path` as MFMT and the two-argument MDTM take it: the time, then (after one or more
/// spaces) a non-empty path. `None` when the first word is not a valid time.
pub fn split_time_and_path(arg: &str) -> Option<(i64, &str)> {
    let (time, path) = arg.split_once(' ')?;
    let path = path.trim_start_matches(' ');
    if path.is_empty() {
        return None;
    }
    Some((parse_time(time)?, path))
}

/// Parses `YYYYMMDDHHMMSS[.fraction]` (UTC) into seconds since the epoch. ProFTPD's
/// `YYYYMMDDhhmm` (no seconds) is accepted too. The fraction is ignored: file times are set to the
/// second, which is all MDTM reports.
pub fn parse_time(s: &str) -> Option<i64> {
    let (digits, fraction) = match s.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (s, None),
    };
    if let Some(f) = fraction {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    if !(digits.len() == 14 || (digits.len() == 12 && fraction.is_none()))
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute) = (num(8..10)?, num(10..12)?);
    let second = if digits.len() == 14 { num(12..14)? } else { 0 };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm; the inverse of
/// `listing::civil_from_days`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A mode as `ls` and SITE CHMOD replies show it: four octal digits.
pub struct OctalMode(pub u32);

impl fmt::Display for OctalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0 & 0o7777)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::listing::timeval;
    use proptest::prelude::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("19700101000000"), Some(0));
        assert_eq!(parse_time("20231114221320"), Some(1_700_000_000));
        assert_eq!(parse_time("20231114221320.123"), Some(1_700_000_000));
        assert_eq!(parse_time("202311142213"), Some(1_700_000_000 - 20));
        assert_eq!(
            parse_time("20240229120000").map(timeval).as_deref(),
            Some("20240229120000")
        );
        for bad in [
            "",
            "2023111422132",
            "202311142213200",
            "20230229120000",
            "20231314221320",
            "20231100221320",
            "20231114241320",
            "20231114226020",
            "2023111422132x",
            "20231114221320.",
            "20231114221320.1234567890",
            "202311142213.5",
            "+0231114221320",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn time_and_path() {
        assert_eq!(
            split_time_and_path("20231114221320 a b.txt"),
            Some((1_700_000_000, "a b.txt"))
        );
        assert_eq!(
            split_time_and_path("20231114221320   x"),
            Some((1_700_000_000, "x"))
        );
        assert_eq!(split_time_and_path("20231114221320"), None);
        assert_eq!(split_time_and_path("20231114221320 "), None);
        assert_eq!(split_time_and_path("file name.txt"), None);
    }

    #[test]
    fn site_chmod() {
        assert_eq!(
            parse_site("CHMOD 644 a b"),
            Ok(SiteCmd::Chmod {
                mode: 0o644,
                path: "a b".into()
            })
        );
        assert_eq!(
            parse_site("chmod 0755 d"),
            Ok(SiteCmd::Chmod {
                mode: 0o755,
                path: "d".into()
            })
        );
        for bad in [
            "CHMOD",
            "CHMOD 644",
            "CHMOD 644 ",
            "CHMOD 8 x",
            "CHMOD 12345 x",
            "CHMOD +7 x",
            "CHMOD rw x",
        ] {
            assert_eq!(parse_site(bad), Err(SiteError::Usage(CHMOD_USAGE)), "{bad}");
        }
    }

    #[test]
    fn site_utime_both_forms() {
        assert_eq!(
            parse_site("UTIME 20231114221320 f.bin"),
            Ok(SiteCmd::Utime {
                path: "f.bin".into(),
                mtime: 1_700_000_000,
                atime: None
            })
        );
        assert_eq!(
            parse_site("UTIME my file.bin 19700101000000 20231114221320 20231114221320 UTC"),
            Ok(SiteCmd::Utime {
                path: "my file.bin".into(),
                mtime: 1_700_000_000,
                atime: Some(0)
            })
        );
        for bad in ["UTIME", "UTIME x", "UTIME 2023 x", "UTIME x 1 2 3 UTC"] {
            assert_eq!(parse_site(bad), Err(SiteError::Usage(UTIME_USAGE)), "{bad}");
        }
    }

    #[test]
    fn site_other() {
        assert_eq!(parse_site("help"), Ok(SiteCmd::Help));
        assert_eq!(parse_site("IDLE 60"), Ok(SiteCmd::Unknown("IDLE".into())));
        assert_eq!(
            parse_site("\x1b[31mevil"),
            Ok(SiteCmd::Unknown("?[31MEVIL".into()))
        );
        assert_eq!(OctalMode(0o644).to_string(), "0644");
    }

    proptest! {
        #[test]
        fn prop_site_never_panics(arg in "\\PC{0,80}") {
            let _ = parse_site(&arg);
            let _ = split_time_and_path(&arg);
        }

        #[test]
        fn prop_time_roundtrips(t in -62_135_596_800i64..253_402_300_799) {
            // Every second from year 1 to 9999 formats and parses back to itself.
            prop_assert_eq!(parse_time(&timeval(t)), Some(t));
        }
    }
}
