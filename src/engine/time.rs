//! `sleep` and a `timeout` combinator on the core's timers. Dropping the losing side cancels it.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use super::timer::Sleep;

/// The future did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct Elapsed;

/// Completes after `dur` (a user-space timer; see [`super::timer`]).
pub async fn sleep(dur: Duration) {
    Sleep::new(dur).await
}

/// Runs `fut`, giving up after `dur`. When the timer wins, `fut` is dropped, which cancels its ops.
pub async fn timeout<F: Future>(dur: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = pin!(fut);
    let mut timer = Sleep::new(dur);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if std::pin::Pin::new(&mut timer).poll(cx).is_ready() {
            return Poll::Ready(Err(Elapsed));
        }
        Poll::Pending
    })
    .await
}
