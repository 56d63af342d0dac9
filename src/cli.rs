//! Command-line flags. Only parsing lives here; each subcommand's behaviour lives in its module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cgi::parse_env_pair;
use crate::runtime::{Compiler, MountSpec};

/// Serve WebAssembly web apps with CGI: every HTTP request runs one fresh, sandboxed instance.
#[derive(Debug, Parser)]
#[command(name = "wcgi", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// How logs (the access log and server events, on stderr) are written: `text`, one line
    /// an event, or `json`, one object a line.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "WCGI_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a package over HTTP, one sandboxed instance per request.
    Run(Box<RunArgs>),
    /// Compile and pre-initialise what `wcgi run` with the same options serves, into the
    /// cache, so that a server sharing that cache starts without compiling.
    Compile(Box<SiteArgs>),
    /// Create a project from a template.
    New(NewArgs),
    /// Show a package's commands, runners, annotations, modules and volumes, or a
    /// modules.toml's routes in matching order.
    Inspect(InspectArgs),
    /// Download a registry package into the cache.
    Pull(PullArgs),
    /// Build a .webc (v3) container from a wasmer.toml directory.
    Pack(PackArgs),
    /// Publish a package to the registry: a wasmer.toml directory (packed first) or a .webc
    /// file as it is.
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Directory to create the project in; must be empty unless --force.
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,

    /// Which template (see --list).
    #[arg(short, long, value_name = "NAME")]
    pub template: Option<String>,

    /// List the templates.
    #[arg(long, conflicts_with = "template")]
    pub list: bool,

    /// Write into a directory that is not empty (files of the template are overwritten).
    #[arg(long)]
    pub force: bool,

    /// For interpreted templates: use this interpreter module (copied into the project)
    /// instead of the registry package the template depends on. A directory means the
    /// interpreter package made by interpreters/*/ in the wcgi repository.
    #[arg(long, value_name = "FILE.wasm|DIR")]
    pub interpreter: Option<PathBuf>,

    /// Where an interpreted template's interpreter package comes from (fetched into the
    /// cache now, so that `wcgi run` finds it).
    #[command(flatten)]
    pub source: PackageOptions,
}

/// Where packages come from; the same for `run`, `pull` and `inspect`.
#[derive(Debug, Args, Clone)]
pub struct PackageOptions {
    /// Registry: a GraphQL endpoint URL or a name such as `wasmer.io` [env: WCGI_REGISTRY,
    /// WASMER_REGISTRY] [default: https://registry.wasmer.io/graphql].
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,

    /// Token for the registry, sent to the registry's own host only [env: WCGI_TOKEN,
    /// WASMER_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Where downloads are cached [env: WCGI_CACHE_DIR] [default: ~/.cache/wcgi].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Never use the network: packages and registry answers come from the cache.
    #[arg(long)]
    pub offline: bool,
}

impl PackageOptions {
    /// The settings, with the environment filling in what the flags left out.
    pub fn settings(&self) -> crate::package::RegistrySettings {
        let from_env = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        };
        crate::package::RegistrySettings {
            registry: self
                .registry
                .clone()
                .or_else(|| from_env(["WCGI_REGISTRY", "WASMER_REGISTRY"])),
            token: self
                .token
                .clone()
                .or_else(|| from_env(["WCGI_TOKEN", "WASMER_TOKEN"])),
            cache_dir: self.cache_dir.clone(),
            offline: self.offline,
        }
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A directory with wasmer.toml, a .wasm or .webc file, `namespace/name[@version]`,
    /// `sha256:HEX`, a URL of a .webc, or a WAGI modules.toml.
    #[arg(default_value = ".", value_name = "PACKAGE")]
    pub package: String,

    #[command(flatten)]
    pub source: PackageOptions,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// `namespace/name[@version]`, `sha256:HEX` or a URL of a .webc.
    #[arg(value_name = "PACKAGE")]
    pub package: String,

