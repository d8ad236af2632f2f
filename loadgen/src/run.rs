//! Running a phase: sessions spread over core threads, each a sequential task taking files from a
//! shared counter, with retries, a hard deadline and a progress line.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use ringest::engine::{self, time, RuntimeConfig};
use ringest::proto::reply::Reply;
use ringest::proto::{modeb, modee};

use crate::content::{self, SizeSpec};
use crate::ftp::{self, reply_fail, Control, DataConn, Fail};
use crate::stats::{limit_notes, PhaseResult, Shared, ThreadStats, FILE_FAILED, FILE_OK};
use crate::tls::TlsOpts;

/// What each session does with its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// One login per session, a new data connection per file (MODE S).
    Stream,
    /// A new control connection (login, QUIT) and a new data connection per file.
    Reconnect,
    /// MODE B: one login and, while the server keeps it open, one data connection per session.
    Block,
    /// MODE E (GridFTP extended block mode, as `globus-url-copy -fast -p N`): one login and one
    /// PASV per session, `--parallel` data connections to it kept across files, each file's blocks
    /// spread over them.
    Eblock,
    /// Verification: RETR each file in MODE S and compare with the generated content.
    Retr,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::Stream => "stream",
            Job::Reconnect => "stream-reconnect",
            Job::Block => "block",
            Job::Eblock => "eblock",
            Job::Retr => "verify-download",
        }
    }
}

/// Settings shared by every phase of a run.
#[derive(Clone, Debug)]
pub struct RunCfg {
    pub server: SocketAddr,
    pub user: String,
    pub password: String,
    pub sessions: usize,
    pub threads: usize,
    pub pin: bool,
    pub size: SizeSpec,
    pub seed: u64,
    pub duration: Duration,
    pub op_timeout: Duration,
    pub sources: Vec<IpAddr>,
    pub epsv: bool,
    pub progress: bool,
    pub nofile: u64,
    /// Announce each upload's size with `ALLO` before its STOR, so a server that checks it (ringest
    /// does in MODE S) can tell a cut connection from a complete file.
    pub allo: bool,
    /// block: the next file's STOR goes out before the last file's final reply is read.
    pub pipeline: bool,
    /// FTPS: TLS on the control connection and on every data connection (`None`: plain FTP).
    pub tls: Option<Arc<TlsOpts>>,
    /// MODE E: data connections per session, all to the session's one PASV port.
    pub parallel: usize,
    /// MODE E: largest payload per block; a larger file is cut into blocks of this size, which the
    /// connections take in turn as each becomes free.
    pub block_size: usize,
}

/// Attempts per file: the first try and three retries.
const MAX_ATTEMPTS: u32 = 4;
/// Bytes generated and sent per send call.
const CHUNK: usize = 1 << 20;

/// The runtime for client threads: no registered buffers, no pipes.
pub fn runtime_config() -> RuntimeConfig {
    RuntimeConfig {
        entries: 1024,
        buffers: 0,
        buffer_size: 0,
        pipes: 0,
        pipe_size: 0,
    }
}

/// Remote name of file `id`.
pub fn file_name(prefix: &str, id: u64) -> String {
    format!("{prefix}/f{id}")
}

struct ThreadCtx {
    cfg: Arc<RunCfg>,
    shared: Arc<Shared>,
    ids: Arc<Vec<u64>>,
    job: Job,
    prefix: Arc<str>,
    deadline: Instant,
    stats: RefCell<ThreadStats>,
}

/// One session's connections and buffers.
struct SessState {
    src: Option<IpAddr>,
    ctrl: Option<Control>,
    data: Option<DataConn>,
    /// MODE E: the session's parallel data connections, kept across files.
    econns: Vec<EConn>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// `--pipeline`: the file (index and id) whose STOR already went out ahead, the session's next.
    ahead: Option<(usize, u64)>,
    /// When that STOR went out on the current control connection (`None` once the connection is
    /// gone: the file is then sent the usual way).
    ahead_sent: Option<Instant>,
}

/// One MODE E data connection and its send buffer (the connections send at the same time, so each
/// needs its own).
struct EConn {
    data: DataConn,
    buf: Vec<u8>,
}

