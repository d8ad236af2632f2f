//! The session's file commands, listings and downloads on a bucket: the S3 backend's counterpart
//! of `local::ops` and the read half of `local::fs`, for one user ([`S3Files`]).
//!
//! Object stores have no directories (see `names` for the convention used instead), no rename, no
//! permissions and no settable times, so several commands mean something narrower here than on a
//! file system; each is documented where it is run ([`S3Files::run`]). Every request goes through
//! the shared [`S3Client`], which runs it on its own threads: nothing here blocks a core.
//!
//! Errors come back as `io::Error` with the errno a file system would give for the same
//! situation (ENOENT, EEXIST, ENOTEMPTY, EISDIR, ENOTDIR, EPERM), so the session's replies are
//! the same as for the local backend; a store that cannot be reached is an error of its own with a
//! short text ([`io_error`]).

use std::io;
use std::rc::Rc;
use std::sync::Arc;

use crate::engine::blocking;
use crate::proto::checksum::{Algo, Digest};
use crate::proto::glob::Glob;
use crate::proto::listing::{self, Entry, FactPerms, FactSet};
use crate::proto::path::VPath;
use crate::proto::session::{FsError, FsOp, FsOutcome};
use crate::server::storage::{fs_error, now_secs};

use super::client::{ObjectMeta, S3Client, S3Error};
use super::names::{self, DirListing};

/// Bytes fetched per GET while computing a checksum (and hashed on the blocking pool, so a core
/// never spends tens of milliseconds hashing).
const CHECKSUM_CHUNK: u64 = 8 << 20;

/// What a path names in the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An object: its size and time.
    File(ObjectMeta),
    /// A directory, with its marker's metadata when it has a marker (`None`: the root, or a
    /// directory implied only by keys beneath it).
    Dir(Option<ObjectMeta>),
    Missing,
}

/// One user's view of the bucket: every key of theirs starts with `prefix` (`""` or ending in
/// `/`). Cheap to clone (the client is shared by all cores, the prefix by the session's clones).
#[derive(Clone)]
pub struct S3Files {
    client: Arc<S3Client>,
    prefix: Rc<str>,
    max_list: usize,
    refuse_overwrite: bool,
}

fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

impl S3Files {
    /// The view of the keys under `prefix`. A non-empty prefix that does not end in `/` gets one:
    /// `users/bob` must not also see `users/bobby/...`. Listings stop at `max_list` entries.
    pub fn new(client: Arc<S3Client>, prefix: String, max_list: usize) -> S3Files {
        let mut prefix = prefix;
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        S3Files {
            client,
            prefix: prefix.into(),
            max_list,
            refuse_overwrite: false,
        }
    }

    /// Whether RNTO may replace an existing file (the `overwrite = "refuse"` policy; the default
    /// is to replace, as `rename(2)` does).
    pub fn refusing_overwrite(mut self, refuse: bool) -> S3Files {
        self.refuse_overwrite = refuse;
        self
    }

    /// The user's key prefix (`""` or ending in `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object key of a file path: the prefix and the path without its leading `/`.
    pub fn key(&self, path: &VPath) -> String {
        names::object_key(&self.prefix, path)
    }

    /// What `path` is. A file is looked for first (one HEAD, the common case for SIZE, RETR and
    /// MDTM); if both an object `d` and keys under `d/` exist, which S3 allows, the file wins
    /// here (commands that want a directory look for one first: [`S3Files::dir_kind`]).
    pub async fn kind(&self, path: &VPath) -> io::Result<Kind> {
        if path.is_root() {
            return Ok(Kind::Dir(None));
        }
        if let Some(m) = self.client.head(&self.key(path)).await.map_err(io_error)? {
            return Ok(Kind::File(m));
        }
        self.dir_kind(path).await
    }

