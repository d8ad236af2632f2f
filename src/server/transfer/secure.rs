//! Protected data connections (PROT P): the server's side of the data connection's TLS handshake
//! with the resumption rule, receiving stream and MODE B uploads from decrypted records, and sending
//! downloads and listings encrypted.
//!
//! Stream-mode uploads end with the client's close_notify; a data connection that closes without it
//! was cut (a killed client, a dropped link), so the upload is refused with 426 and nothing lands:
//! over TLS a stream upload's end is finally unambiguous. The bytes pass through user space (they
//! are decrypted there), so splice and O_DIRECT do not apply; plaintext is written with ordinary
//! positioned writes.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::{direct, net, runtime};
use crate::proto::ascii::CrlfToLf;
use crate::proto::modeb::{Decoder, Event};
use crate::proto::session::TransferOutcome;
use crate::server::storage::{FileSink, Target};
use crate::tls::conn::Kernel;
use crate::tls::record::{Content, Opener, RecordError, Sealer};
use crate::tls::stream::{End, TlsStream};

use super::block::BlockFile;
use super::data::DataConn;
use super::failure::StoreError;
use super::fixed::{Receiver, Wake, WriteSet};
use super::receive::{observe, put};

/// The TLS a session's protected data connections run with.
#[derive(Clone)]
pub struct DataTls {
    /// The session's data configuration (its own session store; issues no tickets).
    pub config: Arc<rustls::ServerConfig>,
    /// Refuse a data connection that does not resume the control connection's session.
    pub require_resumption: bool,
}

/// The server's handshake on a new data connection, within `limit`; then the resumption rule.
pub async fn accept(
    fd: SharedFd,
    tls: &DataTls,
    limit: Duration,
) -> Result<TlsStream, TransferOutcome> {
    let s = match TlsStream::accept(fd, tls.config.clone(), limit).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(error = %e, "TLS handshake on the data connection failed");
            return Err(TransferOutcome::DataTlsFailed);
        }
    };
    if tls.require_resumption && !s.tls.resumed() {
        // Another host may have raced the client to the passive port; or the client does not
        // resume (Python's ftplib without the subclass in the docs; set tls_data_resumption = false).
        tracing::warn!(
            "data connection refused: its TLS session does not resume the control connection's"
        );
        return Err(TransferOutcome::DataTlsNotResumed);
    }
    tracing::debug!(tls = %s.tls.describe(), resumed = s.tls.resumed(), "data connection protected");
    Ok(s)
}

