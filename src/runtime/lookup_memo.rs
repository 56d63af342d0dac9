//! What one instance has already learnt about a mount's paths. wasmer-wasix starts each
//! instance with an empty inode tree and asks the filesystem about every path again and again:
//! `symlink_metadata` and then `metadata` when it first meets a path, `metadata` once more for
//! each `stat` of it, and `symlink_metadata` for every probe of a path that is not there (it
//! never remembers those). On a mount each question costs an `openat2`, an `fstat` and a
//! `close`, and a WordPress page asks about 900 paths some 3,300 times.
//!
//! The answers are remembered for the life of one instance, so the instance sees its mounts as
//! they were when it first looked, the way PHP's own stat cache does within a request. Nothing
//! is shared between instances: the next request asks the host again, so an edited file is
//! seen at once. What the instance itself changes is never answered from memory:
//!
//! - a change by path (`mkdir`, `rmdir`, `unlink`, `rename`, an open that may create a file)
//!   forgets everything, since it can change what other paths resolve to;
//! - a path opened for writing is forgotten and never remembered again in that instance (nor
//!   the name a rename gives it), since writes through the descriptor change its size and times.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::BoxFuture;
use wasmer_wasix::virtual_fs::{
    self, FileOpener, FileSystem, FsError, Metadata, OpenOptions, OpenOptionsConfig, ReadDir,
    VirtualFile,
};

type SharedFileSystem = Arc<dyn FileSystem + Send + Sync>;

/// Paths remembered per instance at most; past that the instance asks the host each time, so a
/// guest that probes millions of names costs time, not memory.
const CAPACITY: usize = 16_384;

/// A mount as one instance sees it, with the answers it has already had.
#[derive(Debug)]
pub struct LookupMemo {
    inner: SharedFileSystem,
    memo: Mutex<Memo>,
}

#[derive(Debug, Default)]
struct Memo {
    /// `symlink_metadata`: the path itself, a last link not followed.
    links_kept: HashMap<PathBuf, Answer>,
    /// `metadata` of paths whose last component is a link (for the others it is the above).
    links_followed: HashMap<PathBuf, Answer>,
    /// Opened for writing by this instance: always asked afresh.
    written: HashSet<PathBuf>,
    /// Set once `written` is full: from then on every question goes to the host.
    off: bool,
    /// How many times everything was forgotten: an answer the host gave across a change is
    /// not kept.
    generation: u64,
}

/// What the host answered: the metadata, or that nothing is there.
#[derive(Debug, Clone)]
enum Answer {
    Found(Metadata),
    Missing,
}

impl Answer {
    /// The answer worth keeping: metadata, or "not there"; any other error is asked again.
    fn of(result: &virtual_fs::Result<Metadata>) -> Option<Answer> {
        match result {
            Ok(metadata) => Some(Answer::Found(metadata.clone())),
            Err(FsError::EntryNotFound) => Some(Answer::Missing),
            Err(_) => None,
        }
    }

    fn result(&self) -> virtual_fs::Result<Metadata> {
        match self {
            Answer::Found(metadata) => Ok(metadata.clone()),
            Answer::Missing => Err(FsError::EntryNotFound),
        }
    }
}

impl Memo {
    fn forget_all(&mut self) {
        self.links_kept.clear();
        self.links_followed.clear();
        self.generation += 1;
    }

    fn is_full(&self) -> bool {
        self.links_kept.len() + self.links_followed.len() >= CAPACITY
    }

    /// The answer already had for `path`, if it may be given. For a path that is not itself a
    /// link, `metadata` describes the same file as `symlink_metadata`: one answer serves both.
    fn recall(&self, path: &Path, follow_last: bool) -> Option<virtual_fs::Result<Metadata>> {
        if !self.answers(path) {
            return None;
        }
        let answer = match self.links_kept.get(path) {
            Some(Answer::Found(metadata)) if follow_last && metadata.ft.is_symlink() => {
                self.links_followed.get(path)
            }
            Some(answer) => Some(answer),
            None if follow_last => self.links_followed.get(path),
            None => None,
        };
        answer.map(Answer::result)
    }

