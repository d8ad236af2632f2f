//! The server's reserved names: hidden temporary upload files and the resumable MODE B partials.
//! Listings hide them, deletes and renames refuse them, and the start-up sweep removes the
//! temporaries a crash left behind.

use std::ffi::CString;
use std::io;
use std::path::PathBuf;

use super::jail::cstr;

/// Prefix and suffix of our hidden upload names; listings hide them. The prefix is the protocol's
/// reserved one, which the session refuses in names clients create (STOR, APPE, STOU, MKD, RNTO).
pub const TEMP_PREFIX: &str = crate::proto::path::RESERVED_PREFIX;
pub const TEMP_SUFFIX: &str = ".part";

/// Prefix of the resumable MODE B partials, which survive restarts (the crash sweep keeps them).
pub const PARTIAL_PREFIX: &str = ".ringest-partial-";

/// Whether `name` is one of our hidden upload names.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// The hidden name holding the resumable part of an interrupted MODE B upload of `name`. A hash keeps
/// it within NAME_MAX whatever the name's length (FNV-1a: stable across restarts).
pub fn partial_name(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{PARTIAL_PREFIX}{h:016x}{TEMP_SUFFIX}")
}

/// A fresh random hidden temporary name.
pub fn random_temp() -> io::Result<CString> {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).map_err(|e| io::Error::other(e.to_string()))?;
    cstr(&format!(
        "{TEMP_PREFIX}{:016x}{TEMP_SUFFIX}",
        u64::from_le_bytes(r)
    ))
}

/// Removes temporary upload files a crash left behind (never the resumable MODE B partials), in the
/// background so a large tree does not delay start-up.
pub fn sweep_interrupted(roots: Vec<PathBuf>) {
    let _ = std::thread::Builder::new()
        .name("ringest-sweep".into())
        .spawn(move || {
            let mut removed = 0u64;
            let mut stack = roots;
            let mut visited = 0usize;
            while let Some(dir) = stack.pop() {
                visited += 1;
                if visited > 1_000_000 {
                    break;
                }
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in rd.flatten() {
                    let Ok(ft) = e.file_type() else { continue };
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    if ft.is_dir() {
                        stack.push(e.path());
                    } else if ft.is_file()
                        && is_temp_name(&name)
                        && !name.starts_with(PARTIAL_PREFIX)
                        && std::fs::remove_file(e.path()).is_ok()
                    {
                        removed += 1;
                    }
                }
            }
            if removed > 0 {
                tracing::info!(removed, "removed temporary files of interrupted uploads");
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_are_hidden_and_bounded() {
        let long = "x".repeat(255);
        for n in ["a", "file with spaces.bin", long.as_str()] {
            let p = partial_name(n);
            assert!(is_temp_name(&p));
            assert!(p.len() < 64);
        }
        assert_ne!(partial_name("a"), partial_name("b"));
    }
}
