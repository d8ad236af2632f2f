//! A small blocking S3 client for tests: checks what a store holds independently of the server
//! under test. rusty-s3 signs the requests (presigned URLs) and parses the XML replies; ureq
//! sends them. Every call has a timeout, so a store that hangs fails the test instead of hanging
//! it.

use std::time::Duration;

use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, DeleteObject, GetObject,
    HeadObject, ListObjectsV2, PutObject, S3Action, UploadPart,
};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use super::garage::Garage;

/// How long a presigned URL stays valid (a test is over long before).
const SIGN_FOR: Duration = Duration::from_secs(600);
/// One request, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest body a test reads back in one GET.
const MAX_BODY: u64 = 1 << 30;

pub struct S3 {
    bucket: Bucket,
    creds: Credentials,
    agent: ureq::Agent,
}

/// A reply whose status was not 2xx.
#[derive(Debug)]
pub struct S3Error {
    pub what: String,
    pub status: Option<u16>,
    pub body: String,
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: status {:?}: {}", self.what, self.status, self.body)
    }
}

type Result<T> = std::result::Result<T, S3Error>;

impl S3 {
    pub fn new(endpoint: &str, region: &str, bucket: &str, key_id: &str, secret: &str) -> S3 {
        let url = endpoint.parse().expect("endpoint URL");
        // Path style: the bucket is in the path, so 127.0.0.1 works without DNS names per bucket.
        let bucket = Bucket::new(url, UrlStyle::Path, bucket.to_string(), region.to_string())
            .expect("bucket");
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        S3 {
            bucket,
            creds: Credentials::new(key_id, secret),
            agent,
        }
    }

    /// A client for `g`'s bucket through node 0's endpoint.
    pub fn for_garage(g: &Garage) -> S3 {
        S3::for_garage_node(g, 0)
    }

    /// A client for `g`'s bucket through node `i`'s endpoint.
    pub fn for_garage_node(g: &Garage, i: usize) -> S3 {
        S3::new(
            &g.nodes[i].endpoint(),
            &g.region,
            &g.bucket,
            &g.key_id,
            &g.secret,
        )
    }

