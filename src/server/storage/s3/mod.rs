//! The S3 backend (`storage = "s3"`, issue #12): uploads land as objects in a bucket, each user's
//! keys under a prefix of their own. Built from pure parts (what an upload sends, how much memory
//! uploads may hold, what a directory is) and a client that sends requests off the cores.
//!
//! - `root`: the backend as the seam sees it: a core's state and a user's prefix; what an object
//!   store refuses (APPE, REST + STOR, ESTO, STOU, MODE E uploads) and why.
//! - `upload`: one STOR as a single PUT or a multipart upload, visible only when complete.
//! - `memory`: each core's share of `s3_memory_cap`, and the wait for it (back-pressure).
//! - `plan`: part sizes for an upload of unknown length, single PUT or multipart.
//! - `budget`: the bookkeeping of a cap on buffered bytes, and who waits for it.
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
pub mod memory;
pub mod names;
pub mod plan;
pub mod retry;
pub mod root;
pub mod upload;
