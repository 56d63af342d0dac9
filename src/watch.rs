//! `wcgi run --watch`: the site is built again whenever a file it was built from changes (its
//! manifest, a `modules.toml`, a module file), on a thread of its own, and replaces the one
//! being served only once it built. Requests in flight keep the version they started with; the
//! listener and its connections are never touched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::event::{EventKind, MetadataKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::cli::SiteArgs;
use crate::metrics::{ReloadLabels, metrics};
use crate::runtime::GuestEngine;
use crate::server::SiteHandle;
use crate::tier_up::TierUp;

/// Changes closer together than this are one reload (a build writing several files, an
/// editor's save writing a temporary file and renaming it).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Starts watching `files`; each change rebuilds the site with `engine` and stores it in
/// `site`. With `tier_up` (`--compiler tiered`), the same thread then builds it with LLVM, at
/// start and after each reload, so that the two never store versions out of order.
pub fn start(
    args: &SiteArgs,
    engine: GuestEngine,
    site: SiteHandle,
    runtime: &tokio::runtime::Handle,
    files: Vec<PathBuf>,
    tier_up: Option<TierUp>,
) -> anyhow::Result<()> {
    if files.is_empty() {
        tracing::warn!("--watch: nothing local to watch (a registry package); not watching");
        return tier_up.map_or(Ok(()), TierUp::spawn);
    }
    let (events, changes) = channel();
    let debouncer = new_debouncer(DEBOUNCE, None, events).context("--watch: cannot watch files")?;
    let mut watcher = Watcher {
        debouncer,
        files: BTreeSet::new(),
        dirs: BTreeSet::new(),
    };
    watcher.watch(files);
    let reloader = Reloader {
        args: args.clone(),
        engine,
        site,
        runtime: runtime.clone(),
        tier_up,
    };
    std::thread::Builder::new()
        .name("wcgi-watch".into())
        .spawn(move || reloader.run(watcher, changes))
        .context("--watch: cannot start its thread")?;
    Ok(())
}

/// The watched files and the directories watched for them: a file is watched through its
/// directory, so that a file replaced by a rename (as builds and editors save) is still seen.
struct Watcher {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl Watcher {
    fn watch(&mut self, files: Vec<PathBuf>) {
        let files: BTreeSet<PathBuf> = files.into_iter().collect();
        let dirs: BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|file| file.parent().map(Path::to_path_buf))
            .collect();
        for gone in self.dirs.difference(&dirs) {
            let _ = self.debouncer.unwatch(gone);
        }
        for new in dirs.difference(&self.dirs) {
            if let Err(error) = self.debouncer.watch(new, RecursiveMode::NonRecursive) {
                tracing::warn!("--watch: cannot watch {}: {error}", new.display());
            }
        }
        if files != self.files {
            tracing::info!(
                "watching {} for changes",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        self.files = files;
        self.dirs = dirs;
    }

    /// Waits for the next change to a watched file; returns the files that changed, or
    /// `None` once the watcher is gone.
    fn next_change(&self, changes: &Receiver<DebounceEventResult>) -> Option<BTreeSet<PathBuf>> {
        loop {
            let events = match changes.recv().ok()? {
                Ok(events) => events,
                Err(errors) => {
                    for error in errors {
                        tracing::warn!("--watch: {error}");
                    }
                    continue;
                }
            };
            let changed: BTreeSet<PathBuf> = events
                .iter()
                .filter(|event| changes_contents(&event.kind))
                .flat_map(|event| event.paths.iter())
                .filter(|path| self.files.contains(*path))
                .cloned()
                .collect();
            if !changed.is_empty() {
                return Some(changed);
            }
        }
    }
}

/// Whether an event can mean new contents: not a read, not an access-time update (the
/// rebuild itself reads every watched file).
fn changes_contents(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(metadata)) => {
            matches!(metadata, MetadataKind::WriteTime | MetadataKind::Any)
        }
        _ => true,
    }
}

/// What a reload needs: the command line the site was built from, and where it goes.
struct Reloader {
    args: SiteArgs,
    engine: GuestEngine,
    site: SiteHandle,
    runtime: tokio::runtime::Handle,
    tier_up: Option<TierUp>,
}

impl Reloader {
    fn run(self, mut watcher: Watcher, changes: Receiver<DebounceEventResult>) {
        self.tier_up();
        while let Some(changed) = watcher.next_change(&changes) {
            let changed = changed
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let started = Instant::now();
            match crate::run::rebuild_site(&self.args, &self.engine, &self.runtime, &self.site) {
                Ok(files) => {
                    count_reload("ok");
                    tracing::info!(
                        "reloaded in {:.1?} after a change to {changed}",
                        started.elapsed()
                    );
                    watcher.watch(files);
                    self.tier_up();
                }
                Err(error) => {
                    count_reload("failed");
                    tracing::error!(
                        "reload after a change to {changed} failed; still serving the previous \
                         version: {error:#}"
                    );
                }
            }
        }
    }

    fn tier_up(&self) {
        if let Some(tier_up) = &self.tier_up {
            tier_up.tier_up();
        }
    }
}

fn count_reload(result: &'static str) {
    metrics()
        .reloads
        .get_or_create(&ReloadLabels { result })
        .inc();
}
