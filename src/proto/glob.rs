//! Shell-style wildcards for NLST and LIST (`*`, `?`, `[...]`), in the last path component only, as
//! vsftpd and ProFTPD accept them: `mget *.bin` in tnftp and ncftp and `ncftpget 'dir/*.bin'` send
//! the pattern to the server and expect the matching names back.
//!
//! A pattern comes from the client, so matching must be cheap whatever it contains. The matcher is
//! the classic two-pointer algorithm with a single backtrack point (the last `*` seen): a run of
//! stars never multiplies the work, so a match costs at most `O(name × pattern)` steps, never an
//! exponential search. Patterns are compiled once per listing into tokens, and a bracket expression
//! that is never closed is taken literally, the way `fnmatch` does, so there is no invalid pattern.

/// Longest pattern accepted, in bytes: a path component cannot be longer (Linux `NAME_MAX`).
pub const MAX_PATTERN: usize = 255;

/// Why a pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum GlobError {
    /// Longer than [`MAX_PATTERN`] bytes.
    #[error("wildcard pattern too long")]
    TooLong,
}

/// One element of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A character that must match itself.
    Literal(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters, including none.
    Star,
    /// `[...]`: one character in (or, `negated`, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled wildcard pattern for one path component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
}

/// Whether `s` contains a wildcard character, i.e. whether NLST/LIST should treat it as a pattern.
pub fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Glob {
    /// Compiles `pattern`. A `[` without a closing `]` is an ordinary character, so any text of
    /// bounded length is a valid pattern.
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.len() > MAX_PATTERN {
            return Err(GlobError::TooLong);
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::with_capacity(chars.len());
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            match c {
                '*' => {
                    // Consecutive stars mean the same as one.
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                    i += 1;
                }
                '?' => {
                    tokens.push(Token::Any);
                    i += 1;
                }
                '[' => match parse_class(&chars, i + 1) {
                    Some((tok, next)) => {
                        tokens.push(tok);
                        i = next;
                    }
                    None => {
                        tokens.push(Token::Literal('['));
                        i += 1;
                    }
                },
                c => {
                    tokens.push(Token::Literal(c));
                    i += 1;
                }
            }
        }
        Ok(Glob {
            source: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `name` matches. A leading `.` must be matched by a literal `.`, as in the shell, so
    /// `*` does not list hidden files. A name equal to the pattern text always matches, so a file
    /// literally named `x[1]` can still be listed by its name.
    pub fn matches(&self, name: &str) -> bool {
        if name == self.source {
            return true;
        }
        if name.starts_with('.') && self.tokens.first() != Some(&Token::Literal('.')) {
            return false;
        }
        let name: Vec<char> = name.chars().collect();
        match_tokens(&self.tokens, &name)
    }
}

/// Parses a bracket expression whose body starts at `start` (just after `[`). Returns the token and
/// the index after the closing `]`, or `None` when there is no closing `]`.
fn parse_class(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        // A `]` right after `[` or `[!` is a member, not the end (POSIX).
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        match (chars.get(i + 1), chars.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                ranges.push((c, hi));
                i += 3;
            }
            _ => {
                ranges.push((c, c));
                i += 1;
            }
        }
    }
}

