//! Engine tests over real sockets and files: every op round-trips, timers fire, a dropped op keeps its
//! memory until the kernel is done, and thousands of tasks run concurrently on one ring.

use std::cell::Cell;
use std::ffi::CString;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::fd::SharedFd;
use super::op::{self, Op};
use super::runtime::{self, block_on, RuntimeConfig};
use super::{blocking, executor, net, spawn, time};

/// A send deadline no test reaches.
const LONG: Duration = Duration::from_secs(60);

fn cfg() -> RuntimeConfig {
    RuntimeConfig {
        entries: 256,
        buffers: 16,
        buffer_size: 64 * 1024,
        pipes: 4,
        pipe_size: 1 << 16,
    }
}

fn run<F: std::future::Future<Output = ()> + 'static>(f: F) {
    block_on(0, &cfg(), f).expect("runtime");
}

/// A connected (client, server) TCP pair on loopback.
async fn tcp_pair() -> (SharedFd, SharedFd) {
    let l = Rc::new(net::listen_exclusive("127.0.0.1:0".parse().unwrap(), 16).unwrap());
    let addr = net::local_addr(l.as_raw_fd()).unwrap();
    let mut acc = op::accept::accept_multi(&l);
    let client = net::connect(addr, None).await.unwrap();
    let server = Rc::new(acc.next().await.unwrap().unwrap());
    (client, server)
}

