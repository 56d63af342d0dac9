//! A local registry on loopback that answers the Wasmer GraphQL queries wcgi sends
//! (`getPackage`, `getPackageRelease`) and serves `.webc` files, so registry tests run
//! without the public registry. It records what it was sent.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Published {
    version: String,
    archived: bool,
    v2: Option<String>,
    v3: Option<String>,
}

#[derive(Default)]
struct RegistryState {
    base: String,
    /// Base URL used for download links of packages published as "foreign".
    foreign_base: String,
    packages: HashMap<String, Vec<Published>>,
    files: HashMap<String, Vec<u8>>,
    /// (path, Authorization header) of every request.
    seen: Vec<(String, Option<String>)>,
    /// (file, Accept-Encoding header) of every download asked for.
    download_encodings: Vec<(String, Option<String>)>,
    /// Downloads sent gzip-encoded.
    gzipped: usize,
    gzip: bool,
    required_token: Option<String>,
    lie_about_hashes: bool,
    foreign: Vec<String>,
    /// Signed upload URLs handed out: the sha256 each was asked for, and what was PUT there.
    uploads: Vec<(String, Option<Vec<u8>>)>,
    /// Releases pushed and not yet tagged: (package, upload index).
    releases: Vec<(String, usize)>,
    /// The variables of every tagPackageRelease.
    tagged: Vec<Value>,
    /// Uploads larger than this are refused with 413.
    upload_limit: Option<usize>,
}

