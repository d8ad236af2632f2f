//! Admission limits shared by all cores: total sessions, sessions per client IP, and failed logins
//! per client IP. They are consulted once per connection or login attempt (never per transfer), so a
//! mutex-protected map is cheap enough and keeps the accounting exact across cores.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a connection is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManySessions,
    TooManyFromIp,
}

#[derive(Debug)]
pub struct Limits {
    max_sessions: usize,
    max_per_ip: usize,
    max_failures: u32,
    window: Duration,
    active: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// A session's admission; releases its slots when dropped.
#[derive(Debug)]
pub struct SessionGuard {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    /// `max_failures` failed logins per IP within one minute; 0 for a limit means unlimited.
    pub fn new(max_sessions: usize, max_per_ip: usize, max_failures: u32) -> Limits {
        Limits {
            max_sessions: if max_sessions == 0 {
                usize::MAX
            } else {
                max_sessions
            },
            max_per_ip: if max_per_ip == 0 {
                usize::MAX
            } else {
                max_per_ip
            },
            max_failures: if max_failures == 0 {
                u32::MAX
            } else {
                max_failures
            },
            window: Duration::from_secs(60),
            active: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Sessions currently admitted.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Admits a new session from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<SessionGuard, Refusal> {
        let ip = ip.to_canonical();
        if self.active.fetch_add(1, Ordering::AcqRel) >= self.max_sessions {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooManySessions);
        }
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            drop(map);
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooManyFromIp);
        }
        *n += 1;
        Ok(SessionGuard {
            limits: self.clone(),
            ip,
        })
    }

    /// Whether `ip` may try to log in now (not over its failure budget).
    pub fn login_allowed(&self, ip: IpAddr) -> bool {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&ip.to_canonical()) {
            Some((n, since)) => *n < self.max_failures || since.elapsed() >= self.window,
            None => true,
        }
    }

    /// Records a failed login from `ip`.
    pub fn login_failed(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the map bounded: forget windows that have passed.
        if map.len() > 10_000 {
            let window = self.window;
            map.retain(|_, (_, since)| since.elapsed() < window);
        }
        let e = map.entry(ip.to_canonical()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= self.window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    /// Forgets the failures of `ip` after a successful login.
    pub fn login_succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip.to_canonical());
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut map = self.limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        drop(map);
        self.limits.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_limits_release_on_drop() {
        let l = Arc::new(Limits::new(3, 2, 0));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let g1 = l.admit(a).unwrap();
        let _g2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Refusal::TooManyFromIp);
        let _g3 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Refusal::TooManySessions);
        drop(g1);
        assert_eq!(l.active(), 2);
        assert!(l.admit(a).is_ok());
    }

    #[test]
    fn ipv4_mapped_counts_as_ipv4() {
        let l = Arc::new(Limits::new(0, 1, 0));
        let _g = l.admit("127.0.0.1".parse().unwrap()).unwrap();
        assert!(l.admit("::ffff:127.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn failed_logins_are_limited_per_ip() {
        let l = Limits::new(0, 0, 2);
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        assert!(l.login_allowed(ip));
        l.login_failed(ip);
        l.login_failed(ip);
        assert!(!l.login_allowed(ip));
        assert!(l.login_allowed("10.1.1.2".parse().unwrap()));
        l.login_succeeded(ip);
        assert!(l.login_allowed(ip));
    }
}
