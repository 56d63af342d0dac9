//! `--compiler tiered`: the site is served at once with Cranelift's machine code, while LLVM's
//! (a minute or two for an interpreter, on the first start only: it is cached) is made on a
//! thread of its own at low priority; the site is then built again with it and switched to as
//! a reload switches: requests in flight finish on the code they started with.

use std::time::Instant;

use anyhow::Context;

use crate::cli::SiteArgs;
use crate::runtime::{Compiler, GuestEngine};
use crate::server::SiteHandle;

/// Below the request threads, so that compiling never takes their cores (the compiler's
/// worker threads inherit it).
const NICENESS: libc::c_int = 10;

/// What building the site with LLVM needs, and where it goes.
pub struct TierUp {
    args: SiteArgs,
    llvm: GuestEngine,
    site: SiteHandle,
    runtime: tokio::runtime::Handle,
}

impl TierUp {
    /// For `--compiler tiered`: LLVM's engine beside `serving`, Cranelift's; `None` for the
    /// other compilers.
    pub fn new(
        args: &SiteArgs,
        serving: &GuestEngine,
        site: SiteHandle,
        runtime: &tokio::runtime::Handle,
    ) -> anyhow::Result<Option<Self>> {
        if args.compiler != Compiler::Tiered {
            return Ok(None);
        }
        let llvm = {
            // The WASI runtime needs a Tokio context.
            let _context = runtime.enter();
            serving.with_compiler(Compiler::Llvm)?
        };
        Ok(Some(TierUp {
            args: args.clone(),
            llvm,
            site,
            runtime: runtime.clone(),
        }))
    }

    /// Runs `tier_up` once on a thread of its own (without `--watch`; with it, the watcher's
    /// thread tiers up after each reload).
    pub fn spawn(self) -> anyhow::Result<()> {
        std::thread::Builder::new()
            .name("wcgi-tier-up".into())
            .spawn(move || self.tier_up())
            .context("--compiler tiered: cannot start its thread")?;
        Ok(())
    }

    /// Builds the site as it is now with LLVM and serves that; if it fails, the site goes on
    /// with Cranelift's code.
    pub fn tier_up(&self) {
        lower_priority();
        let started = Instant::now();
        match crate::run::rebuild_site(&self.args, &self.llvm, &self.runtime, &self.site) {
            Ok(_) => {
                tracing::info!(
                    "switched to LLVM's machine code (--compiler tiered), made in {:.1?}",
                    started.elapsed()
                );
            }
            Err(error) => tracing::warn!(
                "--compiler tiered: building with LLVM failed; staying with Cranelift's code: \
                 {error:#}"
            ),
        }
    }
}

/// Lowers the calling thread's priority (on Linux, `setpriority` with 0 is this thread, and
/// threads it starts inherit it).
fn lower_priority() {
    // SAFETY: plain integers; failing only leaves the priority as it was.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICENESS) };
    if result != 0 {
        tracing::debug!(
            "cannot lower the tier-up thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}
