//! Storage: where uploads land and downloads, listings and file commands come from, behind one
//! seam ([`Storage`], [`Upload`], [`Download`]), with the local file system as the first backend.
//!
//! Owns: files, landing, durability, reserved names. May use: the engine, `proto` and `config`;
//! never sessions or transfers (they call down into it).
//!
//! # Where the seam sits, and why there
//! Not at `write(&[u8])`: that would cost the local backend its two fast paths, splice
//! (socket -> pipe -> file, no user-space copy) and fixed writes straight from the registered
//! receive buffers. The seam is at the level of a whole upload:
//!
//! 1. **open** ([`Storage::open_upload`]): the backend decides where the bytes go and returns an
//!    [`Upload`] and its start offset;
//! 2. **append**: the receive paths ask [`Upload::target`] how to deliver the bytes. A local upload
//!    answers [`Target::File`]: a file descriptor written at explicit offsets, by splice or by
//!    fixed writes from the registered buffers, exactly as before the seam existed;
//! 3. **land** ([`Storage::land`]) or **abort** ([`Upload::discard`], [`Upload::keep_partial`]):
//!    the upload becomes visible, durable as configured, before the success reply; or nothing does.
//!
//! # How an object store fits
//! An S3 backend adds a variant to each enum. Its [`Upload`] is a multipart upload, and its
//! [`Target`] a new variant, `Parts`, that takes filled registered buffers (the receive paths
//! already hold the bytes in them for the fixed path and MODE B) and copies them into the part
//! being filled; splice is not offered, since the bytes must pass through user space to be sent.
//! "land" is CompleteMultipartUpload (or one PUT for a small file) and "abort" is
//! AbortMultipartUpload, so the landing guarantee (visible only when complete, nothing on abort)
//! holds the same way. [`UserRoot`] becomes a bucket prefix, [`Download`] a ranged GET, and the
//! file commands map onto listing, copy and delete. The compiler then points at every `match` that
//! has to learn the new variant; nothing above this folder changes shape.

pub mod local;
pub mod s3;
pub mod seam;

pub use local::jail::errno_of;
pub use local::landing::FileSink;
pub use local::names::{is_temp_name, sweep_interrupted};
pub use local::ops::{fs_error, now_secs};
pub use local::roots::{check_root, RootProblem, Writer};
pub use seam::{Backend, Download, Opened, Storage, Target, Upload, UserRoot};