    /// Whether `path` is a directory: the root; or its marker exists (one HEAD); or any key
    /// starts with its prefix (one page of a delimited listing: the client's page size, since
    /// S3 cannot be asked whether a prefix is empty any cheaper). `Missing` otherwise, even if a
    /// file of that name exists.
    pub async fn dir_kind(&self, path: &VPath) -> io::Result<Kind> {
        if path.is_root() {
            return Ok(Kind::Dir(None));
        }
        let dir = names::dir_prefix(&self.prefix, path);
        if let Some(m) = self.client.head(&dir).await.map_err(io_error)? {
            return Ok(Kind::Dir(Some(m)));
        }
        let page = self
            .client
            .list(&dir, Some("/"), None)
            .await
            .map_err(io_error)?;
        if page.objects.is_empty() && page.prefixes.is_empty() {
            Ok(Kind::Missing)
        } else {
            Ok(Kind::Dir(None))
        }
    }

    /// A directory first, then a file: for the commands that want a directory (CWD, RMD).
    async fn kind_dir_first(&self, path: &VPath) -> io::Result<Kind> {
        match self.dir_kind(path).await? {
            Kind::Missing => match self.client.head(&self.key(path)).await.map_err(io_error)? {
                Some(m) => Ok(Kind::File(m)),
                None => Ok(Kind::Missing),
            },
            dir => Ok(dir),
        }
    }

    /// Whether an object or directory exists at `path`, for the no-overwrite policy before an
    /// upload lands: a directory of that name blocks an upload as a file does (a file system's
    /// `linkat` fails there too, and an object `d` beside keys `d/...` is a name clash every
    /// client shows badly).
    pub async fn exists(&self, path: &VPath) -> io::Result<bool> {
        Ok(self.kind(path).await? != Kind::Missing)
    }

