//! The per-request path: HTTP request → CGI environment → one guest instance → HTTP response,
//! the body streamed as the guest writes it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Uri, Version, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::AppState;
use super::access_log::AccessRecord;
use super::static_files::StaticFile;
use super::static_response;
use crate::cgi::{
    CgiRequest, HeadError, HeadSplit, ResponseKind, Routed, ScriptRoute, decoded_path,
    parse_response_head, split_head,
};
use crate::runtime::{GuestExit, GuestLog, Invocation, StdoutReceiver, stdout_channel};

/// Most local redirects (`Location: /path` without `Status`) followed for one request.
const MAX_LOCAL_REDIRECTS: usize = 10;
/// Extra time, past the deadline, for a stopped instance to wind down before the handler
/// gives up waiting for its head. The watchdog normally stops it within milliseconds.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// `Retry-After` sent with 503 when the server is saturated, in seconds.
const RETRY_AFTER_SECONDS: &str = "1";

/// Both ends of the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionAddrs {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// What the guest is asked to serve; changes when the guest answers with a local redirect.
struct Target {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    has_body: bool,
}

enum Outcome {
    Respond(Response),
    /// A local redirect to this path; the access record goes on to the next hop.
    LocalRedirect(String, AccessRecord),
}

pub async fn serve_request(
    State(app): State<Arc<AppState>>,
    ConnectInfo(addrs): ConnectInfo<ConnectionAddrs>,
    request: Request,
) -> Response {
    let deadline = Instant::now() + app.limits.timeout;
    let request_id = app.next_request_id();
    let (parts, body) = request.into_parts();
    let mut record = AccessRecord::new(&request_id, &parts.method, parts.uri.path());
    if let Some(file) = find_static_file(&app, &parts) {
        let response = static_response::respond(&file, &parts).await;
        record.set_status(response.status());
        record.add_bytes(body_length(&response));
        record.complete();
        return response;
    }

    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > app.limits.max_body as u64) {
        return plain(
            record,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        );
    }
    let has_body = parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let collected = Limited::new(body, app.limits.max_body).collect();
    let body = match tokio::time::timeout_at(deadline, collected).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return plain(
                record,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large\n",
            );
        }
        Ok(Err(_)) => {
            return plain(
                record,
                StatusCode::BAD_REQUEST,
                "could not read the request body\n",
            );
        }
        Err(_) => {
            return plain(
                record,
                StatusCode::REQUEST_TIMEOUT,
                "request body too slow\n",
            );
        }
    };
    let mut target = Target {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body,
        has_body,
    };

    for _ in 0..=MAX_LOCAL_REDIRECTS {
        match run_guest(&app, addrs, &target, &request_id, record, deadline).await {
            Ok(Outcome::Respond(response)) => return response,
            Ok(Outcome::LocalRedirect(location, next_record)) => {
                record = next_record;
                let Ok(uri) = location.parse::<Uri>() else {
                    tracing::warn!(request = %request_id, "local redirect to an invalid path: {location:?}");
                    return plain(record, StatusCode::BAD_GATEWAY, "bad gateway\n");
                };
                target = target.redirected(uri);
            }
            Err(response) => return response,
        }
    }
    tracing::warn!(request = %request_id, "more than {MAX_LOCAL_REDIRECTS} local redirects");
    plain(
        record,
        StatusCode::INTERNAL_SERVER_ERROR,
        "too many local redirects\n",
    )
}

/// The file the host serves itself for a GET or HEAD, if any; everything else goes to the
/// command.
fn find_static_file(app: &Arc<AppState>, parts: &http::request::Parts) -> Option<StaticFile> {
    if app.static_files.is_empty() || !matches!(parts.method, Method::GET | Method::HEAD) {
        return None;
    }
    // An undecodable path is the command's 400, answered below.
    let path = decoded_path(&parts.uri).ok()?;
    // A few `stat` calls, made here like script routing's: a hop to the blocking pool would
    // cost more than they do on a local disk.
    app.static_files.lookup(&path)
}

/// The body size a response announces, for the access log.
fn body_length(response: &Response) -> usize {
    response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

impl Target {
    /// The request for a local redirect: a GET of the new path, with no body (RFC 3875 §6.2.2).
    fn redirected(mut self, uri: Uri) -> Target {
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::TRANSFER_ENCODING,
        ] {
            self.headers.remove(name);
        }
        Target {
            method: Method::GET,
            uri,
            body: Bytes::new(),
            has_body: false,
            ..self
        }
    }
}