fn dir_fd(path: &std::path::Path) -> SharedFd {
    Rc::new(std::fs::File::open(path).unwrap().into())
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

async fn settle() {
    // Let the ring reap pending completions (cancellations, ignored ops).
    for _ in 0..50 {
        if runtime::with(|rt| rt.ops_in_flight()) == 0 {
            return;
        }
        time::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn send_recv_round_trip() {
    run(async {
        let (client, server) = tcp_pair().await;
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (res, _) = net::send_all(&client, payload.clone(), LONG).await;
        res.unwrap();
        drop(client);
        let mut got = Vec::new();
        loop {
            let (res, buf) = op::recv::recv(&server, Vec::with_capacity(65536)).await;
            if res.unwrap() == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, payload);
    });
}

#[test]
fn multishot_recv_uses_the_buffer_ring() {
    run(async {
        let (client, server) = tcp_pair().await;
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let sender = spawn({
            let p = payload.clone();
            async move {
                let (res, _) = net::send_all(&client, p, LONG).await;
                res.unwrap();
            }
        });
        let mut got = Vec::new();
        let mut stream = op::recv_multi::recv_multi(&server);
        loop {
            match stream.next().await {
                Some(Ok(op::recv_multi::Received::Data(buf))) => {
                    got.extend_from_slice(buf.as_slice())
                }
                Some(Ok(op::recv_multi::Received::Eof)) => break,
                Some(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    stream = op::recv_multi::recv_multi(&server);
                }
                Some(Err(e)) => panic!("recv failed: {e}"),
                None => stream = op::recv_multi::recv_multi(&server),
            }
            if got.len() == payload.len() {
                sender.await;
                break;
            }
        }
        assert_eq!(got.len(), payload.len());
        assert!(got == payload, "payload differs");
        drop(stream);
        settle().await;
        let pool_full = runtime::with(|rt| rt.bufpool().unwrap().available());
        assert_eq!(pool_full, 16, "every buffer returned to the ring");
    });
}

#[test]
fn file_ops_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run(async move {
        let d = dir_fd(&root);
        op::mkdir::mkdirat(&d, c("sub"), 0o755).await.unwrap();
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
        let f = Rc::new(
            op::open::openat2(&d, c("sub/a"), flags, 0o644, 0x10)
                .await
                .unwrap(),
        );
        op::fallocate::fallocate(&f, 0, 1 << 20, libc::FALLOC_FL_KEEP_SIZE)
            .await
            .unwrap();
        let (res, _) = op::write::write(&f, b"hello world".to_vec(), 0, 0).await;
        assert_eq!(res.unwrap(), 11);
        // WRITE_FIXED from a registered buffer at an explicit offset.
        let mut pb = runtime::with(|rt| rt.bufpool().unwrap().alloc()).unwrap();
        pb.set_len(5);
        pb.as_mut_slice().copy_from_slice(b"FIXED");
        let (res, pb) = op::write::write_fixed(&f, Rc::new(pb), 0..5, 100).await;
        assert_eq!(res.unwrap(), 5);
        drop(pb);
        op::fsync::fsync(&f, true).await.unwrap();
        let st = op::statx::statx(&f, CString::default(), libc::AT_EMPTY_PATH)
            .await
            .unwrap();
        assert_eq!(st.size, 105);
        assert!(st.is_file());
        let (res, buf) = op::read::read(&f, Vec::with_capacity(16), 0).await;
        assert_eq!(res.unwrap(), 16);
        assert_eq!(&buf[..11], b"hello world");
        let pb = runtime::with(|rt| rt.bufpool().unwrap().alloc()).unwrap();
        let (res, pb) = op::read::read_fixed(&f, pb, 100).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(pb.as_slice(), b"FIXED");
        op::close::close(Rc::try_unwrap(f).unwrap()).await.unwrap();
        op::rename::renameat(&d, c("sub/a"), &d, c("sub/b"), 0)
            .await
            .unwrap();
        op::link::linkat(&d, c("sub/b"), &d, c("sub/c"), 0)
            .await
            .unwrap();
        op::unlink::unlinkat(&d, c("sub/b"), 0).await.unwrap();
        let st = op::statx::statx(&d, c("sub/c"), 0).await.unwrap();
        assert_eq!((st.size, st.nlink), (105, 1));
        let e = op::unlink::unlinkat(&d, c("sub"), libc::AT_REMOVEDIR)
            .await
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
        let e = op::statx::statx(&d, c("nothere"), 0).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    });
}

#[test]
fn openat2_in_root_cannot_escape() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    std::os::unix::fs::symlink("/", dir.path().join("abs")).unwrap();
    let root = dir.path().to_path_buf();
    run(async move {
        let d = dir_fd(&root);
        for p in ["../../../etc/passwd", "link/secret", "abs/etc/passwd"] {
            let r = op::open::openat2(&d, c(p), libc::O_RDONLY, 0, 0x10).await;
            assert!(r.is_err(), "{p} must not open");
        }
    });
}

#[test]
fn splice_socket_to_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run(async move {
        let (client, server) = tcp_pair().await;
        let payload: Vec<u8> = (0..500_000u32).map(|i| (i % 241) as u8).collect();
        let sender = spawn({
            let p = payload.clone();
            async move {
                let (res, _) = net::send_all(&client, p, LONG).await;
                res.unwrap();
            }
        });
        let d = dir_fd(&root);
        let f = Rc::new(
            op::open::openat2(&d, c("s"), libc::O_WRONLY | libc::O_CREAT, 0o644, 0)
                .await
                .unwrap(),
        );
        let pipe = runtime::with(|rt| rt.pipes().get()).unwrap();
        let mut off = 0u64;
        while off < payload.len() as u64 {
            let n = op::splice::splice(&server, -1, &pipe.write, -1, pipe.capacity as u32)
                .await
                .unwrap();
            assert!(n > 0);
            let mut left = n;
            while left > 0 {
                let m = op::splice::splice(&pipe.read, -1, &f, off as i64, left as u32)
                    .await
                    .unwrap();
                left -= m;
                off += m as u64;
            }
        }
        sender.await;
        assert_eq!(std::fs::read(root.join("s")).unwrap(), payload);
    });
}

#[test]
fn timers_fire_and_timeouts_cancel() {
    run(async {
        let t0 = Instant::now();
        time::sleep(Duration::from_millis(30)).await;
        assert!(t0.elapsed() >= Duration::from_millis(29));
        let (_client, server) = tcp_pair().await;
        // A recv that never completes loses to the timer and is cancelled.
        let r = time::timeout(
            Duration::from_millis(20),
            op::recv::recv(&server, Vec::with_capacity(64)),
        )
        .await;
        assert!(r.is_err());
        // A link timeout cancels the op itself in the kernel.
        let (res, _) = Op::with_timeout(
            op::recv::Recv::new(&server, Vec::with_capacity(64)),
            Duration::from_millis(20),
        )
        .await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
        settle().await;
        assert_eq!(
            runtime::with(|rt| rt.ops_in_flight()),
            0,
            "cancelled ops are reaped"
        );
    });
}

