//! Receiving a stream-mode upload's bytes into its storage target: the one function that picks the
//! path (`fixed`, `splice`, or the copying path here for TYPE A and rings without a buffer pool).
//! The storage decided once, per core, which of fixed and splice a file target prefers.

use std::io;
use std::time::Duration;

use crate::engine::fd::SharedFd;
use crate::engine::{op, runtime, time};
use crate::proto::ascii::CrlfToLf;
use crate::server::storage::Target;

use super::failure::{stalled, StoreError};
use super::fixed::receive_fixed;
use super::splice::receive_splice;

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
) -> Result<u64, StoreError> {
    let has_pool = runtime::with(|rt| rt.bufpool().is_some());
    let Target::File(sink) = target;
    let file = sink.file;
    match () {
        _ if ascii => receive_copy(data, file, offset, stall, Some(CrlfToLf::default())).await,
        _ if sink.splice => receive_splice(data, sink, offset, stall).await,
        _ if has_pool => receive_fixed(data, sink, offset, stall).await,
        _ => receive_copy(data, file, offset, stall, None).await,
    }
}

/// Without a registered pool, or for TYPE A: recv into a Vec, (convert,) write it at the offset.
async fn receive_copy(
    data: &SharedFd,
    file: &SharedFd,
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
        let len = out.len();
        let mut written = 0;
        let mut out = out;
        while written < len {
            let (res, o) = op::write::write(file, out, written, offset).await;
            out = o;
            let w = res.map_err(StoreError::File)?;
            if w == 0 {
                return Err(StoreError::File(io::ErrorKind::WriteZero.into()));
            }
            written += w;
            offset += w as u64;
        }
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
