//! The control connection while a transfer runs: ABOR aborts the transfer, STAT is answered at
//! once, the connection's close aborts it, and every other command waits its turn.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;

use crate::engine::sync::Listener;
use crate::proto::command::{self, Command, LineBuffer};
use crate::proto::reply::Reply;
use crate::proto::session::Session;
use crate::server::transfer::Preface;

use super::io::{Control, Line, Reader};

/// Commands a client may send during one transfer that wait for it to end. Clients pipeline a few
/// (the next STOR, a QUIT); a client that sends more is flooding, and is disconnected rather than
/// allowed to grow its session's memory without bound.
pub const MAX_DEFERRED: usize = 100;

/// Where a reply sent during a transfer goes: the control connection, after the replies still
/// held for the transfer's opening (`XferEnv::preface`), which must not be overtaken.
pub struct Replies<'a> {
    pub ctl: &'a Control,
    pub held: &'a Preface,
}

/// What happened to a transfer while the control connection was watched.
pub enum Watched<T> {
    Done(T),
    Aborted,
    Closed,
    /// More than [`MAX_DEFERRED`] commands waited: the transfer was dropped (nothing lands).
    Flooded,
    /// The server's shutdown grace period ended: the transfer was dropped (nothing lands).
    ShuttingDown,
}

/// Runs `fut` (a transfer) while reading the control connection: ABOR aborts it, STAT is answered
/// at once, the connection's close aborts it, and other commands are kept for afterwards.
pub async fn watch<F: Future>(
    reader: &mut Reader,
    lines: &mut LineBuffer,
    deferred: &mut VecDeque<Line>,
    session: &Session,
    out: Replies<'_>,
    force_close: &Listener,
    fut: F,
) -> io::Result<Watched<F::Output>> {
    let mut fut = pin!(fut);
    loop {
        let ev = poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(Some(v)));
            }
            if force_close.poll(cx).is_ready() {
                return Poll::Ready(Ok(None));
            }
            match reader.poll_read(cx, lines) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Err(())),
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(None)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match ev {
            Ok(Some(v)) => return Ok(Watched::Done(v)),
            Err(()) => return Ok(Watched::Closed),
            Ok(None) if force_close.is_set() => return Ok(Watched::ShuttingDown),
            Ok(None) => {}
        }
        while let Some(line) = lines.next_line() {
            match line.as_ref().ok().map(|l| command::parse(l)) {
                Some(Ok(Command::Abor)) => return Ok(Watched::Aborted),
                Some(Ok(Command::Stat(None))) => {
                    // Replies still held for the transfer's opening go first, in order.
                    let bytes = out.held.then(&transfer_status(session));
                    let (res, _) = out.ctl.chan.send(bytes).await;
                    res?;
                }
                _ if deferred.len() >= MAX_DEFERRED => return Ok(Watched::Flooded),
                _ => deferred.push_back(line),
            }
        }
    }
}

fn transfer_status(session: &Session) -> Reply {
    let what = match session.pending_transfer() {
        Some(t) => format!("Transfer in progress: {:?} {}", t.kind, t.path),
        None => "Transfer in progress".into(),
    };
    Reply::multi(213, vec!["Status:".into(), what, "End of status".into()])
}
