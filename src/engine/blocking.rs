//! Work that must not run on a core thread (directory listings, password hashing, S3 requests):
//! pools of worker threads. The result comes back through an eventfd that the core reads with a
//! ring op, so no waker ever crosses threads.
//!
//! [`spawn_blocking`] uses one small shared pool. Work that can wait long on the network (S3) gets
//! a [`WorkerPool`] of its own, so slow requests cannot starve listings and logins; its workers
//! may each hold state (an HTTP agent) that every job on that thread borrows.

use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

use super::op;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

struct Queue<S> {
    jobs: VecDeque<Job<S>>,
    /// Set when the pool is dropped: workers finish the queued jobs, then exit.
    closed: bool,
}

struct Shared<S> {
    queue: Mutex<Queue<S>>,
    ready: Condvar,
}

/// Worker threads, each with a state `S` of its own, running jobs queued by the cores.
///
/// Dropping the pool lets the workers drain the queue and exit; it does not wait for them, so a
/// core dropping a pool never blocks on a request in flight.
pub struct WorkerPool<S: 'static> {
    shared: Arc<Shared<S>>,
    threads: usize,
}

impl<S: 'static> WorkerPool<S> {
    /// Starts `threads` workers named `{name}-{i}`, each with the state `init(i)` builds on the
    /// worker itself (so `S` need not be `Send`).
    pub fn new<I>(name: &str, threads: usize, init: I) -> io::Result<WorkerPool<S>>
    where
        I: Fn(usize) -> S + Send + Sync + 'static,
    {
        if threads == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a worker pool needs at least one thread",
            ));
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let pool = WorkerPool {
            shared: shared.clone(),
            threads,
        };
        let init = Arc::new(init);
        for i in 0..threads {
            let shared = shared.clone();
            let init = init.clone();
            // On failure `pool` is dropped, which closes the queue, so the workers already started
            // exit at once.
            let _: JoinHandle<()> = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    let mut state = init(i);
                    drop(init);
                    worker(&shared, &mut state);
                })?;
        }
        Ok(pool)
    }

    /// Worker threads started.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a worker with that worker's state, and awaits its result on the calling core.
    /// A panic in `f` becomes an error; the core is never blocked. Dropping the future does not
    /// stop `f`: its result is then dropped on the worker.
    pub async fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut S) -> T + Send + 'static,
    {
        let efd = Rc::new(super::fd::eventfd()?);
        // The worker signals through its own duplicate, so the core may drop its end at any time.
        let signal = efd.try_clone()?;
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let job: Job<S> = Box::new(move |state: &mut S| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(state)));
            if let Ok(v) = result {
                *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
            }
            super::fd::signal_eventfd(&signal);
        });
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .jobs
            .push_back(job);
        self.shared.ready.notify_one();
        let (res, _) = op::read::read(&efd, Vec::with_capacity(8), u64::MAX).await;
        res?;
        let v = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        v.ok_or_else(|| io::Error::other("blocking task panicked"))
    }
}

impl<S: 'static> Drop for WorkerPool<S> {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.shared.ready.notify_all();
    }
}

fn worker<S>(shared: &Shared<S>, state: &mut S) {
    loop {
        let job = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.closed {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        job(state);
    }
}

const WORKERS: usize = 4;

/// The shared pool, started on first use. A failure to start it is kept and returned to every
/// caller (the error kind and text; `io::Error` is not `Clone`).
fn pool() -> Result<&'static WorkerPool<()>, (io::ErrorKind, &'static str)> {
    static POOL: OnceLock<Result<WorkerPool<()>, (io::ErrorKind, &'static str)>> = OnceLock::new();
    POOL.get_or_init(|| {
        WorkerPool::new("ringest-blocking", WORKERS, |_| ())
            .map_err(|e| (e.kind(), &*Box::leak(e.to_string().into_boxed_str())))
    })
    .as_ref()
    .map_err(|e| *e)
}

/// Runs `f` on a worker thread of the shared pool and awaits its result on the calling core. A
/// panic in `f` becomes an error; the core is never blocked.
pub async fn spawn_blocking<T, F>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let p = pool().map_err(|(kind, text)| io::Error::new(kind, text))?;
    p.run(move |_: &mut ()| f()).await
}