#[test]
fn dropped_op_keeps_its_buffer_until_completion() {
    run(async {
        let (client, server) = tcp_pair().await;
        settle().await;
        assert_eq!(runtime::with(|rt| rt.ops_in_flight()), 0);
        let fut = op::recv::recv(&server, Vec::with_capacity(1 << 20));
        // Submit, then drop before any data: the buffer moves into the slab (ignored), not freed.
        drop(fut);
        assert_eq!(
            runtime::with(|rt| rt.ops_in_flight()),
            1,
            "the slab owns the dropped op's buffer"
        );
        // Traffic after the drop must not land in freed memory; a second recv gets what is sent.
        let (res, _) = net::send_all(&client, vec![7u8; 1000], LONG).await;
        res.unwrap();
        settle().await;
        assert_eq!(runtime::with(|rt| rt.ops_in_flight()), 0);
        let mut got = 0;
        while got == 0 {
            let r = time::timeout(
                Duration::from_millis(200),
                op::recv::recv(&server, Vec::with_capacity(4096)),
            )
            .await;
            match r {
                Ok((res, buf)) => {
                    got = res.unwrap();
                    assert!(buf.iter().all(|&b| b == 7));
                }
                Err(_) => break, // the cancelled recv may have consumed the bytes; both are fine
            }
        }
    });
}

#[test]
fn thousands_of_tasks() {
    run(async {
        let done = Rc::new(Cell::new(0u32));
        let mut handles = Vec::new();
        for i in 0..5000u32 {
            let done = done.clone();
            handles.push(spawn(async move {
                time::sleep(Duration::from_millis(u64::from(i % 7) + 1)).await;
                executor::yield_now().await;
                done.set(done.get() + 1);
            }));
        }
        for h in handles {
            h.await;
        }
        assert_eq!(done.get(), 5000);
    });
}

#[test]
fn blocking_work_runs_off_the_core() {
    run(async {
        let core_thread = std::thread::current().id();
        let other = blocking::spawn_blocking(move || std::thread::current().id())
            .await
            .unwrap();
        assert_ne!(other, core_thread);
        let e = blocking::spawn_blocking(|| -> u32 { panic!("boom") }).await;
        assert!(e.is_err());
    });
}

/// Threads of this process whose name starts with `prefix` (names are cut to 15 bytes).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

#[test]
fn worker_pool_keeps_state_per_thread_and_exits_when_dropped() {
    let pool = blocking::WorkerPool::new("rgt-pool", 1, |i| (i, 0u32)).unwrap();
    assert_eq!(pool.threads(), 1);
    let pool = Rc::new(pool);
    let p = pool.clone();
    run(async move {
        for n in 1..=3 {
            let (worker, seen, name) = p
                .run(|state: &mut (usize, u32)| {
                    state.1 += 1;
                    (
                        state.0,
                        state.1,
                        std::thread::current().name().map(str::to_string),
                    )
                })
                .await
                .unwrap();
            // One worker: every job sees the state the previous one left.
            assert_eq!((worker, seen), (0, n));
            assert_eq!(name.as_deref(), Some("rgt-pool-0"));
        }
        let e = p
            .run(|_: &mut (usize, u32)| -> u32 { panic!("boom") })
            .await;
        assert!(e.is_err());
        // A panicking job does not take its worker (or the state) with it.
        let seen = p.run(|state: &mut (usize, u32)| state.1).await.unwrap();
        assert_eq!(seen, 3);
    });
    // The OS thread name is set by the worker itself, so only once it has run a job is it sure.
    assert_eq!(threads_named("rgt-pool-0"), 1);
    drop(pool);
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_named("rgt-pool-") > 0 {
        assert!(
            Instant::now() < deadline,
            "pool workers still alive after drop"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(blocking::WorkerPool::new("rgt-none", 0, |_| ()).is_err());
}

#[test]
fn reuseport_listeners_share_a_port() {
    let a = net::listen_reuseport("127.0.0.1:0".parse().unwrap(), Some(0), 64).unwrap();
    let addr: SocketAddr = net::local_addr(a.as_raw_fd()).unwrap();
    let b = net::listen_reuseport(addr, Some(1), 64).unwrap();
    assert_eq!(net::local_addr(b.as_raw_fd()).unwrap(), addr);
}

#[test]
fn a_panicking_task_does_not_stop_the_core() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // keep the expected panic out of the test output
    let out = block_on(0, &cfg(), async {
        spawn(async { panic!("one session fails") }).detach();
        executor::yield_now().await;
        time::sleep(Duration::from_millis(5)).await;
        let other = spawn(async { 41 + 1 });
        other.await
    });
    std::panic::set_hook(prev);
    assert_eq!(out.expect("runtime"), 42);
}

#[test]
fn a_panic_in_the_main_future_ends_block_on() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(|| {
        block_on(0, &cfg(), async {
            time::sleep(Duration::from_millis(1)).await;
            panic!("an assertion in a test");
        })
    });
    std::panic::set_hook(prev);
    let panic = out.expect_err("block_on must raise the panic, not wait forever");
    assert_eq!(
        panic.downcast_ref::<&str>(),
        Some(&"an assertion in a test")
    );
    // The thread's runtime was torn down first: a new one starts cleanly.
    assert_eq!(block_on(0, &cfg(), async { 7 }).expect("runtime"), 7);
}

