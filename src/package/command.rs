//! Commands of a package, and choosing the one to serve.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use bytes::Bytes;

use super::Package;
use super::annotations::{RFC_3875, WasiAnnotation, WcgiAnnotation};
use super::reference::Reference;
use super::registry::{Registry, RegistrySettings};
use crate::runtime::EmbeddedSnapshot;

/// Runner names that mean "serve this command with CGI".
const WCGI_RUNNER: &str = "wcgi";

/// Where a command's WebAssembly module comes from.
#[derive(Debug, Clone)]
pub enum ModuleSource {
    /// Already in memory (a bare `.wasm` file).
    Bytes(Bytes),
    /// A `[[module]]` of a wasmer.toml, read from disk when the command is served.
    File { module: String, path: PathBuf },
    /// The command names a module the manifest does not define.
    Unknown {
        module: String,
        defined: Vec<String>,
    },
    /// `namespace/name:module`, a module of a dependency fetched from the registry.
    Dependency {
        /// The dependency's name as the command refers to it.
        dependency: String,
        /// Where to get it (`[dependencies]` or the container's `use` map); `None` when the
        /// manifest does not say.
        source: Option<Reference>,
        module: String,
    },
}

/// One `[[command]]`.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub name: String,
    pub runner: String,
    pub module: ModuleSource,
    pub wasi: WasiAnnotation,
    pub wcgi: WcgiAnnotation,
    /// The snapshot `wcgi pack --preinit` embedded for this command.
    pub embedded_snapshot: Option<EmbeddedSnapshot>,
}

impl CommandSpec {
    /// Whether the command is served with CGI: runner `wcgi`, or the webc runner URI.
    pub fn is_wcgi(&self) -> bool {
        self.runner == WCGI_RUNNER
            || self
                .runner
                .starts_with(webc::metadata::annotations::WCGI_RUNNER_URI)
    }

    /// The module's bytes, with an error that names the command and what to fix. Modules of
    /// dependencies come through the registry (and its cache).
    pub fn load_module(&self, registry: &RegistrySettings) -> anyhow::Result<Bytes> {
        match &self.module {
            ModuleSource::Bytes(bytes) => Ok(bytes.clone()),
            ModuleSource::File { module, path } => match std::fs::read(path) {
                Ok(bytes) => Ok(Bytes::from(bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
                    "module \"{module}\" (used by command \"{}\"): {} does not exist; build it \
                     first or fix its `source` in wasmer.toml",
                    self.name,
                    path.display()
                ),
                Err(error) => bail!(
                    "module \"{module}\": cannot read {}: {error}",
                    path.display()
                ),
            },
            ModuleSource::Unknown { module, defined } => bail!(
                "command \"{}\" uses module \"{module}\", but wasmer.toml defines no [[module]] \
                 named \"{module}\" (defined: {}); fix the command's `module`",
                self.name,
                list_or_none(defined)
            ),
            ModuleSource::Dependency {
                dependency,
                source: None,
                module,
            } => bail!(
                "command \"{}\" uses module \"{dependency}:{module}\", but \"{dependency}\" is not \
                 in [dependencies]; add it there with a version requirement",
                self.name
            ),
            ModuleSource::Dependency {
                source: Some(reference),
                module,
                ..
            } => {
                let fetched = Registry::new(registry.clone())
                    .fetch(reference)
                    .with_context(|| {
                        format!("dependency {reference} of command \"{}\"", self.name)
                    })?;
                let version = webc::detect(fetched.bytes.as_ref())
                    .with_context(|| format!("dependency {reference} is not a .webc container"))?;
                let container = webc::Container::from_bytes_and_version(fetched.bytes, version)
                    .with_context(|| format!("dependency {reference}: the container is damaged"))?;
                match container.get_atom(module) {
                    Some(atom) => Ok(atom.into_bytes()),
                    None => bail!(
                        "dependency {reference} has no module \"{module}\" (modules: {})",
                        list_or_none(&container.atoms().into_keys().collect::<Vec<_>>())
                    ),
                }
            }
        }
    }
}

/// Why no command could be chosen.
#[derive(Debug, PartialEq, Eq)]
pub enum SelectError {
    NoCommands,
    NotFound {
        requested: String,
        available: Vec<String>,
    },
    NotWcgi {
        name: String,
        runner: String,
    },
    NoWcgiCommand {
        commands: Vec<(String, String)>,
    },
    Ambiguous {
        candidates: Vec<String>,
    },
    UnsupportedDialect {
        name: String,
        dialect: String,
    },
}

impl std::error::Error for SelectError {}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::NoCommands => {
                write!(
                    f,
                    "the package has no [[command]]; add one with runner = \"wcgi\""
                )
            }
            SelectError::NotFound {
                requested,
                available,
            } => write!(
                f,
                "the package has no command \"{requested}\" (commands: {})",
                list_or_none(available)
            ),
            SelectError::NotWcgi { name, runner } => write!(
                f,
                "command \"{name}\" has runner \"{runner}\", not \"wcgi\"; wcgi serves only \
                 commands with runner = \"wcgi\""
            ),
            SelectError::NoWcgiCommand { commands } => {
                let listed: Vec<String> = commands
                    .iter()
                    .map(|(name, runner)| format!("{name} ({runner})"))
                    .collect();
                write!(
                    f,
                    "the package has no command with runner = \"wcgi\" (commands: {})",
                    listed.join(", ")
                )
            }
            SelectError::Ambiguous { candidates } => write!(
                f,
                "the package has several wcgi commands ({}); choose one with --entrypoint",
                candidates.join(", ")
            ),
            SelectError::UnsupportedDialect { name, dialect } => write!(
                f,
                "command \"{name}\" uses the CGI dialect \"{dialect}\", which is not supported; \
                 wcgi speaks \"{RFC_3875}\""
            ),
        }
    }
}

