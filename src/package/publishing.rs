//! Publishing to a Wasmer registry, with the protocol Wasmer CLI 7.1 speaks (the schema is
//! `wasmer-backend-api`'s `schema.graphql`): ask for a signed upload URL, PUT the container
//! there (a plain upload, never with the token), `pushPackageRelease` to make it a release,
//! then `tagPackageRelease` to give the release its version and metadata.

use std::io::{IsTerminal, Read};

use anyhow::bail;
use bytes::Bytes;
use serde_json::json;
use url::Url;

use super::cache::sha256_hex;
use super::reference::registry_endpoint;
use super::registry::{Registry, root_cause};

/// One version of a package, ready to publish.
pub struct Release {
    pub namespace: String,
    pub name: String,
    pub version: String,
    /// The `.webc` file, uploaded byte for byte.
    pub container: Bytes,
    pub metadata: Metadata,
}

/// What the registry shows about a version, from `[package]` of wasmer.toml.
#[derive(Debug, Default)]
pub struct Metadata {
    pub description: Option<String>,
    pub license: Option<String>,
    /// The readme's content (the registry takes the text, not a path).
    pub readme: Option<String>,
    pub repository: Option<String>,
    pub homepage: Option<String>,
    /// wasmer.toml as written, when publishing a directory.
    pub manifest: Option<String>,
}

impl Release {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn sha256(&self) -> String {
        sha256_hex(&self.container)
    }
}

/// How long the signed upload URL is asked to stay valid, in seconds (Wasmer asks 30 minutes).
const UPLOAD_URL_LIFETIME: u32 = 30 * 60;

impl Registry {
    /// The endpoint packages are published to.
    pub fn publish_endpoint(&self) -> anyhow::Result<Url> {
        registry_endpoint(self.settings().registry.as_deref())
    }

    /// Publishes `release`; returns the version the registry tagged.
    pub fn publish(&self, release: &Release) -> anyhow::Result<String> {
        let endpoint = self.publish_endpoint()?;
        if self.settings().offline {
            bail!("cannot publish with --offline: publishing needs the registry at {endpoint}");
        }
        if self.token_for(&endpoint).is_none() {
            bail!(
                "publishing to {endpoint} needs a token: pass --token, set WCGI_TOKEN (or \
                 WASMER_TOKEN), or log in with `wasmer login`"
            );
        }
        let full_name = release.full_name();
        let existing = self.send(
            &endpoint,
            "query ($name: String!, $version: String!) { \
             getPackageVersion(name: $name, version: $version) { version } }",
            json!({ "name": full_name, "version": release.version }),
        )?;
        if !existing["getPackageVersion"].is_null() {
            bail!(
                "{full_name}@{} is already in the registry at {endpoint}; a version is never \
                 replaced, so raise `version` in wasmer.toml",
                release.version
            );
        }

        let signed = self.send(
            &endpoint,
            "query ($name: String, $version: String, $filename: String, $expires: Int) { \
             getSignedUrlForPackageUpload(name: $name, version: $version, filename: $filename, \
             expiresAfterSeconds: $expires, method: \"R2\") { url } }",
            json!({
                "name": full_name,
                "version": release.version,
                "filename": release.sha256(),
                "expires": UPLOAD_URL_LIFETIME,
            }),
        )?;
        let Some(upload_url) = signed["getSignedUrlForPackageUpload"]["url"].as_str() else {
            bail!("the registry at {endpoint} gave no URL to upload the package to");
        };
        self.upload(upload_url, &release.container)?;

        let pushed = self.send(
            &endpoint,
            "mutation ($namespace: String!, $name: String, $signedUrl: String!) { \
             pushPackageRelease(input: { namespace: $namespace, name: $name, \
             signedUrl: $signedUrl }) { success packageWebc { id } } }",
            json!({
                "namespace": release.namespace,
                "name": release.name,
                "signedUrl": upload_url,
            }),
        )?;
        let pushed = &pushed["pushPackageRelease"];
        let Some(release_id) = pushed["packageWebc"]["id"]
            .as_str()
            .filter(|_| pushed["success"].as_bool() == Some(true))
        else {
            bail!("the registry at {endpoint} did not accept the uploaded package as a release");
        };

        let metadata = &release.metadata;
        let tagged = self.send(
            &endpoint,
            "mutation ($id: ID!, $version: String!, $namespace: String, $name: String, \
             $manifest: String, $description: String, $license: String, $readme: String, \
             $repository: String, $homepage: String) { \
             tagPackageRelease(input: { packageReleaseId: $id, version: $version, \
             namespace: $namespace, name: $name, manifest: $manifest, \
             description: $description, license: $license, readme: $readme, \
             repository: $repository, homepage: $homepage }) \
             { success packageVersion { id version } } }",
            json!({
                "id": release_id,
                "version": release.version,
                "namespace": release.namespace,
                "name": release.name,
                "manifest": metadata.manifest,
                "description": metadata.description,
                "license": metadata.license,
                "readme": metadata.readme,
                "repository": metadata.repository,
                "homepage": metadata.homepage,
            }),
        )?;
        let tagged = &tagged["tagPackageRelease"];
        match tagged["packageVersion"]["version"].as_str() {
            Some(version) if tagged["success"].as_bool() == Some(true) => Ok(version.to_string()),
            _ => bail!(
                "the registry at {endpoint} did not tag the release as version {}",
                release.version
            ),
        }
    }

    /// PUTs the container to the signed URL: no token (it is for the registry, and this may
    /// be a storage host), a progress bar on a terminal.
    fn upload(&self, url: &str, container: &Bytes) -> anyhow::Result<()> {
        let length = container.len() as u64;
        let progress = upload_progress(length);
        let body = reqwest::blocking::Body::sized(
            progress.wrap_read(std::io::Cursor::new(container.clone())),
            length,
        );
        let response = self
            .http()?
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .map_err(|error| {
                anyhow::anyhow!("cannot upload the package: {}", root_cause(&error))
            })?;
        progress.finish_and_clear();
        let status = response.status();
        if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
            let mut said = String::new();
            let _ = response.take(512).read_to_string(&mut said);
            bail!(
                "the registry refuses a package this large ({}){}; leave out what it need not \
                 carry (a .wasmerignore file lists what `wcgi pack` skips)",
                bytesize::ByteSize::b(length),
                match said.trim() {
                    "" => String::new(),
                    said => format!(": {said}"),
                }
            );
        }
        if !status.is_success() {
            bail!("the upload of the package was refused: the server answered {status}");
        }
        tracing::info!("uploaded the package ({})", bytesize::ByteSize::b(length));
        Ok(())
    }
}

fn upload_progress(length: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length);
    let style = indicatif::ProgressStyle::with_template(
        "uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
