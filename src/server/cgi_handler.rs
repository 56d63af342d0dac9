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
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::access_log::{AccessRecord, InstanceTime};
use super::request_body::{BodyError, DeclaredBody, FeedProgress, PendingBody, SizedBody};
use super::static_files::{StaticFile, StaticFiles};
use super::static_response;
use super::{App, AppState, Argv, Refusal, Site};
use crate::cgi::{
    CgiRequest, HeadError, HeadSplit, ResponseKind, Routed, ScriptRoute, decoded_path,
    parse_response_head, split_head,
};
use crate::metrics::RefusalLabels;
use crate::runtime::{
    GuestExit, GuestLog, Invocation, StdoutReceiver, stdin_channel, stdout_channel,
};

/// Most local redirects (`Location: /path` without `Status`) followed for one request.
const MAX_LOCAL_REDIRECTS: usize = 10;
/// Extra time, past the deadline, for a stopped instance to wind down before the handler
/// gives up waiting for its head. The watchdog normally stops it within milliseconds.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// Answered 200 by the host when no route claims it, for load balancers (as WAGI does).
const HEALTH_PATH: &str = "/healthz";
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
    /// Taken by the first instance; a local redirect has none.
    body: Option<PendingBody>,
    /// Where the request's instances add their run time, for the access log.
    instance_time: InstanceTime,
}

enum Outcome {
    /// The guest's head is complete; its body follows.
    Document(GuestResponse),
    /// A local redirect to this path.
    LocalRedirect(String),
}

/// A guest's response whose head has been read, its body still coming.
struct GuestResponse {
    status: StatusCode,
    headers: HeaderMap,
    /// Body bytes read along with the head.
    already_read: Bytes,
    output: StdoutReceiver,
    guest: oneshot::Receiver<GuestExit>,
    stop_guest_on_drop: DropGuard,
}

