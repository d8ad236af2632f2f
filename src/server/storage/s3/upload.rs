//! One STOR into the bucket: bytes are copied into a part buffer as they arrive; a full part is
//! sent (UploadPart) while the next one fills; the end of the data sends the last part and
//! completes the upload, or, for a file that ended inside its first part, sends it as one PUT.
//!
//! The landing guarantee is the store's: an object appears only at CompleteMultipartUpload or
//! PUT, and the 226 is sent only after that returned success. An upload that is discarded or
//! dropped (ABOR, a cut connection, a timeout, a session that died) is aborted in a task of its
//! own, so the session's reply does not wait for the store, and nothing becomes visible.
//!
//! Memory per upload: one part being filled and at most one in flight (see `memory` for why
//! waiting for either cannot deadlock).

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;

use crate::engine::executor::JoinHandle;
use crate::engine::spawn;

use super::client::{ETag, S3Client, S3Error, UploadId};
use super::files::io_error;
use super::memory::{Grant, Memory, Pool, FIRST_STEP};
use super::plan::{Finish, PartCursor, PartPlan};
use crate::engine::mapbuf::MapBuf;

/// A part being sent, with the budget its buffer holds until it comes back.
struct Sending {
    task: JoinHandle<(Result<ETag, S3Error>, Option<MapBuf>)>,
    grant: Grant,
}

#[derive(Default)]
struct Parts {
    fill: Option<(MapBuf, Grant)>,
    in_flight: Option<Sending>,
    id: Option<UploadId>,
    etags: Vec<ETag>,
}

/// An upload in progress. Use [`S3Upload::push`] for the bytes in order, then
/// [`S3Upload::finish`] or [`S3Upload::discard`].
pub struct S3Upload {
    client: Arc<S3Client>,
    mem: Rc<Memory>,
    key: String,
    cursor: RefCell<PartCursor>,
    parts: RefCell<Parts>,
    /// Finished or discarded: nothing is left to clean up.
    settled: Cell<bool>,
    /// The part buffer's length when it was lent for a recv.
    lent: Cell<usize>,
}

impl S3Upload {
    /// An upload to `key` with parts from `min_part` (larger if `size_hint`, an ALLO, needs it).
    pub fn new(
        client: Arc<S3Client>,
        mem: Rc<Memory>,
        key: String,
        min_part: u64,
        size_hint: Option<u64>,
    ) -> io::Result<S3Upload> {
        let plan = PartPlan::new(min_part, size_hint)
            .map_err(|e| io::Error::new(io::ErrorKind::FileTooLarge, e.to_string()))?;
        Ok(S3Upload {
            client,
            mem,
            key,
            cursor: RefCell::new(PartCursor::new(plan)),
            parts: RefCell::new(Parts::default()),
            settled: Cell::new(false),
            lent: Cell::new(0),
        })
    }

    /// Waits for the upload's first buffer. Called before the 150, so an upload that must wait
    /// for memory waits before its client sends anything: the bytes of waiting uploads do not pile
    /// up in the kernel's socket buffers (with a thousand waiting, that is gigabytes, and TCP's
    /// memory pressure then slows every connection of the machine).
    pub async fn admit(&self) -> io::Result<()> {
        self.make_room().await
    }

    /// Bytes received so far.
    pub fn total(&self) -> u64 {
        self.cursor.borrow().total()
    }