    pub fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let url = PutObject::new(&self.bucket, Some(&self.creds), key).sign(SIGN_FOR);
        let resp = self.agent.put(url.as_str()).send(data);
        self.check(resp, "PutObject").map(drop)
    }

    /// The object's bytes, or `Ok(None)` if there is no such object.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let url = GetObject::new(&self.bucket, Some(&self.creds), key).sign(SIGN_FOR);
        let resp = self.agent.get(url.as_str()).call();
        let mut resp = match resp {
            Ok(r) if r.status() == 404 => return Ok(None),
            other => self.check(other, "GetObject")?,
        };
        resp.body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map(Some)
            .map_err(|e| S3Error {
                what: "GetObject body".into(),
                status: None,
                body: e.to_string(),
            })
    }

    /// Whether the object exists (HEAD).
    pub fn exists(&self, key: &str) -> Result<bool> {
        let url = HeadObject::new(&self.bucket, Some(&self.creds), key).sign(SIGN_FOR);
        match self.agent.head(url.as_str()).call() {
            Ok(r) if r.status() == 404 => Ok(false),
            other => self.check(other, "HeadObject").map(|_| true),
        }
    }

    /// Bytes `start..` of the object (a ranged GET, as a REST download will send it).
    pub fn get_from(&self, key: &str, start: u64) -> Result<Vec<u8>> {
        let mut action = GetObject::new(&self.bucket, Some(&self.creds), key);
        let range = format!("bytes={start}-");
        // Signed with the request, so a proxy cannot strip or change it unnoticed.
        action.headers_mut().insert("range", range.clone());
        let url = action.sign(SIGN_FOR);
        let resp = self.agent.get(url.as_str()).header("range", &range).call();
        let mut resp = self.check(resp, "GetObject (range)")?;
        resp.body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| S3Error {
                what: "GetObject (range) body".into(),
                status: None,
                body: e.to_string(),
            })
    }

    /// Server-side copy of `from` to `to` in the same bucket (CopyObject: a PUT with
    /// `x-amz-copy-source`; rusty-s3 has no action of its own for it). RNTO will be this plus a
    /// delete.
    pub fn copy(&self, from: &str, to: &str) -> Result<()> {
        let mut action = PutObject::new(&self.bucket, Some(&self.creds), to);
        let source = format!("/{}/{}", self.bucket.name(), from);
        action
            .headers_mut()
            .insert("x-amz-copy-source", source.clone());
        let url = action.sign(SIGN_FOR);
        let resp = self
            .agent
            .put(url.as_str())
            .header("x-amz-copy-source", &source)
            .send_empty();
        // Like CompleteMultipartUpload, a copy can fail after its 200.
        let text = self.body(resp, "CopyObject")?;
        if text.contains("<Error>") {
            return Err(S3Error {
                what: "CopyObject".into(),
                status: Some(200),
                body: text,
            });
        }
        Ok(())
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        let url = DeleteObject::new(&self.bucket, Some(&self.creds), key).sign(SIGN_FOR);
        let resp = self.agent.delete(url.as_str()).call();
        self.check(resp, "DeleteObject").map(drop)
    }

    /// Keys under `prefix` (first page of ListObjectsV2, up to 1000 keys).
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut action = ListObjectsV2::new(&self.bucket, Some(&self.creds));
        action.with_prefix(prefix);
        let url = action.sign(SIGN_FOR);
        let body = self.body(self.agent.get(url.as_str()).call(), "ListObjectsV2")?;
        let parsed = ListObjectsV2::parse_response(&body).map_err(|e| S3Error {
            what: "ListObjectsV2 reply".into(),
            status: None,
            body: format!("{e}: {body}"),
        })?;
        Ok(parsed.contents.into_iter().map(|o| o.key).collect())
    }

    /// Every key under `prefix` with its size, following continuation tokens (bounded: at most
    /// 1,000 pages).
    pub fn list_all(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let mut action = ListObjectsV2::new(&self.bucket, Some(&self.creds));
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGN_FOR);
            let body = self.body(self.agent.get(url.as_str()).call(), "ListObjectsV2")?;
            let parsed = ListObjectsV2::parse_response(&body).map_err(|e| S3Error {
                what: "ListObjectsV2 reply".into(),
                status: None,
                body: format!("{e}: {body}"),
            })?;
            out.extend(
                parsed
                    .contents
                    .into_iter()
                    .map(|o| (o.key, o.size.unwrap_or(0))),
            );
            match parsed.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
        Err(S3Error {
            what: "ListObjectsV2".into(),
            status: None,
            body: format!("more than 1,000 pages under {prefix:?}"),
        })
    }

    /// Starts a multipart upload; returns its upload id.
    pub fn create_multipart(&self, key: &str) -> Result<String> {
        let url = CreateMultipartUpload::new(&self.bucket, Some(&self.creds), key).sign(SIGN_FOR);
        let body = self.body(
            self.agent.post(url.as_str()).send_empty(),
            "CreateMultipartUpload",
        )?;
        let parsed = CreateMultipartUpload::parse_response(&body).map_err(|e| S3Error {
            what: "CreateMultipartUpload reply".into(),
            status: None,
            body: format!("{e}: {body}"),
        })?;
        Ok(parsed.upload_id().to_string())
    }

    /// Uploads part `number` (from 1); returns its ETag.
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        data: &[u8],
    ) -> Result<String> {
        let url =
            UploadPart::new(&self.bucket, Some(&self.creds), key, number, upload_id).sign(SIGN_FOR);
        let resp = self.check(self.agent.put(url.as_str()).send(data), "UploadPart")?;
        resp.headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| S3Error {
                what: "UploadPart".into(),
                status: Some(resp.status().as_u16()),
                body: "no ETag in the reply".into(),
            })
    }

    /// Completes the upload from its parts' ETags, in part order.
    pub fn complete_multipart(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<()> {
        let action = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&self.creds),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGN_FOR);
        let body = action.body();
        let resp = self.agent.post(url.as_str()).send(body.as_bytes());
        // A CompleteMultipartUpload can fail with 200 and an <Error> body; check both.
        let text = self.body(resp, "CompleteMultipartUpload")?;
        if text.contains("<Error>") {
            return Err(S3Error {
                what: "CompleteMultipartUpload".into(),
                status: Some(200),
                body: text,
            });
        }
        Ok(())
    }

    pub fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let url = AbortMultipartUpload::new(&self.bucket, Some(&self.creds), key, upload_id)
            .sign(SIGN_FOR);
        let resp = self.agent.delete(url.as_str()).call();
        self.check(resp, "AbortMultipartUpload").map(drop)
    }

    fn check(
        &self,
        resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        match resp {
            Ok(r) if r.status().is_success() => Ok(r),
            Ok(mut r) => Err(S3Error {
                what: what.into(),
                status: Some(r.status().as_u16()),
                body: r.body_mut().read_to_string().unwrap_or_default(),
            }),
            Err(e) => Err(S3Error {
                what: what.into(),
                status: None,
                body: e.to_string(),
            }),
        }
    }

    fn body(
        &self,
        resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> Result<String> {
        let mut r = self.check(resp, what)?;
        r.body_mut().read_to_string().map_err(|e| S3Error {
            what: format!("{what} body"),
            status: None,
            body: e.to_string(),
        })
    }
}

/// Runs `f` on an engine runtime without registered buffers: for tests that drive the server's
/// own S3 code (its client, its file commands) directly.
pub fn run<F>(f: F) -> F::Output
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    let cfg = ringest::engine::RuntimeConfig {
        entries: 64,
        buffers: 0,
        buffer_size: 4096,
        pipes: 0,
        pipe_size: 1 << 16,
    };
    ringest::engine::block_on(0, &cfg, f).expect("engine runtime")
}

/// The server's S3 client settings for `g`'s bucket and key, with four sender threads.
pub fn garage_config(g: &Garage) -> ringest::server::storage::s3::client::S3Config {
    use ringest::server::storage::s3::client::S3Config;
    use ringest::server::storage::s3::credentials::S3Credentials;
    S3Config {
        threads: 4,
        ..S3Config::new(
            g.endpoint.clone(),
            g.region.clone(),
            g.bucket.clone(),
            S3Credentials::new(g.key_id.clone(), g.secret.clone()),
        )
    }
}
