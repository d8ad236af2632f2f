//! Virtual path resolution: the result never escapes the root, is normalized, and resolving it
//! again from anywhere is a no-op.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest::proto::path::{VPath, MAX_PATH};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // A NUL (never valid in a path) splits the input into a working directory and an argument.
    let (cwd, arg) = text.split_once('\u{0}').unwrap_or(("/", &text));
    let cwd = VPath::root().resolve(cwd).unwrap_or_default();
    let Ok(p) = cwd.resolve(arg) else { return };
    let s = p.as_str();
    assert!(s.starts_with('/') && s.len() <= MAX_PATH);
    assert!(!p.relative().starts_with('/'));
    assert!(p
        .components()
        .all(|c| !c.is_empty() && c != "." && c != ".."));
    assert_eq!(cwd.resolve(s).as_ref(), Ok(&p));
    assert_eq!(VPath::root().resolve(p.relative()).as_ref(), Ok(&p));
});
