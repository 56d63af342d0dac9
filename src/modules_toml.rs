//! WAGI's `modules.toml`: a site of many modules, each at its own route, read as WAGI reads
//! it, with what WAGI users asked for back (per-module `environment`) and wcgi packages
//! allowed as modules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::package::{self, CommandSpec, Package, RegistrySettings};
use crate::runtime::MountSpec;
use crate::server::{RoutePattern, RouteTable};

/// One `[[module]]`, checked.
#[derive(Debug, Clone)]
pub struct ModuleEntry {
    pub route: RoutePattern,
    /// What to run, as `wcgi run` takes it: a path (made absolute against the file's
    /// directory) or a registry reference.
    pub module: String,
    /// The package's command to run, for a package with several.
    pub command: Option<String>,
    pub entrypoint: Option<String>,
    pub volumes: Vec<MountSpec>,
    pub environment: Vec<(String, String)>,
    /// WAGI's argv template, split into words.
    pub argv: Option<Vec<String>>,
    pub http_max_concurrency: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    module: Vec<RawModule>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
struct RawModule {
    route: Option<String>,
    module: Option<String>,
    command: Option<String>,
    entrypoint: Option<String>,
    #[serde(default)]
    volumes: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    argv: Option<String>,
    http_max_concurrency: Option<u32>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// Whether `path` is a `modules.toml`: a TOML file with `[[module]]` tables (a directory, or
/// any other file, is a package).
pub fn is_site_file(path: &Path) -> bool {
    if !path.is_file() || path.extension().is_none_or(|ext| ext != "toml") {
        return false;
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|table| table.get("module").is_some_and(toml::Value::is_array))
}

/// Reads and checks a `modules.toml`. Problems that stop the site are errors naming the
/// module; keys wcgi does not know, and outbound hosts it does not offer, are warnings.
pub fn load(path: &Path) -> anyhow::Result<Vec<ModuleEntry>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {shown}"))?;
    let file: File = toml::from_str(&text)
        .map_err(|error| anyhow::anyhow!("{shown}: {}", error.message().trim_end()))?;
    for key in file.unknown.keys() {
        tracing::warn!("{shown}: ignoring unknown key `{key}`");
    }
    if file.module.is_empty() {
        bail!("{shown}: no [[module]] to serve");
    }
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    let base =
        std::path::absolute(dir.unwrap_or(Path::new("."))).unwrap_or_else(|_| PathBuf::from("."));
    file.module
        .into_iter()
        .enumerate()
        .map(|(index, raw)| raw.check(&base, &format!("{shown}: module {}", index + 1)))
        .collect()
}

impl RawModule {
    fn check(self, base: &Path, shown: &str) -> anyhow::Result<ModuleEntry> {
        let Some(module) = self.module else {
            bail!("{shown} has no `module` (the .wasm file or package it runs)");
        };
        let shown = format!("{shown} ({module})");
        let Some(route) = self.route else {
            bail!("{shown} has no `route` (e.g. \"/\", \"/app/...\" or \"/...\")");
        };
        let route =
            RoutePattern::parse(&route).map_err(|error| anyhow::anyhow!("{shown}: {error}"))?;
        for key in self.unknown.keys() {
            tracing::warn!("{shown}: ignoring unknown key `{key}`");
        }
        if !self.allowed_hosts.is_empty() {
            tracing::warn!(
                "{shown}: allowed_hosts {:?} is ignored: wcgi offers guests no outbound HTTP",
                self.allowed_hosts
            );
        }
        let volumes = self
            .volumes
            .into_iter()
            .map(|(guest, host)| MountSpec {
                guest: crate::runtime::guest_path(&guest),
                host: base.join(host),
                read_only: false,
            })
            .collect();
        Ok(ModuleEntry {
            route,
            module: reference(base, &module),
            command: self.command,
            entrypoint: self.entrypoint,
            volumes,
            environment: self.environment.into_iter().collect(),
            argv: self
                .argv
                .map(|argv| argv.split_whitespace().map(String::from).collect()),
            http_max_concurrency: self.http_max_concurrency,
        })
    }
}

/// A `[[module]]` with what it runs, resolved.
pub struct SiteModule {
    pub entry: ModuleEntry,
    pub package: Package,
    pub command: CommandSpec,
    pub wasm: bytes::Bytes,
}

impl ModuleEntry {
    /// How the module is named in messages.
    pub fn label(&self) -> String {
        format!("module {} at {}", self.module, self.route)
    }
}

/// Reads a `modules.toml` and resolves every module's package and command, in the file's
/// order. Two modules at one route are refused, naming both, before any is fetched.
pub fn resolve(path: &Path, settings: &RegistrySettings) -> anyhow::Result<Vec<SiteModule>> {
    let entries = load(path)?;
    RouteTable::new(
        entries
            .iter()
            .map(|entry| (entry.route.clone(), entry.label(), ()))
            .collect(),
    )
    .map_err(anyhow::Error::msg)?;
    entries
        .into_iter()
        .map(|entry| {
            let resolved = (|| {
                let package = package::resolve(&entry.module, settings)?;
                let command = package.select_command(entry.command.as_deref())?.clone();
                let wasm = command.load_module(settings)?;
                anyhow::Ok((package, command, wasm))
            })();
            let (package, command, wasm) =
                resolved.with_context(|| format!("{}: {}", path.display(), entry.label()))?;
            Ok(SiteModule {
                entry,
                package,
                command,
                wasm,
            })
        })
        .collect()
}

/// `module` as `wcgi run` takes a package: `file://` URLs and relative paths become paths
/// against the file's directory; anything else (a registry reference) stays as written.
fn reference(base: &Path, module: &str) -> String {
    let path = module.strip_prefix("file://").unwrap_or(module);
    let candidate = base.join(path);
    if module.starts_with("file://") || candidate.exists() {
        candidate.display().to_string()
    } else {
        module.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> anyhow::Result<Vec<ModuleEntry>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wasm"), b"").unwrap();
        let path = dir.path().join("modules.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    #[test]
    fn modules_are_read_with_paths_against_the_file() {
        let modules = load_text(
            "[[module]]\nroute = \"/x/...\"\nmodule = \"a.wasm\"\nentrypoint = \"hi\"\n\
             volumes = { \"/data\" = \"data\" }\nenvironment = { K = \"v\" }\n\
             argv = \"${SCRIPT_NAME} ${ARGS}\"\n\n\
             [[module]]\nroute = \"/\"\nmodule = \"file:///abs/b.wasm\"\n\n\
             [[module]]\nroute = \"/...\"\nmodule = \"me/pkg@1\"\n",
        )
        .unwrap();
        assert_eq!(modules[0].route, RoutePattern::Prefix("/x".into()));
        assert!(modules[0].module.ends_with("/a.wasm") && modules[0].module.starts_with('/'));
        assert_eq!(modules[0].entrypoint.as_deref(), Some("hi"));
        assert!(modules[0].volumes[0].host.ends_with("data"));
        assert_eq!(modules[0].volumes[0].guest, "/data");
        assert_eq!(modules[0].environment, [("K".to_string(), "v".to_string())]);
        assert_eq!(
            modules[0].argv.as_deref(),
            Some(&["${SCRIPT_NAME}".to_string(), "${ARGS}".to_string()][..])
        );
        assert_eq!(modules[1].module, "/abs/b.wasm");
        assert_eq!(modules[2].module, "me/pkg@1");
    }

    #[test]
    fn a_module_without_route_or_module_is_named() {
        let error = load_text("[[module]]\nmodule = \"a.wasm\"\n").unwrap_err();
        assert!(
            error.to_string().ends_with(
                "module 1 (a.wasm) has no `route` (e.g. \"/\", \"/app/...\" or \"/...\")"
            ),
            "{error}"
        );
        let error = load_text("[[module]]\nroute = \"/\"\n").unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("module 1 has no `module` (the .wasm file or package it runs)")
        );
    }
}