    /// Whether the answer for `path` may come from memory.
    fn answers(&self, path: &Path) -> bool {
        !self.off && !self.written.contains(path)
    }

    /// A file still open for writing may be written under its new name: it stays unanswered.
    fn moved(&mut self, from: &Path, to: &Path) {
        let moved: Vec<PathBuf> = self
            .written
            .iter()
            .filter_map(|path| Some(to.join(path.strip_prefix(from).ok()?)))
            .collect();
        for path in moved {
            self.note_written(&path);
        }
    }

    /// Notes a path opened for writing; past the capacity the memo stops altogether.
    fn note_written(&mut self, path: &Path) {
        if self.written.len() >= CAPACITY {
            self.off = true;
            self.forget_all();
        } else {
            self.written.insert(path.to_path_buf());
        }
    }
}

impl LookupMemo {
    pub fn new(inner: SharedFileSystem) -> Self {
        LookupMemo {
            inner,
            memo: Mutex::default(),
        }
    }

    fn memo(&self) -> MutexGuard<'_, Memo> {
        self.memo.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a change by path, then forgets everything: whatever it did, no answer from before
    /// it is given after it.
    fn changing<T>(&self, change: impl FnOnce() -> T) -> T {
        let result = change();
        self.memo().forget_all();
        result
    }

    /// `metadata` (`follow_last`) or `symlink_metadata`, from memory where the instance has
    /// asked before.
    fn lookup(&self, path: &Path, follow_last: bool) -> virtual_fs::Result<Metadata> {
        let asked_in = {
            let memo = self.memo();
            if let Some(answer) = memo.recall(path, follow_last) {
                return answer;
            }
            memo.generation
        };
        let result = if follow_last {
            self.inner.metadata(path)
        } else {
            self.inner.symlink_metadata(path)
        };
        self.remember(path, follow_last, asked_in, &result);
        result
    }

    fn remember(
        &self,
        path: &Path,
        follow_last: bool,
        asked_in: u64,
        result: &virtual_fs::Result<Metadata>,
    ) {
        let Some(answer) = Answer::of(result) else {
            return;
        };
        let mut memo = self.memo();
        // Changed or written while the host was asked: that answer may already be out of date.
        if memo.generation != asked_in || memo.is_full() || !memo.answers(path) {
            return;
        }
        // What `metadata` says cannot tell a link from what it leads to: kept apart.
        let table = if follow_last {
            &mut memo.links_followed
        } else {
            &mut memo.links_kept
        };
        table.insert(path.to_path_buf(), answer);
    }
}

/// Whether opening with `conf` may change the file or create one.
fn may_change(conf: &OpenOptionsConfig) -> bool {
    conf.write() || conf.append() || conf.truncate() || conf.create() || conf.create_new()
}