#[test]
fn socket_helpers_set_what_they_say() {
    use socket2::SockRef;

    let flags = |fd: i32, cmd: i32| {
        // SAFETY: F_GETFD/F_GETFL on a descriptor this test owns; no pointers involved.
        unsafe { libc::fcntl(fd, cmd) }
    };

    // New sockets: blocking mode and close-on-exec; set_nonblocking turns on O_NONBLOCK.
    let s = net::tcp_socket(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let raw = s.as_raw_fd();
    assert_ne!(flags(raw, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
    assert_eq!(flags(raw, libc::F_GETFL) & libc::O_NONBLOCK, 0);
    // Never connected, so the kernel has no incoming CPU (-1) for it.
    assert_eq!(net::incoming_cpu(raw), None);
    net::set_nonblocking(raw).unwrap();
    assert_ne!(flags(raw, libc::F_GETFL) & libc::O_NONBLOCK, 0);

    net::set_nodelay(raw).unwrap();
    net::set_keepalive(raw).unwrap();
    net::set_recv_buffer(raw, 0).unwrap();
    net::set_recv_buffer(raw, 256 * 1024).unwrap();
    let sock = SockRef::from(&s);
    assert!(sock.tcp_nodelay().unwrap());
    assert!(sock.keepalive().unwrap());
    assert!(sock.recv_buffer_size().unwrap() >= 256 * 1024);
    // Larger than an int: clamped rather than wrapped to a negative size.
    net::set_recv_buffer(raw, usize::MAX).unwrap();

    // A negative descriptor fails the way the system call would.
    assert_eq!(
        net::set_nodelay(-1).unwrap_err().raw_os_error(),
        Some(libc::EBADF)
    );
    assert!(net::local_addr(-1).is_err());
    assert_eq!(net::incoming_cpu(-1), None);

    // drain_accept_queue closes exactly the queued connections, then finds none.
    let l = net::listen_exclusive("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = net::local_addr(l.as_raw_fd()).unwrap();
    assert!(SockRef::from(&l).reuse_address().unwrap());
    let c1 = std::net::TcpStream::connect(addr).unwrap();
    let c2 = std::net::TcpStream::connect(addr).unwrap();
    assert_eq!(net::drain_accept_queue(l.as_raw_fd()).unwrap(), 2);
    assert_eq!(net::drain_accept_queue(l.as_raw_fd()).unwrap(), 0);
    drop((c1, c2));

    // IPv6 listeners are v6-only (where this machine has IPv6 loopback).
    if let Ok(l6) = net::listen_reuseport("[::1]:0".parse().unwrap(), Some(0), 16) {
        assert!(SockRef::from(&l6).only_v6().unwrap());
        assert!(SockRef::from(&l6).reuse_port().unwrap());
        assert_eq!(SockRef::from(&l6).cpu_affinity().unwrap(), 0);
        let a6 = net::local_addr(l6.as_raw_fd()).unwrap();
        assert!(a6.is_ipv6() && a6.port() != 0);
    }

    // The address type keeps the kernel layout that CONNECT's SQE and loadgen's bind hand over.
    let v4 = net::SockAddr::from(addr);
    assert_eq!(v4.len() as usize, std::mem::size_of::<libc::sockaddr_in>());
    // SAFETY: as_ptr points at `len()` valid bytes, at least a sockaddr header.
    assert_eq!(
        i32::from(unsafe { (*v4.as_ptr()).sa_family }),
        libc::AF_INET
    );
    let v6 = net::SockAddr::from("[::1]:21".parse::<SocketAddr>().unwrap());
    assert_eq!(v6.len() as usize, std::mem::size_of::<libc::sockaddr_in6>());
    // SAFETY: as above.
    assert_eq!(
        i32::from(unsafe { (*v6.as_ptr()).sa_family }),
        libc::AF_INET6
    );
}

#[test]
fn connect_from_a_local_address() {
    run(async {
        let l = Rc::new(net::listen_exclusive("127.0.0.1:0".parse().unwrap(), 16).unwrap());
        let addr = net::local_addr(l.as_raw_fd()).unwrap();
        let mut acc = op::accept::accept_multi(&l);
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let client = net::connect(addr, Some(local)).await.unwrap();
        let server = Rc::new(acc.next().await.unwrap().unwrap());
        let mine = net::local_addr(client.as_raw_fd()).unwrap();
        assert_eq!(mine.ip(), local.ip());
        assert_ne!(mine.port(), 0);
        assert_eq!(net::peer_addr(client.as_raw_fd()).unwrap(), addr);
        assert_eq!(net::peer_addr(server.as_raw_fd()).unwrap(), mine);
        // Once a packet has arrived, the kernel knows which CPU took it.
        let (res, _) = net::send_all(&client, vec![1], LONG).await;
        res.unwrap();
        let (res, _) = op::recv::recv(&server, Vec::with_capacity(16)).await;
        assert_eq!(res.unwrap(), 1);
        assert!(net::incoming_cpu(server.as_raw_fd()).is_some_and(|c| c < 4096));
    });
}

/// Sets its flag to false when dropped: shows when the runtime frees an op's data.
struct Alive(Rc<Cell<bool>>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// A recv whose data reports when it is freed.
struct TrackedRecv {
    inner: op::recv::Recv,
    _alive: Alive,
}

// SAFETY: the SQE is Recv's, pointing into the Vec that `inner` owns; `_alive` is not shared with
// the kernel.
unsafe impl op::OpData for TrackedRecv {
    type Output = (std::io::Result<usize>, Vec<u8>);
    fn sqe(&mut self) -> io_uring::squeue::Entry {
        self.inner.sqe()
    }
    fn complete(self, cqe: op::Cqe) -> Self::Output {
        self.inner.complete(cqe)
    }
}

/// Polls `f` once; true when it is still pending.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> bool {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx).is_pending())
    })
    .await
}

#[test]
fn an_op_polled_after_ready_leaves_the_reused_slot_alone() {
    run(async {
        let (client, server) = tcp_pair().await;
        let (res, _) = net::send_all(&client, b"a".to_vec(), LONG).await;
        res.unwrap();
        settle().await;
        // A completes and frees its slab slot.
        let mut a = op::recv::recv(&server, Vec::with_capacity(16));
        let slot = a.key().unwrap();
        let (res, buf) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut a).poll(cx)).await;
        assert_eq!((res.unwrap(), &buf[..]), (1, &b"a"[..]));

        // B takes the slot and is dropped while its recv is queued: the slab now owns B's buffer.
        let alive = Rc::new(Cell::new(true));
        let b = Op::new(TrackedRecv {
            inner: op::recv::Recv::new(&server, Vec::with_capacity(64)),
            _alive: Alive(alive.clone()),
        });
        assert_eq!(b.key(), Some(slot), "B reuses A's slot");
        drop(b);
        assert!(
            poll_once(&mut a).await,
            "a finished op never resolves again"
        );
        assert!(
            alive.get(),
            "polling A again freed B's buffer while the kernel may write into it"
        );
        // B's cancel completes; only then is its buffer freed.
        settle().await;
        assert!(!alive.get());
        assert_eq!(runtime::with(|rt| rt.ops_in_flight()), 0);

        // C takes the slot, and its completion arrives before C is polled.
        let c = op::recv::recv(&server, Vec::with_capacity(64));
        assert_eq!(c.key(), Some(slot), "C reuses A's slot");
        let (res, _) = net::send_all(&client, b"hello".to_vec(), LONG).await;
        res.unwrap();
        time::sleep(Duration::from_millis(20)).await;
        assert!(poll_once(&mut a).await);
        let (res, buf) = time::timeout(Duration::from_secs(2), c)
            .await
            .expect("polling A again stole C's completion");
        assert_eq!(&buf[..res.unwrap()], b"hello");
    });
}

