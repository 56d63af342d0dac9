//! The command annotations wcgi reads, as found in wasmer.toml and webc manifests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cgi::ScriptRouting;

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
    /// Guest directory holding the scripts (`/app`). Setting it turns on script routing:
    /// each request runs the script its path names, as php-cgi expects.
    pub document_root: Option<String>,
    /// Extensions (without the dot) of the files that are scripts, e.g. `["php"]`.
    #[serde(default)]
    pub script_extensions: Vec<String>,
    /// Scripts tried for a path naming a directory; default `index.<first extension>`.
    pub index: Option<Vec<String>>,
    /// The script (a URL path under the root, `/index.php`) for paths that name nothing.
    pub front_controller: Option<String>,
    /// URL prefixes whose files the host serves from a guest directory without starting an
    /// instance, e.g. `{ "/" = "/app" }`; scripts and misses still go to the command.
    #[serde(default, rename = "static")]
    pub static_dirs: BTreeMap<String, String>,
    /// Pre-initialisation: `false` turns it off, a string names the init function (default:
    /// `wizer.initialize`, when the module exports it).
    pub preinit: Option<PreinitAnnotation>,
}

/// `preinit = true | false | "function"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PreinitAnnotation {
    Enabled(bool),
    Function(String),
}

/// The command annotation in which `wcgi pack --preinit` records the snapshot it embedded.
pub const SNAPSHOT_ANNOTATION: &str = "wcgi-snapshot";

/// What `wcgi pack --preinit` records of an embedded snapshot: the atom holding it, its
/// checksum and the key of the inputs it was taken from (a run with other inputs pre-initialises anew).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAnnotation {
    pub atom: String,
    pub key: String,
    /// The atom's checksum (`xxh3-128:HEX`).
    pub checksum: String,
}

/// The only CGI dialect wcgi speaks.
pub const RFC_3875: &str = "rfc-3875";

impl WcgiAnnotation {
    /// The script routing this annotation asks for, checked: `None` when `document-root` is
    /// absent. Errors name the field and say what is expected.
    pub fn script_routing(&self) -> Result<Option<ScriptRouting>, String> {
        let Some(root) = &self.document_root else {
            let stray = [
                ("script-extensions", !self.script_extensions.is_empty()),
                ("index", self.index.is_some()),
                ("front-controller", self.front_controller.is_some()),
            ];
            return match stray.iter().find(|(_, set)| *set) {
                Some((field, _)) => Err(format!(
                    "annotations.wcgi.{field} needs annotations.wcgi.document-root (the guest \
                     directory holding the scripts, e.g. \"/app\")"
                )),
                None => Ok(None),
            };
        };
        if !root.starts_with('/') {
            return Err(format!(
                "annotations.wcgi.document-root must be an absolute guest path such as \"/app\", \
                 got {root:?}"
            ));
        }
        if let Some(bad) = self
            .script_extensions
            .iter()
            .find(|e| e.is_empty() || e.contains(['.', '/']))
        {
            return Err(format!(
                "annotations.wcgi.script-extensions: {bad:?} is not an extension; write \"php\", \
                 not \".php\""
            ));
        }
        let index = match &self.index {
            Some(index) => index.clone(),
            None => self
                .script_extensions
                .first()
                .map(|extension| vec![format!("index.{extension}")])
                .unwrap_or_default(),
        };
        if let Some(bad) = index
            .iter()
            .find(|name| name.is_empty() || name.contains('/'))
        {
            return Err(format!(
                "annotations.wcgi.index: {bad:?} is not a file name; list names such as \"index.php\""
            ));
        }
        let front_controller = self.front_controller.as_ref().map(|path| {
            if path.starts_with('/') {
                path.clone()
            } else {
                format!("/{path}")
            }
        });
        Ok(Some(ScriptRouting {
            document_root: root.trim_end_matches('/').to_string(),
            script_extensions: self.script_extensions.clone(),
            index_files: index,
            front_controller,
        }))
    }
}

impl WasiAnnotation {
    /// The annotation `env` as pairs, by the same rules as `--env`; errors name the field.
    pub fn env_pairs(&self) -> Result<Vec<(String, String)>, String> {
        self.env
            .iter()
            .map(|item| {
                crate::cgi::parse_env_pair(item)
                    .map_err(|error| format!("annotations.wasi.env: {error}"))
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
            .map_err(|error| annotation_error(key, error)),
    }
}

/// serde's own message: ciborium's `Display` shows it wrapped as `Custom("…")`.
fn annotation_error(key: &str, error: ciborium::value::Error) -> String {
    let ciborium::value::Error::Custom(message) = error;
    format!("annotations.{key}: {message}")
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
        .map_err(|error| annotation_error(key, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn php(front_controller: Option<&str>) -> WcgiAnnotation {
        WcgiAnnotation {
            document_root: Some("/app/".into()),
            script_extensions: vec!["php".into()],
            front_controller: front_controller.map(String::from),
            ..WcgiAnnotation::default()
        }
    }

    #[test]
    fn routing_defaults_follow_the_first_extension() {
        let routing = php(Some("index.php")).script_routing().unwrap().unwrap();
        assert_eq!(routing.document_root, "/app");
        assert_eq!(routing.index_files, ["index.php"]);
        assert_eq!(routing.front_controller.as_deref(), Some("/index.php"));
        assert_eq!(
            php(None)
                .script_routing()
                .unwrap()
                .unwrap()
                .front_controller,
            None
        );
        assert_eq!(WcgiAnnotation::default().script_routing(), Ok(None));
    }

    #[test]
    fn bad_index_names_are_refused() {
        let annotation = WcgiAnnotation {
            index: Some(vec!["sub/index.php".into()]),
            ..php(None)
        };
        let error = annotation.script_routing().unwrap_err();
        assert!(error.starts_with("annotations.wcgi.index: "), "{error}");
    }

    #[test]
    fn type_errors_read_as_serde_wrote_them() {
        let annotations = ciborium::Value::Map(vec![(
            "wcgi".into(),
            ciborium::Value::Map(vec![("static".into(), "/app".into())]),
        )]);
        let error = from_annotations::<WcgiAnnotation>(Some(&annotations), "wcgi").unwrap_err();
        assert_eq!(
            error,
            "annotations.wcgi: invalid type: string \"/app\", expected map"
        );
    }
}
