//! MODE B receive: a data connection kept open across files. Blocks are decoded in place from the
//! registered receive buffers and their payload runs written at their file offsets without a copy;
//! the bytes after one file's EOF block are kept for the next file.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use crate::engine::bufpool::PoolBuf;
use crate::engine::fd::SharedFd;
use crate::engine::{op, time};
use crate::proto::modeb::{Decoder, Event};
use crate::server::storage::s3::upload::S3Upload;
use crate::server::storage::FileSink;

use super::failure::{stalled, StoreError};
use super::fixed::{Receiver, Wake, WriteSet};

/// MODE B state of a data connection kept open across files: the receiver, the decoder, and the
/// part of a received buffer that follows the last file's EOF block (the next file's first bytes).
pub struct BlockReceiver {
    rx: Receiver,
    decoder: Decoder,
    leftover: Option<(Rc<PoolBuf>, usize)>,
    /// Restart markers of the file being received (with their offsets), kept for a failed transfer.
    markers: Vec<(Vec<u8>, u64)>,
}

/// One MODE B file received.
pub struct BlockFile {
    pub bytes: u64,
    /// Restart markers seen, with the file offset each one stands for.
    pub markers: Vec<(Vec<u8>, u64)>,
}

impl BlockReceiver {
    pub fn new(data: &SharedFd, stall: Duration) -> BlockReceiver {
        BlockReceiver {
            rx: Receiver::new(data, stall),
            decoder: Decoder::new(),
            leftover: None,
            markers: Vec::new(),
        }
    }

    /// The restart markers received before the last `receive` failed.
    pub fn markers_of_failed(&self) -> &[(Vec<u8>, u64)] {
        &self.markers
    }

    /// Receives one file (up to and including its EOF block), writing payload runs in place from the
    /// received registered buffers at their file offsets. Headers split across buffers are handled by
    /// the decoder; bytes after the EOF block stay for the next file.
    pub async fn receive(
        &mut self,
        sink: FileSink<'_>,
        start: u64,
    ) -> Result<BlockFile, StoreError> {
        let mut writes = WriteSet::new(sink);
        let mut offset = start;
        self.markers.clear();
        self.rx.restart_clock();
        self.rx.arm_once_next();
        let mut done = false;
        loop {
            if let Some((buf, mut pos)) = self.leftover.take() {
                let base = buf.as_slice().as_ptr() as usize;
                while let Some(ev) = self
                    .decoder
                    .next(buf.as_slice(), &mut pos)
                    .map_err(bad_stream)?
                {
                    match ev {
                        Event::Data(run) => {
                            let at = run.as_ptr() as usize - base;
                            writes.push(buf.clone(), at..at + run.len(), offset)?;
                            offset += run.len() as u64;
                        }
                        Event::Restart(m) => self.markers.push((m, offset)),
                        Event::EndOfRecord => {}
                        Event::EndOfFile => {
                            done = true;
                            break;
                        }
                    }
                }
                if pos < buf.len() {
                    self.leftover = Some((buf, pos));
                }
            }
            if done && writes.is_empty() {
                // Nothing more is taken from the kept connection until the next file.
                self.rx.pause();
                return Ok(BlockFile {
                    bytes: offset - start,
                    markers: std::mem::take(&mut self.markers),
                });
            }
            if !done && self.rx.closed {
                // The peer closed without an EOF block: the file is incomplete.
                return Err(StoreError::Net(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before EOF block",
                )));
            }
            match self.rx.event(&mut writes, !done).await? {
                Wake::Wrote => {}
                Wake::Recv(item) => {
                    if let Some(buf) = self.rx.on_recv(item)? {
                        self.leftover = Some((Rc::new(buf), 0));
                    }
                }
                Wake::Tick => self.rx.on_tick(!done)?,
            }
        }
    }
}

fn bad_stream(e: crate::proto::modeb::DecodeError) -> StoreError {
    StoreError::Net(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad MODE B stream: {e}"),
    ))
}

/// Bytes asked of the socket per recv when decoding MODE B into an object's parts.
const COPY_RECV: usize = 256 * 1024;

/// MODE B into an object store (kept across files like [`BlockReceiver`]): blocks are received
/// into a Vec and decoded there, and each payload run is appended to the upload's part. The
/// registered-buffer path would save nothing: the bytes are copied into the part either way.
pub struct CopyBlockReceiver {
    fd: SharedFd,
    stall: Duration,
    decoder: Decoder,
    /// Received bytes; `pos` is where decoding goes on (the next file's first bytes after an EOF).
    buf: Vec<u8>,
    pos: usize,
}

impl CopyBlockReceiver {
    pub fn new(fd: &SharedFd, stall: Duration) -> CopyBlockReceiver {
        CopyBlockReceiver {
            fd: fd.clone(),
            stall,
            decoder: Decoder::new(),
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Receives one file up to its EOF block into `up`. A data connection that makes no progress
    /// for the stall time fails; waiting for `up` (the memory cap) does not count, since that
    /// wait is ours.
    pub async fn receive(&mut self, up: &S3Upload) -> Result<BlockFile, StoreError> {
        let mut bytes = 0u64;
        let mut markers = Vec::new();
        loop {
            while let Some(ev) = self
                .decoder
                .next(&self.buf, &mut self.pos)
                .map_err(bad_stream)?
            {
                match ev {
                    Event::Data(run) => {
                        up.push(run).await.map_err(StoreError::File)?;
                        bytes += run.len() as u64;
                    }
                    Event::Restart(m) => markers.push((m, bytes)),
                    Event::EndOfRecord => {}
                    Event::EndOfFile => return Ok(BlockFile { bytes, markers }),
                }
            }
            self.buf.drain(..self.pos);
            self.pos = 0;
            self.buf.reserve(COPY_RECV);
            let buf = std::mem::take(&mut self.buf);
            let (res, buf) = match time::timeout(self.stall, op::recv::recv(&self.fd, buf)).await {
                Ok(r) => r,
                Err(_) => return Err(stalled()),
            };
            self.buf = buf;
            if res.map_err(StoreError::Net)? == 0 {
                return Err(StoreError::Net(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before EOF block",
                )));
            }
        }
    }
}