impl SessState {
    /// Forgets every connection after an error: the next attempt starts from a fresh login. A data
    /// connection is reset, so a half-sent file is not mistaken for a complete one.
    fn reset(&mut self) {
        self.ahead_sent = None;
        self.ctrl = None;
        self.data = None;
        self.econns.clear();
    }

    /// Closes the data connection cleanly (at a file boundary).
    async fn close_data(&mut self, dur: Duration) {
        if let Some(mut d) = self.data.take() {
            let _ = d.end(dur).await;
            d.absorb();
        }
        for mut c in self.econns.drain(..) {
            let _ = c.data.end(dur).await;
        }
    }
}

struct Outcome {
    bytes: u64,
    latency: Duration,
    mismatch: Option<String>,
}

/// Runs `job` over the files `ids`, bounded by the run's duration.
pub fn run_phase(cfg: &Arc<RunCfg>, job: Job, prefix: &str, ids: Vec<u64>) -> Result<PhaseResult> {
    let files = ids.len();
    let ids = Arc::new(ids);
    let shared = Arc::new(Shared::new(files));
    let threads = cfg.threads.clamp(1, cfg.sessions.max(1));
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let prefix: Arc<str> = Arc::from(prefix);

    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let progress = cfg.progress.then(|| {
        let shared = shared.clone();
        let name = job.name();
        std::thread::spawn(move || progress_loop(&shared, files as u64, name, start, &stop_rx))
    });

    let handles = {
        let (cfg, shared, ids, prefix) = (cfg.clone(), shared.clone(), ids.clone(), prefix.clone());
        let pin = cfg.pin;
        engine::thread::start_threads(
            threads,
            runtime_config(),
            "loadgen",
            pin,
            move |core, _cpu| {
                let tctx = Rc::new(ThreadCtx {
                    cfg: cfg.clone(),
                    shared: shared.clone(),
                    ids: ids.clone(),
                    job,
                    prefix: prefix.clone(),
                    deadline,
                    stats: RefCell::new(ThreadStats::default()),
                });
                async move {
                    let sessions = tctx.cfg.sessions;
                    let mut tasks = Vec::new();
                    for sid in (core..sessions).step_by(threads) {
                        tasks.push(engine::spawn(session(tctx.clone(), sid)));
                    }
                    for t in tasks {
                        t.await;
                    }
                    let stats = tctx.stats.take();
                    if let Ok(mut all) = tctx.shared.threads.lock() {
                        all.push(stats);
                    }
                }
            },
        )
        .context("starting client threads")?
    };
    let mut thread_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => thread_err = Some(anyhow!("client thread failed: {e}")),
            Err(_) => thread_err = Some(anyhow!("client thread panicked")),
        }
    }
    let elapsed = start.elapsed();
    drop(stop_tx);
    if let Some(p) = progress {
        let _ = p.join();
    }
    if let Some(e) = thread_err {
        return Err(e);
    }

    let mut stats = ThreadStats::default();
    if let Ok(mut all) = shared.threads.lock() {
        for s in all.drain(..) {
            stats.merge(s);
        }
    }
    let notes = limit_notes(&stats, cfg.nofile);
    let fatal = shared.fatal.lock().ok().and_then(|f| f.clone());
    Ok(PhaseResult {
        name: job.name().to_string(),
        prefix: prefix.to_string(),
        files: files as u64,
        ok: shared.ok.load(Relaxed),
        failed: shared.failed.load(Relaxed),
        bytes: shared.bytes.load(Relaxed),
        elapsed,
        data_conns: shared.data_conns.load(Relaxed),
        spread_files: (job == Job::Eblock).then(|| shared.spread_files.load(Relaxed)),
        ctrl_conns: shared.ctrl_conns.load(Relaxed),
        tls: cfg.tls.as_ref().map(|o| shared.tls_counts(o.mode.name())),
        stats,
        fatal,
        notes,
        status: shared.status.iter().map(|s| s.load(Relaxed)).collect(),
    })
}

fn progress_loop(
    shared: &Shared,
    total: u64,
    name: &str,
    start: Instant,
    stop: &mpsc::Receiver<()>,
) {
    let mut last = 0u64;
    let mut last_t = Instant::now();
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_secs(1)) {
        let ok = shared.ok.load(Relaxed);
        let failed = shared.failed.load(Relaxed);
        let now = Instant::now();
        let rate = (ok - last) as f64 / now.duration_since(last_t).as_secs_f64().max(1e-9);
        last = ok;
        last_t = now;
        let _ = writeln!(
            std::io::stderr().lock(),
            "[{name} {:>5.1}s] {ok}/{total} ok, {failed} failed, {rate:.0} files/s, {:.1} MB sent",
            start.elapsed().as_secs_f64(),
            shared.bytes.load(Relaxed) as f64 / 1e6
        );
    }
}