impl FileSystem for LookupMemo {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        self.inner.readlink(path)
    }
    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        self.inner.read_dir(path)
    }
    fn create_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.changing(|| self.inner.create_dir(path))
    }
    fn remove_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.changing(|| self.inner.remove_dir(path))
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> BoxFuture<'a, virtual_fs::Result<()>> {
        Box::pin(async move {
            let result = self.inner.rename(from, to).await;
            let mut memo = self.memo();
            memo.forget_all();
            if result.is_ok() {
                memo.moved(from, to);
            }
            result
        })
    }
    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.lookup(path, true)
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.lookup(path, false)
    }
    fn remove_file(&self, path: &Path) -> virtual_fs::Result<()> {
        self.changing(|| self.inner.remove_file(path))
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl FileOpener for LookupMemo {
    fn open(
        &self,
        path: &Path,
        conf: &OpenOptionsConfig,
    ) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        if may_change(conf) {
            // Before the open: nothing asked from now on about this file is kept.
            self.memo().note_written(path);
        }
        let file = self
            .inner
            .new_open_options()
            .options(conf.clone())
            .open(path);
        if conf.create() || conf.create_new() {
            // It may have made the file: its directory changed too.
            self.memo().forget_all();
        }
        file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An in-memory filesystem that counts the lookups that reach it; with `racer` set, the
    /// first `symlink_metadata` has that memo make `/racy` while its answer is on the way, as
    /// another guest thread could.
    #[derive(Debug, Default)]
    struct Counted {
        inner: virtual_fs::mem_fs::FileSystem,
        lookups: AtomicUsize,
        racer: std::sync::OnceLock<std::sync::Weak<LookupMemo>>,
    }

    impl FileSystem for Counted {
        fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
            self.inner.readlink(path)
        }
        fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
            self.inner.read_dir(path)
        }
        fn create_dir(&self, path: &Path) -> virtual_fs::Result<()> {
            self.inner.create_dir(path)
        }
        fn remove_dir(&self, path: &Path) -> virtual_fs::Result<()> {
            self.inner.remove_dir(path)
        }
        fn rename<'a>(
            &'a self,
            from: &'a Path,
            to: &'a Path,
        ) -> BoxFuture<'a, virtual_fs::Result<()>> {
            self.inner.rename(from, to)
        }
        fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            self.inner.metadata(path)
        }
        fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            let answer = self.inner.symlink_metadata(path);
            if let Some(racer) = self.racer.get().and_then(std::sync::Weak::upgrade)
                && self.lookups.load(Ordering::Relaxed) == 1
            {
                racer.create_dir(Path::new("/racy")).unwrap();
            }
            answer
        }
        fn remove_file(&self, path: &Path) -> virtual_fs::Result<()> {
            self.inner.remove_file(path)
        }
        fn new_open_options(&self) -> OpenOptions<'_> {
            self.inner.new_open_options()
        }
    }

    fn memo_over_counted() -> (Arc<Counted>, LookupMemo) {
        let counted = Arc::new(Counted::default());
        counted.inner.create_dir(Path::new("/dir")).unwrap();
        write(&*counted, "/dir/page.php", b"<?php");
        (counted.clone(), LookupMemo::new(counted))
    }

    fn write(fs: &dyn FileSystem, path: &str, contents: &[u8]) {
        let mut file = fs
            .new_open_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        append(&mut file, contents);
    }

    /// Writes to an in-memory file, whose writes complete at once.
    fn append(file: &mut Box<dyn VirtualFile + Send + Sync>, contents: &[u8]) {
        tokio::io::AsyncWriteExt::write_all(file, contents)
            .now_or_never()
            .expect("in-memory writes do not wait")
            .unwrap();
    }

    fn size(fs: &dyn FileSystem, path: &str) -> virtual_fs::Result<u64> {
        fs.metadata(Path::new(path)).map(|metadata| metadata.len())
    }

    #[test]
    fn a_path_is_asked_about_once_per_instance() {
        let (counted, memo) = memo_over_counted();
        let page = Path::new("/dir/page.php");
        assert!(memo.symlink_metadata(page).unwrap().is_file());
        for _ in 0..3 {
            assert_eq!(size(&memo, "/dir/page.php"), Ok(5));
        }
        for _ in 0..3 {
            assert_eq!(
                memo.symlink_metadata(Path::new("/dir/missing.php")),
                Err(FsError::EntryNotFound)
            );
        }
        assert_eq!(counted.lookups.load(Ordering::Relaxed), 2);
        // Another instance asks the host itself.
        assert_eq!(
            size(&LookupMemo::new(counted.clone()), "/dir/page.php"),
            Ok(5)
        );
        assert_eq!(counted.lookups.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn what_the_instance_changes_is_never_answered_from_memory() {
        let (_counted, memo) = memo_over_counted();
        let metadata = |path: &str| memo.metadata(Path::new(path));

        // Changes by path, each to paths already looked at: no earlier answer survives them.
        assert_eq!(metadata("/dir/sub"), Err(FsError::EntryNotFound));
        memo.create_dir(Path::new("/dir/sub")).unwrap();
        assert!(metadata("/dir/sub").unwrap().is_dir());
        assert_eq!(size(&memo, "/dir/page.php"), Ok(5));
        memo.rename(Path::new("/dir/page.php"), Path::new("/dir/sub/moved.php"))
            .now_or_never()
            .expect("in-memory renames do not wait")
            .unwrap();
        assert_eq!(metadata("/dir/page.php"), Err(FsError::EntryNotFound));
        assert_eq!(size(&memo, "/dir/sub/moved.php"), Ok(5));
        memo.remove_file(Path::new("/dir/sub/moved.php")).unwrap();
        assert_eq!(metadata("/dir/sub/moved.php"), Err(FsError::EntryNotFound));
        memo.remove_dir(Path::new("/dir/sub")).unwrap();
        assert_eq!(metadata("/dir/sub"), Err(FsError::EntryNotFound));

        // Created by an open: seen at once.
        write(&memo, "/dir/log.txt", b"abc");
        assert_eq!(size(&memo, "/dir/log.txt"), Ok(3));
        // Written through a descriptor: its size is asked afresh, also while it is open.
        let mut file = memo
            .new_open_options()
            .write(true)
            .append(true)
            .open("/dir/log.txt")
            .unwrap();
        append(&mut file, b"defg");
        assert_eq!(size(&memo, "/dir/log.txt"), Ok(7));
        append(&mut file, b"!");
        assert_eq!(size(&memo, "/dir/log.txt"), Ok(8));
        // Still written after a rename of it, or of its directory, under the new name.
        memo.rename(Path::new("/dir"), Path::new("/logs"))
            .now_or_never()
            .expect("in-memory renames do not wait")
            .unwrap();
        assert_eq!(size(&memo, "/logs/log.txt"), Ok(8));
        append(&mut file, b"?");
        assert_eq!(size(&memo, "/logs/log.txt"), Ok(9));
    }

    #[test]
    fn a_link_is_told_from_what_it_points_to_whichever_is_asked_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target.txt"), "target").unwrap();
        std::os::unix::fs::symlink("target.txt", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("nowhere.txt", dir.path().join("dangling")).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _context = runtime.enter();
        let host: SharedFileSystem = Arc::new(
            virtual_fs::host_fs::FileSystem::new(runtime.handle().clone(), dir.path()).unwrap(),
        );
        for follow_first in [true, false] {
            let memo = LookupMemo::new(host.clone());
            for _ in 0..2 {
                if follow_first {
                    assert!(memo.metadata(Path::new("/link")).unwrap().is_file());
                    assert_eq!(
                        memo.metadata(Path::new("/dangling")),
                        Err(FsError::EntryNotFound)
                    );
                }
                let link = memo.symlink_metadata(Path::new("/link")).unwrap();
                assert!(link.ft.is_symlink(), "followed first: {follow_first}");
                let dangling = memo.symlink_metadata(Path::new("/dangling")).unwrap();
                assert!(dangling.ft.is_symlink(), "followed first: {follow_first}");
                assert!(memo.metadata(Path::new("/link")).unwrap().is_file());
                assert_eq!(
                    memo.metadata(Path::new("/dangling")),
                    Err(FsError::EntryNotFound)
                );
            }
        }
    }

    #[test]
    fn an_answer_overtaken_by_a_change_is_not_kept() {
        let counted = Arc::new(Counted::default());
        let memo = Arc::new(LookupMemo::new(counted.clone()));
        counted.racer.set(Arc::downgrade(&memo)).unwrap();
        // Answered before the directory was made, which happened before the answer arrived.
        assert_eq!(
            memo.symlink_metadata(Path::new("/racy")),
            Err(FsError::EntryNotFound)
        );
        assert!(memo.metadata(Path::new("/racy")).unwrap().is_dir());
    }
}
