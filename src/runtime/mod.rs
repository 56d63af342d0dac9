//! Everything that touches the WebAssembly engine: compiling a module once, and running one
//! fresh, sandboxed instance of it per request.

mod compiled_cache;
mod engine;
mod guest_files;
mod host_file;
mod instance;
mod lookup_memo;
mod memory_cap;
mod memory_image;
mod memory_pool;
mod mounts;
mod root_fs;
mod snapshot;
mod sqlite_locks;
mod stdio;
mod wasi_imports;
mod wasm_sections;
mod watchdog;

pub use engine::{Compiler, GuestEngine};
pub use guest_files::{GuestFiles, HostLocation};
pub use instance::{GuestExit, GuestProgram, Invocation, ProgramSpec};
pub use mounts::{Mount, MountOrigin, MountSpec, guest_path};
pub use snapshot::{
    CURRENT_ENV, EmbeddedSnapshot, PreinitSetting, Provenance, SnapshotCurrency, SnapshotSource,
};
pub use stdio::{GuestLog, StdinSender, StdoutReceiver, stdin_channel, stdout_channel};
pub use wasm_sections::exports_function;