#[test]
fn a_finished_multishot_stays_finished() {
    run(async {
        let (client, server) = tcp_pair().await;
        let (_idle_client, idle) = tcp_pair().await;
        settle().await;
        let mut m = op::recv_multi::recv_multi(&server);
        let slot = m.key().unwrap();
        drop(client);
        // The peer's close ends the multishot: EOF is its final item.
        let mut eof = false;
        while let Some(item) = m.next().await {
            eof |= matches!(item, Ok(op::recv_multi::Received::Eof));
        }
        assert!(eof && m.is_finished());

        // The freed slot goes to B, dropped while its recv is queued (the slab owns its buffer).
        let alive = Rc::new(Cell::new(true));
        let b = Op::new(TrackedRecv {
            inner: op::recv::Recv::new(&idle, Vec::with_capacity(64)),
            _alive: Alive(alive.clone()),
        });
        assert_eq!(b.key(), Some(slot), "B reuses the multishot's slot");
        drop(b);
        // The finished stream neither yields again nor cancels or touches B.
        assert!(m.next().await.is_none());
        m.stop();
        assert!(alive.get());
        drop(m);
        assert!(alive.get());
        settle().await;
        assert!(!alive.get(), "B's own cancel frees its buffer");
        assert_eq!(runtime::with(|rt| rt.ops_in_flight()), 0);
    });
}

