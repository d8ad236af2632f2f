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
    max_checks: u32,
    failures: Mutex<HashMap<IpAddr, Window>>,
}

/// A session's admission; releases its slots when dropped.
#[derive(Debug)]
pub struct SessionGuard {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    /// `max_failures` failed logins per IP within one minute, `max_checks` password checks running
    /// at once per IP; 0 for a limit means unlimited.
    pub fn new(
        max_sessions: usize,
        max_per_ip: usize,
        max_failures: u32,
        max_checks: u32,
    ) -> Limits {
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
            max_checks: if max_checks == 0 {
                u32::MAX
            } else {
                max_checks
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

    /// Starts a login attempt from `ip`, before its password is checked. Failures are counted when
    /// a check fails, but checks *running* count against the failure budget too: an address may
    /// have at most `budget - failures` checks in flight, so N simultaneous wrong passwords can
    /// never all be verified against a budget that each saw before any had failed. Beyond that,
    /// and beyond `max_checks` at once, the attempt must wait ([`LoginRefusal::Busy`]: retry
    /// shortly) rather than be refused, so a burst of correct logins from one address (a NAT, a
    /// load generator) is only slowed down.
    pub fn begin_login(self: &Arc<Self>, ip: IpAddr) -> Result<LoginAttempt, LoginRefusal> {
        let ip = ip.to_canonical();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the map bounded: forget windows that have passed (entries with checks running stay).
        if map.len() > 10_000 {
            let window = self.window;
            map.retain(|_, w| w.running > 0 || w.since.elapsed() < window);
        }
        let w = map.entry(ip).or_insert_with(Window::new);
        if w.since.elapsed() >= self.window {
            w.failures = 0;
            w.since = Instant::now();
        }
        if w.failures >= self.max_failures {
            return Err(LoginRefusal::TooManyFailures);
        }
        if w.running >= self.max_checks || w.failures.saturating_add(w.running) >= self.max_failures
        {
            return Err(LoginRefusal::Busy);
        }
        w.running += 1;
        Ok(LoginAttempt {
            limits: self.clone(),
            ip,
            open: true,
        })
    }

    fn end_login(&self, ip: IpAddr, how: Ended) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = map.get_mut(&ip) else {
            return;
        };
        w.running = w.running.saturating_sub(1);
        match how {
            Ended::Failed => {
                if w.since.elapsed() >= self.window {
                    w.failures = 0;
                    w.since = Instant::now();
                }
                w.failures = w.failures.saturating_add(1);
            }
            Ended::NotChecked => {}
            Ended::Succeeded => w.failures = 0,
        }
        if w.running == 0 && w.failures == 0 {
            map.remove(&ip);
        }
    }
}

/// Why a login attempt cannot start its password check now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    /// The IP used up its failed-login budget for this window: refuse.
    TooManyFailures,
    /// The IP has as many checks running as it may: wait for one to end, then try again.
    Busy,
}

/// One IP's failed-login window and its password checks in flight.
#[derive(Debug)]
struct Window {
    failures: u32,
    since: Instant,
    running: u32,
}

impl Window {
    fn new() -> Window {
        Window {
            failures: 0,
            since: Instant::now(),
            running: 0,
        }
    }
}

enum Ended {
    Failed,
    NotChecked,
    Succeeded,
}

/// A password check in progress, holding one of its address's slots. Dropping it counts a failed
/// login (the password was wrong); [`succeeded`](Self::succeeded) forgets the address's failures;
/// [`not_checked`](Self::not_checked) counts nothing (the server could not verify it: a resource
/// error is not the client's failed guess).
#[derive(Debug)]
pub struct LoginAttempt {
    limits: Arc<Limits>,
    ip: IpAddr,
    open: bool,
}

impl LoginAttempt {
    pub fn succeeded(mut self) {
        self.open = false;
        self.limits.end_login(self.ip, Ended::Succeeded);
    }

    pub fn not_checked(mut self) {
        self.open = false;
        self.limits.end_login(self.ip, Ended::NotChecked);
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        if self.open {
            self.limits.end_login(self.ip, Ended::Failed);
        }
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
        let l = Arc::new(Limits::new(3, 2, 0, 0));
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
        let l = Arc::new(Limits::new(0, 1, 0, 0));
        let _g = l.admit("127.0.0.1".parse().unwrap()).unwrap();
        assert!(l.admit("::ffff:127.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn failed_logins_are_limited_per_ip() {
        let l = Arc::new(Limits::new(0, 0, 2, 0));
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        drop(l.begin_login(ip).unwrap());
        drop(l.begin_login(ip).unwrap());
        assert_eq!(
            l.begin_login(ip).unwrap_err(),
            LoginRefusal::TooManyFailures
        );
        assert!(l.begin_login("10.1.1.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn checks_in_flight_count_against_the_failure_budget() {
        let l = Arc::new(Limits::new(0, 0, 10, 0));
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        // 50 attempts start before any finishes: only the budget's worth may run.
        let running: Vec<_> = (0..50).filter_map(|_| l.begin_login(ip).ok()).collect();
        assert_eq!(running.len(), 10);
        assert_eq!(l.begin_login(ip).unwrap_err(), LoginRefusal::Busy);
        // All ten were wrong: the budget is spent, further attempts are refused outright.
        drop(running);
        assert_eq!(
            l.begin_login(ip).unwrap_err(),
            LoginRefusal::TooManyFailures
        );
    }

    #[test]
    fn checks_at_once_are_capped_and_released() {
        let l = Arc::new(Limits::new(0, 0, 0, 2));
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        let a = l.begin_login(ip).unwrap();
        let _b = l.begin_login(ip).unwrap();
        assert_eq!(l.begin_login(ip).unwrap_err(), LoginRefusal::Busy);
        a.succeeded();
        assert!(l.begin_login(ip).is_ok());
    }

    #[test]
    fn success_forgets_failures_and_unchecked_attempts_count_nothing() {
        let l = Arc::new(Limits::new(0, 0, 2, 0));
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        drop(l.begin_login(ip).unwrap());
        l.begin_login(ip).unwrap().succeeded();
        // The earlier failure is forgotten, and resource errors never count.
        for _ in 0..5 {
            l.begin_login(ip).unwrap().not_checked();
        }
        drop(l.begin_login(ip).unwrap());
        drop(l.begin_login(ip).unwrap());
        assert_eq!(
            l.begin_login(ip).unwrap_err(),
            LoginRefusal::TooManyFailures
        );
    }
}
