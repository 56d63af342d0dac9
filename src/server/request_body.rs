//! Request bodies, streamed: the request is admitted from its head, then its body is fed to
//! the guest's stdin as it arrives, through a bounded channel. Nothing here holds a whole body
//! in memory: a body whose length the head does not give (chunked) is spooled to an unlinked
//! temporary file past its first 64 KiB, because CGI must tell the guest its length first.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::StdinSender;

/// Chunked bodies up to this size are spooled in memory; larger ones go to a file.
const SPOOL_IN_MEMORY: usize = 64 * 1024;
/// Piece size when feeding a spooled body from its file.
const SPOOL_READ: usize = 64 * 1024;
/// How much of a refused body is read and dropped, at most, before answering 413.
const DRAIN_AT_MOST: usize = 1024 * 1024;
const DRAIN_FOR_AT_MOST: std::time::Duration = std::time::Duration::from_secs(1);

/// What the head says of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredBody {
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding` without a length: only the end of the body tells its size.
    Chunked,
}

impl DeclaredBody {
    /// Reads the head; hyper has already refused heads whose framing is contradictory.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        if let Some(length) = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        {
            DeclaredBody::Length(length)
        } else if headers.contains_key(header::TRANSFER_ENCODING) {
            DeclaredBody::Chunked
        } else {
            DeclaredBody::None
        }
    }
}

/// A request body not read yet.
pub struct PendingBody {
    pub declared: DeclaredBody,
    pub body: Body,
}

/// Why a body could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over `--max-body`.
    TooLarge,
    /// Not complete by the request's deadline.
    TooSlow,
    /// The client broke it off or sent bad framing.
    Broken,
}

/// A body whose length is known, ready to feed to a guest.
pub struct SizedBody {
    /// `CONTENT_LENGTH`; `None` when the request has no body.
    pub length: Option<u64>,
    source: Source,
}

enum Source {
    Empty,
    /// Read from the connection while the guest runs.
    Live(Body),
    Spooled(Spool),
}

impl SizedBody {
    pub fn empty() -> Self {
        SizedBody {
            length: None,
            source: Source::Empty,
        }
    }
}

impl PendingBody {
    /// Learns the body's length: from the head, or for a chunked body by spooling it, which
    /// stops at `max_body` and at the deadline.
    pub async fn size(self, max_body: u64, deadline: Instant) -> Result<SizedBody, BodyError> {
        match self.declared {
            DeclaredBody::None => Ok(SizedBody::empty()),
            DeclaredBody::Length(length) => Ok(SizedBody {
                length: Some(length),
                source: Source::Live(self.body),
            }),
            DeclaredBody::Chunked => {
                let spooling = Spool::read(self.body, max_body);
                let spool = tokio::time::timeout_at(deadline, spooling)
                    .await
                    .map_err(|_| BodyError::TooSlow)??;
                Ok(SizedBody {
                    length: Some(spool.len),
                    source: Source::Spooled(spool),
                })
            }
        }
    }
}

/// Whether the whole body reached the guest's stdin (or there was none).
#[derive(Debug, Clone)]
pub struct FeedProgress(Arc<AtomicBool>);

impl FeedProgress {
    pub fn is_complete(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl SizedBody {
    /// Feeds the body to a guest's stdin on a task of its own. The task ends when the body
    /// ends, breaks off, or the instance ends (`instance_ended` is cancelled), whichever is
    /// first, and drops the rest of the body; a guest that does not read stalls it, and with
    /// it the upload.
    pub fn feed(self, stdin: StdinSender, instance_ended: CancellationToken) -> FeedProgress {
        let complete = Arc::new(AtomicBool::new(false));
        let progress = FeedProgress(complete.clone());
        tokio::spawn(async move {
            // The engine may keep the instance's files a while after it ended, so the closing
            // of stdin is not the signal to rely on.
            let fed = tokio::select! {
                fed = feed_source(self.source, &stdin) => fed,
                () = instance_ended.cancelled() => false,
            };
            complete.store(fed, Ordering::Release);
        });
        progress
    }
}

/// Sends every piece; returns whether the body ended normally.
async fn feed_source(source: Source, stdin: &StdinSender) -> bool {
    match source {
        Source::Empty => true,
        Source::Live(mut body) => loop {
            match body.frame().await {
                None => return true,
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: CGI has no place for them
                    };
                    if stdin.send(Ok(data)).await.is_err() {
                        return false;
                    }
                }
                Some(Err(error)) => {
                    let _ = stdin.send(Err(io::Error::other(error))).await;
                    return false;
                }
            }
        },
        Source::Spooled(spool) => match spool.feed(stdin).await {
            Ok(fed) => fed,
            Err(error) => {
                tracing::warn!("cannot read a spooled request body back: {error}");
                let _ = stdin.send(Err(error)).await;
                false
            }
        },
    }
}

/// After refusing a body, reads (and drops) a bounded amount more of it, so that a client
/// still sending sees the 413 instead of a connection reset: closing a socket with unread
/// data makes the kernel reset it, which can destroy the response in flight (nginx's
/// lingering close does the same).
async fn drain_a_little(body: &mut Body) {
    let draining = async {
        let mut drained = 0usize;
        while drained < DRAIN_AT_MOST {
            match body.frame().await {
                Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |data| data.len()),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_FOR_AT_MOST, draining).await;
}

/// A chunked body read to its end: its first pieces in memory, the rest in an unlinked
/// temporary file.
struct Spool {
    in_memory: Vec<Bytes>,
    in_memory_len: usize,
    file: Option<tokio::fs::File>,
    len: u64,
}

impl Spool {
    async fn read(mut body: Body, max_body: u64) -> Result<Spool, BodyError> {
        let mut spool = Spool {
            in_memory: Vec::new(),
            in_memory_len: 0,
            file: None,
            len: 0,
        };
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Broken)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            spool.len += data.len() as u64;
            if spool.len > max_body {
                drain_a_little(&mut body).await;
                return Err(BodyError::TooLarge);
            }
            spool.push(data).await.map_err(|error| {
                tracing::warn!("cannot spool a request body: {error}");
                BodyError::Broken
            })?;
        }
        Ok(spool)
    }

    async fn push(&mut self, data: Bytes) -> io::Result<()> {
        if self.file.is_none() && self.in_memory_len + data.len() <= SPOOL_IN_MEMORY {
            self.in_memory_len += data.len();
            self.in_memory.push(data);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = tokio::task::spawn_blocking(tempfile::tempfile)
                    .await
                    .map_err(io::Error::other)??;
                self.file.insert(tokio::fs::File::from_std(file))
            }
        };
        file.write_all(&data).await
    }

    async fn feed(self, stdin: &StdinSender) -> io::Result<bool> {
        for piece in self.in_memory {
            if stdin.send(Ok(piece)).await.is_err() {
                return Ok(false);
            }
        }
        let Some(mut file) = self.file else {
            return Ok(true);
        };
        file.flush().await?;
        file.seek(io::SeekFrom::Start(0)).await?;
        loop {
            let mut piece = vec![0; SPOOL_READ];
            let read = file.read(&mut piece).await?;
            if read == 0 {
                return Ok(true);
            }
            piece.truncate(read);
            if stdin.send(Ok(Bytes::from(piece))).await.is_err() {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::stdin_channel;
    use tokio::io::AsyncReadExt;

    fn chunked(pieces: Vec<&'static [u8]>) -> PendingBody {
        let stream = futures_util::stream::iter(
            pieces
                .into_iter()
                .map(|piece| Ok::<_, io::Error>(Bytes::from_static(piece))),
        );
        PendingBody {
            declared: DeclaredBody::Chunked,
            body: Body::from_stream(stream),
        }
    }

    fn far_deadline() -> Instant {
        Instant::now() + std::time::Duration::from_secs(60)
    }

    #[tokio::test]
    async fn a_chunked_body_is_sized_then_fed_whole() {
        let big: &'static [u8] = Box::leak(vec![7u8; 3 * SPOOL_IN_MEMORY].into_boxed_slice());
        let body = chunked(vec![b"head ", big, b" tail"]);
        let sized = body.size(u64::MAX, far_deadline()).await.unwrap();
        let expected = 10 + big.len() as u64;
        assert_eq!(sized.length, Some(expected));
        let (sender, mut stdin) = stdin_channel(CancellationToken::new());
        let progress = sized.feed(sender, CancellationToken::new());
        let mut read = Vec::new();
        stdin.read_to_end(&mut read).await.unwrap();
        // The feeder marks the body complete just after its last piece went out.
        for _ in 0..100 {
            if progress.is_complete() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(progress.is_complete());
        assert_eq!(read.len() as u64, expected);
        assert!(read.starts_with(b"head \x07") && read.ends_with(b"\x07 tail"));
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_is_refused() {
        let body = chunked(vec![b"0123456789", b"0123456789"]);
        let refused = body.size(15, far_deadline()).await.err();
        assert_eq!(refused, Some(BodyError::TooLarge));
    }

    #[test]
    fn the_head_declares_the_body() {
        let mut headers = HeaderMap::new();
        assert_eq!(DeclaredBody::from_headers(&headers), DeclaredBody::None);
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert_eq!(DeclaredBody::from_headers(&headers), DeclaredBody::Chunked);
        headers.insert(header::CONTENT_LENGTH, "12".parse().unwrap());
        assert_eq!(
            DeclaredBody::from_headers(&headers),
            DeclaredBody::Length(12)
        );
    }
}
