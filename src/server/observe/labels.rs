//! The two labels a finished transfer is counted and logged under, shared by the metrics and the
//! xferlog so a transfer's direction is one type everywhere (xferlog spells it `i`/`o`, Prometheus
//! `in`/`out`).

/// Which way a transfer went, from the server's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Upload: STOR, APPE, STOU.
    In = 0,
    /// Download: RETR (listings are not counted as files).
    Out = 1,
}

/// FTP transfer mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Stream = 0,
    Block = 1,
}