    /// ENOENT if the parent of `path` is not an existing directory (ENOTDIR if it is a file), as
    /// a file system refuses to create a name in a directory that does not exist.
    async fn require_parent(&self, path: &VPath) -> io::Result<()> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        match self.kind_dir_first(&parent).await? {
            Kind::Dir(_) => Ok(()),
            Kind::File(_) => Err(errno(libc::ENOTDIR)),
            Kind::Missing => Err(errno(libc::ENOENT)),
        }
    }

    /// Makes sure the directory holding `path` has a marker before `path`'s object is deleted or
    /// moved away: a directory implied only by the keys beneath it (uploaded by another tool,
    /// or by the upload side into a directory nobody made with MKD) would otherwise vanish with
    /// its last key, and an FTP client that deletes or moves the last file of a directory does
    /// not expect the directory to go too. One HEAD, and one PUT of an empty marker the first
    /// time; nothing for the root.
    async fn keep_parent(&self, path: &VPath) -> io::Result<()> {
        let Some(parent) = path.parent().filter(|p| !p.is_root()) else {
            return Ok(());
        };
        let marker = names::dir_prefix(&self.prefix, &parent);
        if self.client.head(&marker).await.map_err(io_error)?.is_none() {
            let (res, _) = self.client.put_object(&marker, Vec::new()).await;
            res.map_err(io_error)?;
        }
        Ok(())
    }

    /// The entries of the directory at `path`, sorted by name (with a `pattern`, only the
    /// matching ones; `path` must then be a directory), or the single entry of a file (`false`).
    /// Same contract as the local backend's listing. The directory's pages are read with the
    /// delimiter `/` until the last or until `max_list` entries are in; keys that no FTP path can
    /// name (`d//x`, `d/../x`) are not listed (`names::nameable`). Directories carry their time
    /// only where the store gives one: a common prefix has none, so they show 1970.
    pub async fn list(
        &self,
        path: &VPath,
        pattern: Option<&Glob>,
    ) -> io::Result<(Vec<Entry>, bool)> {
        if !path.is_root() {
            let key = self.key(path);
            if let Some(m) = self.client.head(&key).await.map_err(io_error)? {
                if pattern.is_some() {
                    return Err(errno(libc::ENOTDIR));
                }
                let name = path.file_name().unwrap_or("").to_string();
                return Ok((vec![names::file_entry(name, &key, m.size, m.mtime)], false));
            }
        }
        let dir = names::dir_prefix(&self.prefix, path);
        let mut listing = DirListing::new(&dir, pattern, self.max_list);
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list(&dir, Some("/"), token.as_deref())
                .await
                .map_err(io_error)?;
            listing.add(&page);
            token = page.continuation;
            if token.is_none() {
                break;
            }
            if listing.is_full() {
                tracing::info!(path = %path, limit = self.max_list, "listing cut at max_list_entries");
                break;
            }
        }
        // An empty directory still has its marker, which the listing saw; nothing at all under
        // the prefix means there is no such directory (the root always exists).
        if !listing.seen_any() && !path.is_root() {
            return Err(errno(libc::ENOENT));
        }
        Ok((listing.finish(), true))
    }

    /// Runs a session's file command; same contract as the local backend's:
    ///
    /// - **CWD**: a directory (marker or keys beneath) or the root; ENOTDIR for a file.
    /// - **MKD**: PUTs the empty marker `d/`. EEXIST if a file or directory of that name exists;
    ///   ENOENT if the parent does not exist (as `mkdir(2)`; without this, MKD `a/b/c` would make
    ///   `a` and `a/b` appear as implied directories with no marker, which RMD cannot remove).
    /// - **DELE**: HEAD, then DELETE (S3 deletes a missing key with success, so the HEAD is what
    ///   gives ENOENT); EISDIR for a directory. The directory it was in keeps existing (its marker
    ///   is made if it had none, see `keep_parent`), as after `unlink(2)`.
    /// - **RMD**: only a directory holding nothing but its marker (else ENOTEMPTY, "File
    ///   exists"); deletes the marker. The root cannot be removed (EPERM). The directory it was
    ///   in keeps existing, as for DELE.
    /// - **SIZE/MDTM**: HEAD (MDTM from `Last-Modified`); EISDIR for a directory.
    /// - **RNFR**: the source exists, file or directory.
    /// - **RNTO**: a file is copied server-side to the new key, then the old key deleted: not
    ///   atomic (both names exist for a moment, and both remain if the delete fails, which is
    ///   reported). A directory is refused (EPERM): its rename would be one copy and delete per
    ///   key beneath it, visible half done to every other session and impossible to undo halfway.
    ///   Renaming a file to itself does nothing (copy then delete would lose it). EISDIR onto a
    ///   directory; EEXIST onto a file under the no-overwrite policy; ENOENT if the target's
    ///   directory does not exist. The source's directory keeps existing, as for DELE.
    /// - **MLST**: the facts of a HEAD (directories with their marker's time, if any).
    /// - **STAT path**: [`S3Files::list`] in `ls -l` lines.
    /// - **MFMT / SITE UTIME, SITE CHMOD**: refused (EPERM): S3 can set neither an object's time
    ///   nor a mode, and answering `FsOutcome::Mode` would claim a mode that nothing keeps.
    /// - **CKSM, HASH, XCRC...**: computed by reading the range with ranged GETs of up to 8 MiB
    ///   (`max_get` if smaller), hashed on the blocking pool; nothing is stored for next time. An
    ///   object replaced during the read is not detected (the GETs are not tied to one ETag).
    pub async fn run(
        &self,
        fsop: &FsOp,
        perms: FactPerms,
        facts: FactSet,
    ) -> Result<FsOutcome, FsError> {
        self.run_io(fsop, perms, facts).await.map_err(fs_error)
    }

    async fn run_io(&self, fsop: &FsOp, perms: FactPerms, facts: FactSet) -> io::Result<FsOutcome> {
        match fsop {
            FsOp::ChangeDir(p) => match self.kind_dir_first(p).await? {
                Kind::Dir(_) => Ok(FsOutcome::Done),
                Kind::File(_) => Err(errno(libc::ENOTDIR)),
                Kind::Missing => Err(errno(libc::ENOENT)),
            },
            FsOp::MakeDir(p) => {
                if self.kind(p).await? != Kind::Missing {
                    return Err(errno(libc::EEXIST));
                }
                self.require_parent(p).await?;
                let marker = names::dir_prefix(&self.prefix, p);
                let (res, _) = self.client.put_object(&marker, Vec::new()).await;
                res.map_err(io_error)?;
                Ok(FsOutcome::Done)
            }
            FsOp::Delete(p) => match self.kind(p).await? {
                Kind::File(_) => {
                    self.keep_parent(p).await?;
                    self.client.delete(&self.key(p)).await.map_err(io_error)?;
                    Ok(FsOutcome::Done)
                }
                Kind::Dir(_) => Err(errno(libc::EISDIR)),
                Kind::Missing => Err(errno(libc::ENOENT)),
            },
            FsOp::RemoveDir(p) => {
                if p.is_root() {
                    return Err(errno(libc::EPERM));
                }
                match self.kind_dir_first(p).await? {
                    Kind::Dir(_) => {}
                    Kind::File(_) => return Err(errno(libc::ENOTDIR)),
                    Kind::Missing => return Err(errno(libc::ENOENT)),
                }
                let dir = names::dir_prefix(&self.prefix, p);
                let page = self
                    .client
                    .list(&dir, Some("/"), None)
                    .await
                    .map_err(io_error)?;
                if names::has_children(&dir, &page) {
                    return Err(errno(libc::ENOTEMPTY));
                }
                self.keep_parent(p).await?;
                self.client.delete(&dir).await.map_err(io_error)?;
                Ok(FsOutcome::Done)
            }
            FsOp::Size(p) => Ok(FsOutcome::Size(self.file_meta(p).await?.size)),
            FsOp::ModifyTime(p) => {
                let m = self.file_meta(p).await?;
                if m.mtime.is_none() {
                    return Err(io::Error::other("object store gave no modification time"));
                }
                Ok(FsOutcome::ModifyTime(names::secs(m.mtime)))
            }
            FsOp::RenameFrom(p) => match self.kind(p).await? {
                Kind::Missing => Err(errno(libc::ENOENT)),
                _ => Ok(FsOutcome::Done),
            },
            FsOp::Rename { from, to } => {
                self.rename(from, to).await?;
                Ok(FsOutcome::Done)
            }
            FsOp::Facts(p) => {
                let name = if p.is_root() {
                    "/".to_string()
                } else {
                    p.as_str().to_string()
                };
                let entry = match self.kind(p).await? {
                    Kind::File(m) => names::file_entry(name, &self.key(p), m.size, m.mtime),
                    Kind::Dir(m) => names::dir_entry(
                        name,
                        &names::dir_prefix(&self.prefix, p),
                        m.and_then(|m| m.mtime),
                    ),
                    Kind::Missing => return Err(errno(libc::ENOENT)),
                };
                let line = listing::facts(&entry, perms, false, facts)
                    .ok_or_else(|| errno(libc::EINVAL))?;
                Ok(FsOutcome::Lines(vec![line]))
            }
            FsOp::StatList(p) => {
                let (entries, _) = self.list(p, None).await?;
                Ok(FsOutcome::Lines(listing::stat_lines(&entries, now_secs())))
            }
            FsOp::SetTimes { .. } | FsOp::Chmod { .. } => Err(errno(libc::EPERM)),
            FsOp::Checksum {
                path,
                algo,
                offset,
                length,
            } => self.checksum(path, *algo, *offset, *length).await,
        }
    }

    /// HEAD of a file: EISDIR for a directory, ENOENT if nothing is there.
    async fn file_meta(&self, path: &VPath) -> io::Result<ObjectMeta> {
        match self.kind(path).await? {
            Kind::File(m) => Ok(m),
            Kind::Dir(_) => Err(errno(libc::EISDIR)),
            Kind::Missing => Err(errno(libc::ENOENT)),
        }
    }

    /// RNTO of a file: copy, then delete the source (see [`S3Files::run`]).
    async fn rename(&self, from: &VPath, to: &VPath) -> io::Result<()> {
        if from.is_root() || to.is_root() {
            return Err(errno(libc::EPERM));
        }
        match self.kind(from).await? {
            Kind::File(_) => {}
            Kind::Dir(_) => return Err(errno(libc::EPERM)),
            Kind::Missing => return Err(errno(libc::ENOENT)),
        }
        if from == to {
            return Ok(());
        }
        match self.kind(to).await? {
            Kind::Dir(_) => return Err(errno(libc::EISDIR)),
            Kind::File(_) if self.refuse_overwrite => return Err(errno(libc::EEXIST)),
            _ => {}
        }
        self.require_parent(to).await?;
        let (fk, tk) = (self.key(from), self.key(to));
        self.client.copy(&fk, &tk).await.map_err(io_error)?;
        self.keep_parent(from).await?;
        if let Err(e) = self.client.delete(&fk).await {
            tracing::warn!(from = %from, to = %to, "rename copied the object but could not delete the source: both names exist");
            return Err(io_error(e));
        }
        Ok(())
    }

    /// The digest of `offset..offset+length` (to the end if `None`) of the object at `path`.
    async fn checksum(
        &self,
        path: &VPath,
        algo: Algo,
        offset: u64,
        length: Option<u64>,
    ) -> io::Result<FsOutcome> {
        let size = self.file_meta(path).await?.size;
        if offset > size {
            return Err(errno(libc::EINVAL));
        }
        let end = length.map_or(size, |l| offset.saturating_add(l).min(size));
        let key = self.key(path);
        let step = CHECKSUM_CHUNK.min(self.client.max_get()).max(1);
        let mut digest = Digest::new(algo);
        let mut at = offset;
        while at < end {
            let upto = at.saturating_add(step).min(end);
            let bytes = self
                .client
                .get_range(&key, at, Some(upto))
                .await
                .map_err(io_error)?;
            if bytes.is_empty() {
                // The object shrank while it was read: the range asked for is gone.
                return Err(errno(libc::EIO));
            }
            at += bytes.len() as u64;
            digest = blocking::spawn_blocking(move || {
                digest.update(&bytes);
                digest
            })
            .await?;
        }
        tracing::info!(path = %path, algo = %algo, offset, bytes = end - offset, "checksum computed by reading the object");
        Ok(FsOutcome::Checksum {
            hex: digest.finish(),
            end,
        })
    }

    /// For RETR: the object's key and its size (HEAD). EISDIR for a directory (a marker, keys
    /// beneath, or the root); ENOENT if nothing is there.
    pub async fn open_download(&self, path: &VPath) -> io::Result<(String, u64)> {
        match self.kind(path).await? {
            Kind::File(m) => Ok((self.key(path), m.size)),
            Kind::Dir(_) => Err(errno(libc::EISDIR)),
            Kind::Missing => Err(errno(libc::ENOENT)),
        }
    }

    /// Reads into `buf`'s spare capacity (appending) from `offset` with one ranged GET of at most
    /// that spare room and at most the client's `max_get`; the bytes read, 0 at or after the end
    /// (S3's 416 for a range past the end) or when `buf` has no spare room. Hands `buf` back.
    /// The client returns its own buffer, so the bytes are copied once into `buf`.
    pub async fn read(&self, key: &str, buf: Vec<u8>, offset: u64) -> (io::Result<usize>, Vec<u8>) {
        let mut buf = buf;
        let spare = (buf.capacity() - buf.len()) as u64;
        let want = spare.min(self.client.max_get());
        if want == 0 {
            return (Ok(0), buf);
        }
        let res = self
            .client
            .get_range(key, offset, Some(offset.saturating_add(want)))
            .await;
        match res {
            Ok(bytes) => {
                let n = bytes.len().min(want as usize);
                buf.extend_from_slice(bytes.get(..n).unwrap_or_default());
                (Ok(n), buf)
            }
            Err(S3Error::Rejected { status: 416, .. }) => (Ok(0), buf),
            Err(e) => (Err(io_error(e)), buf),
        }
    }
}

