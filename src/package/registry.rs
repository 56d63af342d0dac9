//! The Wasmer registry protocol (GraphQL over HTTP), as Wasmer CLI 7.1 speaks it, plus what it
//! lacked: every download is checked against its sha256, answers and containers are cached,
//! and `--offline` (or a network failure) falls back to the cache.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use semver::{Version, VersionReq};
use serde_json::Value;
use url::Url;

use super::cache::{Cache, QUERY_TTL, sha256_hex};
use super::reference::{Reference, registry_endpoint};

/// Where packages come from: flags and environment shared by `run`, `pull` and `inspect`.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    pub registry: Option<String>,
    pub token: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub offline: bool,
}

/// A container obtained from a registry, a hash or a URL.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: Bytes,
    /// `namespace/name`, when the reference named one.
    pub name: Option<String>,
    pub version: Option<String>,
    pub sha256: String,
    pub cache_path: PathBuf,
}

/// One release chosen from the registry.
struct Release {
    version: Option<String>,
    url: String,
    sha256: Option<String>,
}

pub struct Registry {
    settings: RegistrySettings,
    cache: Cache,
    http: OnceLock<reqwest::blocking::Client>,
}

impl Registry {
    pub fn new(settings: RegistrySettings) -> Self {
        let cache = Cache::new(settings.cache_dir.clone());
        Registry {
            settings,
            cache,
            http: OnceLock::new(),
        }
    }

    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// Gets the container a reference names, from the cache when possible.
    pub fn fetch(&self, reference: &Reference) -> anyhow::Result<Fetched> {
        match reference {
            Reference::Named {
                registry,
                name,
                requirement,
            } => {
                let endpoint =
                    registry_endpoint(registry.as_deref().or(self.settings.registry.as_deref()))?;
                let release = self.resolve_named(&endpoint, name, requirement)?;
                self.obtain(&endpoint, release, Some(name.clone()))
            }
            Reference::Hash(hex) => {
                if let Some(bytes) = self.cache.package(hex) {
                    return Ok(self.fetched(bytes, None, None, hex.clone()));
                }
                let endpoint = registry_endpoint(self.settings.registry.as_deref())?;
                let release = self.resolve_hash(&endpoint, hex)?;
                self.obtain(&endpoint, release, None)
            }
            Reference::Url(url) => {
                let key = format!("url {url}");
                if let Some((hex, age)) = self.cache.query(&key)
                    && (self.settings.offline || age < QUERY_TTL)
                    && let Some(bytes) = self.cache.package(hex.trim())
                {
                    return Ok(self.fetched(bytes, None, None, hex.trim().to_string()));
                }
                if self.settings.offline {
                    bail!("{url} is not in the cache and --offline forbids downloading it");
                }
                let endpoint = registry_endpoint(self.settings.registry.as_deref())?;
                let bytes = self.download(&endpoint, url.as_str(), None)?;
                let hex = sha256_hex(&bytes);
                self.cache.store_query(&key, &hex);
                self.cache.store_package(&hex, &bytes)?;
                Ok(self.fetched(bytes, None, None, hex))
            }
        }
    }

    fn fetched(
        &self,
        bytes: Bytes,
        name: Option<String>,
        version: Option<String>,
        sha256: String,
    ) -> Fetched {
        let cache_path = self.cache.package_path(&sha256);
        Fetched {
            bytes,
            name,
            version,
            sha256,
            cache_path,
        }
    }

    /// The release's container from the cache, else downloaded, verified and cached.
    fn obtain(
        &self,
        endpoint: &Url,
        release: Release,
        name: Option<String>,
    ) -> anyhow::Result<Fetched> {
        if let Some(hex) = &release.sha256
            && let Some(bytes) = self.cache.package(hex)
        {
            return Ok(self.fetched(bytes, name, release.version, hex.clone()));
        }
        if self.settings.offline {
            bail!(
                "{} is not in the cache and --offline forbids downloading it",
                name.as_deref().unwrap_or(&release.url)
            );
        }
        let bytes = self.download(endpoint, &release.url, release.sha256.as_deref())?;
        let hex = sha256_hex(&bytes);
        self.cache.store_package(&hex, &bytes)?;
        Ok(self.fetched(bytes, name, release.version, hex))
    }

