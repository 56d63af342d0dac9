//! Pre-initialised programs, Wizer's way: a module that exports an init function is
//! instantiated once with the command's mounts, arguments and static environment, the
//! function is called, and what it left in memory and globals becomes a new module that every
//! request instantiates instead, fresh, as any other. Start-up work (an interpreter's boot,
//! compiling scripts) then happens once per snapshot instead of once per request.
//!
//! Snapshots are cached on disk, keyed by everything that shapes them, and stored with a
//! checksum; one that does not load cleanly is rebuilt, never trusted.

mod capture;
mod currency;
mod instrument;
mod local_fs;
mod reads;
mod rewrite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;

use super::engine::GuestEngine;
use super::instance::{GuestProgram, ProgramSpec};
use super::mounts::MountOrigin;
use super::wasm_sections::exports_function;
use crate::atomic_file::write_atomically;
use crate::digest::{checksum, sha256_hex};
use currency::Watching;
pub use currency::{CURRENT_ENV, SnapshotCurrency};
use instrument::StateLayout;
pub(super) use reads::MountReads;

/// Wizer's name for the init function, used when the command names none.
pub const DEFAULT_INIT_EXPORT: &str = "wizer.initialize";

/// Whether a command is pre-initialised, as its `preinit` annotation says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PreinitSetting {
    /// When the module exports `wizer.initialize` (no annotation, or `true`).
    #[default]
    Auto,
    /// Never (`false`, or `wcgi run --no-preinit`).
    Off,
    /// With this export, which must exist.
    Function(String),
}

impl PreinitSetting {
    /// The init function to call for `wasm`, if any. A named function the module does not
    /// export is an error; `Auto` quietly finds none.
    pub fn init_function(&self, wasm: &[u8]) -> anyhow::Result<Option<String>> {
        let wanted = match self {
            PreinitSetting::Off => return Ok(None),
            PreinitSetting::Auto => DEFAULT_INIT_EXPORT,
            PreinitSetting::Function(name) => name,
        };
        // A module that does not parse is reported by the compiler, with its own words.
        if exports_function(wasm, wanted).unwrap_or(false) {
            Ok(Some(wanted.to_string()))
        } else if matches!(self, PreinitSetting::Function(_)) {
            bail!(
                "annotations.wcgi.preinit names `{wanted}`, which the module does not export as \
                 a function"
            )
        } else {
            Ok(None)
        }
    }
}

/// Where a command's snapshot comes from.
pub struct SnapshotSource<'a> {
    pub engine: &'a GuestEngine,
    /// The command as it would run without a snapshot (its original module).
    pub spec: &'a ProgramSpec,
    /// The environment the init function sees: the command's static environment.
    pub env: &'a [(String, String)],
    pub init_function: &'a str,
    /// Where snapshots are cached; `None` builds one every time.
    pub cache_dir: Option<&'a Path>,
    /// A snapshot shipped inside the package (`wcgi pack --preinit`), used when it was taken
    /// from the same inputs.
    pub embedded: Option<&'a EmbeddedSnapshot>,
}

/// A snapshot a package carries, with the key of the inputs it was taken from.
#[derive(Debug, Clone)]
pub struct EmbeddedSnapshot {
    pub key: String,
    /// The module's [`checksum`]: a damaged one is rebuilt, like a damaged cache entry.
    pub checksum: String,
    pub wasm: Bytes,
}

/// How a snapshot was obtained, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    Embedded,
    Cached,
    Built,
}