async fn session(t: Rc<ThreadCtx>, sid: usize) {
    let src = (!t.cfg.sources.is_empty()).then(|| t.cfg.sources[sid % t.cfg.sources.len()]);
    let current = Rc::new(Cell::new(None::<usize>));
    let remaining = t.deadline.saturating_duration_since(Instant::now());
    if time::timeout(remaining, session_loop(t.clone(), src, current.clone()))
        .await
        .is_err()
    {
        // The deadline cut a file short.
        if let Some(idx) = current.get() {
            mark(&t, idx, FILE_FAILED);
            t.stats.borrow_mut().record_kind(
                "deadline (file cut short)",
                "run duration reached mid-file".into(),
            );
        }
    }
}

fn mark(t: &ThreadCtx, idx: usize, state: u8) {
    if let Some(s) = t.shared.status.get(idx) {
        s.store(state, Relaxed);
    }
    if state == FILE_OK {
        t.shared.ok.fetch_add(1, Relaxed);
    } else {
        t.shared.failed.fetch_add(1, Relaxed);
    }
}

async fn session_loop(t: Rc<ThreadCtx>, src: Option<IpAddr>, current: Rc<Cell<Option<usize>>>) {
    let mut st = SessState {
        src,
        ctrl: None,
        data: None,
        econns: Vec::new(),
        buf: Vec::new(),
        scratch: Vec::new(),
        ahead: None,
        ahead_sent: None,
    };
    loop {
        if t.shared.stop.load(Relaxed) || Instant::now() >= t.deadline {
            break;
        }
        let Some((idx, id)) = st.ahead.take().or_else(|| next_file(&t)) else {
            break;
        };
        current.set(Some(idx));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = match t.job {
                Job::Stream => stream_file(&t, &mut st, id, false).await,
                Job::Reconnect => stream_file(&t, &mut st, id, true).await,
                Job::Block => block_file(&t, &mut st, id).await,
                Job::Eblock => eblock_file(&t, &mut st, id).await,
                Job::Retr => retr_file(&t, &mut st, id).await,
            };
            match res {
                Ok(o) => {
                    let mut stats = t.stats.borrow_mut();
                    stats
                        .hist
                        .saturating_record(o.latency.as_micros().max(1) as u64);
                    if let Some(m) = o.mismatch {
                        stats.mismatched += 1;
                        stats.record_kind("content mismatch", m);
                        drop(stats);
                        mark(&t, idx, FILE_FAILED);
                    } else {
                        drop(stats);
                        t.shared.bytes.fetch_add(o.bytes, Relaxed);
                        mark(&t, idx, FILE_OK);
                    }
                    break;
                }
                Err(Fail::Fatal(m)) => {
                    t.stats.borrow_mut().record_kind("fatal", m.clone());
                    t.shared.set_fatal(m);
                    st.reset();
                    mark(&t, idx, FILE_FAILED);
                    break;
                }
                Err(f) => {
                    t.stats.borrow_mut().record_error(&f);
                    st.reset();
                    if attempt >= MAX_ATTEMPTS || t.shared.stop.load(Relaxed) {
                        mark(&t, idx, FILE_FAILED);
                        break;
                    }
                    if Instant::now() + backoff(attempt) >= t.deadline {
                        // No time left to retry: this file failed, and the session takes no more.
                        mark(&t, idx, FILE_FAILED);
                        current.set(None);
                        return;
                    }
                    t.stats.borrow_mut().retries += 1;
                    time::sleep(backoff(attempt)).await;
                }
            }
        }
        current.set(None);
    }
    if st.ahead_sent.is_some() {
        // A STOR sent ahead waits on the server for data that will not come: closing the data
        // connection ends it (426, nothing lands), so the QUIT is answered at once.
        st.data = None;
    }
    if let Some(c) = st.ctrl.take() {
        c.quit().await;
    }
    st.close_data(t.cfg.op_timeout).await;
}