    fn resolve_named(
        &self,
        endpoint: &Url,
        name: &str,
        requirement: &VersionReq,
    ) -> anyhow::Result<Release> {
        let distribution = "piritaDownloadUrl piritaSha256Hash webcManifest";
        let query = format!(
            "{{ getPackage(name: \"{name}\") {{ packageName namespace versions {{ version isArchived \
             v2: distribution(version: V2) {{ {distribution} }} \
             v3: distribution(version: V3) {{ {distribution} }} }} }} }}"
        );
        let data = self.graphql(endpoint, &query, Freshness::Cached)?;
        let release = self.choose_version(endpoint, name, requirement, &data);
        if release.is_err() && !self.settings.offline {
            // A cached answer may predate the version asked for (published a moment ago).
            let data = self.graphql(endpoint, &query, Freshness::Fresh)?;
            return self.choose_version(endpoint, name, requirement, &data);
        }
        release
    }

    /// The newest unarchived version matching `requirement` in a `getPackage` answer.
    fn choose_version(
        &self,
        endpoint: &Url,
        name: &str,
        requirement: &VersionReq,
        data: &Value,
    ) -> anyhow::Result<Release> {
        let package = &data["getPackage"];
        if package.is_null() {
            bail!("package {name} was not found in the registry at {endpoint}");
        }
        let versions = package["versions"].as_array().cloned().unwrap_or_default();
        let mut available: Vec<(Version, &Value)> = Vec::new();
        let mut archived = 0;
        for entry in &versions {
            let Some(version) = entry["version"]
                .as_str()
                .and_then(|v| Version::parse(v).ok())
            else {
                continue;
            };
            if entry["isArchived"].as_bool().unwrap_or(false) {
                archived += 1;
                continue;
            }
            if distribution_of(entry).is_some() {
                available.push((version, entry));
            }
        }
        available.sort_by(|a, b| a.0.cmp(&b.0));
        if available.is_empty() && archived > 0 {
            bail!("package {name} has only archived versions in the registry at {endpoint}");
        }
        let Some((version, entry)) = available.iter().rev().find(|(v, _)| requirement.matches(v))
        else {
            let listed: Vec<String> = available.iter().map(|(v, _)| v.to_string()).collect();
            bail!(
                "no version of {name} matches {requirement} (available: {})",
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                }
            );
        };
        let (url, sha256) = distribution_of(entry).expect("filtered above");
        Ok(Release {
            version: Some(version.to_string()),
            url,
            sha256: Some(sha256),
        })
    }

    fn resolve_hash(&self, endpoint: &Url, hex: &str) -> anyhow::Result<Release> {
        let query = format!(
            "{{ getPackageRelease(hash: \"sha256:{hex}\") {{ piritaManifest isArchived webcUrl }} }}"
        );
        let data = self.graphql(endpoint, &query, Freshness::Cached)?;
        let release = &data["getPackageRelease"];
        let Some(url) = release["webcUrl"].as_str() else {
            bail!("no release with hash sha256:{hex} in the registry at {endpoint}");
        };
        Ok(Release {
            version: None,
            url: url.to_string(),
            sha256: Some(hex.to_string()),
        })
    }

    /// Runs a query, answering from the cache while the answer is fresh (or whenever offline
    /// or the registry cannot be reached).
    fn graphql(&self, endpoint: &Url, query: &str, freshness: Freshness) -> anyhow::Result<Value> {
        let key = format!("{endpoint}\n{query}");
        let cached = self.cache.query(&key);
        if let Some((text, age)) = &cached
            && (self.settings.offline || (*age < QUERY_TTL && freshness == Freshness::Cached))
            && let Ok(data) = parse_answer(endpoint, text)
        {
            return Ok(data);
        }
        if self.settings.offline {
            bail!(
                "the registry answer is not cached and --offline forbids asking {endpoint}; run once without --offline"
            );
        }
        let mut request = self
            .http()?
            .post(endpoint.as_str())
            .json(&serde_json::json!({ "query": query }));
        if let Some(token) = self.token_for(endpoint) {
            request = request.bearer_auth(token);
        }
        let response = match request.send() {
            Ok(response) => response,
            Err(error) => {
                if let Some((text, _)) = &cached
                    && let Ok(data) = parse_answer(endpoint, text)
                {
                    tracing::warn!(
                        "cannot reach {endpoint} ({error}); using its last answer from the cache"
                    );
                    return Ok(data);
                }
                bail!(
                    "cannot reach the registry at {endpoint}: {}; check the network, or use --offline for cached packages",
                    root_cause(&error)
                );
            }
        };
        let text = answer_text(endpoint, response)?;
        let data = parse_answer(endpoint, &text)?;
        self.cache.store_query(&key, &text);
        Ok(data)
    }

    /// Sends a query or mutation with variables, never from or into the cache (what
    /// publishing asks must be the registry's answer of now).
    pub(super) fn send(
        &self,
        endpoint: &Url,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http()?
            .post(endpoint.as_str())
            .json(&serde_json::json!({ "query": query, "variables": variables }));
        if let Some(token) = self.token_for(endpoint) {
            request = request.bearer_auth(token);
        }
        let response = request.send().map_err(|error| {
            anyhow::anyhow!(
                "cannot reach the registry at {endpoint}: {}; check the network",
                root_cause(&error)
            )
        })?;
        parse_answer(endpoint, &answer_text(endpoint, response)?)
    }

    fn download(
        &self,
        endpoint: &Url,
        url: &str,
        expected_sha256: Option<&str>,
    ) -> anyhow::Result<Bytes> {
        let target = Url::parse(url)
            .with_context(|| format!("the registry gave an invalid download URL {url}"))?;
        let mut request = self
            .http()?
            .get(target.clone())
            .header(reqwest::header::ACCEPT, "application/webc");
        // The token is for the registry only, never for another host.
        if let Some(token) = self.token_for(endpoint)
            && target.origin() == endpoint.origin()
        {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .map_err(|error| anyhow::anyhow!("cannot download {url}: {}", root_cause(&error)))?;
        if !response.status().is_success() {
            bail!(
                "cannot download {url}: the server answered {}",
                response.status()
            );
        }
        let length = response.content_length();
        let mut bytes = Vec::with_capacity(length.unwrap_or(0).min(1 << 30) as usize);
        let progress = download_progress(url, length);
        progress
            .wrap_read(response)
            .read_to_end(&mut bytes)
            .with_context(|| format!("the download of {url} broke off"))?;
        progress.finish_and_clear();
        let actual = sha256_hex(&bytes);
        if let Some(expected) = expected_sha256
            && !actual.eq_ignore_ascii_case(expected)
        {
            bail!(
                "the download from {url} does not match its hash (expected sha256:{expected}, got sha256:{actual}); not using it"
            );
        }
        tracing::info!(
            "downloaded {url} ({})",
            bytesize::ByteSize::b(bytes.len() as u64)
        );
        Ok(Bytes::from(bytes))
    }

    /// `--token` / `WCGI_TOKEN` / `WASMER_TOKEN`, else what `wasmer login` stored for this
    /// registry.
    pub(super) fn token_for(&self, endpoint: &Url) -> Option<String> {
        self.settings
            .token
            .clone()
            .or_else(|| wasmer_login_token(&wasmer_dir()?, endpoint))
    }

    pub(super) fn http(&self) -> anyhow::Result<&reqwest::blocking::Client> {
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("wcgi/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(self.http.get_or_init(|| client))
    }
}

/// Whether a query may be answered from the cache while its answer is fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    Cached,
    Fresh,
}

