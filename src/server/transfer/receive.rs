//! Receiving a stream-mode upload's bytes into its storage target: the one function that picks the
//! path (`fixed`, `splice`, or the copying path here for TYPE A and rings without a buffer pool).
//! The storage decided once, per core, which of fixed and splice a file target prefers.

use std::io;
use std::time::Duration;

use crate::engine::fd::SharedFd;
use crate::engine::{op, runtime, time};
use crate::proto::ascii::CrlfToLf;
use crate::server::storage::s3::upload::S3Upload;
use crate::server::storage::Target;

use super::direct::{receive_direct, DirectEnd};
use super::failure::{stalled, StoreError};
use super::fixed::{receive_fixed, receive_fixed_until, FixedEnd};
use super::splice::{receive_splice, SpliceEnd};

/// What a stream-mode receive stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stored {
    pub bytes: u64,
    /// Of those, the bytes written with O_DIRECT.
    pub direct: u64,
}

impl Stored {
    fn buffered(bytes: u64) -> Stored {
        Stored { bytes, direct: 0 }
    }
}

/// Receives until the peer closes the data connection, writing from `offset` on; returns the bytes
/// stored. A data connection with no progress for `stall` fails with a timeout.
/// TYPE A (`ascii`) uploads are converted from CRLF to LF, which needs the bytes in user space, so they
/// always take the copying path.
pub async fn receive(
    ascii: bool,
    data: &SharedFd,
    target: Target<'_>,
    offset: u64,
    stall: Duration,
) -> Result<Stored, StoreError> {
    let has_pool = runtime::with(|rt| rt.bufpool().is_some());
    let sink = match target {
        Target::File(sink) if !ascii => sink,
        Target::Parts(up) if !ascii => {
            return receive_parts(data, up, stall).await.map(Stored::buffered);
        }
        // TYPE A converts in user space, and parts are filled there: both copy.
        _ => {
            let conv = ascii.then(CrlfToLf::default);
            return receive_copy(data, target, offset, stall, conv)
                .await
                .map(Stored::buffered);
        }
    };
    let mut at = offset;
    let direct_from_start = sink.direct_after == Some(0) && has_pool;
    if !direct_from_start {
        if sink.splice {
            match receive_splice(data, sink, offset, stall).await? {
                SpliceEnd::Eof(end) => return Ok(Stored::buffered(end - offset)),
                SpliceEnd::Switch(from) => at = from,
            }
        } else if has_pool {
            // Uploads with inline checksums leave splice; with inline calls they still switch
            // to direct I/O where splice would have.
            let switch_at = sink
                .direct_after
                .filter(|_| sink.digest.is_some() && sink.inline)
                .map(|t| offset.saturating_add(t));
            let Some(switch_at) = switch_at else {
                return receive_fixed(data, sink, offset, stall)
                    .await
                    .map(Stored::buffered);
            };
            match receive_fixed_until(data, sink, offset, stall, switch_at).await? {
                FixedEnd::Eof(end) => return Ok(Stored::buffered(end - offset)),
                FixedEnd::Switch(from) => at = from,
            }
        } else {
            return receive_copy(data, target, offset, stall, None)
                .await
                .map(Stored::buffered);
        }
    }
    match receive_direct(data, sink, at, stall).await? {
        DirectEnd::Done { end, direct } => Ok(Stored {
            bytes: end - offset,
            direct,
        }),
        // No buffer for direct I/O now (or an unaligned start): the copying path takes the rest.
        DirectEnd::NotStarted(from) => {
            let rest = receive_copy(data, target, from, stall, None).await?;
            Ok(Stored::buffered(from - offset + rest))
        }
    }
}

/// A binary stream upload into an object's parts: each recv lands straight in the part buffer
/// (sized to the upload's memory grant), so the bytes are in user space once, where the HTTP
/// request sends them from. Waiting for memory is not a stall: only the recv is timed.
async fn receive_parts(data: &SharedFd, up: &S3Upload, stall: Duration) -> Result<u64, StoreError> {
    loop {
        let buf = up.lend().await.map_err(StoreError::File)?;
        let (res, buf) = match time::timeout(stall, op::recv::recv_append(data, buf)).await {
            Ok(r) => r,
            Err(_) => return Err(stalled()),
        };
        up.give_back(buf);
        if res.map_err(StoreError::Net)? == 0 {
            return Ok(up.total());
        }
    }
}

/// Without a registered pool, or for TYPE A: recv into a Vec, (convert,) write it at the offset.
async fn receive_copy(
    data: &SharedFd,
    target: Target<'_>,
    start: u64,
    stall: Duration,
    mut ascii: Option<CrlfToLf>,
) -> Result<u64, StoreError> {
    let mut offset = start;
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut converted = Vec::new();
    loop {
        buf.clear();
        let (res, b) = match time::timeout(stall, op::recv::recv(data, buf)).await {
            Ok(r) => r,
            Err(_) => return Err(stalled()),
        };
        buf = b;
        let n = res.map_err(StoreError::Net)?;
        let out = match ascii.as_mut() {
            Some(conv) => {
                converted.clear();
                if n == 0 {
                    conv.finish(&mut converted);
                } else {
                    conv.convert(&buf, &mut converted);
                }
                std::mem::take(&mut converted)
            }
            None => std::mem::take(&mut buf),
        };
        let len = out.len() as u64;
        if ascii.is_none() {
            observe(target, offset, &out);
        }
        let (res, mut out) = put(target, out, offset).await;
        res?;
        offset += len;
        out.clear();
        if ascii.is_some() {
            converted = out;
        } else {
            buf = out;
        }
        if n == 0 {
            return Ok(offset - start);
        }
    }
}

/// Tells a file target's inline checksums (if any) of bytes about to be stored at `offset`.
pub fn observe(target: Target<'_>, offset: u64, bytes: &[u8]) {
    if let Target::File(sink) = target {
        sink.observe(offset, bytes);
    }
}

/// Stores `buf`, the file's bytes from `offset`, in `target`: written at the offset into a
/// file, or appended to an object's part (uploads into parts are always in order). Hands the
/// buffer back.
pub async fn put(
    target: Target<'_>,
    buf: Vec<u8>,
    offset: u64,
) -> (Result<(), StoreError>, Vec<u8>) {
    match target {
        Target::File(sink) => write_all_at(sink.file, buf, offset).await,
        Target::Parts(up) => {
            let res = up.push(&buf).await.map_err(StoreError::File);
            (res, buf)
        }
    }
}

/// Writes all of `buf` at `offset` through the ring (short writes resumed); returns the buffer for
/// reuse.
pub async fn write_all_at(
    file: &SharedFd,
    buf: Vec<u8>,
    offset: u64,
) -> (Result<(), StoreError>, Vec<u8>) {
    let mut written = 0;
    let mut buf = buf;
    while written < buf.len() {
        let (res, b) = op::write::write(file, buf, written, offset + written as u64).await;
        buf = b;
        match res {
            Ok(0) => return (Err(StoreError::File(io::ErrorKind::WriteZero.into())), buf),
            Ok(n) => written += n,
            Err(e) => return (Err(StoreError::File(e)), buf),
        }
    }
    (Ok(()), buf)
}