impl Package {
    /// `--entrypoint`, else the package's entrypoint, else its only wcgi command.
    pub fn select_command(&self, requested: Option<&str>) -> Result<&CommandSpec, SelectError> {
        if self.commands.is_empty() {
            return Err(SelectError::NoCommands);
        }
        let command = match requested.or(self.entrypoint.as_deref()) {
            Some(name) => self
                .commands
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| SelectError::NotFound {
                    requested: name.to_string(),
                    available: self.commands.iter().map(|c| c.name.clone()).collect(),
                })?,
            None => {
                let wcgi: Vec<&CommandSpec> =
                    self.commands.iter().filter(|c| c.is_wcgi()).collect();
                match wcgi.as_slice() {
                    [only] => only,
                    [] if self.commands.len() == 1 => &self.commands[0],
                    [] => {
                        return Err(SelectError::NoWcgiCommand {
                            commands: self
                                .commands
                                .iter()
                                .map(|c| (c.name.clone(), c.runner.clone()))
                                .collect(),
                        });
                    }
                    several => {
                        return Err(SelectError::Ambiguous {
                            candidates: several.iter().map(|c| c.name.clone()).collect(),
                        });
                    }
                }
            }
        };
        if !command.is_wcgi() {
            return Err(SelectError::NotWcgi {
                name: command.name.clone(),
                runner: command.runner.clone(),
            });
        }
        match command.wcgi.dialect.as_deref() {
            None | Some(RFC_3875) => Ok(command),
            Some(other) => Err(SelectError::UnsupportedDialect {
                name: command.name.clone(),
                dialect: other.to_string(),
            }),
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(name: &str, runner: &str) -> CommandSpec {
        CommandSpec {
            name: name.into(),
            runner: runner.into(),
            module: ModuleSource::Bytes(Bytes::new()),
            wasi: WasiAnnotation::default(),
            wcgi: WcgiAnnotation::default(),
            embedded_snapshot: None,
        }
    }

    fn package(commands: Vec<CommandSpec>, entrypoint: Option<&str>) -> Package {
        Package {
            display_name: "test".into(),
            entrypoint: entrypoint.map(String::from),
            version: None,
            origin: String::new(),
            commands,
            volumes: Vec::new(),
            container_mounts: Vec::new(),
        }
    }

    #[test]
    fn the_only_wcgi_command_is_chosen() {
        let pkg = package(vec![command("tool", "wasi"), command("web", "wcgi")], None);
        assert_eq!(pkg.select_command(None).unwrap().name, "web");
    }

    #[test]
    fn the_runner_uri_counts_as_wcgi() {
        let pkg = package(
            vec![command("web", "https://webc.org/runner/wcgi@unstable_")],
            None,
        );
        assert_eq!(pkg.select_command(None).unwrap().name, "web");
    }

    #[test]
    fn entrypoints_take_precedence_in_order() {
        let pkg = package(vec![command("a", "wcgi"), command("b", "wcgi")], Some("b"));
        assert_eq!(pkg.select_command(None).unwrap().name, "b");
        assert_eq!(pkg.select_command(Some("a")).unwrap().name, "a");
        let pkg = package(vec![command("a", "wcgi"), command("b", "wcgi")], None);
        assert_eq!(
            pkg.select_command(None).unwrap_err(),
            SelectError::Ambiguous {
                candidates: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn non_wcgi_and_unknown_commands_are_refused() {
        let pkg = package(vec![command("tool", "wasi")], None);
        assert!(matches!(
            pkg.select_command(None),
            Err(SelectError::NotWcgi { .. })
        ));
        assert!(matches!(
            pkg.select_command(Some("x")),
            Err(SelectError::NotFound { .. })
        ));
        let pkg = package(vec![command("a", "wasi"), command("b", "wasi")], None);
        assert!(matches!(
            pkg.select_command(None),
            Err(SelectError::NoWcgiCommand { .. })
        ));
    }

    #[test]
    fn only_the_rfc_3875_dialect_is_served() {
        let mut web = command("web", "wcgi");
        web.wcgi.dialect = Some("wcgi".into());
        let pkg = package(vec![web], None);
        assert!(matches!(
            pkg.select_command(None),
            Err(SelectError::UnsupportedDialect { .. })
        ));
    }
}
