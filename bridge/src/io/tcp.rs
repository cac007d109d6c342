//! RFC 4571 framing for ICE-TCP (RFC 6544): each datagram on a TCP connection
//! is preceded by its length as two big-endian bytes.
//!
//! [`Deframer`] cuts the byte stream of one connection back into datagrams,
//! across reads that split frames anywhere or carry several; [`FrameBacklog`]
//! holds framed datagrams the socket has not taken yet (short writes). Both own
//! one fixed buffer, allocated when the connection is set up: nothing is
//! allocated per frame, and a peer cannot make either grow.

use std::ops::Range;

/// Largest datagram accepted in a frame: what the UDP receive path takes too
/// (its buffers are 2048 bytes). A frame announcing more closes the
/// connection: no WebRTC peer sends datagrams that large.
pub const MAX_FRAME: usize = 2048;

/// Bytes of the length prefix.
pub const PREFIX: usize = 2;

/// Receive buffer per connection: room for a few frames per read.
pub const READ_BUF: usize = 4 * (PREFIX + MAX_FRAME);

/// Send backlog per connection: framed datagrams the socket did not take yet.
/// About 40 ms of a 10 Mbit/s receiver; beyond it frames are dropped (a
/// receiver that slow loses packets on UDP too, and NACK/PLI repair it).
pub const BACKLOG: usize = 64 * 1024;

/// Why a connection's byte stream cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame announced more than [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    Oversized(usize),
}

/// The receive side of one connection: bytes in, datagrams out, in place.
///
/// Read into [`Deframer::spare`], report the count with
/// [`Deframer::filled`], then take frames with [`Deframer::next_frame`] until
/// it returns `Ok(None)` (an incomplete frame waits for the next read).
pub struct Deframer {
    buf: Box<[u8]>,
    /// Start of the unread bytes.
    start: usize,
    /// End of the bytes read.
    end: usize,
}

impl std::fmt::Debug for Deframer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deframer")
            .field("buffered", &(self.end - self.start))
            .finish()
    }
}

impl Default for Deframer {
    fn default() -> Self {
        Self::new()
    }
}

