//! How a user's file tree maps onto a bucket, as pure functions (tested without a store).
//!
//! An object store has no directories, only keys. A user's tree lives under a key prefix (`""` or
//! ending in `/`), and the file `/a/b` is the object `prefix + "a/b"`. A directory is a convention
//! on top of that:
//!
//! - `/d` is a directory when the **marker** object `prefix + "d/"` exists (what MKD makes, so an
//!   empty directory can exist at all), or when **any** key starts with `prefix + "d/"` (a file
//!   uploaded by another tool into `d/` implies `d`, as it does for every S3 browser);
//! - the user's root always exists, even when nothing is stored under the prefix yet.
//!
//! A listing of `/d` is a ListObjectsV2 of the prefix `prefix + "d/"` with the delimiter `/`: its
//! objects are the files of `/d` and its common prefixes the subdirectories ([`DirListing`]).

use std::time::SystemTime;

use crate::proto::glob::Glob;
use crate::proto::listing::{Entry, EntryKind};
use crate::proto::path::VPath;

use super::client::ListPage;

/// Permission bits shown for files: S3 has none, so the usual umask-022 defaults.
pub const FILE_PERM: u32 = 0o644;
/// Permission bits shown for directories.
pub const DIR_PERM: u32 = 0o755;

/// The object key of `path` beneath `prefix`: `prefix + "a/b"` for `/a/b`, and `prefix` itself for
/// the root. A [`VPath`] has no `.`, `..` or empty components, so the key never leaves the prefix.
pub fn object_key(prefix: &str, path: &VPath) -> String {
    let rel = path.as_str().trim_start_matches('/');
    let mut k = String::with_capacity(prefix.len() + rel.len());
    k.push_str(prefix);
    k.push_str(rel);
    k
}

/// The key prefix of everything inside the directory `path`, which is also the key of its marker
/// object: `prefix + "d/"`, or `prefix` itself for the root (which has no marker).
pub fn dir_prefix(prefix: &str, path: &VPath) -> String {
    let mut k = object_key(prefix, path);
    if !path.is_root() {
        k.push('/');
    }
    k
}

/// Seconds since the epoch of an object's time; 0 (1970) when the store gave none, as for a
/// directory known only from a common prefix, which has no time of its own.
pub fn secs(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A stable stand-in for an inode number (the MLSx `unique` fact): FNV-1a of the key, so the same
/// object has the same value in every listing and on every core.
pub fn ino_of(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The entry of a file object.
pub fn file_entry(name: String, key: &str, size: u64, mtime: Option<SystemTime>) -> Entry {
    Entry {
        name,
        kind: EntryKind::File,
        size,
        mtime: secs(mtime),
        perm: FILE_PERM,
        nlink: 1,
        ino: ino_of(key),
    }
}

/// The entry of a directory; `dir_key` is its prefix (ending in `/`), `mtime` its marker's if
/// known.
pub fn dir_entry(name: String, dir_key: &str, mtime: Option<SystemTime>) -> Entry {
    Entry {
        name,
        kind: EntryKind::Dir,
        size: 0,
        mtime: secs(mtime),
        perm: DIR_PERM,
        nlink: 1,
        ino: ino_of(dir_key),
    }
}

/// Whether a listed name can be shown as an entry of the directory. Keys are arbitrary strings, so
/// a bucket written by other tools can hold `d//x` (an empty component), `d/./x` or `d/../x`:
/// no FTP path can name those (a client would resolve `.` and `..` away), so listing them would
/// show entries that every command then says do not exist. They stay in the bucket, unlisted.
pub fn nameable(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// One directory's listing, built page by page from ListObjectsV2 replies (prefix = the
/// directory's [`dir_prefix`], delimiter `/`).
pub struct DirListing<'a> {
    prefix: &'a str,
    pattern: Option<&'a Glob>,
    limit: usize,
    entries: Vec<Entry>,
    /// Any key at all under the prefix, the marker included, whatever the pattern: the directory
    /// exists.
    seen: bool,
}

impl<'a> DirListing<'a> {
    /// A listing of the directory whose keys start with `prefix` (its [`dir_prefix`]), keeping
    /// only names that match `pattern`, at most `limit` entries.
    pub fn new(prefix: &'a str, pattern: Option<&'a Glob>, limit: usize) -> DirListing<'a> {
        DirListing {
            prefix,
            pattern,
            limit,
            entries: Vec::new(),
            seen: false,
        }
    }

    /// Adds one page. The directory's own marker (the key equal to the prefix) is not an entry.
    pub fn add(&mut self, page: &ListPage) {
        let prefix = self.prefix;
        for o in &page.objects {
            self.seen = true;
            let Some(name) = o.key.strip_prefix(prefix) else {
                continue;
            };
            if self.keep(name) {
                let e = file_entry(name.to_string(), &o.key, o.size, o.mtime);
                self.entries.push(e);
            }
        }
        for p in &page.prefixes {
            self.seen = true;
            let Some(name) = p.strip_prefix(prefix).and_then(|n| n.strip_suffix('/')) else {
                continue;
            };
            if self.keep(name) {
                self.entries.push(dir_entry(name.to_string(), p, None));
            }
        }
    }

    fn keep(&self, name: &str) -> bool {
        self.entries.len() < self.limit
            && nameable(name)
            && self.pattern.is_none_or(|g| g.matches(name))
    }

    /// Whether `limit` entries are in: no further page is needed.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.limit
    }

    /// Whether any key exists under the prefix (the marker included): the directory exists.
    pub fn seen_any(&self) -> bool {
        self.seen
    }

    /// The entries, sorted by name (a name that is both a file and a directory, `x` and `x/`,
    /// which S3 allows, appears twice: both exist, and each is reachable by its own command).
    pub fn finish(mut self) -> Vec<Entry> {
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
        self.entries
    }
}