impl GuestResponse {
    /// The response, its body streamed as the guest writes it; `record` is logged when the
    /// body is done.
    fn into_response(self, mut record: AccessRecord, request_id: &str) -> Response {
        record.set_status(self.status);
        let body = stream_body(
            self.already_read,
            self.output,
            self.guest,
            BodyContext {
                record,
                request_id: request_id.to_string(),
                _stop_guest_on_drop: self.stop_guest_on_drop,
            },
        );
        let mut response = Response::new(Body::from_stream(body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Serves one request; the response carries its request id (the client's `X-Request-Id` when
/// it sent a usable one), as do the access log and the guest's log lines.
pub async fn serve_request(
    State(app): State<Arc<AppState>>,
    ConnectInfo(addrs): ConnectInfo<ConnectionAddrs>,
    request: Request,
) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(usable_request_id)
        .unwrap_or_else(|| app.next_request_id());
    let mut response = respond(app, addrs, request, &request_id).await;
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest client request id kept; a longer one is replaced by the server's own.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A client's request id, if it is short and made only of characters that cannot break a
/// log line or a header: letters, digits and `-_.:/+=@`.
fn usable_request_id(value: &http::HeaderValue) -> Option<String> {
    let id = value.to_str().ok()?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:/+=@".contains(c);
    (!id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.chars().all(allowed))
        .then(|| id.to_string())
}

async fn respond(
    app: Arc<AppState>,
    addrs: ConnectionAddrs,
    request: Request,
    request_id: &str,
) -> Response {
    let deadline = Instant::now() + app.limits.timeout;
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), ToString::to_string);
    let mut record = AccessRecord::new(request_id, &parts.method, &target);
    if let Some(healthy) = app.health(parts.uri.path()) {
        return health_response(record, healthy);
    }
    // Routed once here for the log and the static files; an undecodable path is the
    // command's 400, answered below.
    let path = decoded_path(&parts.uri).ok();
    let site = app.site.load_full();
    let routed = path.as_deref().and_then(|path| site.routes.lookup(path));
    if let Some(routed) = &routed {
        record.set_route(&routed.pattern.to_string());
    }
    let static_files = match &routed {
        Some(routed) => &routed.target.static_files,
        None => &site.unrouted_static,
    };
    if let Some(file) = find_static_file(static_files, &parts, path.as_deref()) {
        let response = static_response::respond(&file, &parts).await;
        crate::metrics::metrics().static_responses.inc();
        record.set_status(response.status());
        record.add_bytes(body_length(&response));
        record.complete();
        return response;
    }

    // Refused from the head alone: the body is never read.
    let declared = DeclaredBody::from_headers(&parts.headers);
    if matches!(declared, DeclaredBody::Length(length) if length > app.limits.max_body) {
        return Failure::Body(BodyError::TooLarge).respond(record, request_id);
    }
    let mut target = Target {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body: Some(PendingBody { declared, body }),
        instance_time: record.instance_time(),
    };

    for _ in 0..=MAX_LOCAL_REDIRECTS {
        match run_guest(&app, &site, addrs, &mut target, request_id, deadline).await {
            Ok(Outcome::Document(response)) => return response.into_response(record, request_id),
            Ok(Outcome::LocalRedirect(location)) => {
                let Ok(uri) = location.parse::<Uri>() else {
                    return Failure::BadGateway(format!(
                        "local redirect to an invalid path: {location:?}"
                    ))
                    .respond(record, request_id);
                };
                target = target.redirected(uri);
            }
            Err(failure) => return failure.respond(record, request_id),
        }
    }
    Failure::TooManyRedirects.respond(record, request_id)
}

/// The health path's answer: 200 while serving, 503 once shutting down; never cached.
fn health_response(record: AccessRecord, healthy: bool) -> Response {
    let mut response = if healthy {
        plain(record, StatusCode::OK, "ok\n")
    } else {
        plain(record, StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    };
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Runs an instance, counted in the metrics (running now, its run time, a timeout) and its
/// run time added to the request's.
fn run_counted(instance_time: &InstanceTime, run: impl FnOnce() -> GuestExit) -> GuestExit {
    let metrics = crate::metrics::metrics();
    metrics.instances_running.inc();
    let started = std::time::Instant::now();
    let exit = run();
    let ran = started.elapsed();
    instance_time.add(ran);
    metrics.instance_duration.observe(ran.as_secs_f64());
    metrics.instances_running.dec();
    if matches!(exit, GuestExit::TimedOut) {
        metrics.timeouts.inc();
    }
    exit
}

fn count_refusal(reason: &'static str) {
    crate::metrics::metrics()
        .refusals
        .get_or_create(&RefusalLabels { reason })
        .inc();
}

/// The file the host serves itself for a GET or HEAD of `path`, if any; everything else
/// goes to the command.
fn find_static_file(
    files: &StaticFiles,
    parts: &http::request::Parts,
    path: Option<&str>,
) -> Option<StaticFile> {
    if !matches!(parts.method, Method::GET | Method::HEAD) || files.is_empty() {
        return None;
    }
    // A few `stat` calls, made here like script routing's: a hop to the blocking pool would
    // cost more than they do on a local disk.
    files.lookup(path?)
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
            body: None,
            ..self
        }
    }
}

/// Runs one instance for `target`: routes it, waits for a slot, sizes its body, starts the
/// guest and reads its head.
async fn run_guest(
    app: &Arc<AppState>,
    site: &Site,
    addrs: ConnectionAddrs,
    target: &mut Target,
    request_id: &str,
    deadline: Instant,
) -> Result<Outcome, Failure> {
    let path = decoded_path(&target.uri).map_err(|error| Failure::BadRequest(error.to_string()))?;
    let Some(routed) = site.routes.lookup(&path) else {
        // Paths no route claims: the host's own health answer (which, like --health-path's,
        // turns 503 once shutting down), else nothing here.
        let answer = if path == HEALTH_PATH && app.serving() {
            HostAnswer::new(StatusCode::OK, "ok\n")
        } else if path == HEALTH_PATH {
            HostAnswer::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        } else {
            HostAnswer::new(StatusCode::NOT_FOUND, "not found\n")
        };
        return Err(Failure::Host(answer));
    };
    let module: Arc<App> = routed.target.clone();
    let script_name = routed.script_name.to_string();
    let path_info = routed.path_info.to_string();
    let matched_route = routed.pattern.to_string();
    let route = route_script(&module, target, &path_info, request_id).map_err(Failure::Host)?;
    // Admission is decided from the head: a refused request's body is never read.
    let admission = app
        .admit(module.slots.as_ref(), deadline)
        .await
        .map_err(Failure::Busy)?;
    let body = match target.body.take() {
        Some(pending) => pending
            .size(app.limits.max_body, deadline)
            .await
            .map_err(Failure::Body)?,
        None => SizedBody::empty(),
    };
    let request = CgiRequest {
        method: &target.method,
        uri: &target.uri,
        path: &path,
        version: target.version,
        headers: &target.headers,
        remote: addrs.remote,
        local: addrs.local,
        body_len: body.length,
        script_name: &script_name,
        path_info: &path_info,
        matched_route: &matched_route,
        route: route.as_ref(),
    };
    let env = request
        .env(&module.static_env)
        .map_err(|error| Failure::BadRequest(error.to_string()))?;
    let argv = match &module.argv {
        Argv::Program => None,
        Argv::Template(words) => Some(request.argv(words)),
    };

    // Whoever drops this guard (an early return, or the response body when the client goes
    // away) stops the instance.
    let abandoned = CancellationToken::new();
    let stop_guest_on_drop = abandoned.clone().drop_guard();
    let (stdout, mut output) = stdout_channel(abandoned.clone());
    let (stdin_sender, stdin) = stdin_channel(abandoned.clone());
    let invocation = Invocation {
        env,
        stdin,
        stdout,
        stderr: GuestLog::new(request_id),
        deadline,
        abandoned,
        entrypoint: module.entrypoint.clone(),
        argv,
    };
    let guest_app = module.clone();
    let instance_time = target.instance_time.clone();
    let instance_ended = CancellationToken::new();
    let upload = body.feed(stdin_sender, instance_ended.clone());
    let guest = app.guest_threads.run(move || {
        let exit = run_counted(&instance_time, || guest_app.program.run(invocation));
        drop(admission);
        instance_ended.cancel();
        exit
    });

    let head = tokio::time::timeout_at(deadline + STOP_GRACE, read_head(&mut output)).await;
    let (head, bounds) = match head {
        Ok(Ok(head)) => head,
        Ok(Err(HeadError::Unterminated)) => {
            drop(output);
            return Err(Failure::from_exit_before_head(
                wait(guest).await,
                &upload,
                request_id,
            ));
        }
        Ok(Err(error)) => return Err(Failure::BadGateway(error.to_string())),
        Err(_elapsed) => {
            tracing::warn!(request = %request_id, "guest did not stop at its deadline; abandoning it");
            return Err(Failure::timed_out(&upload, request_id));
        }
    };
    let parsed = parse_response_head(&head[..bounds.head_len])
        .map_err(|error| Failure::BadGateway(error.to_string()))?;
    let status = match parsed.kind {
        ResponseKind::LocalRedirect { location } => {
            // The rest of this guest's output is not wanted; closing the channel tells it so.
            drop(output);
            return Ok(Outcome::LocalRedirect(location));
        }
        ResponseKind::Document { status } => status,
    };

    Ok(Outcome::Document(GuestResponse {
        status,
        headers: parsed.headers,
        already_read: head.slice(bounds.body_start..),
        output,
        guest,
        stop_guest_on_drop,
    }))
}

/// Why a request gets an answer from the server instead of its guest. Every status the
/// server chooses for a CGI request is chosen here, in [`Failure::respond`].
enum Failure {
    /// The request cannot be described to a guest (an undecodable path, bad header bytes).
    BadRequest(String),
    /// The body was over `--max-body`, too slow, or broken off.
    Body(BodyError),
    /// No instance slot: the queue is full or the deadline passed waiting.
    Busy(Refusal),
    /// Script routing answered by itself (a redirect or a 404).
    Host(HostAnswer),
    /// The guest was stopped at its deadline before its head was complete.
    TimedOut,
    /// The guest's output is not a CGI response.
    BadGateway(String),
    /// The guest trapped, exited non-zero or could not start before its head was complete.
    GuestFailed(GuestExit),
    TooManyRedirects,
}

impl Failure {
    /// What a guest's end means when its head never completed.
    fn from_exit_before_head(exit: GuestExit, upload: &FeedProgress, request_id: &str) -> Failure {
        match exit {
            GuestExit::TimedOut => Failure::timed_out(upload, request_id),
            exit if exit.is_success() => Failure::BadGateway(HeadError::Unterminated.to_string()),
            exit => Failure::GuestFailed(exit),
        }
    }

    /// A deadline missed while the client was still sending its body is the client's
    /// slowness (408), not the guest's (504).
    fn timed_out(upload: &FeedProgress, request_id: &str) -> Failure {
        if upload.is_complete() {
            Failure::TimedOut
        } else {
            tracing::warn!(request = %request_id, "guest {} while its body was still arriving", GuestExit::TimedOut);
            Failure::Body(BodyError::TooSlow)
        }
    }

    /// The response, with the details logged and never sent.
    fn respond(self, record: AccessRecord, request_id: &str) -> Response {
        match self {
            Failure::BadRequest(why) => {
                tracing::info!(request = %request_id, "bad request: {why}");
                plain(record, StatusCode::BAD_REQUEST, "bad request\n")
            }
            Failure::Body(BodyError::TooLarge) => {
                count_refusal("body_too_large");
                plain(
                    record,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large\n",
                )
            }
            Failure::Body(BodyError::TooSlow) => plain(
                record,
                StatusCode::REQUEST_TIMEOUT,
                "request body too slow\n",
            ),
            Failure::Body(BodyError::Broken) => plain(
                record,
                StatusCode::BAD_REQUEST,
                "could not read the request body\n",
            ),
            Failure::Busy(refusal) => {
                tracing::warn!(request = %request_id, "no instance available: {refusal:?}");
                count_refusal(match refusal {
                    Refusal::QueueFull => "queue_full",
                    Refusal::WaitedTooLong => "waited_too_long",
                });
                let mut response = plain(
                    record,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server busy, retry later\n",
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
                response
            }
            Failure::Host(answer) => answer.respond(record),
            Failure::TimedOut => {
                tracing::warn!(request = %request_id, "guest {}", GuestExit::TimedOut);
                plain(record, StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n")
            }
            Failure::BadGateway(why) => {
                tracing::warn!(request = %request_id, "bad gateway: {why}");
                plain(record, StatusCode::BAD_GATEWAY, "bad gateway\n")
            }
            Failure::GuestFailed(exit) => {
                tracing::warn!(request = %request_id, "guest {exit}");
                plain(
                    record,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error\n",
                )
            }
            Failure::TooManyRedirects => {
                tracing::warn!(request = %request_id, "more than {MAX_LOCAL_REDIRECTS} local redirects");
                plain(
                    record,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "too many local redirects\n",
                )
            }
        }
    }
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
    app: &App,
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
    guest: oneshot::Receiver<GuestExit>,
    context: BodyContext,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    struct State {
        pending: Option<Bytes>,
        output: StdoutReceiver,
        guest: Option<oneshot::Receiver<GuestExit>>,
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

async fn wait(guest: oneshot::Receiver<GuestExit>) -> GuestExit {
    guest
        .await
        .unwrap_or_else(|_| GuestExit::Failed(anyhow::anyhow!("the instance's thread panicked")))
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
