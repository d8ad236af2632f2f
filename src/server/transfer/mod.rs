//! Transfers: the data connection (passive listeners, active connects), and moving a transfer's
//! bytes between it and storage: the stream-mode receive paths (registered buffers with fixed
//! writes, splice, a copying path for TYPE A), MODE B's kept connection, downloads and listings.
//!
//! Owns: one transfer from its 150 to its outcome. May use: the per-core `context`, `storage` (only
//! through its seam), `balancer` (a data connection's PROXY header), `proto`, `crate::tls`, the
//! engine. Never the session above it, which watches the control connection while a transfer runs.

pub mod block;
pub mod data;
pub mod direct;
pub mod extended;
pub mod failure;
pub mod fixed;
pub mod passive;
pub mod receive;
pub mod secure;
pub mod splice;
pub mod xfer;

pub use data::DataConn;
pub use passive::PassiveListener;
pub use secure::DataTls;
pub use xfer::{run, Finished, Preface, XferEnv};