/// The body of a registry answer, or what its status means.
fn answer_text(endpoint: &Url, response: reqwest::blocking::Response) -> anyhow::Result<String> {
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        bail!(
            "the registry at {endpoint} refused the request ({status}); pass a valid token with --token or WCGI_TOKEN"
        );
    }
    if !status.is_success() {
        bail!("the registry at {endpoint} answered {status}");
    }
    response
        .text()
        .with_context(|| format!("cannot read the answer of {endpoint}"))
}

/// Wasmer's configuration directory: `$WASMER_DIR`, default `~/.wasmer`.
fn wasmer_dir() -> Option<PathBuf> {
    std::env::var_os("WASMER_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|home| home.join(".wasmer")))
}

/// The token `wasmer login` saved for `endpoint` in `wasmer_dir/wasmer.toml`:
/// `[[registry.tokens]]` entries of `registry` URL and `token`.
fn wasmer_login_token(wasmer_dir: &Path, endpoint: &Url) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WasmerConfig {
        registry: Logins,
    }
    #[derive(serde::Deserialize)]
    struct Logins {
        #[serde(default)]
        tokens: Vec<Login>,
    }
    #[derive(serde::Deserialize)]
    struct Login {
        registry: String,
        token: String,
    }
    let text = std::fs::read_to_string(wasmer_dir.join("wasmer.toml")).ok()?;
    let config: WasmerConfig = toml::from_str(&text).ok()?;
    config
        .registry
        .tokens
        .into_iter()
        .find(|login| registry_endpoint(Some(&login.registry)).is_ok_and(|url| url == *endpoint))
        .map(|login| login.token)
}

