//! Wildcard patterns and SITE/MFMT arguments come straight from clients: compiling and matching
//! any pattern against any name, and parsing any SITE argument, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest::proto::glob::Glob;
use ringest::proto::site;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // A NUL splits the input into a pattern and a name.
    let (pattern, name) = text.split_once('\u{0}').unwrap_or((&text, "name.bin"));
    if let Ok(g) = Glob::new(pattern) {
        let _ = g.matches(name);
    }
    let _ = site::parse_site(&text);
    let _ = site::split_time_and_path(&text);
});