pub struct LocalRegistry {
    /// The GraphQL endpoint.
    pub endpoint: String,
    pub base: String,
    state: Arc<Mutex<RegistryState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl LocalRegistry {
    pub fn start() -> LocalRegistry {
        let state = Arc::new(Mutex::new(RegistryState::default()));
        let shared = state.clone();
        let app = Router::new()
            .route("/graphql", post(graphql))
            .route("/files/{name}", get(file))
            .route(
                "/uploads/{index}",
                axum::routing::put(upload).layer(axum::extract::DefaultBodyLimit::disable()),
            )
            .with_state(shared);
        let (address, stop_tx) = super::serve_in_background(app);
        let base = format!("http://127.0.0.1:{}", address.port());
        {
            let mut state = state.lock().unwrap();
            state.base = base.clone();
            // Same server, another host name: a different origin for the token rule.
            state.foreign_base = format!("http://localhost:{}", address.port());
        }
        LocalRegistry {
            endpoint: format!("{base}/graphql"),
            base,
            state,
            stop: Some(stop_tx),
        }
    }

    /// Publishes a version from container files (either may be absent).
    pub fn publish(
        &self,
        name: &str,
        version: &str,
        v3: Option<&Path>,
        v2: Option<&Path>,
        archived: bool,
    ) {
        let mut state = self.state.lock().unwrap();
        let mut store = |path: Option<&Path>, format: &str| {
            path.map(|path| {
                let file = format!("{}-{version}-{format}.webc", name.replace('/', "-"));
                state
                    .files
                    .insert(file.clone(), std::fs::read(path).unwrap());
                file
            })
        };
        let entry = Published {
            version: version.to_string(),
            archived,
            v3: store(v3, "v3"),
            v2: store(v2, "v2"),
        };
        state
            .packages
            .entry(name.to_string())
            .or_default()
            .push(entry);
    }

    /// The variables of every tagPackageRelease so far (what was published, with metadata).
    pub fn tagged(&self) -> Vec<Value> {
        self.state.lock().unwrap().tagged.clone()
    }

    /// The container stored for a published version.
    pub fn published_container(&self, name: &str, version: &str) -> Vec<u8> {
        let file = format!("{}-{version}-v3.webc", name.replace('/', "-"));
        self.state.lock().unwrap().files[&file].clone()
    }

    pub fn limit_uploads(&self, bytes: usize) {
        self.state.lock().unwrap().upload_limit = Some(bytes);
    }

    /// Makes download links of this package point at another host name.
    pub fn serve_from_foreign_host(&self, name: &str) {
        self.state.lock().unwrap().foreign.push(name.to_string());
    }

    pub fn set_gzip(&self, gzip: bool) {
        self.state.lock().unwrap().gzip = gzip;
    }

    pub fn require_token(&self, token: &str) {
        self.state.lock().unwrap().required_token = Some(token.to_string());
    }

    pub fn lie_about_hashes(&self) {
        self.state.lock().unwrap().lie_about_hashes = true;
    }

    /// The sha256 of a published container file.
    pub fn file_hash(&self, name: &str, version: &str, format: &str) -> String {
        let file = format!("{}-{version}-{format}.webc", name.replace('/', "-"));
        sha256_hex(&self.state.lock().unwrap().files[&file])
    }

    /// (path, Authorization) of every request so far.
    pub fn seen(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().seen.clone()
    }

    /// How many GraphQL queries were asked so far.
    pub fn queries(&self) -> usize {
        let state = self.state.lock().unwrap();
        state
            .seen
            .iter()
            .filter(|(path, _)| path == "/graphql")
            .count()
    }

    /// (file, Accept-Encoding) of every download asked for so far.
    pub fn download_encodings(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().download_encodings.clone()
    }

    /// How many downloads were sent gzip-encoded so far.
    pub fn gzipped(&self) -> usize {
        self.state.lock().unwrap().gzipped
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Pulls the string argument of `field(arg: "...")` out of a query.
fn argument(query: &str, field: &str) -> Option<String> {
    let start = query.find(field)? + field.len();
    let rest = &query[start..];
    let open = rest.find('"')? + 1;
    let close = rest[open..].find('"')? + open;
    Some(rest[open..close].to_string())
}

fn record(
    state: &Mutex<RegistryState>,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_string());
    let mut state = state.lock().unwrap();
    state.seen.push((path.to_string(), auth.clone()));
    if let Some(token) = &state.required_token
        && auth.as_deref() != Some(format!("Bearer {token}").as_str())
    {
        return Err(Box::new(
            (StatusCode::UNAUTHORIZED, "token required").into_response(),
        ));
    }
    Ok(())
}

async fn graphql(
    State(state): State<Arc<Mutex<RegistryState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = record(&state, "/graphql", &headers) {
        return *refused;
    }
    let request: Value = serde_json::from_slice(&body).unwrap();
    let query = request["query"].as_str().unwrap_or_default();
    let variables = &request["variables"];
    let mut state = state.lock().unwrap();
    if let Some(answer) = publishing(&mut state, query, variables, &headers) {
        return answer;
    }
    let distribution = |file: &Option<String>, package: &str| match file {
        Some(file) => {
            let base = if state.foreign.iter().any(|f| f == package) {
                &state.foreign_base
            } else {
                &state.base
            };
            let hash = if state.lie_about_hashes {
                "0".repeat(64)
            } else {
                sha256_hex(&state.files[file])
            };
            json!({ "piritaDownloadUrl": format!("{base}/files/{file}"), "piritaSha256Hash": hash, "webcManifest": "{}" })
        }
        None => {
            json!({ "piritaDownloadUrl": null, "piritaSha256Hash": null, "webcManifest": null })
        }
    };
    let data = if query.contains("getPackageRelease(") {
        let hash = argument(query, "getPackageRelease(hash:").unwrap_or_default();
        let hash = hash.trim_start_matches("sha256:");
        let found = state
            .files
            .iter()
            .find(|(_, bytes)| sha256_hex(bytes) == hash);
        let release = found.map(|(file, _)| {
            json!({ "piritaManifest": "{}", "isArchived": false, "webcUrl": format!("{}/files/{file}", state.base) })
        });
        json!({ "getPackageRelease": release })
    } else if query.contains("getPackage(") {
        let name = argument(query, "getPackage(name:").unwrap_or_default();
        let package = state.packages.get(&name).map(|versions| {
            let (namespace, short) = name.split_once('/').unwrap();
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    json!({
                        "version": v.version,
                        "isArchived": v.archived,
                        "v2": distribution(&v.v2, &name),
                        "v3": distribution(&v.v3, &name),
                    })
                })
                .collect();
            json!({ "packageName": short, "namespace": namespace, "versions": versions })
        });
        json!({ "getPackage": package })
    } else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({ "errors": [{ "message": "unknown query" }] }),
        );
    };
    json_response(StatusCode::OK, json!({ "data": data }))
}

