//! The S3 requests the backend makes, run on a pool of OS threads of their own (`ringest-s3-N`).
//!
//! rusty-s3 signs each request and parses its reply, ureq sends it, blocking, on a worker; the
//! core that asked awaits the worker's eventfd on its own ring ([`WorkerPool`]), so a slow or
//! dead store stalls a worker, never a core. The pool is separate from `spawn_blocking`'s so that
//! uploads waiting on S3 cannot starve logins and listings.
//!
//! Failures are typed ([`S3Error`]) and bounded in time: transient ones (connection refused or
//! lost, timeouts, 5xx, 429) are retried by [`retry::next_delay`](super::retry::next_delay)
//! within a total time, after which the caller gets [`S3Error::Unavailable`] (the server's 451),
//! never a hang.
//!
//! Request bodies are the caller's `Vec<u8>`, moved to the worker and sent from there without a
//! copy; [`S3Client::upload_part`] and [`S3Client::put_object`] hand the buffer back with the
//! result so an upload can refill it. If the awaiting future is dropped, the request still runs
//! to its end on the worker and the buffer is freed there.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, DeleteObject, GetObject,
    HeadObject, ListObjectsV2, PutObject, S3Action, UploadPart,
};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use ureq::http::Response;
use ureq::Body;

use super::credentials::S3Credentials;
use super::retry::{next_delay, RetryPolicy};
use crate::engine::blocking::WorkerPool;

/// Worker threads when the configuration does not say: as many requests in flight as a few
/// uploads each with a part being sent, on a box with a handful of cores.
pub const DEFAULT_THREADS: usize = 8;

/// How long a presigned URL stays valid: longer than any attempt, short enough that a URL seen
/// in a log is soon useless.
const SIGN_FOR: Duration = Duration::from_secs(15 * 60);
/// Largest error or XML reply read (list pages are about 250 KiB at 1000 keys).
const MAX_REPLY: u64 = 16 << 20;

/// Where the bucket is and how requests behave.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:3900`; path-style addressing, so no DNS name per bucket is needed.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub credentials: S3Credentials,
    /// Worker threads (`ringest-s3-0` ...), each with its own HTTP agent and connection pool.
    pub threads: usize,
    /// Establishing one TCP connection.
    pub connect_timeout: Duration,
    /// One read or write on the socket making no progress: a store that stops mid-reply.
    pub io_timeout: Duration,
    /// One attempt in all, body included; also cut to what is left of `retry.total`.
    pub attempt_timeout: Duration,
    /// The total also bounds sending a part's body, so it must leave room for the largest part
    /// at the slowest rate the store is expected to take it (the default 30 s is 64 MiB at
    /// about 2 MiB/s): the backend should size it from the part planner, not leave the default.
    pub retry: RetryPolicy,
    /// Largest body one `get_range` returns.
    pub max_get: u64,
    /// Keys per `list` page (S3 caps it at 1000).
    pub list_page: usize,
}

impl S3Config {
    /// The defaults for everything but where the bucket is and the key.
    pub fn new(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        bucket: impl Into<String>,
        credentials: S3Credentials,
    ) -> S3Config {
        S3Config {
            endpoint: endpoint.into(),
            region: region.into(),
            bucket: bucket.into(),
            credentials,
            threads: DEFAULT_THREADS,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            max_get: 256 << 20,
            list_page: 1000,
        }
    }
}