impl Deframer {
    /// An empty deframer with a [`READ_BUF`]-byte buffer.
    pub fn new() -> Self {
        Self {
            buf: vec![0; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes read but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The free space to read into. Never empty once every complete frame was
    /// taken: what is left of an incomplete frame is moved to the front first,
    /// and a frame fits the buffer.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && (self.start == self.end || self.end + PREFIX + MAX_FRAME > READ_BUF) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        self.buf.get_mut(self.end..).unwrap_or_default()
    }

    /// Records that `n` bytes were read into [`Deframer::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Appends `bytes` (read elsewhere, e.g. by the listener before the
    /// hand-off); returns how many fitted.
    pub fn extend(&mut self, bytes: &[u8]) -> usize {
        let spare = self.spare();
        let n = bytes.len().min(spare.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        self.filled(n);
        n
    }

    /// The next complete frame's datagram, to be handled in place; `Ok(None)`
    /// when the buffered bytes end inside a frame. Empty frames are skipped.
    pub fn next_frame(&mut self) -> Result<Option<&mut [u8]>, FrameError> {
        loop {
            let Some(range) = self.peek()? else {
                return Ok(None);
            };
            self.start = range.end;
            if !range.is_empty() {
                return Ok(self.buf.get_mut(range));
            }
        }
    }

    fn peek(&self) -> Result<Option<Range<usize>>, FrameError> {
        let rest = self.buf.get(self.start..self.end).unwrap_or_default();
        let Some(&[hi, lo]) = rest.get(..PREFIX) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len > MAX_FRAME {
            return Err(FrameError::Oversized(len));
        }
        if rest.len() < PREFIX + len {
            return Ok(None);
        }
        let first = self.start + PREFIX;
        Ok(Some(first..first + len))
    }
}

/// Framed datagrams waiting for the socket, in one fixed buffer.
pub struct FrameBacklog {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl std::fmt::Debug for FrameBacklog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBacklog")
            .field("bytes", &self.len())
            .finish()
    }
}

impl Default for FrameBacklog {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameBacklog {
    /// An empty backlog of [`BACKLOG`] bytes.
    pub fn new() -> Self {
        Self::with_capacity(BACKLOG)
    }

    /// An empty backlog of `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Appends `datagram` with its length prefix; `false` (and nothing
    /// appended) when it is too long for a frame or the backlog is full: a
    /// frame is never written in part.
    pub fn push(&mut self, datagram: &[u8]) -> bool {
        let Ok(len) = u16::try_from(datagram.len()) else {
            return false;
        };
        let need = PREFIX + datagram.len();
        if self.buf.len() - self.len() < need {
            return false;
        }
        if self.buf.len() - self.end < need {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let Some(slot) = self.buf.get_mut(self.end..self.end + need) else {
            return false;
        };
        slot[..PREFIX].copy_from_slice(&len.to_be_bytes());
        slot[PREFIX..].copy_from_slice(datagram);
        self.end += need;
        true
    }

    /// The bytes to write next.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Forgets the first `n` bytes of [`FrameBacklog::pending`] (written).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(datagram: &[u8]) -> Vec<u8> {
        let mut v = (datagram.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(datagram);
        v
    }

    /// Feeds `chunks` as successive reads; returns the datagrams in order.
    fn deframe(chunks: &[&[u8]]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut d = Deframer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let n = d.extend(rest);
                assert!(n > 0, "the deframer always has room");
                rest = &rest[n..];
                while let Some(f) = d.next_frame()? {
                    out.push(f.to_vec());
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn frames_split_across_reads_anywhere_are_put_back_together() {
        let a: Vec<u8> = (0..200u8).collect();
        let b = vec![0xAB; MAX_FRAME];
        let stream = [frame(&a), frame(&b)].concat();
        for cut in [1, 2, 3, 100, 202, 203, 1000, stream.len() - 1] {
            let (x, y) = stream.split_at(cut);
            let got = deframe(&[x, y]).expect("deframes");
            assert_eq!(got, vec![a.clone(), b.clone()], "cut at {cut}");
        }
        // One byte per read.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(deframe(&bytes).expect("deframes"), vec![a, b]);
    }

    #[test]
    fn several_frames_in_one_read_come_out_one_by_one() {
        let datagrams: Vec<Vec<u8>> = (1..=20u8).map(|i| vec![i; usize::from(i) * 10]).collect();
        let stream: Vec<u8> = datagrams.iter().flat_map(|d| frame(d)).collect();
        assert!(stream.len() < READ_BUF);
        assert_eq!(deframe(&[&stream]).expect("deframes"), datagrams);
    }

    #[test]
    fn a_long_stream_runs_through_the_fixed_buffer() {
        // Far more than READ_BUF bytes, in reads that end mid-frame: the buffer
        // compacts instead of growing.
        let datagrams: Vec<Vec<u8>> = (0..500u32)
            .map(|i| vec![i as u8; 900 + (i as usize * 37) % 1100])
            .collect();
        let stream: Vec<u8> = datagrams.iter().flat_map(|d| frame(d)).collect();
        let chunks: Vec<&[u8]> = stream.chunks(1234).collect();
        assert_eq!(deframe(&chunks).expect("deframes"), datagrams);
    }

    #[test]
    fn an_oversized_length_is_an_error_before_its_bytes_arrive() {
        let mut d = Deframer::new();
        d.extend(&frame(b"ok"));
        d.extend(&((MAX_FRAME + 1) as u16).to_be_bytes());
        assert_eq!(
            d.next_frame().expect("first frame").map(|f| f.to_vec()),
            Some(b"ok".to_vec())
        );
        assert_eq!(d.next_frame(), Err(FrameError::Oversized(MAX_FRAME + 1)));
        let mut d = Deframer::new();
        d.extend(&[0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(FrameError::Oversized(65_535)));
    }

    #[test]
    fn empty_frames_are_skipped_and_a_lone_prefix_byte_waits() {
        let mut d = Deframer::new();
        d.extend(&[0, 0, 0, 0]);
        d.extend(&frame(b"x"));
        d.extend(&[0]);
        assert_eq!(
            d.next_frame().expect("frame").map(|f| f.to_vec()),
            Some(b"x".to_vec())
        );
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered(), 1);
        d.extend(&[3, b'a', b'b']);
        assert_eq!(d.next_frame(), Ok(None));
        d.extend(b"c");
        assert_eq!(
            d.next_frame().expect("frame").map(|f| f.to_vec()),
            Some(b"abc".to_vec())
        );
    }

    #[test]
    fn datagrams_are_handled_in_place() {
        let mut d = Deframer::new();
        d.extend(&frame(b"abcd"));
        if let Some(f) = d.next_frame().expect("frame") {
            f[0] = b'z';
        }
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn backlog_frames_and_keeps_order_across_short_writes() {
        let mut b = FrameBacklog::with_capacity(64);
        assert!(b.push(b"hello"));
        assert!(b.push(b"world!"));
        assert_eq!(b.pending(), [frame(b"hello"), frame(b"world!")].concat());
        b.consume(3); // a short write
        assert_eq!(
            b.pending(),
            &[frame(b"hello"), frame(b"world!")].concat()[3..]
        );
        b.consume(b.len());
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_backlog_refuses_whole_frames_and_takes_more_once_written() {
        let mut b = FrameBacklog::with_capacity(20);
        assert!(b.push(&[1; 8])); // 10 bytes
        assert!(b.push(&[2; 8])); // 20 bytes: full
        assert!(!b.push(&[3; 1]), "no partial frame when full");
        assert_eq!(b.len(), 20);
        b.consume(10);
        // 10 bytes free, at the front: compacted, not grown.
        assert!(b.push(&[4; 8]));
        assert_eq!(b.pending(), [frame(&[2; 8]), frame(&[4; 8])].concat());
        assert!(
            !FrameBacklog::new().push(&vec![0; 70_000]),
            "longer than a frame"
        );
    }
}
