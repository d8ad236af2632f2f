//! Who may log in and how often: the users file and password verification, the login cache, and the
//! session and failed-login limits.
//!
//! Owns: credentials, permissions as data, admission. May use: `config` and `proto` (a user's
//! permissions become a `proto::session::Access`, which the session enforces); never sessions,
//! transfers or storage.

pub mod limits;
pub mod login_cache;
pub mod users;

pub use limits::{Limits, LoginAttempt, LoginRefusal, Refusal, SessionGuard};
pub use users::{hash_password, UserDb, UserInfo};
