//! `wcgi compile`: what `wcgi run` with the same options would compile and pre-initialise at
//! start-up, done now into the cache, so that a fresh replica sharing that cache serves its
//! first request without compiling.

use crate::cli::SiteArgs;
use crate::metrics::{CacheLabels, metrics};
use crate::package::Cache;
use crate::run;
use crate::runtime::{Compiler, GuestEngine};

pub fn compile(args: &SiteArgs) -> anyhow::Result<()> {
    let runtime = run::async_runtime()?;
    // Opening mounts and building the WASI runtime need a Tokio context.
    let _context = runtime.enter();
    let cache = Cache::new(args.source.cache_dir.clone());
    let engine = GuestEngine::new(
        args.compiler,
        args.max_memory,
        1,
        Some(cache.compiled_dir()),
    )?;
    let (site, _) = run::load_site(args, &engine)?;
    // `--compiler tiered` starts with Cranelift's code and switches to LLVM's: both cached.
    if args.compiler == Compiler::Tiered {
        run::load_site(args, &engine.with_compiler(Compiler::Llvm)?)?;
    }
    let apps = site.routes.iter().count();
    let compiled = metrics()
        .compiled_cache
        .get_or_create(&CacheLabels::MISS)
        .get();
    let snapshots = metrics()
        .snapshot_cache
        .get_or_create(&CacheLabels::MISS)
        .get();
    println!(
        "Ready in {}: {apps} {} ({compiled} {} compiled now, {snapshots} {} taken now); `wcgi \
         run` with the same options starts without compiling",
        cache.root().display(),
        if apps == 1 { "command" } else { "commands" },
        if compiled == 1 { "module" } else { "modules" },
        if snapshots == 1 {
            "snapshot"
        } else {
            "snapshots"
        },
    );
    Ok(())
}