/// Why a request failed, in the classes the server answers differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    /// No such key (or upload id).
    #[error("{op}: not found")]
    NotFound { op: &'static str },
    /// The key is not allowed this request (401/403).
    #[error("{op}: access denied ({code})")]
    AccessDenied { op: &'static str, code: String },
    /// The store could not be reached or kept failing (connection errors, 5xx, 429) for all the
    /// attempts the retry policy allows.
    #[error("{op}: store unavailable after {attempts} attempt(s): {detail}")]
    Unavailable {
        op: &'static str,
        attempts: u32,
        detail: String,
    },
    /// A request that is not retried (it is not idempotent) timed out after it was sent: whether
    /// the store acted on it is unknown.
    #[error("{op}: timed out; the outcome is unknown")]
    Timeout { op: &'static str },
    /// The store refused the request for a reason of its own (another 4xx, or an error in a 200).
    #[error("{op}: rejected with status {status} {code}: {message}")]
    Rejected {
        op: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// A reply that does not parse or lacks what it must carry.
    #[error("{op}: bad reply: {detail}")]
    BadReply { op: &'static str, detail: String },
    /// The request could not even be built (a bad endpoint, say): a configuration error.
    #[error("{op}: {detail}")]
    Client { op: &'static str, detail: String },
}

impl S3Error {
    /// Whether trying again later may succeed: the server answers these with 451 rather than 550.
    pub fn is_transient(&self) -> bool {
        matches!(self, S3Error::Unavailable { .. } | S3Error::Timeout { .. })
    }
}

/// A multipart upload's id, from CreateMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadId(pub String);

/// A part's ETag, from UploadPart, as the store sent it (quotes included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag(pub String);

/// What HEAD says of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// `None` if the store sent no `Last-Modified` that parses.
    pub mtime: Option<SystemTime>,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// With a delimiter: the "directories" (each ends with the delimiter).
    pub prefixes: Vec<String>,
    /// Pass back to get the next page; `None` on the last one.
    pub continuation: Option<String>,
}

/// How a request may be retried.
#[derive(Clone, Copy)]
enum Retry {
    /// Sending it twice has the effect of sending it once: retried on any transient failure.
    Idempotent,
    /// Retried only when it surely never reached the store (the connection was refused or
    /// never established), since a second CreateMultipartUpload would start a second upload.
    UnsentOnly,
}

/// One attempt's failure.
enum Failure {
    Final(S3Error),
    Transient {
        detail: String,
        /// The request may have reached the store.
        sent: bool,
        timed_out: bool,
    },
}

impl From<S3Error> for Failure {
    fn from(e: S3Error) -> Failure {
        Failure::Final(e)
    }
}

/// What every worker needs to sign and send.
struct Inner {
    bucket: Bucket,
    creds: Credentials,
    retry: RetryPolicy,
    attempt_timeout: Duration,
    max_get: u64,
    list_page: usize,
}

/// The client the cores share (it is `Send + Sync`; put it in an `Arc`). Dropping it lets the
/// workers finish the requests in flight and exit.
pub struct S3Client {
    inner: Arc<Inner>,
    pool: WorkerPool<ureq::Agent>,
    endpoint: String,
    key_id: String,
}

impl fmt::Debug for S3Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Client")
            .field("endpoint", &self.endpoint)
            .field("region", &self.inner.bucket.region())
            .field("bucket", &self.inner.bucket.name())
            .field("key_id", &self.key_id)
            .field("threads", &self.pool.threads())
            .finish_non_exhaustive()
    }
}

impl S3Client {
    /// Checks the endpoint and starts the worker threads.
    pub fn new(cfg: S3Config) -> Result<S3Client, S3Error> {
        let client_err = |detail: String| S3Error::Client {
            op: "S3 client",
            detail,
        };
        let url = cfg
            .endpoint
            .parse()
            .map_err(|e| client_err(format!("endpoint {:?}: {e}", cfg.endpoint)))?;
        let bucket = Bucket::new(url, UrlStyle::Path, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| client_err(format!("bucket {:?}: {e}", cfg.bucket)))?;
        let (connect, io) = (cfg.connect_timeout, cfg.io_timeout);
        let pool = WorkerPool::new("ringest-s3", cfg.threads, move |_| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(connect))
                .timeout_per_read(Some(io))
                .timeout_per_write(Some(io))
                .build()
                .into()
        })
        .map_err(|e| client_err(format!("starting S3 worker threads: {e}")))?;
        Ok(S3Client {
            inner: Arc::new(Inner {
                bucket,
                creds: Credentials::new(cfg.credentials.key_id.clone(), cfg.credentials.secret()),
                retry: cfg.retry,
                attempt_timeout: cfg.attempt_timeout,
                max_get: cfg.max_get,
                list_page: cfg.list_page,
            }),
            pool,
            endpoint: cfg.endpoint,
            key_id: cfg.credentials.key_id,
        })
    }

    /// Largest body one [`S3Client::get_range`] returns (`max_get`): a reader asks for at most this
    /// much at a time.
    pub fn max_get(&self) -> u64 {
        self.inner.max_get
    }

    /// Runs `f` on a worker with its agent. A worker that panicked is reported as `Unavailable`.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, S3Error>
    where
        T: Send + 'static,
        F: FnOnce(&Call, &ureq::Agent) -> Result<T, S3Error> + Send + 'static,
    {
        let inner = self.inner.clone();
        let since = Instant::now();
        self.pool
            .run(move |agent: &mut ureq::Agent| {
                f(
                    &Call {
                        inner: &inner,
                        since,
                    },
                    agent,
                )
            })
            .await
            .unwrap_or_else(|e| Err(worker_lost(op, e)))
    }

    /// [`S3Client::run`] for a request that sends `body`: the buffer comes back with the result
    /// (`None` if the worker was lost), so an upload can refill it.
    async fn run_with_body<T, B, F>(
        &self,
        op: &'static str,
        body: B,
        f: F,
    ) -> (Result<T, S3Error>, Option<B>)
    where
        T: Send + 'static,
        B: AsRef<[u8]> + Send + 'static,
        F: FnOnce(&Call, &ureq::Agent, &[u8]) -> Result<T, S3Error> + Send + 'static,
    {
        let inner = self.inner.clone();
        let since = Instant::now();
        self.pool
            .run(move |agent: &mut ureq::Agent| {
                let call = Call {
                    inner: &inner,
                    since,
                };
                (f(&call, agent, body.as_ref()), Some(body))
            })
            .await
            .unwrap_or_else(|e| (Err(worker_lost(op, e)), None))
    }

    /// Stores `body` as `key` in one PUT (retried: a PUT of the same bytes is idempotent). The
    /// buffer comes back with the result.
    pub async fn put_object<B: AsRef<[u8]> + Send + 'static>(
        &self,
        key: &str,
        body: B,
    ) -> (Result<(), S3Error>, Option<B>) {
        const OP: &str = "PutObject";
        let key = key.to_string();
        self.run_with_body(OP, body, move |inner, agent, body| {
            inner.with_retries(OP, Retry::Idempotent, |timeout| {
                let url = PutObject::new(&inner.bucket, Some(&inner.creds), &key).sign(SIGN_FOR);
                let req = timed(agent.put(url.as_str()), timeout);
                check(OP, req.send(body)).map(drop)
            })
        })
        .await
    }

    /// Starts a multipart upload. Retried only if the store was never reached: a retry after a
    /// lost reply would start a second upload nobody completes or aborts.
    pub async fn create_multipart(&self, key: &str) -> Result<UploadId, S3Error> {
        const OP: &str = "CreateMultipartUpload";
        let key = key.to_string();
        self.run(OP, move |inner, agent| {
            inner.with_retries(OP, Retry::UnsentOnly, |timeout| {
                let url = CreateMultipartUpload::new(&inner.bucket, Some(&inner.creds), &key)
                    .sign(SIGN_FOR);
                let req = timed(agent.post(url.as_str()), timeout);
                let text = read_text(OP, check(OP, req.send_empty())?)?;
                let parsed = CreateMultipartUpload::parse_response(&text)
                    .map_err(|e| bad_reply(OP, format!("{e}")))?;
                Ok(UploadId(parsed.upload_id().to_string()))
            })
        })
        .await
    }

    /// Sends part `part_no` (from 1) of an upload and returns its ETag, with the buffer. Retried:
    /// a part sent again replaces the first copy.
    pub async fn upload_part<B: AsRef<[u8]> + Send + 'static>(
        &self,
        key: &str,
        id: &UploadId,
        part_no: u16,
        body: B,
    ) -> (Result<ETag, S3Error>, Option<B>) {
        const OP: &str = "UploadPart";
        let key = key.to_string();
        let id = id.0.clone();
        self.run_with_body(OP, body, move |inner, agent, body| {
            inner.with_retries(OP, Retry::Idempotent, |timeout| {
                let url = UploadPart::new(&inner.bucket, Some(&inner.creds), &key, part_no, &id)
                    .sign(SIGN_FOR);
                let req = timed(agent.put(url.as_str()), timeout);
                let resp = check(OP, req.send(body))?;
                resp.headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(|s| ETag(s.to_string()))
                    .ok_or_else(|| bad_reply(OP, "no ETag".into()).into())
            })
        })
        .await
    }

    /// Completes an upload from its parts' ETags, `parts[0]` being part 1. Not retried once
    /// sent (a lost reply leaves the outcome unknown: [`S3Error::Timeout`]); a `200` carrying an
    /// `<Error>` is an error.
    pub async fn complete_multipart(
        &self,
        key: &str,
        id: &UploadId,
        parts: Vec<ETag>,
    ) -> Result<(), S3Error> {
        const OP: &str = "CompleteMultipartUpload";
        let key = key.to_string();
        let id = id.0.clone();
        self.run(OP, move |inner, agent| {
            inner.with_retries(OP, Retry::UnsentOnly, |timeout| {
                let action = CompleteMultipartUpload::new(
                    &inner.bucket,
                    Some(&inner.creds),
                    &key,
                    &id,
                    parts.iter().map(|e| e.0.as_str()),
                );
                let url = action.sign(SIGN_FOR);
                let xml = action.body();
                let req = timed(agent.post(url.as_str()), timeout);
                let text = read_text(OP, check(OP, req.send(xml.as_bytes()))?)?;
                error_in_ok(OP, &text)
            })
        })
        .await
    }

    /// Abandons an upload and frees its parts. Retried; an upload already gone is success, so a
    /// retry after a lost reply does not fail.
    pub async fn abort_multipart(&self, key: &str, id: &UploadId) -> Result<(), S3Error> {
        const OP: &str = "AbortMultipartUpload";
        let key = key.to_string();
        let id = id.0.clone();
        let res = self
            .run(OP, move |inner, agent| {
                inner.with_retries(OP, Retry::Idempotent, |timeout| {
                    let url =
                        AbortMultipartUpload::new(&inner.bucket, Some(&inner.creds), &key, &id)
                            .sign(SIGN_FOR);
                    let req = timed(agent.delete(url.as_str()), timeout);
                    check(OP, req.call()).map(drop)
                })
            })
            .await;
        match res {
            Err(S3Error::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// Bytes `start..end` of an object (`end` exclusive, `None` for the rest). A range starting
    /// at or past the end of a non-empty object is `Rejected` with status 416, as S3 answers it.
    pub async fn get_range(
        &self,
        key: &str,
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<u8>, S3Error> {
        const OP: &str = "GetObject";
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let key = key.to_string();
        self.run(OP, move |inner, agent| {
            let whole = start == 0 && end.is_none();
            let limit = end.map_or(inner.max_get, |e| (e - start).min(inner.max_get));
            inner.with_retries(OP, Retry::Idempotent, |timeout| {
                let mut action = GetObject::new(&inner.bucket, Some(&inner.creds), &key);
                let range = match end {
                    Some(e) => format!("bytes={start}-{}", e - 1),
                    None => format!("bytes={start}-"),
                };
                // Signed, so nothing between us and the store can change which bytes come back.
                action.headers_mut().insert("range", range.clone());
                let url = action.sign(SIGN_FOR);
                let req = timed(agent.get(url.as_str()).header("range", &range), timeout);
                let mut resp = check(OP, req.call())?;
                // A store that ignores Range answers 200 with the whole object: right only if
                // the whole object was asked for.
                if resp.status() != 206 && !whole {
                    return Err(Failure::Final(bad_reply(
                        OP,
                        format!("status {} to a ranged GET", resp.status()),
                    )));
                }
                resp.body_mut()
                    .with_config()
                    .limit(limit)
                    .read_to_vec()
                    .map_err(|e| body_failure(OP, e))
            })
        })
        .await
    }

    /// The object's size and mtime, or `None` if there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, S3Error> {
        const OP: &str = "HeadObject";
        let key = key.to_string();
        let res = self
            .run(OP, move |inner, agent| {
                inner.with_retries(OP, Retry::Idempotent, |timeout| {
                    let url =
                        HeadObject::new(&inner.bucket, Some(&inner.creds), &key).sign(SIGN_FOR);
                    let req = timed(agent.head(url.as_str()), timeout);
                    let resp = check(OP, req.call())?;
                    let header =
                        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
                    let size = header("content-length")
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or_else(|| Failure::Final(bad_reply(OP, "no Content-Length".into())))?;
                    let mtime = header("last-modified").and_then(parse_http_date);
                    Ok(ObjectMeta { size, mtime })
                })
            })
            .await;
        match res {
            Ok(meta) => Ok(Some(meta)),
            Err(S3Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of keys under `prefix`; with a `delimiter`, keys past it are folded into
    /// `prefixes`. `continuation` is the previous page's.
    pub async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<ListPage, S3Error> {
        const OP: &str = "ListObjectsV2";
        let prefix = prefix.to_string();
        let delimiter = delimiter.map(str::to_string);
        let continuation = continuation.map(str::to_string);
        self.run(OP, move |inner, agent| {
            inner.with_retries(OP, Retry::Idempotent, |timeout| {
                let mut action = ListObjectsV2::new(&inner.bucket, Some(&inner.creds));
                action.with_max_keys(inner.list_page);
                if !prefix.is_empty() {
                    action.with_prefix(prefix.as_str());
                }
                if let Some(d) = &delimiter {
                    action.with_delimiter(d.as_str());
                }
                if let Some(c) = &continuation {
                    action.with_continuation_token(c.as_str());
                }
                let url = action.sign(SIGN_FOR);
                let req = timed(agent.get(url.as_str()), timeout);
                let text = read_text(OP, check(OP, req.call())?)?;
                let parsed = ListObjectsV2::parse_response(&text)
                    .map_err(|e| Failure::Final(bad_reply(OP, format!("{e}"))))?;
                let objects = parsed
                    .contents
                    .into_iter()
                    .map(|o| {
                        Ok(ListedObject {
                            size: o.size.ok_or_else(|| {
                                Failure::Final(bad_reply(OP, format!("no size for {:?}", o.key)))
                            })?,
                            mtime: o.last_modified.as_deref().and_then(parse_iso8601),
                            key: o.key,
                        })
                    })
                    .collect::<Result<_, Failure>>()?;
                Ok(ListPage {
                    objects,
                    prefixes: parsed
                        .common_prefixes
                        .into_iter()
                        .map(|p| p.prefix)
                        .collect(),
                    continuation: parsed.next_continuation_token,
                })
            })
        })
        .await
    }

    /// Deletes an object; deleting one that does not exist is success, as in S3.
    pub async fn delete(&self, key: &str) -> Result<(), S3Error> {
        const OP: &str = "DeleteObject";
        let key = key.to_string();
        self.run(OP, move |inner, agent| {
            inner.with_retries(OP, Retry::Idempotent, |timeout| {
                let url = DeleteObject::new(&inner.bucket, Some(&inner.creds), &key).sign(SIGN_FOR);
                let req = timed(agent.delete(url.as_str()), timeout);
                check(OP, req.call()).map(drop)
            })
        })
        .await
    }

    /// Server-side copy within the bucket (CopyObject: a PUT with `x-amz-copy-source`, which
    /// rusty-s3 has no action for). Retried: copying the same source again gives the same object.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), S3Error> {
        const OP: &str = "CopyObject";
        let (from, to) = (from.to_string(), to.to_string());
        self.run(OP, move |inner, agent| {
            let source = format!("/{}/{}", inner.bucket.name(), encode_key(&from));
            inner.with_retries(OP, Retry::Idempotent, |timeout| {
                let mut action = PutObject::new(&inner.bucket, Some(&inner.creds), &to);
                action
                    .headers_mut()
                    .insert("x-amz-copy-source", source.clone());
                let url = action.sign(SIGN_FOR);
                let req = timed(
                    agent.put(url.as_str()).header("x-amz-copy-source", &source),
                    timeout,
                );
                let text = read_text(OP, check(OP, req.send_empty())?)?;
                error_in_ok(OP, &text)
            })
        })
        .await
    }

    /// The name of the worker thread a job runs on (for tests of the pool itself).
    #[doc(hidden)]
    pub async fn worker_name(&self) -> Option<String> {
        self.run("worker", |_, _| {
            Ok(std::thread::current().name().map(str::to_string))
        })
        .await
        .ok()
        .flatten()
    }
}

/// One request on a worker: the client's settings, and when the core asked.
struct Call<'a> {
    inner: &'a Inner,
    /// When the request was queued: the total time counts from here, so a request that waited
    /// for a free worker (all of them busy retrying against a dead store) still gets its answer
    /// within the bound instead of a full retry budget of its own after the wait.
    since: Instant,
}

impl std::ops::Deref for Call<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        self.inner
    }
}

impl Call<'_> {
    /// Runs `attempt` until it succeeds, fails for good, or the retry policy gives up. Each
    /// attempt is given the time it may take: the attempt timeout, cut to what is left of the
    /// total, so the whole call ends within about `retry.total` of being queued.
    fn with_retries<T>(
        &self,
        op: &'static str,
        retry: Retry,
        mut attempt: impl FnMut(Duration) -> Result<T, Failure>,
    ) -> Result<T, S3Error> {
        let start = self.since;
        let mut failed = 0u32;
        if start.elapsed() >= self.retry.total {
            return Err(S3Error::Unavailable {
                op,
                attempts: 0,
                detail: "no S3 worker was free within the total time".into(),
            });
        }
        loop {
            let left = self.retry.total.saturating_sub(start.elapsed());
            let timeout = self.attempt_timeout.min(left).max(Duration::from_millis(1));
            let (detail, sent, timed_out) = match attempt(timeout) {
                Ok(v) => return Ok(v),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient {
                    detail,
                    sent,
                    timed_out,
                }) => (detail, sent, timed_out),
            };
            failed += 1;
            if sent && matches!(retry, Retry::UnsentOnly) {
                return Err(if timed_out {
                    S3Error::Timeout { op }
                } else {
                    S3Error::Unavailable {
                        op,
                        attempts: failed,
                        detail,
                    }
                });
            }
            match next_delay(&self.retry, failed, start.elapsed(), jitter()) {
                Some(d) => {
                    tracing::debug!(op, attempt = failed, delay = ?d, %detail, "S3 request failed, retrying");
                    std::thread::sleep(d);
                }
                None => {
                    return Err(S3Error::Unavailable {
                        op,
                        attempts: failed,
                        detail,
                    })
                }
            }
        }
    }
}