/// A version's container: v3 preferred, v2 when only that exists.
fn distribution_of(entry: &Value) -> Option<(String, String)> {
    ["v3", "v2"].iter().find_map(|key| {
        let distribution = &entry[*key];
        let url = distribution["piritaDownloadUrl"].as_str()?;
        let sha = distribution["piritaSha256Hash"].as_str()?;
        Some((
            url.to_string(),
            sha.trim_start_matches("sha256:").to_ascii_lowercase(),
        ))
    })
}

fn parse_answer(endpoint: &Url, text: &str) -> anyhow::Result<Value> {
    let answer: Value = serde_json::from_str(text)
        .with_context(|| format!("the registry at {endpoint} sent something that is not JSON"))?;
    if let Some(message) = answer["errors"][0]["message"].as_str()
        && answer["data"].is_null()
    {
        bail!("the registry at {endpoint} answered with an error: {message}");
    }
    Ok(answer["data"].clone())
}

pub(super) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// A progress bar on a terminal; on a pipe or in CI, nothing (the log says when it is done).
fn download_progress(url: &str, length: Option<u64>) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match length {
        Some(length) => indicatif::ProgressBar::new(length),
        None => indicatif::ProgressBar::no_length(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(format!(
        "downloading {}",
        url.rsplit('/').next().unwrap_or(url)
    ));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmer_login_tokens_are_found_by_registry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("wasmer.toml"),
            "[registry]\nactive_registry = \"http://127.0.0.1:1/graphql\"\n\n[[registry.tokens]]\nregistry = \"http://127.0.0.1:1/graphql\"\ntoken = \"abc\"\n",
        )
        .unwrap();
        let endpoint = registry_endpoint(Some("http://127.0.0.1:1/graphql")).unwrap();
        assert_eq!(
            wasmer_login_token(dir.path(), &endpoint).as_deref(),
            Some("abc")
        );
        let other = registry_endpoint(Some("http://127.0.0.1:2/graphql")).unwrap();
        assert_eq!(wasmer_login_token(dir.path(), &other), None);
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(wasmer_login_token(elsewhere.path(), &endpoint), None);
    }
}