impl SnapshotSource<'_> {
    /// The snapshot module: from the cache when a sound entry exists, else built (and stored);
    /// with how it was obtained and whether it stays current.
    pub fn load_or_build(&self) -> anyhow::Result<(Bytes, Provenance, SnapshotCurrency)> {
        // Before the key: it holds the read-only directories' trees as they are now, and any
        // change from here on is seen.
        let watching = Watching::start(&self.spec.mounts);
        let (snapshot, provenance) = self.load_or_build_unwatched()?;
        let currency = watching.settle(
            &self.spec.mounts,
            reads::recorded_reads(&snapshot).as_deref(),
        );
        Ok((snapshot, provenance, currency))
    }

    fn load_or_build_unwatched(&self) -> anyhow::Result<(Bytes, Provenance)> {
        let key = self.key();
        if let Some(embedded) = self.embedded {
            if embedded.key != key {
                tracing::info!(
                    "the package's snapshot was taken with other inputs (mounts, environment, \
                     arguments, --max-memory or wcgi version); pre-initialising for these"
                );
            } else if checksum(&embedded.wasm) != embedded.checksum {
                tracing::warn!("the package's snapshot is damaged; pre-initialising again");
            } else {
                crate::metrics::snapshot_lookup(true);
                return Ok((embedded.wasm.clone(), Provenance::Embedded));
            }
        }
        let entry = self.cache_dir.map(|dir| CacheEntry::new(dir, &key));
        if let Some(entry) = &entry
            && let Some(snapshot) = entry.load()
        {
            crate::metrics::snapshot_lookup(true);
            return Ok((snapshot, Provenance::Cached));
        }
        let snapshot = Bytes::from(self.build()?);
        if let Some(entry) = &entry
            && let Err(error) = entry.store(&snapshot)
        {
            tracing::warn!("cannot cache the snapshot: {error:#}");
        }
        crate::metrics::snapshot_lookup(false);
        Ok((snapshot, Provenance::Built))
    }

    /// Runs the init function and writes the snapshot of what it left.
    fn build(&self) -> anyhow::Result<Vec<u8>> {
        let started = Instant::now();
        tracing::info!(
            "command \"{}\": running `{}` to take its snapshot…",
            self.spec.name,
            self.init_function
        );
        let wasm = &self.spec.wasm;
        let layout = StateLayout::of(wasm)?;
        let instrumented = instrument::export_state(wasm, &layout)?;
        let program = GuestProgram::compile(
            self.engine,
            ProgramSpec {
                wasm: instrumented.into(),
                ..self.spec.clone()
            },
        )?;
        let reads = Arc::new(MountReads::default());
        let state = program.preinitialise(
            self.init_function,
            self.env.to_vec(),
            &reads,
            |store, instance, env| capture::capture(store, instance, env, &layout),
        )?;
        let mut snapshot = rewrite::write_snapshot(wasm, &layout, &state, self.init_function)?;
        reads::append_reads_section(&mut snapshot, &reads.guests());
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&snapshot)
            .context("the snapshot wcgi wrote does not validate (a wcgi bug)")?;
        tracing::info!(
            "ran `{}` in {:.1?}; snapshot of {} taken",
            self.init_function,
            started.elapsed(),
            bytesize::ByteSize::b(snapshot.len() as u64),
        );
        Ok(snapshot)
    }

    /// The digest of everything that shapes the snapshot: the cache's file name, and what a
    /// package records of the snapshot it embeds.
    pub fn key(&self) -> String {
        sha256_hex(self.shape().as_bytes())
    }

    /// Everything that shapes a snapshot, as text to hash.
    fn shape(&self) -> String {
        let spec = self.spec;
        let mut shape = format!(
            "wcgi snapshot 1|wcgi {}|wasmer {}|module {}|init {}|memory {}|argv0 {:?}|args {:?}|\
             cwd {:?}|env {:?}",
            env!("CARGO_PKG_VERSION"),
            wasmer_types::VERSION,
            sha256_hex(&spec.wasm),
            self.init_function,
            self.engine.max_memory,
            spec.name,
            spec.args,
            spec.current_dir,
            self.env,
        );
        for mount in &spec.mounts {
            shape.push_str(&format!("|mount {:?} ", mount.guest));
            match &mount.origin {
                // What init read there (php.ini, ...) may have changed since: a read-only
                // directory's files are part of the key. A writable one (a site being edited
                // live) is known by its path only, or every write would cost a new snapshot;
                // an interpreter revalidates the scripts it compiled from there itself.
                MountOrigin::Host(path) if mount.read_only => {
                    shape.push_str(&format!("host {path:?} {}", tree_fingerprint(path)))
                }
                MountOrigin::Host(path) => shape.push_str(&format!("host {path:?} writable")),
                MountOrigin::Volume { volume, inside } => shape.push_str(&format!(
                    "volume {inside:?} {}",
                    volume_fingerprint(volume, inside)
                )),
                #[cfg(test)]
                MountOrigin::Other => shape.push_str("other"),
            }
        }
        shape
    }
}

/// Entries of a read-only host directory looked at for the key; a larger tree is known by its
/// path and the entries up to this many.
const FINGERPRINT_ENTRIES: usize = 50_000;

/// A digest of a host directory's tree: names, sizes and modification times.
fn tree_fingerprint(root: &Path) -> String {
    let mut listing = String::new();
    let mut pending = vec![root.to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            seen += 1;
            if seen > FINGERPRINT_ENTRIES {
                return sha256_hex(listing.as_bytes());
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let modified = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_nanos());
            listing.push_str(&format!(
                "{:?} {} {modified}\n",
                entry.path().strip_prefix(root).unwrap_or(&entry.path()),
                metadata.len()
            ));
            if metadata.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    sha256_hex(listing.as_bytes())
}

/// A digest of a container volume's tree (names, sizes, content hashes where the container
/// has them): a different package version gives a different snapshot.
fn volume_fingerprint(volume: &webc::Volume, inside: &str) -> String {
    let mut listing = String::new();
    let mut pending = vec![inside.trim_end_matches('/').to_string()];
    while let Some(dir) = pending.pop() {
        let Some(entries) = volume.read_dir(dir.as_str()) else {
            continue;
        };
        for (name, hash, metadata) in entries {
            let path = format!("{dir}/{name}");
            listing.push_str(&format!("{path:?} {hash:?} {metadata:?}\n"));
            if metadata.is_dir() {
                pending.push(path);
            }
        }
    }
    sha256_hex(listing.as_bytes())
}

/// A snapshot in the cache: the module and its checksum, written each atomically.
struct CacheEntry {
    module: PathBuf,
    checksum: PathBuf,
}

impl CacheEntry {
    fn new(dir: &Path, key: &str) -> Self {
        CacheEntry {
            module: dir.join(format!("{key}.wasm")),
            checksum: dir.join(format!("{key}.checksum")),
        }
    }

    fn load(&self) -> Option<Bytes> {
        let expected = std::fs::read_to_string(&self.checksum).ok()?;
        let file = std::fs::File::open(&self.module).ok()?;
        // SAFETY: entries are written to a temporary file renamed into place and never
        // modified after, so the mapped file does not change under us.
        let mapped = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        if checksum(&mapped) != expected.trim() {
            tracing::warn!(
                "snapshot {} is damaged; pre-initialising again",
                self.module.display()
            );
            return None;
        }
        Some(Bytes::from_owner(mapped))
    }

    fn store(&self, snapshot: &[u8]) -> anyhow::Result<()> {
        write_atomically(&self.module, snapshot)?;
        write_atomically(&self.checksum, checksum(snapshot).as_bytes())
    }
}