    /// Appends the next bytes of the file. Waits while the memory cap or the part in flight
    /// says so: that wait is the back-pressure on the data connection.
    pub async fn push(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            self.make_room().await?;
            let mut parts = self.parts.borrow_mut();
            let mut cursor = self.cursor.borrow_mut();
            let Some((buf, grant)) = parts.fill.as_mut() else {
                continue;
            };
            let room = cursor
                .room()
                .min(grant.bytes().saturating_sub(buf.len() as u64));
            let want = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            let n = buf.extend(&bytes[..want]);
            cursor.fill(n as u64);
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Lends the part buffer for a recv straight into it (no copy in user space): it may take
    /// up to what both the part and the memory grant have room for, never 0 bytes. Give it back
    /// with [`S3Upload::give_back`]; a buffer never given back (the session died mid-recv) only
    /// loses the bytes of an upload that can no longer complete anyway.
    pub async fn lend(&self) -> io::Result<MapBuf> {
        self.make_room().await?;
        let room = self.cursor.borrow().room();
        let mut parts = self.parts.borrow_mut();
        let Some((buf, grant)) = parts.fill.as_mut() else {
            return Err(io::Error::other("no part buffer"));
        };
        let limit = (buf.len() as u64 + room).min(grant.bytes());
        buf.set_limit(as_len(limit)?);
        self.lent.set(buf.len());
        let empty = MapBuf::new(0)?;
        Ok(std::mem::replace(buf, empty))
    }

    /// Takes back the buffer [`S3Upload::lend`] gave out, with the bytes received into it.
    pub fn give_back(&self, buf: MapBuf) {
        let mut parts = self.parts.borrow_mut();
        let Some((slot, _)) = parts.fill.as_mut() else {
            return;
        };
        let added = buf.len().saturating_sub(self.lent.get());
        *slot = buf;
        self.cursor.borrow_mut().fill(added as u64);
    }

    /// Until the part being filled has room within its grant: a buffer for a new upload, a whole
    /// part for one that outgrew its first step, or the full part sent off.
    async fn make_room(&self) -> io::Result<()> {
        loop {
            let (target, room) = {
                let c = self.cursor.borrow();
                (c.target(), c.room())
            };
            if room == 0 {
                self.hand_off().await?;
                continue;
            }
            let state = self
                .parts
                .borrow()
                .fill
                .as_ref()
                .map(|(b, g)| (b.len() as u64, g.bytes()));
            match state {
                None => {
                    let grant = self.take(Pool::Small, FIRST_STEP.min(target)).await?;
                    let buf = self.mem.buffer(as_len(target)?)?;
                    self.parts.borrow_mut().fill = Some((buf, grant));
                }
                Some((len, granted)) if len < granted => return Ok(()),
                Some(_) => {
                    // Outgrew its first step: a whole part, then the step goes back.
                    let grant = self.take(Pool::Parts, target).await?;
                    if let Some((_, g)) = self.parts.borrow_mut().fill.as_mut() {
                        *g = grant;
                    }
                }
            }
        }
    }

    async fn take(&self, pool: Pool, bytes: u64) -> io::Result<Grant> {
        self.mem.take(pool, bytes).await.map_err(|e| {
            io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("{e}; raise s3_memory_cap or lower s3_part_size"),
            )
        })
    }

    /// Sends the full part being filled and readies the next one. At most one part is in
    /// flight: a second one waits for the first, whose buffer it then reuses.
    async fn hand_off(&self) -> io::Result<()> {
        let (number, _) = self
            .cursor
            .borrow_mut()
            .hand_off()
            .map_err(|e| io::Error::new(io::ErrorKind::FileTooLarge, e.to_string()))?;
        let id = self.upload_id().await?;
        let earlier = self.parts.borrow_mut().in_flight.take();
        let reuse = match earlier {
            Some(sending) => Some(self.settle_part(sending).await?),
            None => None,
        };
        let full = self.parts.borrow_mut().fill.take();
        let Some((buf, grant)) = full else {
            return Err(io::Error::other("no part to send"));
        };
        let sending = self.send_part(&id, number, buf, grant);
        self.parts.borrow_mut().in_flight = Some(sending);
        let target = self.cursor.borrow().target();
        let next = match reuse {
            Some(r) => Some(r),
            None => self
                .mem
                .try_take(Pool::Parts, target)
                .map(|g| self.mem.buffer(as_len(target)?).map(|b| (b, g)))
                .transpose()?,
        };
        let next = match next {
            Some(n) => n,
            // The cap is short: wait for the part just sent and fill its buffer again.
            None => {
                let sending = self.parts.borrow_mut().in_flight.take();
                match sending {
                    Some(s) => self.settle_part(s).await?,
                    None => return Err(io::Error::other("no part in flight")),
                }
            }
        };
        let (mut buf, grant) = next;
        buf.clear();
        // Parts grow past a group; a buffer of the old size cannot hold the new one.
        let next = if (buf.capacity() as u64) < target {
            drop(grant);
            self.mem.recycle(buf);
            let grant = self.take(Pool::Parts, target).await?;
            (self.mem.buffer(as_len(target)?)?, grant)
        } else {
            (buf, grant)
        };
        self.parts.borrow_mut().fill = Some(next);
        Ok(())
    }

    /// The multipart upload's id, started at the first hand-off.
    async fn upload_id(&self) -> io::Result<UploadId> {
        let known = self.parts.borrow().id.clone();
        if let Some(id) = known {
            return Ok(id);
        }
        let id = self
            .client
            .create_multipart(&self.key)
            .await
            .map_err(|e| self.store_error(&e))?;
        self.parts.borrow_mut().id = Some(id.clone());
        Ok(id)
    }

    fn send_part(&self, id: &UploadId, number: u16, buf: MapBuf, grant: Grant) -> Sending {
        let (client, key, id) = (self.client.clone(), self.key.clone(), id.clone());
        let sending = self.mem.sending();
        let task = spawn(async move {
            let out = client.upload_part(&key, &id, number, buf).await;
            drop(sending);
            out
        });
        Sending { task, grant }
    }

