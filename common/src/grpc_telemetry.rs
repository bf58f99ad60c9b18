//! The tower layer in front of every gRPC server: one span per RPC, parented
//! on the caller's W3C trace context, carrying `trace_id` and `request_id`
//! into the logs; and the per-RPC count and latency metrics by status code.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace_context::{extract_context, trace_id_of};

/// Adds tracing and metrics to a gRPC server. `service` labels the metrics
/// (e.g. "bid-engine").
#[derive(Clone, Copy, Debug)]
pub struct GrpcTelemetryLayer {
    service: &'static str,
}

impl GrpcTelemetryLayer {
    pub fn new(service: &'static str) -> Self {
        Self { service }
    }
}

impl<S> Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry {
            inner,
            service: self.service,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcTelemetry<S> {
    inner: S,
    service: &'static str,
}

impl<S, B, ResB> Service<http::Request<B>> for GrpcTelemetry<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !is_grpc {
            return Box::pin(self.inner.call(request));
        }
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "grpc",
            otel.name = %path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.grpc.status_code = Empty,
            trace_id = Empty,
            request_id = Empty,
        );
        // The caller's request id when it sent one; the trace id correlates
        // everything else, so none is minted here on the hot path.
        if let Some(request_id) = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
        {
            span.record("request_id", request_id);
        }
        let _ = span.set_parent(extract_context(request.headers()));
        if let Some(trace_id) = trace_id_of(&span) {
            span.record("trace_id", trace_id.as_str());
        }
        let service = self.service;
        let started = Instant::now();
        let future = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let result = future.await;
            // Unary errors are trailers-only responses: the code is in the
            // headers. A successful unary call carries code 0 in trailers.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0),
                Err(_) => tonic::Code::Internal as i32,
            };
            let code_name = grpc_code_name(tonic::Code::from_i32(code));
            span.record("rpc.grpc.status_code", code);
            // Static strings borrow; only the method name is copied.
            let method = path.rsplit('/').next().unwrap_or_default().to_owned();
            let labels = vec![
                metrics::Label::from_static_parts("service", service),
                metrics::Label::new("method", method),
                metrics::Label::from_static_parts("code", code_name),
            ];
            metrics::counter!("admesh_grpc_server_requests_total", labels.clone()).increment(1);
            metrics::histogram!("admesh_grpc_server_duration_seconds", labels)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// The canonical upper-case name of a gRPC code, e.g. "INVALID_ARGUMENT".
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