fn jitter() -> u32 {
    // A failed draw only loses the spread, never the retry.
    getrandom::u32().unwrap_or(u32::MAX / 2)
}

fn worker_lost(op: &'static str, e: std::io::Error) -> S3Error {
    S3Error::Unavailable {
        op,
        attempts: 0,
        detail: format!("S3 worker: {e}"),
    }
}

fn bad_reply(op: &'static str, detail: String) -> S3Error {
    S3Error::BadReply { op, detail }
}

/// A 2xx reply, or the failure its status or transport error means.
fn check(
    op: &'static str,
    resp: Result<Response<Body>, ureq::Error>,
) -> Result<Response<Body>, Failure> {
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => return Err(transport_failure(op, e)),
    };
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Ok(resp);
    }
    // HEAD replies have no body; a body that does not read is no reason to lose the status.
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    let (code, message) = error_fields(&text);
    Err(match status {
        500..=599 | 429 => Failure::Transient {
            detail: format!("status {status} {code}"),
            sent: true,
            timed_out: false,
        },
        404 => Failure::Final(S3Error::NotFound { op }),
        401 | 403 => Failure::Final(S3Error::AccessDenied { op, code }),
        _ => Failure::Final(S3Error::Rejected {
            op,
            status,
            code,
            message,
        }),
    })
}

