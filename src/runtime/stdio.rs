//! The guest's stdin, stdout and stderr as host objects with bounded memory.
//!
//! The engine's `Pipe` is an unbounded channel: a guest writing faster than the client reads
//! would pile its whole output up in host memory, and a request body written into it up front
//! would sit there whole. [`GuestStdout`] and [`GuestStdin`] are bounded channels instead: when
//! stdout is full the guest's `fd_write` waits, so a slow client slows the guest down; when
//! stdin is full the upload waits, so a guest that reads slowly (or never) slows the client.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSender, WaitForCancellationFutureOwned};
use wasmer_wasix::VirtualFile;

/// Largest piece of output carried in one channel message.
const STDOUT_CHUNK: usize = 64 * 1024;
/// Messages in flight per request: at most `STDOUT_CHUNK × STDOUT_CHUNKS` bytes are buffered.
const STDOUT_CHUNKS: usize = 16;
/// Guest stderr logged per request; the rest is counted and dropped.
const STDERR_BUDGET: usize = 64 * 1024;
/// Pieces of request body in flight to a guest's stdin. Each is what one read of the
/// connection gave (hyper reads at most about 400 KiB at a time).
const STDIN_CHUNKS: usize = 4;

/// What stdout and stderr have in common as files: nothing to read, no seeking.
macro_rules! write_only_stream {
    ($file:ty) => {
        impl AsyncRead for $file {
            fn poll_read(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
                _buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }

        impl AsyncSeek for $file {
            fn start_seek(self: Pin<&mut Self>, _position: io::SeekFrom) -> io::Result<()> {
                Err(io::ErrorKind::Unsupported.into())
            }
            fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
                Poll::Ready(Ok(0))
            }
        }
    };
}

/// The `VirtualFile` methods of a stream with no metadata.
macro_rules! stream_file_metadata {
    () => {
        fn last_accessed(&self) -> u64 {
            0
        }
        fn last_modified(&self) -> u64 {
            0
        }
        fn created_time(&self) -> u64 {
            0
        }
        fn size(&self) -> u64 {
            0
        }
        fn set_len(&mut self, _new_size: u64) -> wasmer_wasix::virtual_fs::Result<()> {
            Err(wasmer_wasix::FsError::PermissionDenied)
        }
        fn unlink(&mut self) -> wasmer_wasix::virtual_fs::Result<()> {
            Ok(())
        }
    };
}

/// The receiving end of a guest's stdout: output chunks in the order the guest wrote them,
/// ending when the guest's instance is gone.
pub type StdoutReceiver = mpsc::Receiver<Bytes>;

/// Creates the guest's stdout and the host end that reads it. Once `abandoned` is
/// cancelled, writes fail, even a write already waiting for room.
pub fn stdout_channel(abandoned: CancellationToken) -> (GuestStdout, StdoutReceiver) {
    let (sender, receiver) = mpsc::channel(STDOUT_CHUNKS);
    let inner = StdoutInner {
        sender: PollSender::new(sender),
        abandoned: Box::pin(abandoned.cancelled_owned()),
    };
    (
        GuestStdout {
            inner: Mutex::new(inner),
        },
        receiver,
    )
}

/// The guest's stdout: writes wait while the host end is full and fail with a broken pipe
/// once the host end is gone (the client disconnected or the response was refused).
#[derive(Debug)]
pub struct GuestStdout {
    // The engine wants `Sync` stdio; the mutex is never contended, only `get_mut` is used.
    inner: Mutex<StdoutInner>,
}

#[derive(Debug)]
struct StdoutInner {
    sender: PollSender<Bytes>,
    abandoned: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl GuestStdout {
    fn inner(&mut self) -> &mut StdoutInner {
        self.inner
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StdoutInner {
    /// Waits for room for one chunk; fails once the output is no longer wanted.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.abandoned.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        ready!(self.sender.poll_reserve(cx)).map_err(broken_pipe)?;
        Poll::Ready(Ok(()))
    }
}

fn broken_pipe<E>(_: E) -> io::Error {
    io::ErrorKind::BrokenPipe.into()
}

impl AsyncWrite for GuestStdout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let inner = self.inner();
        ready!(inner.poll_room(cx))?;
        let len = buf.len().min(STDOUT_CHUNK);
        inner
            .sender
            .send_item(Bytes::copy_from_slice(&buf[..len]))
            .map_err(broken_pipe)?;
        Poll::Ready(Ok(len))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().sender.close();
        Poll::Ready(Ok(()))
    }
}

write_only_stream!(GuestStdout);

impl VirtualFile for GuestStdout {
    stream_file_metadata!();
    fn poll_read_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(0))
    }
    fn is_open(&self) -> bool {
        self.inner
            .lock()
            .is_ok_and(|inner| !inner.sender.is_closed())
    }
    fn poll_write_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        ready!(self.inner().poll_room(cx))?;
        Poll::Ready(Ok(STDOUT_CHUNK))
    }
}

/// The guest's stderr: each line goes to the server log tagged with the request id, up to a
/// per-request budget. It never reaches the client.
#[derive(Debug)]
pub struct GuestLog {
    request_id: String,
    line: Vec<u8>,
    logged: usize,
    dropped: usize,
}

impl GuestLog {
    pub fn new(request_id: impl Into<String>) -> Self {
        GuestLog {
            request_id: request_id.into(),
            line: Vec::new(),
            logged: 0,
            dropped: 0,
        }
    }