/// Runs one instance for `target`. `Err` carries a finished error response.
async fn run_guest(
    app: &Arc<AppState>,
    addrs: ConnectionAddrs,
    target: &Target,
    request_id: &str,
    mut record: AccessRecord,
    deadline: Instant,
) -> Result<Outcome, Response> {
    let path = match decoded_path(&target.uri) {
        Ok(path) => path,
        Err(error) => {
            tracing::info!(request = %request_id, "bad request: {error}");
            return Err(plain(record, StatusCode::BAD_REQUEST, "bad request\n"));
        }
    };
    let route = match route_script(app, target, &path, request_id) {
        Ok(route) => route,
        Err(answer) => return Err(answer.respond(record)),
    };
    let request = CgiRequest {
        method: &target.method,
        uri: &target.uri,
        path: &path,
        version: target.version,
        headers: &target.headers,
        remote: addrs.remote,
        local: addrs.local,
        body_len: target.has_body.then_some(target.body.len() as u64),
        route: route.as_ref(),
    };
    let env = match request.env(&app.static_env) {
        Ok(env) => env,
        Err(error) => {
            tracing::info!(request = %request_id, "bad request: {error}");
            return Err(plain(record, StatusCode::BAD_REQUEST, "bad request\n"));
        }
    };

    let slot = match app.admit(deadline).await {
        Ok(slot) => slot,
        Err(refusal) => {
            tracing::warn!(request = %request_id, "no instance available: {refusal:?}");
            let mut response = plain(
                record,
                StatusCode::SERVICE_UNAVAILABLE,
                "server busy, retry later\n",
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
            return Err(response);
        }
    };
    // Whoever drops this guard (an early return, or the response body when the client goes
    // away) stops the instance.
    let abandoned = CancellationToken::new();
    let stop_guest_on_drop = abandoned.clone().drop_guard();
    let (stdout, mut output) = stdout_channel(abandoned.clone());
    let invocation = Invocation {
        env,
        stdin: target.body.clone(),
        stdout,
        stderr: GuestLog::new(request_id),
        deadline,
        abandoned,
    };
    let guest_app = app.clone();
    let guest = tokio::task::spawn_blocking(move || {
        let exit = guest_app.program.run(invocation);
        drop(slot);
        exit
    });

    let head = tokio::time::timeout_at(deadline + STOP_GRACE, read_head(&mut output)).await;
    let (head, bounds) = match head {
        Ok(Ok(head)) => head,
        Ok(Err(HeadError::Unterminated)) => {
            drop(output);
            let exit = wait(guest).await;
            return Err(match exit {
                GuestExit::TimedOut => {
                    tracing::warn!(request = %request_id, "guest {exit}");
                    plain(record, StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n")
                }
                _ if exit.is_success() => {
                    tracing::warn!(request = %request_id, "bad gateway: {}", HeadError::Unterminated);
                    plain(record, StatusCode::BAD_GATEWAY, "bad gateway\n")
                }
                _ => {
                    tracing::warn!(request = %request_id, "guest {exit}");
                    plain(
                        record,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal server error\n",
                    )
                }
            });
        }
        Ok(Err(error)) => {
            tracing::warn!(request = %request_id, "bad gateway: {error}");
            return Err(plain(record, StatusCode::BAD_GATEWAY, "bad gateway\n"));
        }
        Err(_elapsed) => {
            tracing::warn!(request = %request_id, "guest did not stop at its deadline; abandoning it");
            return Err(plain(
                record,
                StatusCode::GATEWAY_TIMEOUT,
                "gateway timeout\n",
            ));
        }
    };
    let parsed = match parse_response_head(&head[..bounds.head_len]) {
        Ok(parsed) => parsed,
        Err(error) => {
            tracing::warn!(request = %request_id, "bad gateway: {error}");
            return Err(plain(record, StatusCode::BAD_GATEWAY, "bad gateway\n"));
        }
    };
    let status = match parsed.kind {
        ResponseKind::LocalRedirect { location } => {
            // The rest of this guest's output is not wanted; closing the channel tells it so.
            drop(output);
            return Ok(Outcome::LocalRedirect(location, record));
        }
        ResponseKind::Document { status } => status,
    };

    record.set_status(status);
    let already_read = head.slice(bounds.body_start..);
    let body = stream_body(
        already_read,
        output,
        guest,
        BodyContext {
            record,
            request_id: request_id.to_string(),
            _stop_guest_on_drop: stop_guest_on_drop,
        },
    );
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    *response.headers_mut() = parsed.headers;
    Ok(Outcome::Respond(response))
}

/// An answer the server gives itself, without starting an instance.
struct HostAnswer {
    status: StatusCode,
    message: &'static str,
    location: Option<String>,
}

impl HostAnswer {
    fn new(status: StatusCode, message: &'static str) -> Self {
        HostAnswer {
            status,
            message,
            location: None,
        }
    }

    fn respond(self, record: AccessRecord) -> Response {
        let mut response = plain(record, self.status, self.message);
        if let Some(value) = self
            .location
            .and_then(|l| http::HeaderValue::from_str(&l).ok())
        {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }
}

/// The script a request runs, for commands that route scripts under a document root. Paths
/// that name no script are answered by the server itself.
fn route_script(
    app: &AppState,
    target: &Target,
    path: &str,
    request_id: &str,
) -> Result<Option<ScriptRoute>, HostAnswer> {
    let Some(routing) = &app.routing else {
        return Ok(None);
    };
    match routing.route(path, &app.guest_files) {
        Routed::Script(route) => Ok(Some(route)),
        Routed::AddTrailingSlash => {
            let location = match target.uri.query() {
                Some(query) => format!("{}/?{query}", target.uri.path()),
                None => format!("{}/", target.uri.path()),
            };
            Err(HostAnswer {
                location: Some(location),
                ..HostAnswer::new(StatusCode::MOVED_PERMANENTLY, "moved permanently\n")
            })
        }
        Routed::NotAScript => {
            tracing::info!(request = %request_id, "{path}: not a script, so neither run nor shown");
            Err(HostAnswer::new(StatusCode::NOT_FOUND, "not found\n"))
        }
        Routed::NotFound => Err(HostAnswer::new(StatusCode::NOT_FOUND, "not found\n")),
    }
}

/// Where the head ends in the bytes read so far.
struct HeadBounds {
    head_len: usize,
    body_start: usize,
}

/// Reads the guest's output until its header block is complete.
async fn read_head(output: &mut StdoutReceiver) -> Result<(Bytes, HeadBounds), HeadError> {
    let mut buffer = BytesMut::new();
    loop {
        if let HeadSplit::Complete {
            head_len,
            body_start,
        } = split_head(&buffer)?
        {
            return Ok((
                buffer.freeze(),
                HeadBounds {
                    head_len,
                    body_start,
                },
            ));
        }
        match output.recv().await {
            Some(chunk) => buffer.extend_from_slice(&chunk),
            None => return Err(HeadError::Unterminated),
        }
    }
}

/// The response body: what was read with the head, then the guest's output as it arrives.
/// If the guest fails after its head went out, the stream ends with an error, so the client
/// sees a cut-short response rather than a complete-looking one.
/// What the response body carries along besides the guest's output.
struct BodyContext {
    record: AccessRecord,
    request_id: String,
    /// Dropped with the body: a client that goes away mid-response stops the instance.
    _stop_guest_on_drop: DropGuard,
}

fn stream_body(
    already_read: Bytes,
    output: StdoutReceiver,
    guest: JoinHandle<GuestExit>,
    context: BodyContext,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    struct State {
        pending: Option<Bytes>,
        output: StdoutReceiver,
        guest: Option<JoinHandle<GuestExit>>,
        context: BodyContext,
    }
    let state = State {
        pending: Some(already_read).filter(|bytes| !bytes.is_empty()),
        output,
        guest: Some(guest),
        context,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let chunk = match state.pending.take() {
            Some(chunk) => Some(chunk),
            None => state.output.recv().await,
        };
        if let Some(chunk) = chunk {
            state.context.record.add_bytes(chunk.len());
            return Some((Ok(chunk), state));
        }
        let guest = state.guest.take()?;
        let exit = wait(guest).await;
        if let GuestExit::Exited(code) = exit {
            // The guest wrote all it meant to and exited on its own: deliver it as written,
            // as Apache does. (php-cgi exits 255 after the 500 page of a fatal error.)
            if code != 0 {
                tracing::warn!(request = %state.context.request_id, "guest {exit} after sending its response");
            }
            state.context.record.complete();
            return None;
        }
        tracing::warn!(request = %state.context.request_id, "guest {exit} after sending its headers; response cut short");
        Some((Err(io::Error::other("guest failed")), state))
    })
}

async fn wait(guest: JoinHandle<GuestExit>) -> GuestExit {
    match guest.await {
        Ok(exit) => exit,
        Err(join_error) => {
            GuestExit::Failed(anyhow::anyhow!("the guest's thread failed: {join_error}"))
        }
    }
}

/// A short plain-text response made by the server itself. Never contains details: those go
/// to the log.
fn plain(mut record: AccessRecord, status: StatusCode, message: &'static str) -> Response {
    record.set_status(status);
    record.add_bytes(message.len());
    record.complete();
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}