/// The next file of the run (its index and id) for a session to send, `None` when the run is
/// over or out of files. With `--pipeline` it is taken while the last file is still in flight, so
/// its STOR can go out ahead.
fn next_file(t: &ThreadCtx) -> Option<(usize, u64)> {
    if t.shared.stop.load(Relaxed) || Instant::now() >= t.deadline {
        return None;
    }
    let idx = t.shared.next.fetch_add(1, Relaxed) as usize;
    t.ids.get(idx).map(|&id| (idx, id))
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 * u64::from(attempt))
}

/// Connects a control connection and logs in.
fn no_control() -> Fail {
    Fail::Protocol {
        step: "session",
        msg: "no control".into(),
    }
}

/// Sends `ALLO size` when `--allo` is set and the command is an upload.
async fn announce_size(t: &ThreadCtx, ctrl: &mut Control, verb: &str, id: u64) -> Result<(), Fail> {
    if !t.cfg.allo || verb != "STOR" {
        return Ok(());
    }
    let size = t.cfg.size.size_of(t.cfg.seed, id);
    let r = ctrl.cmd(&format!("ALLO {size}"), "ALLO").await?;
    if !matches!(r.code, 200 | 202) {
        return Err(reply_fail("ALLO", &r));
    }
    Ok(())
}

/// Logs in if the session has no control connection yet, opens a data connection (PASV/EPSV), sends
/// `VERB name` and waits for 150/125. Returns the data connection and when the command went out.
async fn begin_transfer(
    t: &ThreadCtx,
    st: &mut SessState,
    verb: &'static str,
    id: u64,
) -> Result<(DataConn, Instant), Fail> {
    if st.ctrl.is_none() {
        st.ctrl = Some(open_login(t, st.src).await?);
    }
    let Some(ctrl) = st.ctrl.as_mut() else {
        return Err(no_control());
    };
    let addr = ctrl.passive(t.cfg.epsv).await?;
    let mut data = data_connect(t, addr, st.src).await?;
    announce_size(t, ctrl, verb, id).await?;
    ctrl.send(&format!("{verb} {}", file_name(&t.prefix, id)), verb)
        .await?;
    let t0 = Instant::now();
    let r = preliminary(t, ctrl, &mut data, verb).await?;
    if !matches!(r.code, 150 | 125) {
        return Err(reply_fail(verb, &r));
    }
    Ok((data, t0))
}

/// The command's preliminary reply (150) and, with TLS, the data connection's handshake at the same
/// time: some servers send 150 first and then wait for the ClientHello (vsftpd), others may finish
/// the handshake first. An error reply ends the wait for the handshake; a failed handshake is
/// explained by the server's reply when one comes within a second (vsftpd: `522 ... session reuse
/// required`).
async fn preliminary(
    t: &ThreadCtx,
    ctrl: &mut Control,
    data: &mut DataConn,
    verb: &'static str,
) -> Result<Reply, Fail> {
    let Some(session) = ctrl.session_tls().cloned() else {
        return ctrl.reply(verb).await;
    };
    let (handshake, reply) = {
        let hs = data.handshake(session.config, session.name, t.cfg.op_timeout);
        let rp = ctrl.reply(verb);
        both_unless(hs, rp, |hs, rp| {
            matches!(hs, Some(Err(_)))
                || matches!(rp, Some(Err(_)))
                || matches!(rp, Some(Ok(r)) if !matches!(r.code, 150 | 125))
        })
        .await
    };
    match handshake {
        Some(Ok(resumed)) => {
            t.shared.tls_data.fetch_add(1, Relaxed);
            if resumed {
                t.shared.tls_data_resumed.fetch_add(1, Relaxed);
            }
        }
        Some(Err(f)) => {
            t.shared.tls_failed.fetch_add(1, Relaxed);
            // What the server says about it (it may have sent 150 before the handshake failed).
            let mut said = match reply {
                Some(Ok(r)) if !matches!(r.code, 150 | 125) => Some(r),
                _ => None,
            };
            if said.is_none() {
                if let Ok(Ok(r)) = time::timeout(Duration::from_secs(1), ctrl.reply(verb)).await {
                    said = Some(r);
                }
            }
            return Err(match (f, said) {
                (Fail::Tls { step, msg }, Some(r)) => Fail::Tls {
                    step,
                    msg: format!("{msg}; the server said {} {}", r.code, r.lines.join(" ")),
                },
                (f, _) => f,
            });
        }
        // The reply ended the wait: it is the error.
        None => {}
    }
    reply.unwrap_or_else(|| {
        Err(Fail::Protocol {
            step: verb,
            msg: "no reply".into(),
        })
    })
}

