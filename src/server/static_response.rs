//! The HTTP side of a static file: tower-http's `ServeFile` does Content-Type, ranges,
//! Last-Modified and precompressed `.gz`/`.br` variants; this adds what it lacks — an entity
//! tag per variant, `If-None-Match`, `If-Range` and `Vary` — and decides every conditional
//! request itself, so the variant actually chosen is the one validated.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, StatusCode, request};
use tower_http::services::ServeFile;

use super::static_files::StaticFile;

/// Answers a GET or HEAD for `file`.
pub async fn respond(file: &StaticFile, request: &request::Parts) -> Response {
    let conditions = Conditions::from_headers(&request.headers);
    let mut response = serve_file(file, request, true).await;
    if response.status() == StatusCode::PARTIAL_CONTENT
        && !conditions.if_range_holds(&response_validators(file, &response))
    {
        // The client's copy is stale: a part of the new file would corrupt it, so it gets
        // the whole file (RFC 9110 §13.1.5).
        response = serve_file(file, request, false).await;
    }
    if !matches!(
        response.status(),
        StatusCode::OK | StatusCode::PARTIAL_CONTENT
    ) {
        return response;
    }
    let validators = response_validators(file, &response);
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(etag) = HeaderValue::from_str(&validators.etag) {
        headers.insert(header::ETAG, etag);
    }
    if conditions.not_modified(&validators) {
        return not_modified(response.headers());
    }
    response
}

/// Runs tower-http's `ServeFile` with the conditional headers taken out: they are decided
/// here, against the variant it picks.
async fn serve_file(file: &StaticFile, request: &request::Parts, keep_range: bool) -> Response {
    let mut forwarded = Request::builder()
        .method(request.method.clone())
        .uri(request.uri.clone())
        .body(())
        .expect("a method and URI taken from a valid request");
    let dropped = [
        Some(header::IF_NONE_MATCH),
        Some(header::IF_MODIFIED_SINCE),
        Some(header::IF_RANGE),
        (!keep_range).then_some(header::RANGE),
    ];
    for (name, value) in &request.headers {
        if !dropped.iter().flatten().any(|dropped| dropped == name) {
            forwarded.headers_mut().append(name, value.clone());
        }
    }
    let mime = mime_guess::from_path(&file.requested_name).first_or_octet_stream();
    let served = ServeFile::new_with_mime(&file.path, &mime)
        .precompressed_br()
        .precompressed_gzip()
        .try_call(forwarded)
        .await;
    match served {
        Ok(response) => response.map(Body::new),
        Err(error) => {
            tracing::warn!("cannot read {}: {error}", file.path.display());
            let status = match error.kind() {
                std::io::ErrorKind::NotFound => StatusCode::NOT_FOUND,
                std::io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut response = Response::new(Body::empty());
            *response.status_mut() = status;
            response
        }
    }
}

/// What identifies the bytes a response carries.
struct Validators {
    /// Strong: size and modification time of the file sent, as nginx makes them, plus the
    /// encoding, since a `.gz` variant is different bytes.
    etag: String,
    last_modified: Option<SystemTime>,
}

fn response_validators(file: &StaticFile, response: &Response) -> Validators {
    let encoding = response
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok());
    let variant_metadata = encoding.and_then(|encoding| {
        let suffix = match encoding {
            "br" => "br",
            "gzip" => "gz",
            _ => return None,
        };
        let mut variant = file.path.clone().into_os_string();
        variant.push(format!(".{suffix}"));
        std::fs::metadata(variant).ok()
    });
    let metadata = variant_metadata.as_ref().unwrap_or(&file.metadata);
    let modified = metadata.modified().ok();
    let nanos = modified
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    let etag = match encoding {
        Some(encoding) => format!("\"{nanos:x}-{:x}-{encoding}\"", metadata.len()),
        None => format!("\"{nanos:x}-{:x}\"", metadata.len()),
    };
    Validators {
        etag,
        last_modified: modified,
    }
}

/// The request's conditional headers.
struct Conditions {
    if_none_match: Option<String>,
    if_modified_since: Option<SystemTime>,
    if_range: Option<String>,
}

impl Conditions {
    fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let present = |value: String| (!value.is_empty()).then_some(value);
        Conditions {
            if_none_match: present(text(header::IF_NONE_MATCH)),
            if_modified_since: headers
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|value| httpdate::parse_http_date(value.to_str().ok()?).ok()),
            if_range: present(text(header::IF_RANGE)),
        }
    }

    /// RFC 9110 §13.2.2: `If-None-Match` decides when present (weak comparison); only
    /// without it does `If-Modified-Since`.
    fn not_modified(&self, validators: &Validators) -> bool {
        if let Some(list) = &self.if_none_match {
            return list
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == validators.etag);
        }
        match (self.if_modified_since, validators.last_modified) {
            (Some(since), Some(modified)) => whole_seconds(modified) <= whole_seconds(since),
            _ => false,
        }
    }

    /// `If-Range` holds for a strong, equal entity tag or the exact Last-Modified date.
    fn if_range_holds(&self, validators: &Validators) -> bool {
        let Some(if_range) = &self.if_range else {
            return true;
        };
        if if_range.starts_with('"') {
            return *if_range == validators.etag;
        }
        match (
            httpdate::parse_http_date(if_range),
            validators.last_modified,
        ) {
            (Ok(date), Some(modified)) => whole_seconds(date) == whole_seconds(modified),
            _ => false,
        }
    }
}

/// HTTP dates carry whole seconds.
fn whole_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// 304 with the validators and caching headers of the full response, and no body.
fn not_modified(full: &HeaderMap) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    for name in [
        header::ETAG,
        header::LAST_MODIFIED,
        header::VARY,
        header::CACHE_CONTROL,
    ] {
        if let Some(value) = full.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}
