//! `--metrics-addr`: the metrics on a listener of their own, so that the app's address never
//! exposes them and a scrape never waits behind the app's requests.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` and serves `/metrics` there until the process ends.
pub async fn start(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} for metrics; is another server using it? choose another with --metrics-addr"
        )
    })?;
    let local = listener
        .local_addr()
        .context("cannot read the metrics address")?;
    let router = Router::new().route("/metrics", get(scrape));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::warn!("the metrics listener stopped: {error}");
        }
    });
    tracing::info!("metrics on http://{local}/metrics");
    Ok(())
}

async fn scrape() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_TEXT)],
        crate::metrics::metrics().encode(),
    )
}