fn token_matches(tok: &Token, c: char) -> bool {
    match tok {
        Token::Literal(l) => *l == c,
        Token::Any => true,
        Token::Star => false,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

/// Greedy matching with one backtrack point: on a mismatch, the last `*` takes one more character
/// and matching resumes after it. Each name position is revisited at most once per pattern
/// position, so the work is bounded by `name.len() × tokens.len()`.
fn match_tokens(tokens: &[Token], name: &[char]) -> bool {
    let (mut t, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, n));
                t += 1;
            }
            Some(tok) if name.get(n).is_some_and(|&c| token_matches(tok, c)) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            },
        }
    }
    tokens
        .get(t..)
        .unwrap_or_default()
        .iter()
        .all(|tok| *tok == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, n: &str) -> bool {
        Glob::new(p).unwrap().matches(n)
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("*.bin", "g0.bin"));
        assert!(!m("*.bin", ".bin.bin"));
        assert!(!m("*.bin", "g0.bint"));
        assert!(m("*", "anything at all"));
        assert!(m("g?.bin", "g1.bin"));
        assert!(!m("g?.bin", "g10.bin"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("**x**", "x"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn classes() {
        assert!(m("f[0-9].txt", "f7.txt"));
        assert!(!m("f[0-9].txt", "fa.txt"));
        assert!(m("f[!0-9].txt", "fa.txt"));
        assert!(m("f[^0-9].txt", "fa.txt"));
        assert!(m("[]a]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("[abc]x", "bx"));
        // An unclosed bracket is literal.
        assert!(m("x[1", "x[1"));
        assert!(m("x[*", "x[yz"));
    }

    #[test]
    fn hidden_files_need_a_literal_dot() {
        assert!(!m("*", ".hidden"));
        assert!(!m("?hidden", ".hidden"));
        assert!(m(".*", ".hidden"));
    }

    #[test]
    fn literal_name_always_matches() {
        assert!(m("x[1]", "x[1]"));
        assert!(m("x[1]", "x1"));
        assert!(m("what?", "what?"));
    }

    #[test]
    fn detection_and_limits() {
        assert!(has_wildcards("*.bin"));
        assert!(has_wildcards("a?"));
        assert!(has_wildcards("[x]"));
        assert!(!has_wildcards("plain name.txt"));
        assert_eq!(
            Glob::new(&"a".repeat(MAX_PATTERN + 1)),
            Err(GlobError::TooLong)
        );
        assert_eq!(Glob::new("*.bin").unwrap().as_str(), "*.bin");
    }

    #[test]
    fn hostile_pattern_is_fast() {
        // Exponential in a naive backtracking matcher: 2^40 ways to split the name between stars.
        let pattern = format!("{}b", "a*".repeat(40));
        let g = Glob::new(&pattern).unwrap();
        let name = "a".repeat(255);
        let t = std::time::Instant::now();
        assert!(!g.matches(&name));
        assert!(t.elapsed() < std::time::Duration::from_millis(200));
    }

    /// A slow but obviously correct reference matcher (recursive, with memoisation).
    fn reference(tokens: &[Token], name: &[char]) -> bool {
        fn go(
            t: usize,
            n: usize,
            tokens: &[Token],
            name: &[char],
            memo: &mut std::collections::HashMap<(usize, usize), bool>,
        ) -> bool {
            if let Some(&r) = memo.get(&(t, n)) {
                return r;
            }
            let r = match tokens.get(t) {
                None => n == name.len(),
                Some(Token::Star) => {
                    go(t + 1, n, tokens, name, memo)
                        || (n < name.len() && go(t, n + 1, tokens, name, memo))
                }
                Some(tok) => {
                    n < name.len()
                        && token_matches(tok, name[n])
                        && go(t + 1, n + 1, tokens, name, memo)
                }
            };
            memo.insert((t, n), r);
            r
        }
        go(0, 0, tokens, name, &mut std::collections::HashMap::new())
    }

    proptest! {
        #[test]
        fn prop_never_panics(pattern in "\\PC{0,60}", name in "\\PC{0,60}") {
            if let Ok(g) = Glob::new(&pattern) {
                let _ = g.matches(&name);
            }
        }

        #[test]
        fn prop_agrees_with_reference(
            pattern in "[ab*?\\[\\]!-]{0,12}",
            name in "[ab\\[\\]!-]{0,12}",
        ) {
            let g = Glob::new(&pattern).unwrap();
            let chars: Vec<char> = name.chars().collect();
            let want = name == pattern
                || ((!name.starts_with('.') || g.tokens.first() == Some(&Token::Literal('.')))
                    && reference(&g.tokens, &chars));
            prop_assert_eq!(g.matches(&name), want);
        }

        #[test]
        fn prop_hostile_patterns_are_bounded(
            stars in 1usize..60,
            name_len in 0usize..255,
        ) {
            let g = Glob::new(&format!("{}z", "*a".repeat(stars))).unwrap();
            let name = "a".repeat(name_len);
            let t = std::time::Instant::now();
            prop_assert!(!g.matches(&name));
            prop_assert!(t.elapsed() < std::time::Duration::from_millis(100));
        }

        #[test]
        fn prop_star_suffix_matches_suffix(stem in "[a-z0-9]{0,20}", ext in "[a-z]{1,5}") {
            let name = format!("{stem}.{ext}");
            let g = Glob::new(&format!("*.{ext}")).unwrap();
            prop_assert_eq!(g.matches(&name), !name.starts_with('.'));
        }
    }
}
