//! After each transfer: the metrics and the xferlog line.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use crate::proto::command::{TransferMode, TransferType};
use crate::proto::session::{Session, Transfer, TransferKind, TransferOutcome};
use crate::server::context::CoreCtx;
use crate::server::observe::xferlog::XferRecord;
use crate::server::observe::{Direction, Mode};

/// Counts a finished transfer and writes its xferlog line (file transfers only, as xferlog does).
pub fn account(
    ctx: &CoreCtx,
    session: &Session,
    peer: IpAddr,
    t: &Transfer,
    outcome: &TransferOutcome,
    started: Instant,
) {
    let took = started.elapsed();
    let mode = match t.mode {
        TransferMode::Stream => Mode::Stream,
        TransferMode::Block | TransferMode::Extended => Mode::Block,
    };
    let dir = match t.kind {
        TransferKind::Store | TransferKind::Append | TransferKind::StoreUnique => Direction::In,
        TransferKind::Retrieve => Direction::Out,
        _ => return,
    };
    let (bytes, complete) = match outcome {
        TransferOutcome::Complete { bytes, .. } => (*bytes, true),
        // Logged as incomplete with what arrived, so the xferlog shows the cut upload.
        TransferOutcome::Short { received, .. } => (*received, false),
        _ => (0, false),
    };
    let m = &ctx.metrics;
    if complete {
        m.bytes(dir, mode, bytes);
        m.file_done(dir, mode, took);
    } else {
        m.transfer_failed();
    }
    if let Some(x) = &ctx.shared.xferlog {
        let anonymous = session.access().is_some_and(|a| a.upload_only.is_some());
        x.log(&XferRecord {
            time: SystemTime::now(),
            duration: took,
            remote: peer,
            bytes,
            path: t.path.as_str(),
            binary: t.ttype == TransferType::Image,
            direction: dir,
            anonymous,
            user: session.user().unwrap_or("-"),
            complete,
        });
    }
}
