//! Virtual paths: the pure, lexical half of the jail.
//!
//! A client names files relative to its working directory inside its own root. [`VPath`] resolves
//! those names lexically into a normalized absolute path that can never climb above the root (`..` at
//! the root stays at the root, like `chroot`). The other half of the jail is in the server: it opens
//! [`VPath::relative`] with `openat2(root_dirfd, .., RESOLVE_IN_ROOT)`, so symlinks inside the tree are
//! also confined by the kernel. Lexical `..` handling means `a/..` is always the directory itself, even
//! when `a` is a symlink; that is the behaviour clients of a chrooted FTP server expect.
//!
//! Only `/` separates components. A backslash is an ordinary character, as it is for the filesystem.

use std::fmt;

/// Longest virtual path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH: usize = 4096;
/// Longest single component accepted, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT: usize = 255;

/// Names starting with this are the server's own (hidden upload temporaries and resumable MODE B
/// partials): hidden from listings and refused as the name of anything a client creates.
pub const RESERVED_PREFIX: &str = ".ringest-";

/// Why an argument cannot be turned into a virtual path.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum PathError {
    /// NUL, CR or LF in the path; or, for [`VPath::join`], a name that is not one plain component.
    #[error("invalid character in path")]
    InvalidChar,
    /// A component longer than [`MAX_COMPONENT`] bytes.
    #[error("path component too long")]
    ComponentTooLong,
    /// The resolved path is longer than [`MAX_PATH`] bytes.
    #[error("path too long")]
    TooLong,
    /// An empty argument: it names nothing, and treating it as "." would hide client bugs.
    #[error("empty path")]
    Empty,
}

/// A normalized absolute virtual path as the client sees it: `"/"` or `"/a/b"`.
///
/// Invariants, upheld by every constructor: starts with `/`; no empty, `.` or `..` components; no
/// trailing `/` except for the root; no NUL, CR or LF; at most [`MAX_PATH`] bytes and components of at
/// most [`MAX_COMPONENT`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VPath(String);

impl VPath {
    /// The root of the client's tree.
    pub fn root() -> Self {
        VPath(String::from("/"))
    }

    /// Resolves a client argument against `self` (the working directory).
    ///
    /// An absolute `arg` starts from the root, a relative one from `self`. Empty and `.` components
    /// are dropped, `..` removes the previous component and is clamped at the root. `~` is not
    /// special. The result is idempotent: resolving its [`as_str`](Self::as_str) from any directory
    /// gives the same path.
    pub fn resolve(&self, arg: &str) -> Result<VPath, PathError> {
        if arg.is_empty() {
            return Err(PathError::Empty);
        }
        if arg.bytes().any(is_forbidden) {
            return Err(PathError::InvalidChar);
        }
        let mut parts: Vec<&str> = if arg.starts_with('/') {
            Vec::new()
        } else {
            self.components().collect()
        };
        for c in arg.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => {
                    if name.len() > MAX_COMPONENT {
                        return Err(PathError::ComponentTooLong);
                    }
                    parts.push(name);
                }
            }
        }
        let len: usize = parts.iter().map(|p| p.len() + 1).sum();
        if len > MAX_PATH {
            return Err(PathError::TooLong);
        }
        if parts.is_empty() {
            return Ok(VPath::root());
        }
        let mut s = String::with_capacity(len);
        for p in parts {
            s.push('/');
            s.push_str(p);
        }
        Ok(VPath(s))
    }

    /// The absolute form shown to clients, e.g. in the 257 reply of PWD.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path relative to the root: `"a/b"`, or `"."` for the root. This is what the server hands
    /// to `openat2(root_dirfd, .., RESOLVE_IN_ROOT)`; it never starts with `/`.
    pub fn relative(&self) -> &str {
        match self.0.get(1..) {
            Some(rest) if !rest.is_empty() => rest,
            _ => ".",
        }
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.len() <= 1
    }

    /// The containing directory; `None` for the root.
    pub fn parent(&self) -> Option<VPath> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(0) | None => Some(VPath::root()),
            Some(i) => self.0.get(..i).map(|p| VPath(p.to_owned())),
        }
    }

    /// The last component; `None` for the root.
    /// Whether the final component starts with [`RESERVED_PREFIX`]: the server's own hidden files
    /// (upload temporaries, resumable partials) have such names, so a client may not create one.
    pub fn is_reserved(&self) -> bool {
        self.file_name()
            .is_some_and(|n| n.starts_with(RESERVED_PREFIX))
    }

    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            return None;
        }
        self.0.rsplit('/').next()
    }

    /// Appends one component. Unlike [`resolve`](Self::resolve), `name` is taken literally: it must be
    /// a single plain name (no `/`, not `.` or `..`), which is what listing and upload code wants when
    /// it builds a path from a directory entry or a generated unique name.
    pub fn join(&self, name: &str) -> Result<VPath, PathError> {
        if name.is_empty() {
            return Err(PathError::Empty);
        }
        if name == "." || name == ".." || name.bytes().any(|b| b == b'/' || is_forbidden(b)) {
            return Err(PathError::InvalidChar);
        }
        if name.len() > MAX_COMPONENT {
            return Err(PathError::ComponentTooLong);
        }
        let base = if self.is_root() { "" } else { self.0.as_str() };
        if base.len() + 1 + name.len() > MAX_PATH {
            return Err(PathError::TooLong);
        }
        let mut s = String::with_capacity(base.len() + 1 + name.len());
        s.push_str(base);
        s.push('/');
        s.push_str(name);
        Ok(VPath(s))
    }

    /// The components from the root down; empty for the root.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }
}

