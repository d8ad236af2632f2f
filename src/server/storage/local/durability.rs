//! The fsync policy: when an upload is forced to stable storage before its success reply.
//!
//! - `none`: never; fastest. A crash may lose files already acknowledged (they may be empty or short
//!   after the crash), but never exposes a partial file under its final name *while running*.
//! - `file`: each file is fsync'd before it is renamed into place, and its directory after, so an
//!   acknowledged file survives a crash complete and under its name.
//! - `batch`: the same guarantee (nothing is acknowledged before it is durable), but files landing
//!   together share one `syncfs` of their filesystem: each upload is renamed into place, then waits
//!   for the next batch to finish. Fewer flushes at high file rates, a little more latency per file.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::engine::fd::SharedFd;
use crate::engine::{blocking, spawn, time};

/// How long a batch waits for more files before it syncs.
const BATCH_WINDOW: Duration = Duration::from_millis(2);

/// Groups the syncs of one core's uploads.
#[derive(Default)]
pub struct SyncBatcher {
    /// Batches started / finished; a waiter needs a batch that started after its data was written.
    started: Cell<u64>,
    done: Cell<u64>,
    running: Cell<bool>,
    /// The error of the last finished batch, if it failed.
    last_error: Cell<Option<i32>>,
    waiters: RefCell<Vec<Waker>>,
    /// Filesystems (by one directory on each) to sync in the next batch.
    roots: RefCell<Vec<SharedFd>>,
}

impl SyncBatcher {
    pub fn new() -> Rc<SyncBatcher> {
        Rc::new(SyncBatcher::default())
    }

    /// Returns once a `syncfs` that started after this call has finished on `root`'s filesystem.
    pub async fn sync(self: &Rc<Self>, root: &SharedFd) -> io::Result<()> {
        {
            let mut roots = self.roots.borrow_mut();
            if !roots.iter().any(|r| Rc::ptr_eq(r, root)) {
                roots.push(root.clone());
            }
        }
        let target = self.started.get() + 1;
        if !self.running.get() {
            self.start();
        }
        std::future::poll_fn(|cx| {
            if self.done.get() >= target {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        match self.last_error.get() {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    fn start(self: &Rc<Self>) {
        self.running.set(true);
        let this = self.clone();
        spawn(async move {
            loop {
                time::sleep(BATCH_WINDOW).await;
                let gen = this.started.get() + 1;
                this.started.set(gen);
                // The worker gets the descriptors' numbers, not duplicates: a `dup` can fail (no
                // descriptors left), and skipping a file system would acknowledge files that were
                // never synced. `roots` keeps every descriptor open on this core until the worker
                // is done, since this task awaits it and is never dropped before the runtime ends.
                let roots: Vec<SharedFd> = this.roots.borrow_mut().drain(..).collect();
                let raw: Vec<i32> = roots.iter().map(|r| r.as_raw_fd()).collect();
                let res = blocking::spawn_blocking(move || {
                    for fd in raw {
                        // SAFETY: syncfs on a descriptor the core keeps open until this returns.
                        if unsafe { libc::syncfs(fd) } != 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                })
                .await
                .and_then(|r| r);
                drop(roots);
                this.last_error
                    .set(res.err().map(|e| e.raw_os_error().unwrap_or(libc::EIO)));
                this.done.set(gen);
                let waiters = std::mem::take(&mut *this.waiters.borrow_mut());
                for w in waiters {
                    w.wake();
                }
                // Files that arrived during this batch need the next one.
                if this.roots.borrow().is_empty() {
                    this.running.set(false);
                    return;
                }
            }
        })
        .detach();
    }
}