/// Whether a first page of the listing of a directory's prefix shows it holds anything besides its
/// own marker: RMD refuses then (ENOTEMPTY). One page is enough to tell, since the marker is the
/// only key a non-empty page can consist of for an empty directory.
pub fn has_children(dir_key: &str, page: &ListPage) -> bool {
    !page.prefixes.is_empty() || page.objects.iter().any(|o| o.key != dir_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::storage::s3::client::ListedObject;
    use proptest::prelude::*;
    use std::time::Duration;

    fn vp(s: &str) -> VPath {
        VPath::root().resolve(s).unwrap()
    }

    fn obj(key: &str, size: u64) -> ListedObject {
        ListedObject {
            key: key.into(),
            size,
            mtime: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)),
        }
    }

    #[test]
    fn keys_and_prefixes() {
        assert_eq!(object_key("u/alice/", &vp("/a/b.txt")), "u/alice/a/b.txt");
        assert_eq!(object_key("", &vp("/a")), "a");
        assert_eq!(object_key("u/", &VPath::root()), "u/");
        assert_eq!(dir_prefix("u/", &vp("/a/b")), "u/a/b/");
        assert_eq!(dir_prefix("u/", &VPath::root()), "u/");
        assert_eq!(dir_prefix("", &VPath::root()), "");
        assert_eq!(object_key("", &vp("/../../etc/x")), "etc/x");
    }

    #[test]
    fn listing_turns_pages_into_sorted_entries() {
        let g = Glob::new("*.txt").unwrap();
        let page1 = ListPage {
            objects: vec![obj("u/d/", 0), obj("u/d/b.txt", 5), obj("u/d/a.bin", 7)],
            prefixes: vec!["u/d/sub/".into(), "u/d//".into()],
            continuation: Some("t".into()),
        };
        let page2 = ListPage {
            objects: vec![obj("u/d/c.txt", 1), obj("u/d/..", 1)],
            prefixes: vec!["u/d/a/".into()],
            continuation: None,
        };
        let mut l = DirListing::new("u/d/", None, 100);
        l.add(&page1);
        l.add(&page2);
        assert!(l.seen_any());
        let e = l.finish();
        let names: Vec<_> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "a.bin", "b.txt", "c.txt", "sub"]);
        assert_eq!(e[0].kind, EntryKind::Dir);
        assert_eq!(e[0].perm, DIR_PERM);
        assert_eq!(e[1].kind, EntryKind::File);
        assert_eq!((e[1].size, e[1].mtime, e[1].perm), (7, 1_000, FILE_PERM));
        assert_eq!(e[1].ino, ino_of("u/d/a.bin"));

        let mut l = DirListing::new("u/d/", Some(&g), 100);
        l.add(&page1);
        l.add(&page2);
        let names: Vec<_> = l.finish().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["b.txt", "c.txt"]);

        let mut l = DirListing::new("u/d/", None, 2);
        l.add(&page1);
        assert!(l.is_full());
        assert_eq!(l.finish().len(), 2);
    }

    #[test]
    fn a_marker_alone_is_an_empty_existing_directory() {
        let marker = ListPage {
            objects: vec![obj("u/d/", 0)],
            ..ListPage::default()
        };
        let mut l = DirListing::new("u/d/", None, 10);
        l.add(&marker);
        assert!(l.seen_any());
        assert!(l.finish().is_empty());
        assert!(!has_children("u/d/", &marker));
        assert!(!has_children("u/d/", &ListPage::default()));
        let l = DirListing::new("u/d/", None, 10);
        assert!(!l.seen_any(), "nothing under the prefix: no such directory");
        let with_file = ListPage {
            objects: vec![obj("u/d/", 0), obj("u/d/x", 1)],
            ..ListPage::default()
        };
        assert!(has_children("u/d/", &with_file));
        let with_dir = ListPage {
            prefixes: vec!["u/d/s/".into()],
            ..ListPage::default()
        };
        assert!(has_children("u/d/", &with_dir));
    }

    #[test]
    fn times() {
        assert_eq!(secs(None), 0);
        assert_eq!(
            secs(Some(SystemTime::UNIX_EPOCH + Duration::from_secs(42))),
            42
        );
    }

    proptest! {
        /// Whatever the client typed, the key stays inside the user's prefix, and the name in
        /// its directory's listing is the path's last component (the round trip a listing
        /// followed by RETR of a listed name makes).
        #[test]
        fn keys_stay_under_the_prefix(arg in "[a-z./]{1,40}", user in "[a-z]{1,8}") {
            let prefix = format!("users/{user}/");
            let Ok(p) = VPath::root().resolve(&arg) else { return Ok(()); };
            let key = object_key(&prefix, &p);
            prop_assert!(key.starts_with(&prefix));
            let rel = &key[prefix.len()..];
            prop_assert!(rel.split('/').all(|c| c != "." && c != ".."));
            if let (Some(parent), Some(name)) = (p.parent(), p.file_name()) {
                let dir = dir_prefix(&prefix, &parent);
                prop_assert!(dir.starts_with(&prefix) && (dir == prefix || dir.ends_with('/')));
                prop_assert_eq!(key.strip_prefix(&dir), Some(name));
                prop_assert!(nameable(name));
                prop_assert_eq!(parent.join(name).unwrap(), p);
            } else {
                prop_assert_eq!(key, prefix);
            }
        }
    }
}