    /// The request whose instance writes this log.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    fn accept(&mut self, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            let room = STDERR_BUDGET.saturating_sub(self.logged + self.line.len());
            let kept = chunk.len().min(room);
            self.line.extend_from_slice(&chunk[..kept]);
            self.dropped += chunk.len() - kept;
            if chunk.ends_with(b"\n") {
                self.emit_line();
            }
        }
    }

    fn emit_line(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        tracing::warn!(target: "wcgi::guest", request = %self.request_id, "{}", text.trim_end());
        self.logged += self.line.len();
        self.line.clear();
    }
}

impl Drop for GuestLog {
    fn drop(&mut self) {
        self.emit_line();
        if self.dropped > 0 {
            tracing::warn!(
                target: "wcgi::guest",
                request = %self.request_id,
                "stderr over {STDERR_BUDGET} bytes; {} more bytes not logged",
                self.dropped
            );
        }
    }
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

write_only_stream!(GuestLog);

impl VirtualFile for GuestLog {
    stream_file_metadata!();
    fn poll_read_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(0))
    }
    fn poll_write_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(STDERR_BUDGET))
    }
}

/// The host end of a guest's stdin: send the request body's pieces as they arrive, an error
/// if the body breaks off, and drop it at the end of the body. Sending fails once the guest's
/// instance is gone.
pub type StdinSender = mpsc::Sender<io::Result<Bytes>>;

/// Creates a guest's stdin and the host end that feeds it. Once `abandoned` is cancelled
/// (the watchdog stops the instance), reads fail, even a read already waiting: the engine
/// cannot interrupt a guest blocked reading a file, so the file itself must give up.
pub fn stdin_channel(abandoned: CancellationToken) -> (StdinSender, GuestStdin) {
    let (sender, receiver) = mpsc::channel(STDIN_CHUNKS);
    let inner = StdinInner {
        receiver,
        current: Bytes::new(),
        ended: false,
        abandoned: Box::pin(abandoned.cancelled_owned()),
    };
    (
        sender,
        GuestStdin {
            inner: Mutex::new(inner),
        },
    )
}

/// The guest's stdin: the request body as it arrives, then end-of-file.
#[derive(Debug)]
pub struct GuestStdin {
    // As for stdout: the engine wants `Sync`; only `get_mut` is used.
    inner: Mutex<StdinInner>,
}

#[derive(Debug)]
struct StdinInner {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
    /// What is left of the piece being read.
    current: Bytes,
    ended: bool,
    abandoned: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl GuestStdin {
    fn inner(&mut self) -> &mut StdinInner {
        self.inner
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StdinInner {
    /// Waits until there is something to read, or the end; returns how much is readable.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while self.current.is_empty() && !self.ended {
            if self.abandoned.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
            }
            match ready!(self.receiver.poll_recv(cx)) {
                Some(Ok(piece)) => self.current = piece,
                Some(Err(error)) => {
                    self.ended = true;
                    return Poll::Ready(Err(error));
                }
                None => self.ended = true,
            }
        }
        Poll::Ready(Ok(self.current.len()))
    }
}

impl AsyncRead for GuestStdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = self.inner();
        let available = ready!(inner.poll_fill(cx))?;
        let len = available.min(buf.remaining());
        buf.put_slice(&inner.current.split_to(len));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for GuestStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::PermissionDenied.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for GuestStdin {
    fn start_seek(self: Pin<&mut Self>, _position: io::SeekFrom) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(0))
    }
}

impl VirtualFile for GuestStdin {
    stream_file_metadata!();
    fn poll_read_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.inner().poll_fill(cx)
    }
    fn poll_write_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(0))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn stdin_reads_the_pieces_in_order_then_ends() {
        let (sender, mut stdin) = stdin_channel(CancellationToken::new());
        let feeding = tokio::spawn(async move {
            for piece in ["hello ", "", "world"] {
                sender.send(Ok(Bytes::from(piece))).await.unwrap();
            }
        });
        let mut read = String::new();
        stdin.read_to_string(&mut read).await.unwrap();
        assert_eq!(read, "hello world");
        feeding.await.unwrap();
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_a_read_error() {
        let (sender, mut stdin) = stdin_channel(CancellationToken::new());
        sender.send(Ok(Bytes::from("part"))).await.unwrap();
        sender
            .send(Err(io::ErrorKind::ConnectionReset.into()))
            .await
            .unwrap();
        let mut read = Vec::new();
        let error = stdin.read_to_end(&mut read).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(read, b"part");
    }

    #[tokio::test]
    async fn the_feeder_waits_while_the_guest_does_not_read() {
        let (sender, stdin) = stdin_channel(CancellationToken::new());
        for _ in 0..STDIN_CHUNKS {
            sender.try_send(Ok(Bytes::from("x"))).unwrap();
        }
        assert!(sender.try_send(Ok(Bytes::from("x"))).is_err(), "unbounded");
        // Once the guest is gone, sending fails instead of piling up.
        drop(stdin);
        assert!(sender.send(Ok(Bytes::from("x"))).await.is_err());
    }

    #[tokio::test]
    async fn a_read_waiting_for_the_body_gives_up_when_the_instance_is_stopped() {
        let abandoned = CancellationToken::new();
        let (_sender, mut stdin) = stdin_channel(abandoned.clone());
        let stop = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            abandoned.cancel();
        });
        let mut byte = [0u8; 1];
        let error = stdin.read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
        stop.await.unwrap();
    }
}