/// Maps a client error to the `io::Error` a session can report: NotFound is ENOENT, AccessDenied
/// EACCES; everything else is an error with a short fixed text ("object store unavailable",
/// "object store timed out", "object store error") that goes into the 451 reply. The client's own
/// details are not put in the text nor logged here: a transport error's text comes from ureq and
/// may quote the request, whose presigned URL carries a signature. What is logged (warn) is the
/// operation, the class and the fields that are the store's own codes (status, S3 error code,
/// attempts); the client logs each failed attempt's detail at debug level.
pub fn io_error(e: S3Error) -> io::Error {
    match e {
        S3Error::NotFound { .. } => errno(libc::ENOENT),
        S3Error::AccessDenied { op, code } => {
            tracing::warn!(op, code = %code, "object store denied access");
            errno(libc::EACCES)
        }
        S3Error::Unavailable { op, attempts, .. } => {
            tracing::warn!(op, attempts, "object store unavailable");
            io::Error::other("object store unavailable")
        }
        S3Error::Timeout { op } => {
            tracing::warn!(op, "object store request timed out; its outcome is unknown");
            io::Error::other("object store timed out")
        }
        S3Error::Rejected {
            op, status, code, ..
        } => {
            tracing::warn!(op, status, code = %code, "object store rejected the request");
            io::Error::other("object store error")
        }
        S3Error::BadReply { op, .. } => {
            tracing::warn!(op, "object store sent a reply that does not parse");
            io::Error::other("object store error")
        }
        S3Error::Client { op, .. } => {
            tracing::warn!(op, "S3 request could not be made (configuration)");
            io::Error::other("object store error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_mapping_hides_details() {
        let secret_url = "http://127.0.0.1:1/b/k?X-Amz-Signature=deadbeef";
        let cases = [
            (
                S3Error::Unavailable {
                    op: "HeadObject",
                    attempts: 3,
                    detail: secret_url.into(),
                },
                "object store unavailable",
            ),
            (
                S3Error::Rejected {
                    op: "CopyObject",
                    status: 400,
                    code: "InvalidRequest".into(),
                    message: secret_url.into(),
                },
                "object store error",
            ),
            (
                S3Error::BadReply {
                    op: "ListObjectsV2",
                    detail: secret_url.into(),
                },
                "object store error",
            ),
            (
                S3Error::Client {
                    op: "GetObject",
                    detail: secret_url.into(),
                },
                "object store error",
            ),
            (
                S3Error::Timeout { op: "PutObject" },
                "object store timed out",
            ),
        ];
        for (e, text) in cases {
            let io = io_error(e);
            assert_eq!(io.to_string(), text);
            assert!(matches!(fs_error(io), FsError::Other(t) if t == text));
        }
        assert_eq!(
            fs_error(io_error(S3Error::NotFound { op: "HeadObject" })),
            FsError::NotFound
        );
        assert_eq!(
            fs_error(io_error(S3Error::AccessDenied {
                op: "HeadObject",
                code: "AccessDenied".into()
            })),
            FsError::PermissionDenied
        );
    }

    #[test]
    fn prefixes_end_in_a_slash() {
        let cfg = super::super::client::S3Config::new(
            "http://127.0.0.1:9",
            "r",
            "b",
            super::super::credentials::S3Credentials::new("k", "s"),
        );
        let client = Arc::new(S3Client::new(cfg).unwrap());
        let f = S3Files::new(client.clone(), "users/bob".into(), 10);
        assert_eq!(f.prefix(), "users/bob/");
        let p = VPath::root().resolve("/x/y").unwrap();
        assert_eq!(f.key(&p), "users/bob/x/y");
        let f = S3Files::new(client, String::new(), 10);
        assert_eq!(f.key(&p), "x/y");
    }
}