impl Default for VPath {
    fn default() -> Self {
        VPath::root()
    }
}

impl fmt::Display for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Bytes that may never appear in a path: NUL ends a C string early, CR/LF would let a name inject
/// lines into replies and logs.
fn is_forbidden(b: u8) -> bool {
    matches!(b, 0 | b'\r' | b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vp(s: &str) -> VPath {
        VPath::root().resolve(s).expect("valid test path")
    }

    #[test]
    fn root_basics() {
        let r = VPath::root();
        assert_eq!(r.as_str(), "/");
        assert_eq!(r.relative(), ".");
        assert!(r.is_root());
        assert_eq!(r.parent(), None);
        assert_eq!(r.file_name(), None);
        assert_eq!(r.components().count(), 0);
        assert_eq!(VPath::default(), r);
    }

    #[test]
    fn resolve_relative_and_absolute() {
        let cwd = vp("/a/b");
        assert_eq!(cwd.resolve("c").unwrap().as_str(), "/a/b/c");
        assert_eq!(cwd.resolve("/c").unwrap().as_str(), "/c");
        assert_eq!(cwd.resolve("../c").unwrap().as_str(), "/a/c");
        assert_eq!(cwd.resolve("..").unwrap().as_str(), "/a");
        assert_eq!(cwd.resolve(".").unwrap().as_str(), "/a/b");
        assert_eq!(cwd.resolve("./x//y/").unwrap().as_str(), "/a/b/x/y");
        assert_eq!(cwd.resolve("/").unwrap().as_str(), "/");
        assert_eq!(cwd.resolve("~").unwrap().as_str(), "/a/b/~");
    }

    #[test]
    fn dotdot_is_clamped_at_root() {
        let cwd = vp("/a");
        assert_eq!(
            cwd.resolve("../../../etc/passwd").unwrap().as_str(),
            "/etc/passwd"
        );
        assert_eq!(cwd.resolve("/../..").unwrap(), VPath::root());
        assert_eq!(
            cwd.resolve("../../../etc/passwd").unwrap().relative(),
            "etc/passwd"
        );
    }

    #[test]
    fn spaces_backslashes_and_dots_in_names() {
        let r = VPath::root();
        assert_eq!(r.resolve(" my file ").unwrap().as_str(), "/ my file ");
        assert_eq!(r.resolve("a\\..\\b").unwrap().as_str(), "/a\\..\\b");
        assert_eq!(r.resolve("...").unwrap().as_str(), "/...");
        assert_eq!(r.resolve(".hidden").unwrap().as_str(), "/.hidden");
        assert_eq!(r.resolve("ünï/😀").unwrap().as_str(), "/ünï/😀");
    }

    #[test]
    fn errors() {
        let r = VPath::root();
        assert_eq!(r.resolve(""), Err(PathError::Empty));
        assert_eq!(r.resolve("a\0b"), Err(PathError::InvalidChar));
        assert_eq!(r.resolve("a\rb"), Err(PathError::InvalidChar));
        assert_eq!(r.resolve("a\nb"), Err(PathError::InvalidChar));
        let long = "x".repeat(MAX_COMPONENT + 1);
        assert_eq!(r.resolve(&long), Err(PathError::ComponentTooLong));
        assert!(r.resolve(&"x".repeat(MAX_COMPONENT)).is_ok());
        let deep = "abcdefg/".repeat(MAX_PATH / 8 + 1);
        assert_eq!(r.resolve(&deep), Err(PathError::TooLong));
    }

    #[test]
    fn max_path_boundary() {
        // 16 components of 255 bytes plus separators = 4096 bytes exactly.
        let c = "y".repeat(255);
        let arg = vec![c.as_str(); 16].join("/");
        let p = VPath::root().resolve(&arg).unwrap();
        assert_eq!(p.as_str().len(), MAX_PATH);
        assert_eq!(p.join("z"), Err(PathError::TooLong));
        assert_eq!(p.resolve("z"), Err(PathError::TooLong));
        assert!(p.resolve("../z").is_ok());
    }

    #[test]
    fn parent_file_name_components() {
        let p = vp("/a/b/c");
        assert_eq!(p.file_name(), Some("c"));
        assert_eq!(p.parent().unwrap().as_str(), "/a/b");
        assert_eq!(vp("/a").parent().unwrap(), VPath::root());
        assert_eq!(p.components().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(p.relative(), "a/b/c");
        assert_eq!(p.to_string(), "/a/b/c");
    }

    #[test]
    fn join() {
        let p = vp("/a");
        assert_eq!(p.join("b").unwrap().as_str(), "/a/b");
        assert_eq!(VPath::root().join("b").unwrap().as_str(), "/b");
        assert_eq!(p.join(""), Err(PathError::Empty));
        assert_eq!(p.join("."), Err(PathError::InvalidChar));
        assert_eq!(p.join(".."), Err(PathError::InvalidChar));
        assert_eq!(p.join("b/c"), Err(PathError::InvalidChar));
        assert_eq!(p.join("b\n"), Err(PathError::InvalidChar));
        assert_eq!(
            p.join(&"x".repeat(MAX_COMPONENT + 1)),
            Err(PathError::ComponentTooLong)
        );
    }

    /// Path-like strings built from interesting pieces, so `..`, `.` and separators are common.
    fn path_arg() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("..".to_string()),
            Just(".".to_string()),
            Just("/".to_string()),
            Just("//".to_string()),
            Just("a".to_string()),
            Just("b c".to_string()),
            Just("\\".to_string()),
            Just("~".to_string()),
            "[a-z.]{1,4}".prop_map(|s| s),
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    fn check_invariants(p: &VPath) {
        let s = p.as_str();
        assert!(s.starts_with('/'));
        assert!(s.len() <= MAX_PATH);
        assert!(s == "/" || !s.ends_with('/'));
        assert!(!p.relative().starts_with('/'));
        assert!(!s.bytes().any(is_forbidden));
        for c in s.split('/').skip(1) {
            if s != "/" {
                assert!(!c.is_empty() && c != "." && c != "..");
            }
            assert!(c.len() <= MAX_COMPONENT);
        }
    }

    proptest! {
        #[test]
        fn prop_resolve_invariants(cwd in path_arg(), arg in path_arg(), other in path_arg()) {
            let cwd = VPath::root().resolve(&cwd).unwrap_or_default();
            check_invariants(&cwd);
            if let Ok(p) = cwd.resolve(&arg) {
                check_invariants(&p);
                // Idempotent from any directory, including the root.
                let elsewhere = VPath::root().resolve(&other).unwrap_or_default();
                prop_assert_eq!(elsewhere.resolve(p.as_str()), Ok(p.clone()));
                prop_assert_eq!(VPath::root().resolve(p.as_str()), Ok(p.clone()));
                // The relative form, resolved from the root, names the same path.
                prop_assert_eq!(VPath::root().resolve(p.relative()), Ok(p.clone()));
                if let Some(parent) = p.parent() {
                    check_invariants(&parent);
                    let name = p.file_name().unwrap_or_default();
                    prop_assert_eq!(parent.join(name), Ok(p.clone()));
                }
            }
        }

        #[test]
        fn prop_resolve_never_panics(cwd in any::<String>(), arg in any::<String>()) {
            let cwd = VPath::root().resolve(&cwd).unwrap_or_default();
            let _ = cwd.resolve(&arg);
            let _ = cwd.join(&arg);
        }
    }
}