/// A runtime whose submission queue holds two entries, so pushes often find it full.
fn tiny() -> RuntimeConfig {
    RuntimeConfig {
        entries: 2,
        ..cfg()
    }
}

#[test]
fn a_tiny_ring_runs_many_ops() {
    let out = block_on(0, &tiny(), async {
        let (_client, server) = tcp_pair().await;
        let done = Rc::new(Cell::new(0u32));
        let mut tasks = Vec::new();
        for i in 0..300u64 {
            let done = done.clone();
            let server = server.clone();
            tasks.push(spawn(async move {
                op::timeout::timeout(Duration::from_millis(1 + i % 3)).await;
                // A linked pair needs the whole two-entry queue at once.
                let (res, _) = Op::with_timeout(
                    op::recv::Recv::new(&server, Vec::with_capacity(16)),
                    Duration::from_millis(2),
                )
                .await;
                assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
                done.set(done.get() + 1);
            }));
        }
        for t in tasks {
            t.await;
        }
        settle().await;
        (done.get(), runtime::with(|rt| rt.ops_in_flight()))
    });
    assert_eq!(out.expect("runtime"), (300, 0));
}

#[test]
fn a_refused_submission_completes_the_op_with_an_error() {
    let out = block_on(0, &tiny(), async {
        let efd: SharedFd = Rc::new(super::fd::eventfd().unwrap());
        let (sock, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let sock: SharedFd = Rc::new(sock.into());
        // The refused CLOSE gets a pipe's only write end: the read end sees EOF once it is closed.
        let mut ends = [0; 2];
        // SAFETY: pipe2 fills the two-int array it is given.
        assert_eq!(
            unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) },
            0
        );
        // SAFETY: both descriptors are new and owned by nobody else.
        let (read_end, write_end) = unsafe {
            use std::os::fd::FromRawFd;
            (
                std::os::fd::OwnedFd::from_raw_fd(ends[0]),
                std::os::fd::OwnedFd::from_raw_fd(ends[1]),
            )
        };
        // Start from an empty submission queue.
        time::sleep(Duration::from_millis(1)).await;

        runtime::with(|rt| rt.refuse_submits(true));
        // Two polls fill the queue; everything after them is refused.
        let p1 = op::poll::poll(&efd, libc::POLLIN as u32);
        let p2 = op::poll::poll(&efd, libc::POLLIN as u32);
        let p3 = op::poll::poll(&efd, libc::POLLIN as u32);
        let mut multi = op::recv_multi::recv_multi(&sock);
        let linked = Op::with_timeout(
            op::recv::Recv::new(&sock, Vec::with_capacity(100)),
            Duration::from_secs(1),
        );
        let close = op::close::close(write_end);
        let queued = runtime::with(|rt| rt.ops_in_flight());
        runtime::with(|rt| rt.refuse_submits(false));
        assert_eq!(queued, 2, "refused ops leave nothing in the slab");

        let again = Some(libc::EAGAIN);
        assert_eq!(p3.await.unwrap_err().raw_os_error(), again);
        let item = multi.next().await.expect("the error is the stream's item");
        assert_eq!(item.err().and_then(|e| e.raw_os_error()), again);
        assert!(multi.next().await.is_none() && multi.is_finished());
        let (res, buf) = linked.await;
        assert_eq!(res.unwrap_err().raw_os_error(), again);
        assert_eq!(buf.capacity(), 100, "the buffer comes back");
        assert_eq!(close.await.unwrap_err().raw_os_error(), again);
        let mut byte = [0u8; 1];
        // SAFETY: reads at most one byte into a live one-byte buffer.
        let n = unsafe { libc::read(read_end.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 0, "the refused close closed the write end itself");

        // The queued polls were not disturbed.
        super::fd::signal_eventfd(&efd);
        assert!(p1.await.unwrap() & libc::POLLIN as u32 != 0);
        assert!(p2.await.unwrap() & libc::POLLIN as u32 != 0);
        settle().await;
        runtime::with(|rt| rt.ops_in_flight())
    });
    assert_eq!(out.expect("runtime"), 0);
}

