//! Groundwork for the S3 backend (issue #12): the pure parts that decide how an upload becomes
//! S3 requests and how much memory all uploads may hold, written and tested before the I/O
//! around them. Not yet a [`Backend`](super::Backend) variant: nothing reaches this from a
//! session today.
//!
//! - `plan`: part sizes for an upload of unknown length, single PUT or multipart.
//! - `budget`: the global cap on buffered bytes, and who waits for it (back-pressure).
//!
//! The client and its threads are chosen in `docs/s3.md`.

pub mod budget;
pub mod plan;
