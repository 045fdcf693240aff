//! TCP framing of syslog (RFC 6587): octet counting and LF-terminated frames, decoded
//! incrementally so a listener can feed whatever chunks its socket returns.

use crate::ingest::{IngestError, MAX_PAYLOAD_BYTES};

/// How a TCP stream separates messages (RFC 6587).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `<len> <msg>`.
    OctetCounting,
    /// Messages end with LF (a CR before it is dropped).
    Newline,
    /// Per frame: a digit starts an octet count, anything else an LF-terminated frame (what
    /// rsyslog and syslog-ng do; a syslog message itself always starts with `<`).
    Auto,
}

/// An incremental decoder: feed it socket chunks with [`FrameDecoder::push`], take frames with
/// [`FrameDecoder::next_frame`]. It holds at most one partial frame (bounded by `max_frame`).
///
/// Errors: an oversized frame is skipped (to its announced length, or to the next LF) and
/// reported once, so one bad message does not end the connection; a garbled octet count loses
/// the stream's framing for good, and every later call reports the same error: the listener
/// should close the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    framing: Framing,
    max_frame: usize,
    buf: Vec<u8>,
    /// Bytes of an oversized octet-counted frame still to discard.
    skip: usize,
    /// Discarding an oversized LF frame up to its LF.
    skip_line: bool,
    /// Stream offset of `buf[0]`, for error positions.
    offset: usize,
    broken: Option<IngestError>,
}

impl FrameDecoder {
    /// A decoder for `framing` that refuses frames above `max_frame` bytes (at most
    /// [`MAX_PAYLOAD_BYTES`], which is also the default the parsers enforce).
    pub fn new(framing: Framing, max_frame: usize) -> Self {
        FrameDecoder {
            framing,
            max_frame: max_frame.min(MAX_PAYLOAD_BYTES),
            buf: Vec::new(),
            skip: 0,
            skip_line: false,
            offset: 0,
            broken: None,
        }
    }

    /// Appends a chunk read from the socket; bytes of a frame being skipped are dropped here.
    pub fn push(&mut self, mut chunk: &[u8]) {
        if self.broken.is_some() {
            return;
        }
        if self.buf.is_empty() && self.skip > 0 {
            let n = self.skip.min(chunk.len());
            self.skip -= n;
            self.offset += n;
            chunk = &chunk[n..];
        }
        if self.buf.is_empty() && self.skip_line {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.skip_line = false;
                    self.offset += i + 1;
                    chunk = &chunk[i + 1..];
                }
                None => {
                    self.offset += chunk.len();
                    return;
                }
            }
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes held for an unfinished frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the stream lost its framing (the listener should close the connection).
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// The next complete frame, `None` when more bytes are needed, or an error (see the type
    /// docs). Empty LF frames are skipped.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, IngestError>> {
        loop {
            if let Some(e) = &self.broken {
                return Some(Err(e.clone()));
            }
            let first = *self.buf.first()?;
            let counted = match self.framing {
                Framing::OctetCounting => true,
                Framing::Newline => false,
                Framing::Auto => first.is_ascii_digit(),
            };
            let frame = if counted {
                self.octet_frame()
            } else {
                self.line_frame()
            };
            match frame {
                Some(Ok(f)) if f.is_empty() && !counted => continue,
                other => return other,
            }
        }
    }

    /// Convenience for a listener: push a chunk and drain every finished frame.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Result<Vec<u8>, IngestError>> {
        self.push(chunk);
        let mut out = Vec::new();
        while let Some(f) = self.next_frame() {
            let stop = f.is_err() && self.is_broken();
            out.push(f);
            if stop {
                break;
            }
        }
        out
    }

    fn consume(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        self.offset += n;
        std::mem::replace(&mut self.buf, rest)
    }

    fn octet_frame(&mut self) -> Option<Result<Vec<u8>, IngestError>> {
        const W: &str = "octet-counting frame";
        let digits = self.buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == self.buf.len() && digits <= 10 {
            return None; // the length is still arriving
        }
        let at = self.offset;
        if digits == 0 || digits > 10 || self.buf[digits] != b' ' {
            let e = IngestError::malformed(W, "expected `<length> ` before the message", Some(at));
            self.broken = Some(e.clone());
            self.buf.clear();
            return Some(Err(e));
        }
        let len: usize = std::str::from_utf8(&self.buf[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        if len > self.max_frame {
            // Skip the announced bytes: those already here now, the rest as they arrive.
            self.consume(digits + 1);
            let here = len.min(self.buf.len());
            self.consume(here);
            self.skip = len - here;
            return Some(Err(IngestError::TooLarge {
                what: "frame",
                len,
                limit: self.max_frame,
            }));
        }
        if self.buf.len() < digits + 1 + len {
            return None;
        }
        self.consume(digits + 1);
        Some(Ok(self.consume(len)))
    }

    fn line_frame(&mut self) -> Option<Result<Vec<u8>, IngestError>> {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(i) if i <= self.max_frame + 1 => {
                let mut frame = self.consume(i + 1);
                frame.pop();
                if frame.last() == Some(&b'\r') {
                    frame.pop();
                }
                if frame.len() > self.max_frame {
                    return Some(Err(self.too_large(frame.len())));
                }
                Some(Ok(frame))
            }
            Some(i) => {
                self.consume(i + 1);
                Some(Err(self.too_large(i)))
            }
            None if self.buf.len() > self.max_frame + 1 => {
                let len = self.buf.len();
                self.consume(len);
                self.skip_line = true;
                Some(Err(self.too_large(len)))
            }
            None => None,
        }
    }

    fn too_large(&self, len: usize) -> IngestError {
        IngestError::TooLarge {
            what: "frame",
            len,
            limit: self.max_frame,
        }
    }
}
