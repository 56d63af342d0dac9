//! A host file as a guest sees it, read and written synchronously on the guest's own thread.
//!
//! The engine's host filesystem wraps each file in a Tokio file, which hands every read, write
//! and seek to Tokio's blocking pool and parks the guest until it is done: two thread switches
//! per call. A guest already runs on a thread of its own that may block, and the files it
//! reads (a SQLite database page by page, scripts) are in the page cache, so the call itself
//! costs microseconds; the hand-offs were 13% of a WordPress request's CPU under perf.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use wasmer_wasix::virtual_fs::{self, FsError, VirtualFile};

#[derive(Debug)]
pub struct HostFile {
    file: File,
    /// Where it is on the host, for `unlink`.
    host_path: PathBuf,
    /// The result of a seek started and not yet collected.
    seek: Option<io::Result<u64>>,
}

impl HostFile {
    pub fn new(file: File, host_path: PathBuf) -> Self {
        HostFile {
            file,
            host_path,
            seek: None,
        }
    }

    fn time(&self, which: fn(&std::fs::Metadata) -> io::Result<SystemTime>) -> u64 {
        self.file
            .metadata()
            .and_then(|metadata| which(&metadata))
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos() as u64)
    }
}

impl VirtualFile for HostFile {
    fn last_accessed(&self) -> u64 {
        self.time(std::fs::Metadata::accessed)
    }

    fn last_modified(&self) -> u64 {
        self.time(std::fs::Metadata::modified)
    }

    fn created_time(&self) -> u64 {
        self.time(std::fs::Metadata::created)
    }

    fn set_times(&mut self, atime: Option<u64>, mtime: Option<u64>) -> virtual_fs::Result<()> {
        // Nanoseconds since the epoch, as the other timestamps here.
        let time = |nanos: u64| UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
        let mut times = std::fs::FileTimes::new();
        if let Some(atime) = atime {
            times = times.set_accessed(time(atime));
        }
        if let Some(mtime) = mtime {
            times = times.set_modified(time(mtime));
        }
        self.file.set_times(times).map_err(|_| FsError::IOError)
    }

    fn size(&self) -> u64 {
        self.file.metadata().map_or(0, |metadata| metadata.len())
    }

    fn set_len(&mut self, new_size: u64) -> virtual_fs::Result<()> {
        self.file.set_len(new_size).map_err(Into::into)
    }

    fn unlink(&mut self) -> virtual_fs::Result<()> {
        std::fs::remove_file(&self.host_path).map_err(Into::into)
    }

    fn poll_read_ready(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // What is left to read from the cursor.
        let remaining = (|| {
            let cursor = self.file.stream_position()?;
            let end = self.file.metadata()?.len();
            Ok(end.saturating_sub(cursor) as usize)
        })();
        Poll::Ready(remaining)
    }

    fn poll_write_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(8192))
    }
}

impl AsyncRead for HostFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = self.file.read(buf.initialize_unfilled());
        Poll::Ready(read.map(|count| buf.advance(count)))
    }
}

impl AsyncWrite for HostFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.file.write(buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.file.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.file.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for HostFile {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let result = self.file.seek(position);
        self.seek = Some(result);
        Ok(())
    }

    fn poll_complete(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        // Without a seek started, where the cursor is (as Tokio's files answer).
        let result = match self.seek.take() {
            Some(result) => result,
            None => self.file.stream_position(),
        };
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn reads_writes_and_seeks_go_straight_to_the_host_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut file = HostFile::new(file, path.clone());
        file.write_all(b"hello world").await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        assert_eq!(file.seek(SeekFrom::Start(6)).await.unwrap(), 6);
        let mut rest = String::new();
        file.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "world");
        assert_eq!(file.size(), 11);

        // WASI timestamps are nanoseconds.
        let mtime = 1_700_000_000_123_456_789;
        file.set_times(None, Some(mtime)).unwrap();
        assert_eq!(file.last_modified(), mtime);

        file.set_len(5).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        file.unlink().unwrap();
        assert!(!path.exists());
    }
}