#[test]
fn ftruncate_falls_back_to_a_direct_call_without_the_ring_op() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run(async move {
        let d = dir_fd(&root);
        let flags = libc::O_RDWR | libc::O_CREAT;
        let f = Rc::new(
            op::open::openat2(&d, c("t"), flags, 0o644, 0)
                .await
                .unwrap(),
        );
        let ro = Rc::new(
            op::open::openat2(&d, c("t"), libc::O_RDONLY, 0, 0)
                .await
                .unwrap(),
        );
        let (res, _) = op::write::write(&f, vec![1u8; 4096], 0, 0).await;
        res.unwrap();
        let size = |f: SharedFd| async move {
            op::statx::statx(&f, CString::default(), libc::AT_EMPTY_PATH)
                .await
                .unwrap()
                .size
        };
        // Through the ring where this kernel has FTRUNCATE (6.9+), directly where it has not.
        let ring_has_it = runtime::with(|rt| rt.caps().ring_ftruncate);
        op::ftruncate::ftruncate(&f, 1000).await.unwrap();
        assert_eq!(size(f.clone()).await, 1000);
        let ring_err = op::ftruncate::ftruncate(&ro, 0).await.unwrap_err();

        runtime::with(|rt| {
            rt.set_caps(super::caps::Caps {
                ring_ftruncate: false,
            })
        });
        let t = op::ftruncate::ftruncate(&f, 10);
        assert_eq!(t.key(), None, "the fallback does not go through the ring");
        t.await.unwrap();
        assert_eq!(size(f.clone()).await, 10);
        let direct_err = op::ftruncate::ftruncate(&ro, 0).await.unwrap_err();
        if ring_has_it {
            assert_eq!(direct_err.raw_os_error(), ring_err.raw_os_error());
        }
        assert!(direct_err.raw_os_error().is_some());
    });
}