    #[command(flatten)]
    pub source: PackageOptions,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// A directory holding wasmer.toml, or a .webc file (uploaded unchanged).
    #[arg(default_value = ".", value_name = "DIR|FILE.webc")]
    pub package: PathBuf,

    /// Publish under this namespace instead of the package name's.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Publish under this name instead of the package name's.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Build and check the container and print what would be sent; send nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub source: PackageOptions,
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The directory holding wasmer.toml.
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,

    /// Where to write the container [default: DIR/NAME-VERSION.webc].
    #[arg(short, long, value_name = "FILE.webc")]
    pub output: Option<PathBuf>,

    /// Container format: 3, or 2 for runtimes that only read the older format.
    #[arg(long, default_value_t = 3, value_name = "2|3", value_parser = clap::value_parser!(u8).range(2..=3))]
    pub webc_version: u8,

    /// Pre-initialise every command whose module exports an init function and embed the
    /// snapshots, so that `wcgi run FILE.webc` starts without running them. A run with other
    /// mounts, environment, arguments or --max-memory pre-initialises anew.
    #[arg(long)]
    pub preinit: bool,

    /// The --max-memory the embedded snapshots are taken under (with --preinit).
    #[arg(long, default_value = DEFAULT_MAX_MEMORY, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: u64,

    /// Where dependencies come from (with --preinit).
    #[command(flatten)]
    pub source: PackageOptions,
}

/// `--max-memory` of `wcgi run`, and of the snapshots `wcgi pack --preinit` embeds.
const DEFAULT_MAX_MEMORY: &str = "512MiB";

/// What `wcgi run` serves and how its instances are made: the same for `wcgi compile`, so
/// that what one compiles and pre-initialises is what the other finds in the cache.
#[derive(Debug, Args, Clone)]
pub struct SiteArgs {
    /// What to serve: a directory with wasmer.toml, a .wasm or .webc file,
    /// `namespace/name[@version]`, `sha256:HEX` or a URL of a .webc; or a WAGI modules.toml
    /// (a .toml file with [[module]] tables), each module at its route.
    #[arg(default_value = ".", value_name = "PACKAGE|FILE.toml")]
    pub package: String,

    #[command(flatten)]
    pub source: PackageOptions,

    /// Which [[command]] to serve (default: the package entrypoint, else the only wcgi command).
    #[arg(short = 'e', long, value_name = "NAME")]
    pub entrypoint: Option<String>,

    /// Extra guest environment variable; overrides the command's annotation env. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,

    /// Pass the host's environment variables into the guest.
    #[arg(long)]
    pub forward_host_env: bool,

    /// Make a host directory visible in the guest at GUEST; add `:ro` to make it read-only.
    /// Repeatable.
    #[arg(long, value_name = "GUEST:HOST[:ro]", value_parser = MountSpec::parse_mapdir)]
    pub mapdir: Vec<MountSpec>,

    /// Make a host directory visible in the guest at the same path. Repeatable.
    #[arg(long, value_name = "HOST")]
    pub dir: Vec<PathBuf>,

    /// Serve the files of a host directory under a URL path without starting an instance
    /// (e.g. `/assets:./public`). Scripts, hidden files and misses still go to the command.
    /// Overrides the package's `static` entry for the same path. Repeatable.
    #[arg(long = "static", value_name = "URLPATH:DIR", value_parser = parse_static)]
    pub static_dirs: Vec<StaticSpec>,

    /// Linear memory each instance may use (`64MiB`). A guest growing past it fails inside
    /// the guest and its request gets 500.
    #[arg(long, default_value = DEFAULT_MAX_MEMORY, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: u64,

    /// Do not pre-initialise the command even if its module exports an init function
    /// (`wizer.initialize`, or the `preinit` annotation's): every request starts the module
    /// from scratch.
    #[arg(long)]
    pub no_preinit: bool,