/// What a transport error means for retrying: the connection phase failing means the request
/// never left; anything later may have reached the store.
fn transport_failure(op: &'static str, e: ureq::Error) -> Failure {
    use ureq::Timeout as T;
    let (sent, timed_out) = match &e {
        ureq::Error::Timeout(T::Connect | T::Resolve) => (false, true),
        ureq::Error::Timeout(_) => (true, true),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => (false, false),
        ureq::Error::Io(io) => (
            !matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::AddrNotAvailable
            ),
            false,
        ),
        ureq::Error::Protocol(_) => (true, false),
        _ => {
            return Failure::Final(S3Error::Client {
                op,
                detail: e.to_string(),
            })
        }
    };
    Failure::Transient {
        detail: e.to_string(),
        sent,
        timed_out,
    }
}

/// A failure while reading a reply body after its status: transient unless it was too large.
fn body_failure(op: &'static str, e: ureq::Error) -> Failure {
    match e {
        ureq::Error::BodyExceedsLimit(n) => {
            Failure::Final(bad_reply(op, format!("reply larger than {n} bytes")))
        }
        other => transport_failure(op, other),
    }
}

fn read_text(op: &'static str, mut resp: Response<Body>) -> Result<String, Failure> {
    resp.body_mut()
        .with_config()
        .limit(MAX_REPLY)
        .read_to_string()
        .map_err(|e| body_failure(op, e))
}

