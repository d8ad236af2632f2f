//! Remembers recent successful logins so that the next login with the same name and password
//! skips the slow password hash.
//!
//! Bulk ingest opens many sessions with one set of credentials: hundreds of clients, or one client
//! with hundreds of parallel sessions, each logging in again and again. A SHA-512-crypt or argon2
//! verification costs around a millisecond of CPU by design, so at a few thousand logins per second
//! the hash alone would take a core. The cache turns a repeat login into one HMAC.
//!
//! What it keeps: per user name, `HMAC-SHA256(key, name, password)` and when it expires. The key
//! is random per cache (a new one per users-file load, so SIGHUP forgets everything), the password
//! itself is never stored, and only successful verifications are cached: a wrong password always
//! pays the full hash and the failed-login delay. The trade-off, documented for operators: someone
//! who can read this process's memory could test guesses at HMAC speed instead of hash speed for a
//! cached user, for as long as the entry lives. FTP sends passwords in clear over the control
//! connection anyway, so such an attacker has better options; `login_cache_secs = 0` turns the
//! cache off for those who want the hash on every login.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type Tag = [u8; 32];

/// One per users database; entries are bounded by the number of users (only names that verified
/// are inserted, one entry each).
pub struct LoginCache {
    ttl: Duration,
    key: [u8; 32],
    entries: Mutex<HashMap<String, (Instant, Tag)>>,
}

/// Shows neither the key nor the tags.
impl std::fmt::Debug for LoginCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LoginCache {
    /// A cache whose entries live `ttl`; `None` when `ttl` is zero (disabled) or the system has no
    /// randomness for the key (then every login is hashed, which is only slower).
    pub fn new(ttl: Duration) -> Option<LoginCache> {
        if ttl.is_zero() {
            return None;
        }
        let mut key = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut key) {
            tracing::warn!(error = %e, "no randomness for the login cache key; cache disabled");
            return None;
        }
        Some(LoginCache {
            ttl,
            key,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn tag(&self, name: &str, password: &str) -> Tag {
        // The name is length-prefixed so that no (name, password) pair can collide with another by
        // moving bytes across the boundary.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `name` logged in with exactly `password` less than `ttl` ago (compared in constant
    /// time).
    pub fn hit(&self, name: &str, password: &str) -> bool {
        self.hit_at(name, password, Instant::now())
    }

    fn hit_at(&self, name: &str, password: &str, now: Instant) -> bool {
        let tag = self.tag(name, password);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(name) {
            Some((expires, cached)) if now < *expires => bool::from(cached.ct_eq(&tag)),
            _ => false,
        }
    }

    /// Records a successful verification of `name` with `password`; replaces the user's previous
    /// entry (a user has one valid password at a time).
    pub fn remember(&self, name: &str, password: &str) {
        self.remember_at(name, password, Instant::now());
    }

    fn remember_at(&self, name: &str, password: &str, now: Instant) {
        let tag = self.tag(name, password);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get_mut(name) {
            Some(e) => *e = (now + self.ttl, tag),
            None => {
                entries.insert(name.to_owned(), (now + self.ttl, tag));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ttl_disables() {
        assert!(LoginCache::new(Duration::ZERO).is_none());
    }

    #[test]
    fn hits_only_the_remembered_pair_until_it_expires() {
        let c = LoginCache::new(Duration::from_secs(60)).unwrap();
        let t0 = Instant::now();
        assert!(!c.hit_at("alice", "pw", t0), "empty cache");
        c.remember_at("alice", "pw", t0);
        assert!(c.hit_at("alice", "pw", t0 + Duration::from_secs(59)));
        assert!(!c.hit_at("alice", "pw2", t0), "other password");
        assert!(!c.hit_at("bob", "pw", t0), "other user");
        assert!(
            !c.hit_at("alice", "pw", t0 + Duration::from_secs(60)),
            "expired"
        );
    }

    #[test]
    fn name_and_password_cannot_trade_bytes() {
        let c = LoginCache::new(Duration::from_secs(60)).unwrap();
        let t0 = Instant::now();
        c.remember_at("ab", "c", t0);
        assert!(!c.hit_at("a", "bc", t0));
        assert_ne!(c.tag("ab", "c"), c.tag("a", "bc"));
    }

    #[test]
    fn a_new_password_replaces_the_old_entry() {
        let c = LoginCache::new(Duration::from_secs(60)).unwrap();
        let t0 = Instant::now();
        c.remember_at("alice", "old", t0);
        c.remember_at("alice", "new", t0);
        assert!(c.hit_at("alice", "new", t0));
        assert!(!c.hit_at("alice", "old", t0));
    }

    #[test]
    fn keys_differ_between_caches() {
        let a = LoginCache::new(Duration::from_secs(60)).unwrap();
        let b = LoginCache::new(Duration::from_secs(60)).unwrap();
        assert_ne!(a.tag("alice", "pw"), b.tag("alice", "pw"));
    }
}
