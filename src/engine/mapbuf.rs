//! A buffer that is one anonymous mapping of its own, filled from the front: page-aligned (what
//! O_DIRECT needs of memory), costing only the pages written so far (a 4 KiB file in an 8 MiB
//! buffer holds 4 KiB), growing without a copy, and going back to the kernel the moment it is
//! dropped. A `Vec` comes from malloc, whose arenas keep freed memory and whose mmap threshold
//! moves with use, so the process's RSS would drift from what a memory budget counts.
//!
//! Used for an object store's part buffers (they are reused from part to part, so each page is
//! faulted in once per upload) and for large direct writes.

use std::io;
use std::ptr::NonNull;

/// Bytes in a mapping of their own. Owned by one user at a time (an upload, a ring op, a worker
/// thread that sends it).
pub struct MapBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
    /// How far a recv may fill (the upload's memory grant); at most `cap`.
    limit: usize,
    /// The most ever written: the pages of the mapping that are in memory.
    touched: usize,
}

// SAFETY: a MapBuf owns its mapping exclusively (nothing else holds the pointer), so moving it
// to another thread moves the only access to that memory with it.
unsafe impl Send for MapBuf {}
// SAFETY: `&MapBuf` gives only read access (`as_ref`); writes need `&mut`.
unsafe impl Sync for MapBuf {}

impl MapBuf {
    /// Maps `cap` bytes of address space; no memory is used until bytes are written.
    pub fn new(cap: usize) -> io::Result<MapBuf> {
        if cap == 0 {
            return Ok(MapBuf {
                ptr: NonNull::dangling(),
                cap: 0,
                len: 0,
                limit: 0,
                touched: 0,
            });
        }
        // SAFETY: an anonymous private mapping at an address the kernel picks touches no existing
        // memory; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(MapBuf {
            ptr,
            cap,
            len: 0,
            limit: cap,
            touched: 0,
        })
    }

    /// Bytes of the mapping in memory (written at some time since it was made).
    pub fn touched(&self) -> usize {
        self.touched.max(self.len)
    }

    /// Lets a recv fill up to `limit` bytes in all (clamped to the capacity).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(self.cap);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Appends as much of `bytes` as fits; returns how much that was.
    pub fn extend(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.cap - self.len);
        if n > 0 {
            // SAFETY: `len + n <= cap`, so the destination lies inside our mapping, which is
            // writable and owned by `self` (borrowed mutably); `bytes` cannot overlap it because
            // no slice of the unfilled part is ever handed out.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(self.len), n);
            }
            self.len += n;
        }
        n
    }

    /// Appends zeros up to `len` bytes in all (within the capacity): padding to a block for a
    /// direct write.
    pub fn pad_to(&mut self, len: usize) {
        let len = len.min(self.cap);
        if len > self.len {
            // SAFETY: `len <= cap`: the range lies inside our writable mapping, owned by `self`.
            unsafe {
                std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, len - self.len);
            }
            self.len = len;
        }
    }

    /// Empties the buffer for the next part; its pages stay mapped (already faulted in).
    pub fn clear(&mut self) {
        self.touched = self.touched();
        self.len = 0;
        self.limit = self.cap;
    }
}

// SAFETY: `as_ref` is the mapping's first `len` bytes, which do not move with the buffer (the
// mapping stays where it is) and are only written through `&mut self`, which an op holding the
// buffer excludes.
unsafe impl super::op::write::WriteSource for MapBuf {}

// SAFETY: the room is the mapping's unfilled part up to `limit` (<= cap): it belongs to this
// buffer, does not move with it, and no slice of it exists until `appended` makes it part of
// `as_ref`; `appended` is trusted only up to that room.
unsafe impl super::op::recv::AppendBuf for MapBuf {
    fn room(&mut self) -> (*mut u8, usize) {
        let room = self.limit.saturating_sub(self.len);
        // SAFETY: `len <= cap`, so the pointer stays within (or one past) the mapping.
        (unsafe { self.ptr.as_ptr().add(self.len) }, room)
    }

    fn appended(&mut self, n: usize) {
        self.len = (self.len + n).min(self.limit.max(self.len));
    }
}

impl AsRef<[u8]> for MapBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the mapping were written by `extend`; the mapping
        // lives as long as `self`, and a shared borrow of `self` excludes writes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MapBuf {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: `ptr`/`cap` are exactly the mapping `new` made, unmapped once, here; no
            // slice of it outlives `self`.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.cap);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_up_to_its_capacity_and_clears() {
        let mut b = MapBuf::new(10).unwrap();
        assert_eq!(b.extend(b"hello"), 5);
        assert_eq!(b.extend(b"world!!"), 5);
        assert_eq!(b.as_ref(), b"helloworld");
        assert_eq!(b.extend(b"x"), 0);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.extend(b"x"), 1);
        assert_eq!(b.as_ref(), b"x");
        let z = MapBuf::new(0).unwrap();
        assert_eq!(z.as_ref(), b"");
    }
}
