//! `wcgi`: serve WebAssembly web apps with CGI, one fresh sandboxed instance per request.

mod atomic_file;
mod cgi;
mod cli;
mod compile;
mod digest;
mod inspect;
mod metrics;
mod modules_toml;
mod pack;
mod package;
mod preinit;
mod publish;
mod run;
mod runtime;
mod server;
mod static_dirs;
mod templates;
mod tier_up;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Compile(args) => compile::compile(&args),
        Command::New(args) => templates::new(&args),
        Command::Inspect(args) => inspect::inspect(&args),
        Command::Pull(args) => pull(&args),
        Command::Pack(args) => pack::pack(&args),
        Command::Publish(args) => publish::publish(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the error and its causes as a sentence chain.
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `wcgi pull`: downloads a package into the cache, verified, and says where it is.
fn pull(args: &cli::PullArgs) -> anyhow::Result<()> {
    let Some(reference) = package::Reference::parse(&args.package)? else {
        anyhow::bail!(
            "`{}` is not a registry package, a sha256: hash or a URL",
            args.package
        );
    };
    let fetched = package::Registry::new(args.source.settings()).fetch(&reference)?;
    let version = fetched.version.map(|v| format!("@{v}")).unwrap_or_default();
    println!(
        "Pulled {}{version} (sha256:{}) into {}",
        fetched.name.unwrap_or_else(|| reference.to_string()),
        fetched.sha256,
        fetched.cache_path.display()
    );
    Ok(())
}

/// Logs go to stderr; `WCGI_LOG` takes a tracing filter (`debug`, `wcgi=trace`, ...).
fn init_logging(format: cli::LogFormat) {
    let filter = EnvFilter::try_from_env("WCGI_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => subscriber.with_ansi(std::io::stderr().is_terminal()).init(),
        cli::LogFormat::Json => {
            server::log_access_as_fields();
            // One object a line, the event's fields at its top level.
            subscriber
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .init()
        }
    }
}