/// Runs `a` and `b` together until both are done, or until `stop` (given what is done so far) says
/// the other one no longer matters; the one not done is dropped (cancelled).
async fn both_unless<A: Future, B: Future>(
    a: A,
    b: B,
    stop: impl Fn(&Option<A::Output>, &Option<B::Output>) -> bool,
) -> (Option<A::Output>, Option<B::Output>) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if (ra.is_some() && rb.is_some()) || stop(&ra, &rb) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra, rb)
}

async fn open_login(t: &ThreadCtx, src: Option<IpAddr>) -> Result<Control, Fail> {
    let opened = Control::open(t.cfg.server, src, t.cfg.op_timeout, t.cfg.tls.as_deref()).await;
    match &opened {
        Ok(c) => {
            if let Some(d) = c.tls_describe() {
                t.shared.tls_ctrl.fetch_add(1, Relaxed);
                if let Ok(mut v) = t.shared.tls_version.lock() {
                    v.get_or_insert(d);
                }
            }
        }
        Err(Fail::Tls { .. }) => {
            t.shared.tls_failed.fetch_add(1, Relaxed);
        }
        Err(_) => {}
    }
    let mut c = match opened {
        // Nothing listens any more: every further file would fail the same way, so stop the run
        // now instead of retrying each one until --duration runs out.
        Err(f) if f.raw_os_error() == Some(libc::ECONNREFUSED) => {
            return Err(Fail::Fatal(format!(
                "the server at {} is gone (connection refused); stopping the run",
                t.cfg.server
            )))
        }
        other => other?,
    };
    t.shared.ctrl_conns.fetch_add(1, Relaxed);
    c.login(&t.cfg.user, &t.cfg.password).await?;
    Ok(c)
}

async fn data_connect(
    t: &ThreadCtx,
    addr: SocketAddr,
    src: Option<IpAddr>,
) -> Result<DataConn, Fail> {
    let fd = ftp::connect(addr, src, t.cfg.op_timeout, "data connect").await?;
    t.shared.data_conns.fetch_add(1, Relaxed);
    Ok(DataConn::new(fd))
}

/// After a failed data send, the server's reply (if it sent one quickly) says more than EPIPE.
async fn explain_send_failure(ctrl: &mut Control, err: Fail) -> Fail {
    match time::timeout(Duration::from_secs(1), ctrl.reply("STOR final")).await {
        Ok(Ok(r)) if !matches!(r.code, 226 | 250) => reply_fail("STOR final", &r),
        _ => err,
    }
}

async fn stream_file(
    t: &ThreadCtx,
    st: &mut SessState,
    id: u64,
    reconnect: bool,
) -> Result<Outcome, Fail> {
    let (mut data, t0) = begin_transfer(t, st, "STOR", id).await?;
    let Some(ctrl) = st.ctrl.as_mut() else {
        return Err(no_control());
    };
    let size = t.cfg.size.size_of(t.cfg.seed, id);
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(CHUNK as u64) as usize;
        let mut buf = std::mem::take(&mut st.buf);
        buf.clear();
        content::append(t.cfg.seed, id, off, n, &mut buf);
        let (res, back) = data.send(buf, t.cfg.op_timeout, "data send").await;
        if let Some(b) = back {
            st.buf = b;
        }
        if let Err(e) = res {
            drop(data);
            return Err(explain_send_failure(ctrl, e).await);
        }
        off += n as u64;
    }
    // With TLS, close_notify: the server takes an upload without it as cut short.
    if let Err(e) = data.end(t.cfg.op_timeout).await {
        drop(data);
        return Err(explain_send_failure(ctrl, e).await);
    }
    let r = ctrl.reply("STOR final").await?;
    // The tickets the server sent after this data handshake, for the session's next files.
    data.absorb();
    drop(data);
    if !matches!(r.code, 226 | 250) {
        return Err(reply_fail("STOR final", &r));
    }
    let latency = t0.elapsed();
    if reconnect {
        if let Some(c) = st.ctrl.take() {
            c.quit().await;
        }
    }
    Ok(Outcome {
        bytes: size,
        latency,
        mismatch: None,
    })
}