/// Receives a stream-mode upload until the client's close_notify; a close without it is
/// [`StoreError::Truncated`]. Binary uploads take rustls' keys and decrypt every record in place in
/// the registered buffers it was received into, then write the plaintext from there (fixed writes,
/// or inline writes from the same buffer): no copy in user space. TYPE A (which converts CRLF to
/// LF) and rings without a buffer pool collect rustls' plaintext and write it through the ring.
pub async fn receive_stream(
    mut s: TlsStream,
    target: Target<'_>,
    start: u64,
    stall: Duration,
    ascii: bool,
) -> Result<u64, StoreError> {
    let has_pool = runtime::with(|rt| rt.bufpool().is_some());
    let sink = match target {
        Target::File(sink) if !ascii && has_pool => sink,
        _ => return receive_stream_ring(&mut s, target, start, stall, ascii).await,
    };
    let fd = s.fd.clone();
    let kernel = s
        .tls
        .into_kernel()
        .map_err(|e| StoreError::Net(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    receive_in_place(&fd, kernel, sink, start, stall).await
}

fn record_error(e: RecordError) -> StoreError {
    StoreError::Net(io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The in-place path: a multishot recv fills registered buffers; every complete record in a buffer
/// is decrypted where it lies and its plaintext range written from that buffer at its offset. A
/// record cut by the end of a buffer is carried (at most one record, ~16 KiB) and finished from
/// the next buffer, then written from the carry.
async fn receive_in_place(
    fd: &SharedFd,
    k: Kernel,
    sink: FileSink<'_>,
    start: u64,
    stall: Duration,
) -> Result<u64, StoreError> {
    let mut opener = Opener::new(k.version, &k.secrets.rx).map_err(record_error)?;
    let mut sealer = Sealer::new(k.version, &k.secrets.tx).map_err(record_error)?;
    let file = sink.file;
    let mut offset = start;
    // What rustls had decrypted before it handed the keys over.
    if !k.plaintext.is_empty() {
        sink.observe(offset, &k.plaintext);
        direct::pwrite_all(file, &k.plaintext, offset).map_err(StoreError::File)?;
        offset += k.plaintext.len() as u64;
    }
    let mut clean = k.peer_closed;
    let mut carry = k.leftover;
    if !clean {
        let (n, ended) = open_carried(&mut opener, &mut carry, sink, offset)?;
        offset += n;
        clean = ended;
    }
    let mut rx = Receiver::new(fd, stall);
    let mut writes = WriteSet::new(sink);
    loop {
        if clean && writes.is_empty() {
            // Our close_notify back; the client may have closed already, which is fine.
            if let Ok(bye) = sealer.close_notify() {
                let _ = net::send_all(fd, bye, Duration::from_secs(1)).await;
            }
            return Ok(offset - start);
        }
        if rx.closed && !clean && writes.is_empty() {
            // The connection ended without close_notify: cut short, whatever arrived.
            return Err(StoreError::Truncated {
                received: offset - start,
            });
        }
        match rx.event(&mut writes, !clean && !rx.closed).await? {
            Wake::Wrote => {}
            Wake::Tick => rx.on_tick(!clean && !rx.closed)?,
            Wake::Recv(item) => {
                let Some(mut buf) = rx.on_recv(item)? else {
                    continue;
                };
                let data = buf.as_mut_slice();
                let mut pos = 0;
                // First the record the last buffer cut.
                if !carry.is_empty() {
                    loop {
                        let want = Opener::record_len(&carry)
                            .map_err(record_error)?
                            .unwrap_or(5);
                        let take = want.saturating_sub(carry.len()).min(data.len() - pos);
                        carry.extend_from_slice(&data[pos..pos + take]);
                        pos += take;
                        if take == 0 || pos == data.len() {
                            break;
                        }
                    }
                    let (n, ended) = open_carried(&mut opener, &mut carry, sink, offset)?;
                    offset += n;
                    clean = ended;
                }
                let mut ranges = Vec::new();
                while !clean && pos < data.len() {
                    match Opener::record_len(&data[pos..]).map_err(record_error)? {
                        Some(n) if pos + n <= data.len() => {
                            match opener.open(&mut data[pos..pos + n]).map_err(record_error)? {
                                Content::Data(r) => ranges.push(pos + r.start..pos + r.end),
                                Content::CloseNotify => clean = true,
                            }
                            pos += n;
                        }
                        _ => {
                            carry.extend_from_slice(&data[pos..]);
                            pos = data.len();
                        }
                    }
                }
                let buf = Rc::new(buf);
                for r in ranges {
                    let n = r.len() as u64;
                    writes.push(buf.clone(), r, offset)?;
                    offset += n;
                }
            }
        }
    }
}

/// Opens the complete records at the start of `carry` (decrypted in place there) and writes
/// their plaintext at `offset`; keeps an incomplete one. Returns the bytes written and whether
/// close_notify came.
fn open_carried(
    opener: &mut Opener,
    carry: &mut Vec<u8>,
    sink: FileSink<'_>,
    offset: u64,
) -> Result<(u64, bool), StoreError> {
    let mut pos = 0;
    let mut written = 0u64;
    let mut ended = false;
    while let Some(n) = Opener::record_len(&carry[pos..]).map_err(record_error)? {
        if pos + n > carry.len() {
            break;
        }
        match opener
            .open(&mut carry[pos..pos + n])
            .map_err(record_error)?
        {
            Content::Data(r) => {
                let plain = &carry[pos + r.start..pos + r.end];
                sink.observe(offset + written, plain);
                direct::pwrite_all(sink.file, plain, offset + written).map_err(StoreError::File)?;
                written += plain.len() as u64;
            }
            Content::CloseNotify => {
                ended = true;
                pos += n;
                break;
            }
        }
        pos += n;
    }
    carry.drain(..pos);
    if ended {
        carry.clear();
    }
    Ok((written, ended))
}

async fn receive_stream_ring(
    s: &mut TlsStream,
    target: Target<'_>,
    start: u64,
    stall: Duration,
    ascii: bool,
) -> Result<u64, StoreError> {
    let mut conv = ascii.then(CrlfToLf::default);
    let mut offset = start;
    let mut spare = Vec::new();
    let mut converted = Vec::new();
    loop {
        match s.fill(stall).await.map_err(StoreError::Net)? {
            None => {
                let data = s.tls.take_plaintext(std::mem::take(&mut spare));
                let out = match conv.as_mut() {
                    Some(c) => {
                        converted.clear();
                        c.convert(&data, &mut converted);
                        spare = data;
                        std::mem::take(&mut converted)
                    }
                    None => {
                        observe(target, offset, &data);
                        data
                    }
                };
                let n = out.len() as u64;
                let (res, back) = put(target, out, offset).await;
                res?;
                offset += n;
                if conv.is_some() {
                    converted = back;
                } else {
                    spare = back;
                }
            }
            Some(End::Clean) => {
                if let Some(c) = conv.as_mut() {
                    converted.clear();
                    c.finish(&mut converted);
                    let n = converted.len() as u64;
                    let (res, _) = put(target, std::mem::take(&mut converted), offset).await;
                    res?;
                    offset += n;
                }
                // Our close_notify back; the client may have closed already, which is fine.
                let _ = s.shutdown(Duration::from_secs(1)).await;
                return Ok(offset - start);
            }
            Some(End::Cut) => {
                return Err(StoreError::Truncated {
                    received: offset - start,
                })
            }
        }
    }
}

/// Receives one MODE B file from a protected kept data connection: blocks are decoded from the
/// decrypted records; bytes after the EOF block stay for the next file.
pub async fn receive_block(
    s: &mut TlsStream,
    decoder: &mut Decoder,
    target: Target<'_>,
    start: u64,
    stall: Duration,
) -> Result<BlockFile, StoreError> {
    let mut offset = start;
    let mut markers = Vec::new();
    let mut out = Vec::new();
    loop {
        let mut pos = 0;
        let mut done = false;
        {
            let input = s.tls.plaintext();
            while let Some(ev) = decoder.next(input, &mut pos).map_err(|e| {
                StoreError::Net(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad MODE B stream: {e}"),
                ))
            })? {
                match ev {
                    Event::Data(run) => out.extend_from_slice(run),
                    Event::Restart(m) => markers.push((m, offset + out.len() as u64)),
                    Event::EndOfRecord => {}
                    Event::EndOfFile => {
                        done = true;
                        break;
                    }
                }
            }
        }
        s.tls.consume(pos);
        if !out.is_empty() {
            let n = out.len() as u64;
            observe(target, offset, &out);
            let (res, mut back) = put(target, std::mem::take(&mut out), offset).await;
            res?;
            offset += n;
            back.clear();
            out = back;
        }
        if done {
            return Ok(BlockFile {
                bytes: offset - start,
                markers,
            });
        }
        if s.fill(stall).await.map_err(StoreError::Net)?.is_some() {
            return Err(StoreError::Net(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before EOF block",
            )));
        }
    }
}

/// Sends `buf` on the data connection, encrypted when it is protected; returns the buffer.
pub async fn send(conn: &mut DataConn, buf: Vec<u8>, stall: Duration) -> (io::Result<()>, Vec<u8>) {
    match conn.tls.as_mut() {
        None => net::send_all(&conn.fd, buf, stall).await,
        Some(s) => {
            let r = s.write_all(&buf, stall).await;
            (r, buf)
        }
    }
}

/// The end of a stream-mode download or listing on a protected connection: close_notify, so the
/// client knows it has everything.
pub async fn finish_stream(conn: &mut DataConn, stall: Duration) -> io::Result<()> {
    match conn.tls.as_mut() {
        None => Ok(()),
        Some(s) => s.shutdown(stall).await,
    }
}
