//! Which commands are pre-initialised, and getting their snapshot: the one place `wcgi run`
//! (at start-up) and `wcgi pack --preinit` (to embed it) decide this, so that a snapshot a
//! package carries is keyed exactly as `wcgi run` keys it.

use bytes::Bytes;

use crate::cgi::StaticEnv;
use crate::package::{CommandSpec, PreinitAnnotation};
use crate::runtime::{
    GuestEngine, PreinitSetting, ProgramSpec, Provenance, SnapshotCurrency, SnapshotSource,
};

/// Whether `command` is pre-initialised, by its `preinit` annotation and `--no-preinit`.
pub fn setting(command: &CommandSpec, disabled: bool) -> PreinitSetting {
    match (&command.wcgi.preinit, disabled) {
        (_, true) | (Some(PreinitAnnotation::Enabled(false)), _) => PreinitSetting::Off,
        (None | Some(PreinitAnnotation::Enabled(true)), _) => PreinitSetting::Auto,
        (Some(PreinitAnnotation::Function(name)), _) => PreinitSetting::Function(name.clone()),
    }
}

/// A command's snapshot and where it came from.
pub struct Snapshot {
    pub wasm: Bytes,
    /// The key of the inputs it was taken from.
    pub key: String,
    pub init_function: String,
    pub provenance: Provenance,
    /// Whether what it was built from is unchanged: watched from before it was keyed.
    pub currency: SnapshotCurrency,
}

/// The snapshot of `spec` (the command as it runs without one), or `None` when the command is
/// not pre-initialised. The init function sees the command's static environment.
pub fn snapshot(
    command: &CommandSpec,
    setting: &PreinitSetting,
    engine: &GuestEngine,
    spec: &ProgramSpec,
    static_env: &StaticEnv,
    cache_dir: &std::path::Path,
) -> anyhow::Result<Option<Snapshot>> {
    let Some(init_function) = setting.init_function(&spec.wasm)? else {
        return Ok(None);
    };
    let env: Vec<(String, String)> = static_env
        .vars()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let source = SnapshotSource {
        engine,
        spec,
        env: &env,
        init_function: &init_function,
        cache_dir: Some(cache_dir),
        embedded: command.embedded_snapshot.as_ref(),
    };
    let (wasm, provenance, currency) = source.load_or_build()?;
    Ok(Some(Snapshot {
        wasm,
        key: source.key(),
        init_function,
        provenance,
        currency,
    }))
}
