//! The local file system backend: uploads land from an anonymous O_TMPFILE with one `linkat`
//! (`landing`), every path resolves beneath the user's root (`jail`), the session's file commands
//! (`ops`) and attribute changes (`attrs`: times, modes), the fsync policy (`durability`),
//! reserved names and the crash sweep (`names`), the operator's checks of a root (`roots`), and
//! the one place that chooses between direct calls and ring ops (`calls`). `fs` ties them into
//! the backend the storage seam dispatches to.
//!
//! May use: the engine, `proto`, `config`; nothing else of the server.

pub mod attrs;
pub mod calls;
pub mod digests;
pub mod dircache;
pub mod durability;
pub mod fs;
pub mod jail;
pub mod landing;
pub mod names;
pub mod ops;
pub mod roots;
