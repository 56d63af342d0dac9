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

use super::AppState;
use super::access_log::AccessRecord;
use crate::cgi::{CgiRequest, HeadError, HeadSplit, ResponseKind, parse_response_head, split_head};
use crate::runtime::{GuestExit, GuestLog, Invocation, StdoutReceiver, stdout_channel};

/// Most local redirects (`Location: /path` without `Status`) followed for one request.
const MAX_LOCAL_REDIRECTS: usize = 10;

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
    let request_id = app.next_request_id();
    let (parts, body) = request.into_parts();
    let mut record = AccessRecord::new(&request_id, &parts.method, parts.uri.path());

    let has_body = parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let body = match Limited::new(body, app.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return plain(
                record,
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large\n",
            );
        }
        Err(_) => {
            return plain(
                record,
                StatusCode::BAD_REQUEST,
                "could not read the request body\n",
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
        match run_guest(&app, addrs, &target, &request_id, record).await {
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
) -> Result<Outcome, Response> {
    let request = CgiRequest {
        method: &target.method,
        uri: &target.uri,
        version: target.version,
        headers: &target.headers,
        remote: addrs.remote,
        local: addrs.local,
        body_len: target.has_body.then_some(target.body.len() as u64),
        script_name: "",
    };
    let env = match request.env(&app.static_env) {
        Ok(env) => env,
        Err(error) => {
            tracing::info!(request = %request_id, "bad request: {error}");
            return Err(plain(record, StatusCode::BAD_REQUEST, "bad request\n"));
        }
    };

    let Ok(slot) = app.guest_slots.clone().acquire_owned().await else {
        return Err(plain(
            record,
            StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down\n",
        ));
    };
    let (stdout, mut output) = stdout_channel();
    let invocation = Invocation {
        env,
        stdin: target.body.clone(),
        stdout,
        stderr: GuestLog::new(request_id),
    };
    let guest_app = app.clone();
    let guest = tokio::task::spawn_blocking(move || {
        let exit = guest_app.program.run(invocation);
        drop(slot);
        exit
    });

    let (head, bounds) = match read_head(&mut output).await {
        Ok(head) => head,
        Err(HeadError::Unterminated) => {
            drop(output);
            let exit = wait(guest).await;
            return Err(if exit.is_success() {
                tracing::warn!(request = %request_id, "bad gateway: {}", HeadError::Unterminated);
                plain(record, StatusCode::BAD_GATEWAY, "bad gateway\n")
            } else {
                tracing::warn!(request = %request_id, "guest {exit}");
                plain(
                    record,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error\n",
                )
            });
        }
        Err(error) => {
            tracing::warn!(request = %request_id, "bad gateway: {error}");
            return Err(plain(record, StatusCode::BAD_GATEWAY, "bad gateway\n"));
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
    let body = stream_body(already_read, output, guest, record, request_id.to_string());
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    *response.headers_mut() = parsed.headers;
    Ok(Outcome::Respond(response))
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
fn stream_body(
    already_read: Bytes,
    output: StdoutReceiver,
    guest: JoinHandle<GuestExit>,
    record: AccessRecord,
    request_id: String,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    struct State {
        pending: Option<Bytes>,
        output: StdoutReceiver,
        guest: Option<JoinHandle<GuestExit>>,
        record: AccessRecord,
        request_id: String,
    }
    let state = State {
        pending: Some(already_read).filter(|bytes| !bytes.is_empty()),
        output,
        guest: Some(guest),
        record,
        request_id,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let chunk = match state.pending.take() {
            Some(chunk) => Some(chunk),
            None => state.output.recv().await,
        };
        if let Some(chunk) = chunk {
            state.record.add_bytes(chunk.len());
            return Some((Ok(chunk), state));
        }
        let guest = state.guest.take()?;
        let exit = wait(guest).await;
        if exit.is_success() {
            state.record.complete();
            return None;
        }
        tracing::warn!(request = %state.request_id, "guest {exit} after sending its headers; response cut short");
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