    /// Which compiler turns the modules into machine code. `llvm` compiles many times slower
    /// (once: compiled modules are cached) and runs interpreters faster; `tiered` serves with
    /// Cranelift's code at once and switches to LLVM's when it is made. Both need a wcgi
    /// built with the `llvm` feature.
    #[arg(
        long,
        env = "WCGI_COMPILER",
        default_value = "cranelift",
        value_name = "NAME"
    )]
    pub compiler: Compiler,

    /// Arguments appended to the guest's argv, after the command's `main-args`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub site: SiteArgs,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "IP:PORT")]
    pub addr: SocketAddr,

    /// Wall-clock limit per request (`500ms`, `2s`, `1m`). Past it the client gets 504 (or the
    /// response is cut short if it had started) and the instance is stopped.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Largest request body accepted; bigger bodies get 413 (e.g. `16MiB`, `512KiB`).
    #[arg(long, default_value = "16MiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_body: u64,

    /// How many instances may run at once [default: 2 × CPU cores]. Further requests wait in
    /// a queue of --max-queue places.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: Option<u32>,

    /// How many requests may wait for an instance; beyond it they get 503 with Retry-After.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_queue: usize,

    /// How long a client may take to send a request's head, counted from the moment its
    /// connection is accepted (and on keep-alive from the end of the previous response),
    /// before its connection is closed. Stops silent and slow-loris clients.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Most connections open at once; past it the longest-idle connection is closed to make
    /// room (a request in flight is never cut). Default: the open-file limit less room for
    /// the instances' files (at least half of it, at most 16384).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// After SIGINT/SIGTERM, how long requests in flight may take to finish before the
    /// server exits anyway.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// After SIGINT/SIGTERM, go on accepting and serving requests this long, with the health
    /// path answering 503, so that load balancers take the server out before its listener
    /// closes; the shutdown grace starts after it.
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Answer GET PATH from the server itself, for load balancers and Kubernetes probes: 200
    /// while it serves, 503 once it is shutting down. Off by default, so that it never hides
    /// an app's own page.
    #[arg(long, value_name = "PATH", value_parser = parse_health_path)]
    pub health_path: Option<String>,

    /// Serve Prometheus metrics (OpenMetrics text) at http://IP:PORT/metrics, on a listener of
    /// their own, never on the app's address.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_addr: Option<SocketAddr>,

    /// Watch the manifest (`wasmer.toml` or `modules.toml`) and the module files; on a change,
    /// build the site again in the background and switch to it: requests in flight finish
    /// on the old version, new ones get the new one, and a version that fails to build is
    /// not switched to. The listener stays open throughout.
    #[arg(long)]
    pub watch: bool,
}

/// `--static URLPATH:DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSpec {
    pub url_path: String,
    pub dir: PathBuf,
}

fn parse_static(raw: &str) -> Result<StaticSpec, String> {
    match raw.split_once(':') {
        Some((url_path, dir)) if url_path.starts_with('/') && !dir.is_empty() => Ok(StaticSpec {
            url_path: url_path.to_string(),
            dir: PathBuf::from(dir),
        }),
        _ => Err(format!(
            "expected URLPATH:DIR with URLPATH starting with `/`, e.g. `/assets:./public`; got `{raw}`"
        )),
    }
}

fn parse_health_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') || raw.contains(['?', '#']) || raw.chars().any(char::is_whitespace) {
        return Err(format!(
            "{raw:?} is not a URL path; give one such as /healthz"
        ));
    }
    Ok(raw.to_string())
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw)
        .map_err(|_| format!("`{raw}` is not a duration; write it like `500ms`, `30s` or `2m`"))
}

fn parse_size(raw: &str) -> Result<u64, String> {
    raw.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| format!("`{raw}` is not a size; write it like `16MiB`, `512KiB` or `1000000`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_dirs_need_a_url_path_and_a_directory() {
        let spec = parse_static("/assets:./public:x").unwrap();
        assert_eq!(spec.url_path, "/assets");
        assert_eq!(spec.dir, PathBuf::from("./public:x"));
        assert!(parse_static("assets:./public").is_err());
        assert!(parse_static("/assets:").is_err());
        assert!(parse_static("/assets").is_err());
    }

    #[test]
    fn sizes_accept_binary_units() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 * 1024 * 1024);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