/// The operations of `wasmer publish`, as the real registry answers them: all need a token;
/// a pushed upload must match the sha256 its URL was asked for; a version is never replaced.
fn publishing(
    state: &mut RegistryState,
    query: &str,
    variables: &Value,
    headers: &HeaderMap,
) -> Option<Response> {
    let operations = [
        "getPackageVersion(",
        "getSignedUrlForPackageUpload(",
        "pushPackageRelease(",
        "tagPackageRelease(",
    ];
    let operation = operations.iter().find(|op| query.contains(**op))?;
    let var = |name: &str| variables[name].as_str().unwrap_or_default().to_string();
    let error = |message: &str| {
        json_response(
            StatusCode::OK,
            json!({ "data": null, "errors": [{ "message": message }] }),
        )
    };
    if *operation != "getPackageVersion(" && !headers.contains_key(header::AUTHORIZATION) {
        return Some((StatusCode::UNAUTHORIZED, "token required").into_response());
    }
    let data = match *operation {
        "getPackageVersion(" => {
            let found = state
                .packages
                .get(&var("name"))
                .and_then(|versions| versions.iter().find(|v| v.version == var("version")));
            json!({ "getPackageVersion": found.map(|v| json!({ "version": v.version })) })
        }
        "getSignedUrlForPackageUpload(" => {
            state.uploads.push((var("filename"), None));
            let url = format!("{}/uploads/{}", state.base, state.uploads.len() - 1);
            json!({ "getSignedUrlForPackageUpload": { "url": url } })
        }
        "pushPackageRelease(" => {
            let url = var("signedUrl");
            let Some(index) = url
                .rsplit('/')
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < state.uploads.len())
            else {
                return Some(error("no such upload"));
            };
            let (hash, bytes) = &state.uploads[index];
            match bytes {
                Some(bytes) if sha256_hex(bytes) == *hash => {}
                Some(_) => return Some(error("the upload does not match its sha256")),
                None => return Some(error("nothing was uploaded")),
            }
            let package = format!("{}/{}", var("namespace"), var("name"));
            state.releases.push((package, index));
            let id = format!("PackageWebc:{}", state.releases.len() - 1);
            json!({ "pushPackageRelease": { "success": true, "packageWebc": { "id": id } } })
        }
        _ => {
            let Some((package, index)) = var("id")
                .strip_prefix("PackageWebc:")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| state.releases.get(i).cloned())
            else {
                return Some(error("no such release"));
            };
            let version = var("version");
            let exists = state
                .packages
                .get(&package)
                .is_some_and(|versions| versions.iter().any(|v| v.version == version));
            if exists {
                return Some(error("this version already exists"));
            }
            let file = format!("{}-{version}-v3.webc", package.replace('/', "-"));
            let bytes = state.uploads[index].1.clone().unwrap();
            state.files.insert(file.clone(), bytes);
            state.packages.entry(package).or_default().push(Published {
                version: version.clone(),
                v3: Some(file),
                ..Default::default()
            });
            state.tagged.push(variables.clone());
            json!({ "tagPackageRelease": { "success": true,
                "packageVersion": { "id": "PackageVersion:1", "version": version } } })
        }
    };
    Some(json_response(StatusCode::OK, json!({ "data": data })))
}

async fn upload(
    State(state): State<Arc<Mutex<RegistryState>>>,
    UrlPath(index): UrlPath<usize>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A storage host: no token asked for, none expected.
    let auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_string());
    let mut state = state.lock().unwrap();
    state.seen.push((format!("/uploads/{index}"), auth));
    if state.upload_limit.is_some_and(|limit| body.len() > limit) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "packages are limited to 1 KiB",
        )
            .into_response();
    }
    match state.uploads.get_mut(index) {
        Some(slot) => {
            slot.1 = Some(body.to_vec());
            StatusCode::OK.into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such upload").into_response(),
    }
}

fn json_response(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn file(
    State(state): State<Arc<Mutex<RegistryState>>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = record(&state, &format!("/files/{name}"), &headers) {
        return *refused;
    }
    let mut state = state.lock().unwrap();
    let accept_encoding = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state
        .download_encodings
        .push((name.clone(), accept_encoding.clone()));
    let Some(bytes) = state.files.get(&name).cloned() else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let accepts_gzip = accept_encoding.is_some_and(|v| v.contains("gzip"));
    if state.gzip && accepts_gzip {
        state.gzipped += 1;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&bytes).unwrap();
        let compressed = encoder.finish().unwrap();
        return (
            [
                (header::CONTENT_TYPE, "application/webc"),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            compressed,
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, "application/webc")], bytes).into_response()
}