async fn block_file(t: &ThreadCtx, st: &mut SessState, id: u64) -> Result<Outcome, Fail> {
    if st.ctrl.is_none() {
        let mut c = open_login(t, st.src).await?;
        let r = c.cmd("MODE B", "MODE B").await?;
        if r.code != 200 {
            return Err(Fail::Fatal(format!(
                "server does not support MODE B (block mode): MODE B answered {} {}",
                r.code,
                r.lines.join(" ")
            )));
        }
        st.ctrl = Some(c);
        st.data = None;
    }
    let Some(ctrl) = st.ctrl.as_mut() else {
        return Err(no_control());
    };
    // The session's data connection, taken while it carries this file: an error drops (resets) it.
    let (mut data, fresh) = match st.data.take() {
        Some(d) => (d, false),
        None => {
            let addr = ctrl.passive(t.cfg.epsv).await?;
            (data_connect(t, addr, st.src).await?, true)
        }
    };
    // A STOR sent ahead counts only on the connections it went out on.
    let sent_ahead = st.ahead_sent.take().filter(|_| !fresh);
    let t0 = match sent_ahead {
        Some(at) => at,
        None => {
            announce_size(t, ctrl, "STOR", id).await?;
            ctrl.send(&format!("STOR {}", file_name(&t.prefix, id)), "STOR")
                .await?;
            Instant::now()
        }
    };
    // A new data connection's TLS handshake runs with the first STOR; later files reuse it.
    let r = if fresh {
        preliminary(t, ctrl, &mut data, "STOR").await?
    } else {
        ctrl.reply("STOR").await?
    };
    if !matches!(r.code, 150 | 125) {
        return Err(reply_fail("STOR", &r));
    }
    let size = t.cfg.size.size_of(t.cfg.seed, id);
    let mut off = 0u64;
    loop {
        let mut buf = std::mem::take(&mut st.buf);
        buf.clear();
        if size == 0 {
            modeb::Encoder::eof(&mut buf);
        }
        while off < size && buf.len() < CHUNK {
            let n = modeb::next_block_len(size - off);
            let last = off + u64::from(n) == size;
            buf.extend_from_slice(&modeb::header(if last { modeb::DESC_EOF } else { 0 }, n));
            content::append(t.cfg.seed, id, off, usize::from(n), &mut buf);
            off += u64::from(n);
        }
        let (res, back) = data.send(buf, t.cfg.op_timeout, "data send").await;
        if let Some(b) = back {
            st.buf = b;
        }
        if let Err(e) = res {
            drop(data);
            return Err(explain_send_failure(ctrl, e).await);
        }
        if off >= size {
            break;
        }
    }
    let ahead = if t.cfg.pipeline && st.ahead.is_none() {
        next_file(t)
    } else {
        None
    };
    if let Some((_, next)) = ahead {
        // Kept for the session's next turn whatever happens to this file.
        st.ahead = ahead;
        ctrl.send(&format!("STOR {}", file_name(&t.prefix, next)), "STOR")
            .await?;
    }
    let sent = Instant::now();
    let r = ctrl.reply("STOR final").await?;
    let latency = t0.elapsed();
    data.absorb();
    if ahead.is_some() {
        if r.code == 226 {
            // The server closed the data connection, so it refuses the STOR sent ahead (425):
            // read that reply; the next file starts over with a new PASV.
            ctrl.reply("STOR").await?;
        }
        st.ahead_sent = (r.code == 250).then_some(sent);
    }
    match r.code {
        250 => st.data = Some(data),
        // The server closed the data connection: the next file needs a new PASV.
        226 => {
            st.data = Some(data);
            st.close_data(t.cfg.op_timeout).await;
        }
        _ => return Err(reply_fail("STOR final", &r)),
    }
    Ok(Outcome {
        bytes: size,
        latency,
        mismatch: None,
    })
}

/// The refusal of `MODE E`, for the fatal error that stops the run.
pub fn mode_e_refused(r: &Reply) -> String {
    format!(
        "server does not support MODE E (GridFTP extended block mode): MODE E answered {} {}",
        r.code,
        r.lines.join(" ")
    )
}

