//! How receiving an upload can fail, split by whose side the problem is on: the client's (the data
//! connection broke or stalled: 426) or ours (writing the file failed: 451/452). Shared by every
//! receive path.

use std::io;

/// Why receiving stopped early.
#[derive(Debug)]
pub enum StoreError {
    /// The data connection failed or stalled: the client's side of the problem.
    Net(io::Error),
    /// Writing the file failed: our side (disk full, I/O error).
    File(io::Error),
    /// A protected stream-mode upload's connection closed without close_notify after `received`
    /// bytes: it may be cut short, so nothing lands.
    Truncated { received: u64 },
}

/// No data arrived on the data connection for a whole stall period.
pub fn stalled() -> StoreError {
    StoreError::Net(io::Error::new(
        io::ErrorKind::TimedOut,
        "data connection stalled",
    ))
}
