//! Per-stream plumbing shared by both roles: chunked, flow-controlled sending and message
//! reassembly with receive-window accounting.

use std::collections::VecDeque;

use crate::{TunnelError, CHUNK, MAX_MESSAGE};

/// Something to send on one stream, in order.
#[derive(Debug)]
pub(crate) enum Piece<C> {
    /// Message data: `first` carries the full size on the message's first chunk.
    Data { first: Option<u32>, bytes: Vec<u8> },
    /// A frame without data (half-close, close-stream); waits behind the data before it.
    Control(C),
}

/// The sending half of a stream: pieces wait here until the peer's window lets them go.
#[derive(Debug)]
pub(crate) struct Outgoing<C> {
    pending: VecDeque<Piece<C>>,
    /// Bytes the peer will still accept; `None` = no flow control (revision zero).
    window: Option<u64>,
}

impl<C> Outgoing<C> {
    pub(crate) fn new(window: Option<u32>) -> Self {
        Self {
            pending: VecDeque::new(),
            window: window.map(u64::from),
        }
    }

    /// Queue one whole message, split into chunks of at most [`CHUNK`] bytes.
    pub(crate) fn message(&mut self, data: &[u8]) {
        let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut chunks = data.chunks(CHUNK);
        let first = chunks.next().unwrap_or(&[]).to_vec();
        self.pending.push_back(Piece::Data {
            first: Some(size),
            bytes: first,
        });
        for c in chunks {
            self.pending.push_back(Piece::Data {
                first: None,
                bytes: c.to_vec(),
            });
        }
    }

    pub(crate) fn control(&mut self, c: C) {
        self.pending.push_back(Piece::Control(c));
    }

    /// The peer granted `n` more bytes.
    pub(crate) fn grant(&mut self, n: u32) {
        if let Some(w) = self.window.as_mut() {
            *w = w.saturating_add(u64::from(n));
        }
    }

    /// The next piece the window allows (a chunk is cut to what fits), or None.
    pub(crate) fn next(&mut self) -> Option<Piece<C>> {
        match self.pending.front_mut()? {
            Piece::Control(_) => self.pending.pop_front(),
            Piece::Data { first, bytes } => {
                let len = bytes.len() as u64;
                let allowed = self.window.map_or(len, |w| w.min(len));
                if allowed == 0 && len > 0 {
                    return None;
                }
                if let Some(w) = self.window.as_mut() {
                    *w -= allowed;
                }
                if allowed == len {
                    return self.pending.pop_front();
                }
                // `allowed < len <= CHUNK`, so this fits in usize.
                let rest = bytes.split_off(allowed as usize);
                let piece = Piece::Data {
                    first: first.take(),
                    bytes: std::mem::replace(bytes, rest),
                };
                Some(piece)
            }
        }
    }
}

/// The receiving half of a stream: reassembles messages, enforces our window.
#[derive(Debug)]
pub(crate) struct Incoming {
    partial: Option<(usize, Vec<u8>)>,
    /// Bytes the peer may still send; `None` = no flow control.
    window: Option<u64>,
    /// Consumed bytes to grant back with a window update.
    pub(crate) to_grant: u32,
}

impl Incoming {
    pub(crate) fn new(window: Option<u32>) -> Self {
        Self {
            partial: None,
            window: window.map(u64::from),
            to_grant: 0,
        }
    }

    fn charge(&mut self, n: usize) -> Result<(), TunnelError> {
        if let Some(w) = self.window.as_mut() {
            let n = n as u64;
            if n > *w {
                return Err(TunnelError::WindowExceeded);
            }
            *w -= n;
            // Consumed at once (buffered up to MAX_MESSAGE): give it back right away.
            self.to_grant = self.to_grant.saturating_add(n as u32);
        }
        Ok(())
    }

    /// The first chunk of a message; `Some(message)` when it is complete.
    pub(crate) fn first(
        &mut self,
        size: u32,
        data: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, TunnelError> {
        if self.partial.is_some() {
            return Err(TunnelError::Unexpected(
                "a new message before the last one was complete",
            ));
        }
        let size = size as usize;
        if size > MAX_MESSAGE {
            return Err(TunnelError::TooLarge(size as u64));
        }
        if data.len() > size {
            return Err(TunnelError::BadChunk);
        }
        self.charge(data.len())?;
        if data.len() == size {
            return Ok(Some(data));
        }
        self.partial = Some((size, data));
        Ok(None)
    }

    /// A following chunk; `Some(message)` when it completes the message.
    pub(crate) fn more(&mut self, data: Vec<u8>) -> Result<Option<Vec<u8>>, TunnelError> {
        let Some((size, mut buf)) = self.partial.take() else {
            return Err(TunnelError::Unexpected(
                "message data without a message start",
            ));
        };
        if buf.len() + data.len() > size {
            return Err(TunnelError::BadChunk);
        }
        self.charge(data.len())?;
        buf.extend_from_slice(&data);
        if buf.len() == size {
            return Ok(Some(buf));
        }
        self.partial = Some((size, buf));
        Ok(None)
    }

    /// Take the bytes to grant back (0 when nothing is due or without flow control).
    pub(crate) fn take_grant(&mut self) -> u32 {
        let n = std::mem::take(&mut self.to_grant);
        if let Some(w) = self.window.as_mut() {
            *w += u64::from(n);
        }
        n
    }
}