/// One file in MODE E: on a new session `MODE E` and one PASV, whose `--parallel` data connections
/// are made with the first STOR. Per file `ALLO size` (as globus-url-copy sends it: the blocks
/// carry no total, so the server checks the file is complete against it), `STOR`, the 150, the
/// blocks over all connections, and the 226 that says the server has every byte. The connections
/// stay open for the next file.
async fn eblock_file(t: &ThreadCtx, st: &mut SessState, id: u64) -> Result<Outcome, Fail> {
    if st.ctrl.is_none() {
        let mut c = open_login(t, st.src).await?;
        let r = c.cmd("MODE E", "MODE E").await?;
        if r.code != 200 {
            return Err(Fail::Fatal(mode_e_refused(&r)));
        }
        st.ctrl = Some(c);
        st.econns.clear();
    }
    let Some(ctrl) = st.ctrl.as_mut() else {
        return Err(no_control());
    };
    let addr = if st.econns.is_empty() {
        Some(ctrl.passive(t.cfg.epsv).await?)
    } else {
        None
    };
    let size = t.cfg.size.size_of(t.cfg.seed, id);
    let r = ctrl.cmd(&format!("ALLO {size}"), "ALLO").await?;
    if !matches!(r.code, 200 | 202) {
        return Err(reply_fail("ALLO", &r));
    }
    ctrl.send(&format!("STOR {}", file_name(&t.prefix, id)), "STOR")
        .await?;
    let t0 = Instant::now();
    let r = match addr {
        None => ctrl.reply("STOR").await?,
        Some(addr) => {
            // The connections are made after the STOR and while its reply is awaited: a server may
            // accept them only once the transfer runs (ringest does), and its listen backlog (8
            // in ringest) holds fewer than --parallel allows, so connecting them all first could
            // wait forever. A server that wants a connection before its 150 gets it too.
            let (conns, reply) = both_unless(
                connect_all(t, addr, st.src, t.cfg.parallel),
                ctrl.reply("STOR"),
                |c, r| {
                    matches!(c, Some(Err(_)))
                        || matches!(r, Some(Err(_)))
                        || matches!(r, Some(Ok(r)) if !matches!(r.code, 150 | 125))
                },
            )
            .await;
            match (conns, reply) {
                (_, Some(Err(f))) | (Some(Err(f)), _) => return Err(f),
                (Some(Ok(c)), Some(Ok(r))) => {
                    st.econns = c;
                    r
                }
                (_, Some(Ok(r))) => r,
                _ => {
                    return Err(Fail::Protocol {
                        step: "STOR",
                        msg: "no reply".into(),
                    })
                }
            }
        }
    };
    if !matches!(r.code, 150 | 125) {
        return Err(reply_fail("STOR", &r));
    }
    let carried = match send_blocks(t, &mut st.econns, id, size).await {
        Ok(n) => n,
        Err(e) => {
            // Reset them all: the server must not wait for the rest of this file on any of them.
            st.econns.clear();
            return Err(explain_send_failure(ctrl, e).await);
        }
    };
    // GridFTP servers send 111/112 markers while the data flows; only the final reply counts.
    let r = loop {
        let r = ctrl.reply("STOR final").await?;
        if !(110..200).contains(&r.code) {
            break r;
        }
    };
    let latency = t0.elapsed();
    if !matches!(r.code, 226 | 250) {
        return Err(reply_fail("STOR final", &r));
    }
    if carried > 1 {
        t.shared.spread_files.fetch_add(1, Relaxed);
    }
    Ok(Outcome {
        bytes: size,
        latency,
        mismatch: None,
    })
}

/// Opens `n` data connections to `addr`, one after the other.
async fn connect_all(
    t: &ThreadCtx,
    addr: SocketAddr,
    src: Option<IpAddr>,
    n: usize,
) -> Result<Vec<EConn>, Fail> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let data = data_connect(t, addr, src).await?;
        conns.push(EConn {
            data,
            buf: Vec::new(),
        });
    }
    Ok(conns)
}

type Sending<'a> = Pin<Box<dyn Future<Output = Result<bool, Fail>> + 'a>>;

