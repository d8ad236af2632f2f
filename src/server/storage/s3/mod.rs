//! The S3 backend (issue #12), built bottom-up: the pure parts that decide how an upload becomes
//! S3 requests and how much memory all uploads may hold, and the client that sends those requests
//! off the cores. Not yet a [`Backend`](super::Backend) variant: nothing reaches this from a
//! session today.
//!
//! - `plan`: part sizes for an upload of unknown length, single PUT or multipart.
//! - `budget`: the global cap on buffered bytes, and who waits for it (back-pressure).
//! - `client`: the requests, on worker threads of their own, with typed errors and retries.
//! - `retry`: the back-off schedule the client follows, as a pure function.
//! - `credentials`: the access key, from the environment or a file.
//! - `names`: how a user's tree maps onto keys, what a directory is, listings from pages (pure).
//! - `files`: the session's file commands, listings and reads on the bucket ([`files::S3Files`]).
//!
//! Why rusty-s3 and ureq on threads of their own: `docs/s3.md`.

pub mod budget;
pub mod client;
pub mod credentials;
pub mod files;
pub mod names;
pub mod plan;
pub mod retry;