/// CompleteMultipartUpload and CopyObject can fail after sending `200`: the error is the body.
fn error_in_ok(op: &'static str, text: &str) -> Result<(), Failure> {
    if !text.contains("<Error>") {
        return Ok(());
    }
    let (code, message) = error_fields(text);
    if matches!(
        code.as_str(),
        "InternalError" | "SlowDown" | "ServiceUnavailable"
    ) {
        return Err(Failure::Transient {
            detail: format!("{code} in a 200 reply"),
            sent: true,
            timed_out: false,
        });
    }
    Err(Failure::Final(S3Error::Rejected {
        op,
        status: 200,
        code,
        message,
    }))
}

/// `Code` and `Message` of an S3 error document, empty when absent. A text search rather than an
/// XML parse: the error body is only for the message, and any reply must yield one.
fn error_fields(text: &str) -> (String, String) {
    let field = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        text.find(&open)
            .map(|i| &text[i + open.len()..])
            .and_then(|rest| rest.find(&close).map(|j| rest[..j].trim().to_string()))
            .unwrap_or_default()
    };
    (field("Code"), field("Message"))
}

/// A key as `x-amz-copy-source` wants it: percent-encoded, `/` kept.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn to_system_time(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
) -> Option<SystemTime> {
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return None;
    }
    let days = crate::proto::site::days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// An HTTP date (`Last-Modified`), IMF-fixdate form: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let mut it = s.split_ascii_whitespace();
    let (_weekday, day, month, year, time, zone) = (
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    );
    if zone != "GMT" || it.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let (h, m, sec) = parse_hms(time)?;
    to_system_time(year.parse().ok()?, month, day.parse().ok()?, h, m, sec)
}

