//! The directories uploads were last opened in, kept open per core so that a client landing file
//! after file in one directory does not pay a jailed `openat2` and a `close` of that directory for
//! every file (3.4 us of about 47 per 4 KiB MODE B file).
//!
//! A kept descriptor may only stand for the name it was opened by while that name still leads to
//! it. Each use checks that with one `statx` of the name in the root, without following a symlink:
//! the name's (device, inode) must be the kept directory's. The check is exact because the kept
//! descriptor holds the directory's inode, so its number cannot go to another file meanwhile.
//! A directory renamed or removed since, a new one made under the old name, or a symlink put in its
//! place all differ, and the directory is opened afresh through the jail. Only names directly in
//! the root are kept: there the lookup crosses no other name, so no symlink can be followed on the
//! way (a deeper path could pass one, and the jail's `RESOLVE_IN_ROOT` rules would be bypassed).
//!
//! Used only with inline file-system calls: the `statx` is a direct call on the core thread, which
//! `fs_ops = "ring"` promises never to make.

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, RawFd};

use crate::engine::direct;
use crate::engine::fd::SharedFd;

/// Directories kept per core: enough for the directories a core's busy sessions write to at once;
/// the least recently used goes first.
const KEPT: usize = 16;

struct Kept {
    /// The root the name was opened in (its descriptor number; the check makes a reused number
    /// harmless: the name is looked up in the root passed now).
    root: RawFd,
    name: CString,
    dir: SharedFd,
    id: (u64, u64),
}

impl Kept {
    fn is(&self, root: RawFd, name: &CStr) -> bool {
        self.root == root && self.name.as_c_str() == name
    }
}

thread_local! {
    static KEPT_DIRS: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
}

/// The kept directory `name` (a single component) names in `root` right now, if one is kept. A
/// hit moves to the front (most recently used); a kept directory the name no longer leads to is
/// forgotten.
pub fn lookup(root: &SharedFd, name: &CStr) -> Option<SharedFd> {
    let r = root.as_raw_fd();
    KEPT_DIRS.with(|k| {
        let mut k = k.borrow_mut();
        let i = k.iter().position(|e| e.is(r, name))?;
        let e = k.remove(i);
        if direct::file_id(root, name, libc::AT_SYMLINK_NOFOLLOW).ok() != Some(e.id) {
            return None;
        }
        let dir = e.dir.clone();
        k.insert(0, e);
        Some(dir)
    })
}

/// Keeps `dir`, just opened through the jail as `name` in `root`.
pub fn keep(root: &SharedFd, name: &CStr, dir: &SharedFd) {
    let Ok(id) = direct::file_id(dir, c"", libc::AT_EMPTY_PATH) else {
        return;
    };
    let r = root.as_raw_fd();
    KEPT_DIRS.with(|k| {
        let mut k = k.borrow_mut();
        k.retain(|e| !e.is(r, name));
        if k.len() >= KEPT {
            k.pop();
        }
        k.insert(
            0,
            Kept {
                root: r,
                name: name.to_owned(),
                dir: dir.clone(),
                id,
            },
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn open(path: &std::path::Path) -> SharedFd {
        Rc::new(std::fs::File::open(path).expect("open directory").into())
    }

    #[test]
    fn a_kept_directory_is_used_only_while_its_name_leads_to_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root_path = tmp.path();
        std::fs::create_dir(root_path.join("a")).expect("mkdir a");
        let root = open(root_path);
        let a = open(&root_path.join("a"));
        keep(&root, c"a", &a);
        assert!(lookup(&root, c"a").is_some(), "kept and unchanged");
        assert!(lookup(&root, c"b").is_none(), "never kept");

        // Renamed away and a new directory made under the old name: not the kept one.
        std::fs::rename(root_path.join("a"), root_path.join("old-a")).expect("rename");
        std::fs::create_dir(root_path.join("a")).expect("mkdir new a");
        assert!(
            lookup(&root, c"a").is_none(),
            "a new directory under the name"
        );
        // Forgotten after a miss, even if the name led back to it.
        std::fs::remove_dir(root_path.join("a")).expect("rmdir new a");
        std::fs::rename(root_path.join("old-a"), root_path.join("a")).expect("rename back");
        assert!(lookup(&root, c"a").is_none(), "forgotten after the miss");

        // A symlink to the kept directory in its place is not the directory.
        keep(&root, c"a", &a);
        std::fs::rename(root_path.join("a"), root_path.join("real")).expect("rename");
        std::os::unix::fs::symlink("real", root_path.join("a")).expect("symlink");
        assert!(lookup(&root, c"a").is_none(), "a symlink is never followed");
    }

    #[test]
    fn at_most_kept_directories_and_the_oldest_goes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = open(tmp.path());
        let names: Vec<CString> = (0..=KEPT)
            .map(|i| CString::new(format!("d{i}")).expect("name"))
            .collect();
        for n in &names {
            let p = tmp.path().join(n.to_str().expect("utf-8"));
            std::fs::create_dir(&p).expect("mkdir");
            keep(&root, n, &open(&p));
        }
        assert_eq!(KEPT_DIRS.with(|k| k.borrow().len()), KEPT);
        assert!(lookup(&root, &names[0]).is_none(), "the oldest went");
        assert!(lookup(&root, &names[KEPT]).is_some(), "the newest stays");
    }
}