/// Sends file `id` as MODE E blocks over all of `conns` at once and ends the file on each of
/// them. Returns how many connections carried payload (for the report: whether blocks really
/// interleaved). The first failure ends it, leaving the others cut mid-file.
async fn send_blocks(
    t: &ThreadCtx,
    conns: &mut [EConn],
    id: u64,
    size: u64,
) -> Result<usize, Fail> {
    let next = Cell::new(0u64);
    let n = conns.len() as u64;
    let mut sending: Vec<Option<Sending<'_>>> = conns
        .iter_mut()
        .enumerate()
        .map(|(i, c)| Some(Box::pin(send_part(t, c, id, size, &next, i == 0, n)) as Sending<'_>))
        .collect();
    let mut carried = 0;
    poll_fn(|cx| {
        for slot in sending.iter_mut() {
            let Some(f) = slot.as_mut() else { continue };
            if let Poll::Ready(res) = f.as_mut().poll(cx) {
                *slot = None;
                match res {
                    Ok(c) => carried += usize::from(c),
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        if sending.iter().all(Option::is_none) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await?;
    Ok(carried)
}

/// One connection's part of a file: it takes the next unsent block whenever its previous send is
/// done, so a connection that drains faster carries more, as in globus-url-copy. When no block is
/// left it ends its part with EOD in the same send; `eof` marks the one connection whose EOD is
/// EOF | EOD with the number of connections (`eods`) in the offset field. Returns whether it
/// carried any payload.
async fn send_part(
    t: &ThreadCtx,
    c: &mut EConn,
    id: u64,
    size: u64,
    next: &Cell<u64>,
    eof: bool,
    eods: u64,
) -> Result<bool, Fail> {
    let block = t.cfg.block_size.max(1) as u64;
    let mut carried = false;
    loop {
        let mut buf = std::mem::take(&mut c.buf);
        buf.clear();
        let off = next.get();
        if off < size {
            let len = (size - off).min(block);
            next.set(off + len);
            buf.extend_from_slice(&modee::header(0, len, off));
            content::append(t.cfg.seed, id, off, len as usize, &mut buf);
            carried = true;
        }
        // No block left for anyone: this send ends the connection's part. No will-close bit, so
        // the connection stays open for the next file.
        let last = next.get() >= size;
        if last && eof {
            buf.extend_from_slice(&modee::header(modee::DESC_EOF | modee::DESC_EOD, 0, eods));
        } else if last {
            modee::Encoder::eod(&mut buf);
        }
        let (res, back) = c.data.send(buf, t.cfg.op_timeout, "data send").await;
        if let Some(b) = back {
            c.buf = b;
        }
        res?;
        if last {
            return Ok(carried);
        }
    }
}

async fn retr_file(t: &ThreadCtx, st: &mut SessState, id: u64) -> Result<Outcome, Fail> {
    let (mut data, t0) = begin_transfer(t, st, "RETR", id).await?;
    let Some(ctrl) = st.ctrl.as_mut() else {
        return Err(no_control());
    };
    let size = t.cfg.size.size_of(t.cfg.seed, id);
    let mut got = 0u64;
    let mut mismatch = None;
    let mut buf = std::mem::take(&mut st.buf);
    loop {
        let (res, b) = data.recv(buf, t.cfg.op_timeout).await;
        buf = b;
        let n = match res {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(e),
        };
        if mismatch.is_none() {
            let want = (size.saturating_sub(got)).min(n as u64) as usize;
            if let Some(i) =
                content::first_mismatch(t.cfg.seed, id, got, &buf[..want], &mut st.scratch)
            {
                mismatch = Some(format!(
                    "{}: first differing byte at offset {}",
                    file_name(&t.prefix, id),
                    got + i as u64
                ));
            } else if want < n {
                mismatch = Some(format!(
                    "{}: longer than the {size} bytes sent",
                    file_name(&t.prefix, id)
                ));
            }
        }
        got += n as u64;
    }
    st.buf = buf;
    // Our close_notify in turn (the server may be gone already: nothing depends on it).
    let _ = data.end(t.cfg.op_timeout).await;
    let r = ctrl.reply("RETR final").await?;
    drop(data);
    if !matches!(r.code, 226 | 250) {
        return Err(reply_fail("RETR final", &r));
    }
    if mismatch.is_none() && got != size {
        mismatch = Some(format!(
            "{}: {got} bytes, expected {size}",
            file_name(&t.prefix, id)
        ));
    }
    Ok(Outcome {
        bytes: got,
        latency: t0.elapsed(),
        mismatch,
    })
}
