//! The command annotations wcgi reads, as found in wasmer.toml and webc manifests.

use serde::Deserialize;

/// `[command.annotations.wasi]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WasiAnnotation {
    /// Which module (atom) the command runs; defaults to the command's `module`.
    pub atom: Option<String>,
    /// `KEY=VALUE` entries for the guest environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Arguments placed after `argv[0]`.
    #[serde(default)]
    pub main_args: Vec<String>,
    /// The guest's working directory.
    pub cwd: Option<String>,
}

/// `[command.annotations.wcgi]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WcgiAnnotation {
    /// The CGI dialect; only `rfc-3875` exists (absent means it too).
    pub dialect: Option<String>,
}

/// The only CGI dialect wcgi speaks.
pub const RFC_3875: &str = "rfc-3875";

impl WasiAnnotation {
    /// The annotation `env` as pairs; an entry without `=` sets an empty value.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|item| match item.split_once('=') {
                Some((key, value)) => (key.to_string(), value.to_string()),
                None => (item.clone(), String::new()),
            })
            .collect()
    }
}

/// Reads one annotation out of a webc command's annotation map. Errors name the annotation.
pub fn from_annotation_map<T: for<'de> Deserialize<'de>>(
    annotations: &indexmap::IndexMap<String, ciborium::Value>,
    key: &str,
) -> Result<Option<T>, String> {
    match annotations.get(key) {
        None => Ok(None),
        Some(value) => value
            .deserialized()
            .map(Some)
            .map_err(|error| format!("annotations.{key}: {error}")),
    }
}

/// Reads one annotation out of a command's annotation map (CBOR, as both wasmer.toml and
/// webc annotations are represented). Errors name the annotation.
pub fn from_annotations<T: for<'de> Deserialize<'de>>(
    annotations: Option<&ciborium::Value>,
    key: &str,
) -> Result<Option<T>, String> {
    let Some(ciborium::Value::Map(entries)) = annotations else {
        return Ok(None);
    };
    let Some((_, value)) = entries.iter().find(|(k, _)| k.as_text() == Some(key)) else {
        return Ok(None);
    };
    value
        .deserialized()
        .map(Some)
        .map_err(|error| format!("annotations.{key}: {error}"))
}
