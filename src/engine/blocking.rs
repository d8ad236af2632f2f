//! Work that must not run on a core thread (directory listings, password hashing): a small shared pool
//! of worker threads. The result comes back through an eventfd that the core reads with a ring op, so
//! no waker ever crosses threads.

use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use super::op;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

const WORKERS: usize = 4;

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        }));
        for i in 0..WORKERS {
            let _ = std::thread::Builder::new()
                .name(format!("ringest-blocking-{i}"))
                .spawn(move || loop {
                    let job = {
                        let mut q = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
                        loop {
                            if let Some(job) = q.pop_front() {
                                break job;
                            }
                            q = pool.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    job();
                });
        }
        pool
    })
}

/// Runs `f` on a worker thread and awaits its result on the calling core. A panic in `f` becomes an
/// error; the core is never blocked.
pub async fn spawn_blocking<T, F>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let efd = Rc::new(super::fd::eventfd()?);
    // The worker signals through its own duplicate, so the core may drop its end at any time.
    let signal = efd.try_clone()?;
    let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
    let out = slot.clone();
    let job: Job = Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        if let Ok(v) = result {
            *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
        }
        super::fd::signal_eventfd(&signal);
    });
    let p = pool();
    p.queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_back(job);
    p.ready.notify_one();
    let (res, _) = op::read::read(&efd, Vec::with_capacity(8), u64::MAX).await;
    res?;
    let v = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    v.ok_or_else(|| io::Error::other("blocking task panicked"))
}