    /// Waits for one of the last parts in flight; its buffer goes to the core's spares.
    async fn settle_last(&self, sending: Sending) -> io::Result<()> {
        let (buf, _grant) = self.settle_part(sending).await?;
        self.mem.recycle(buf);
        Ok(())
    }

    /// Waits for a part in flight; its ETag is recorded, its buffer and grant come back.
    async fn settle_part(&self, sending: Sending) -> io::Result<(MapBuf, Grant)> {
        let Sending { task, grant } = sending;
        let (res, buf) = task.await;
        let etag = res.map_err(|e| self.store_error(&e))?;
        self.parts.borrow_mut().etags.push(etag);
        let buf = buf.ok_or_else(|| io::Error::other("object store worker lost"))?;
        Ok((buf, grant))
    }

    /// Makes the object visible: the last part and CompleteMultipartUpload, or one PUT. With
    /// `noreplace`, an existing object refuses it (checked just before; the store has no
    /// create-only PUT every implementation honours, so two such uploads racing may both land).
    pub async fn finish(&self, noreplace: bool) -> io::Result<()> {
        let res = self.finish_inner(noreplace).await;
        if res.is_ok() {
            self.settled.set(true);
            // The buffers go back now, not when the session drops the upload.
            *self.parts.borrow_mut() = Parts::default();
        } else {
            self.discard();
        }
        res
    }

    async fn finish_inner(&self, noreplace: bool) -> io::Result<()> {
        if noreplace {
            let there = self
                .client
                .head(&self.key)
                .await
                .map_err(|e| self.store_error(&e))?;
            if there.is_some() {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
        }
        let finish = self.cursor.borrow().finish();
        let fill = self.parts.borrow_mut().fill.take();
        match finish {
            Finish::SinglePut { .. } => {
                // The grant is held until the PUT has returned its buffer.
                let (buf, grant) = match fill {
                    Some((b, g)) => (b, Some(g)),
                    None => (MapBuf::new(0)?, None),
                };
                let sending = self.mem.sending();
                let (res, buf) = self.client.put_object(&self.key, buf).await;
                if let Some(b) = buf {
                    self.mem.recycle(b);
                }
                drop((sending, grant));
                res.map_err(|e| self.store_error(&e))
            }
            Finish::LastPart { number, .. } => {
                let Some((buf, grant)) = fill else {
                    return Err(io::Error::other("no last part"));
                };
                let id = self.upload_id().await?;
                let earlier = self.parts.borrow_mut().in_flight.take();
                if let Some(s) = earlier {
                    self.settle_last(s).await?;
                }
                let last = self.send_part(&id, number, buf, grant);
                self.settle_last(last).await?;
                self.complete(&id).await
            }
            Finish::Complete { .. } => {
                let id = self.upload_id().await?;
                let earlier = self.parts.borrow_mut().in_flight.take();
                if let Some(s) = earlier {
                    self.settle_last(s).await?;
                }
                self.complete(&id).await
            }
        }
    }

    async fn complete(&self, id: &UploadId) -> io::Result<()> {
        let etags = std::mem::take(&mut self.parts.borrow_mut().etags);
        self.client
            .complete_multipart(&self.key, id, etags)
            .await
            .map_err(|e| self.store_error(&e))?;
        self.parts.borrow_mut().id = None;
        Ok(())
    }

    /// Drops the upload: nothing becomes visible. A multipart upload is aborted in a task of its
    /// own (after its part in flight, so no part outlives the abort).
    pub fn discard(&self) {
        if self.settled.replace(true) {
            return;
        }
        let parts = std::mem::take(&mut *self.parts.borrow_mut());
        let Some(id) = parts.id else {
            // A single PUT never started: dropping the buffers is all.
            return;
        };
        let (client, key, metrics_mem) = (self.client.clone(), self.key.clone(), self.mem.clone());
        spawn(async move {
            if let Some(s) = parts.in_flight {
                let _ = s.task.await;
                drop(s.grant);
            }
            drop(parts.fill);
            if let Err(e) = client.abort_multipart(&key, &id).await {
                metrics_mem.store_failed();
                let _ = io_error(e);
                tracing::warn!(key, "could not abort a multipart upload; the store's lifecycle rules must remove it");
            }
        })
        .detach();
    }

    /// Counts a failed store request and turns it into the error the session answers with
    /// (`io_error` logs it).
    fn store_error(&self, e: &S3Error) -> io::Error {
        self.mem.store_failed();
        tracing::info!(key = %self.key, "upload failed in the object store");
        io_error(e.clone())
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        self.discard();
    }
}

fn as_len(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))
}