/// An ISO 8601 UTC time as listings carry it: `2026-11-30T21:58:25.123Z` (fraction optional,
/// and dropped: FTP shows whole seconds).
fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (y, mo, day) = (d.next()?, d.next()?, d.next()?);
    let time = time.split_once('.').map_or(time, |(t, _)| t);
    let (h, m, sec) = parse_hms(time)?;
    to_system_time(
        y.parse().ok()?,
        mo.parse().ok()?,
        day.parse().ok()?,
        h,
        m,
        sec,
    )
}

fn parse_hms(s: &str) -> Option<(i64, i64, i64)> {
    let mut t = s.splitn(3, ':');
    let num = |p: Option<&str>| -> Option<i64> {
        let p = p?;
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse().ok())
            .flatten()
    };
    Some((num(t.next())?, num(t.next())?, num(t.next())?))
}

/// `req` bounded by `timeout` as a whole (connect, send, reply), the per-attempt limit each retry
/// gets from [`Call::with_retries`].
fn timed<B>(req: ureq::RequestBuilder<B>, timeout: Duration) -> ureq::RequestBuilder<B> {
    req.config().timeout_global(Some(timeout)).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            at(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), at(0));
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT"),
            at(1_709_251_199)
        );
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso_dates() {
        assert_eq!(parse_iso8601("1994-11-06T08:49:37.000Z"), at(784_111_777));
        assert_eq!(parse_iso8601("1994-11-06T08:49:37Z"), at(784_111_777));
        assert_eq!(parse_iso8601("2024-02-29T23:59:59.999Z"), at(1_709_251_199));
        for bad in [
            "",
            "1994-11-06T08:49:37",
            "1994-13-06T08:49:37Z",
            "1994-11-06 08:49:37Z",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_documents() {
        let doc = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>\
                   <Message>Key not found</Message><Resource>/b/k</Resource></Error>";
        assert_eq!(
            error_fields(doc),
            ("NoSuchKey".to_string(), "Key not found".to_string())
        );
        assert_eq!(error_fields(""), (String::new(), String::new()));
        assert_eq!(error_fields("<Code>x"), (String::new(), String::new()));
        assert!(error_in_ok("op", "<CompleteMultipartUploadResult/>").is_ok());
        assert!(matches!(
            error_in_ok("op", doc),
            Err(Failure::Final(S3Error::Rejected { status: 200, .. }))
        ));
        assert!(matches!(
            error_in_ok("op", "<Error><Code>InternalError</Code></Error>"),
            Err(Failure::Transient { sent: true, .. })
        ));
    }

    #[test]
    fn copy_source_keys_are_encoded() {
        assert_eq!(encode_key("a/b-c_d.e~f"), "a/b-c_d.e~f");
        assert_eq!(
            encode_key("dir/with space+plus%"),
            "dir/with%20space%2Bplus%25"
        );
        assert_eq!(encode_key("é"), "%C3%A9");
    }

    #[test]
    fn transient_classes() {
        assert!(S3Error::Unavailable {
            op: "x",
            attempts: 1,
            detail: String::new()
        }
        .is_transient());
        assert!(S3Error::Timeout { op: "x" }.is_transient());
        assert!(!S3Error::NotFound { op: "x" }.is_transient());
    }

    #[test]
    fn client_debug_hides_the_secret_and_workers_are_named() {
        let secret = "very-secret-value";
        let cfg = S3Config {
            threads: 2,
            ..S3Config::new(
                "http://127.0.0.1:9",
                "garage",
                "b",
                S3Credentials::new("GKid", secret),
            )
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains(secret), "{shown}");
        let client = S3Client::new(cfg).unwrap();
        let shown = format!("{client:?}");
        assert!(shown.contains("GKid") && !shown.contains(secret), "{shown}");
        let cfg = crate::engine::RuntimeConfig {
            entries: 64,
            buffers: 0,
            buffer_size: 4096,
            pipes: 0,
            pipe_size: 1 << 16,
        };
        let name = crate::engine::block_on(0, &cfg, async move { client.worker_name().await })
            .unwrap()
            .unwrap();
        assert!(name.starts_with("ringest-s3-"), "{name}");
    }

    #[test]
    fn the_client_can_be_shared_by_the_cores() {
        fn shared<T: Send + Sync>() {}
        shared::<S3Client>();
    }

    #[test]
    fn bad_endpoint_is_a_client_error() {
        let cfg = S3Config::new("not a url", "r", "b", S3Credentials::new("k", "s"));
        assert!(matches!(S3Client::new(cfg), Err(S3Error::Client { .. })));
    }
}
