//! The edge: REST for browsers in front of the gRPC mesh (SPEC §7).
//!
//! Built so far: `/health` (liveness, with every upstream's gRPC health),
//! `/ready` (503 until every upstream is SERVING), `/metrics`, request ids
//! and JSON errors. Every other route answers 501 with the JSON error body
//! until REST transcoding lands, never a made-up result.

pub mod error;
pub mod health;

use std::sync::Arc;

use axum::{Router, response::IntoResponse, routing::get};
use std::future::IntoFuture;

use tokio::net::TcpListener;
use tracing::Instrument;

use admesh_common::{ServiceContext, ServiceKind};

use crate::{error::ApiError, health::Upstreams};

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::Edge;

/// Shared state of the edge's handlers.
#[derive(Clone, Debug)]
pub struct EdgeState {
    pub upstreams: Arc<Upstreams>,
}

/// The edge's HTTP routes.
pub fn router(state: EdgeState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .fallback(not_built_yet)
        .with_state(state)
        .merge(admesh_common::metrics::metrics_router())
        .layer(axum::middleware::from_fn(request_context))
}

async fn not_built_yet(request: axum::extract::Request) -> ApiError {
    ApiError::unimplemented(format!(
        "{} {} is not available yet",
        request.method(),
        request.uri().path()
    ))
}

/// Gives every request an id (`X-Request-Id`, kept when the client sent
/// one) and a span parented on the caller's W3C trace context.
async fn request_context(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // As on gRPC hops: a span only when spans are exported; log lines take
    // the trace and request ids from the request scope.
    let (scope, span) =
        match admesh_common::trace_context::incoming_trace(request.headers()).into_scope() {
            Ok(scope) => (scope, tracing::Span::none()),
            Err(trace) => {
                let span = tracing::info_span!(
                    "http",
                    otel.name = %format!("{} {}", request.method(), request.uri().path()),
                    otel.kind = "server",
                    http.method = %request.method(),
                    http.path = %request.uri().path(),
                    http.status = tracing::field::Empty,
                );
                (trace.attach(&span), span)
            }
        };
    let scope = scope.with_request_id(Some(&request_id));
    request
        .extensions_mut()
        .insert(error::RequestId(request_id.clone()));
    let mut response = scope.run(next.run(request)).instrument(span.clone()).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        let status = response.status();
        response = (
            status,
            axum::Json(error::error_body(error.code, &error.message, &request_id)),
        )
            .into_response();
    }
    span.record("http.status", response.status().as_u16());
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Serves until `context.shutdown` fires, then drains.
pub async fn serve(context: ServiceContext, listener: TcpListener) -> anyhow::Result<()> {
    let upstreams = Arc::new(Upstreams::from_config(&context.config)?);
    let app = router(EdgeState { upstreams });
    let address = listener.local_addr()?;
    tracing::info!(service = SERVICE.name(), addr = %address, "listening");
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(context.shutdown.clone().cancelled_owned())
        .into_future();
    admesh_common::grpc_host::drain_within_grace(server, &context.shutdown).await?;
    tracing::info!(service = SERVICE.name(), "stopped");
    Ok(())
}
