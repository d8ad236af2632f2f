//! Timers on the ring: `sleep` and a `timeout` combinator. Dropping the losing side cancels it.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use super::op;

/// The future did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct Elapsed;

/// Completes after `dur`.
pub async fn sleep(dur: Duration) {
    op::timeout::timeout(dur).await
}

/// Runs `fut`, giving up after `dur`. When the timer wins, `fut` is dropped, which cancels its ops.
pub async fn timeout<F: Future>(dur: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = pin!(fut);
    let mut timer = op::timeout::timeout(dur);
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
