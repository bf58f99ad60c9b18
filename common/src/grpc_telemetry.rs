//! The tower layer in front of every gRPC server: one span per RPC, parented
//! on the caller's W3C trace context, carrying `trace_id` and `request_id`
//! into the logs; and the per-RPC count and latency metrics by status code.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock, RwLock},
    task::{Context, Poll},
    time::Instant,
};

use tower::{Layer, Service};
use tracing::{Instrument, field::Empty, instrument::Instrumented};

use crate::trace_context::{RequestScope, ScopedFuture, incoming_trace};

/// Adds tracing and metrics to a gRPC server. `service` labels the metrics
/// (e.g. "bid-engine").
#[derive(Clone, Debug)]
pub struct GrpcTelemetryLayer {
    metrics: Arc<RpcMetrics>,
}

impl GrpcTelemetryLayer {
    pub fn new(service: &'static str) -> Self {
        Self {
            metrics: Arc::new(RpcMetrics {
                service,
                methods: RwLock::new(HashMap::new()),
            }),
        }
    }
}

impl<S> Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcTelemetry<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

/// The count and latency metrics of one (method, code).
type Handles = (metrics::Counter, metrics::Histogram);

/// Metric handles by method path, made once per path and code: building a
/// labelled key and looking it up in the registry on every call cost about
/// a tenth of an RPC's CPU.
#[derive(Debug)]
struct RpcMetrics {
    service: &'static str,
    methods: RwLock<HashMap<Box<str>, Arc<MethodMetrics>>>,
}

/// One method's handles, by status code, registered on first use.
#[derive(Debug)]
struct MethodMetrics {
    service: &'static str,
    method: Box<str>,
    by_code: [OnceLock<Handles>; GRPC_CODES],
}

/// gRPC status codes: OK (0) to UNAUTHENTICATED (16).
const GRPC_CODES: usize = 17;

/// Distinct method paths cached at most (a client can send any path).
const MAX_CACHED_PATHS: usize = 1_000;

impl RpcMetrics {
    /// The method's handles, looked up before the call so the path need not
    /// be copied to outlive the request.
    fn method(&self, path: &str) -> Arc<MethodMetrics> {
        if let Some(method) = self
            .methods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
        {
            return Arc::clone(method);
        }
        let method = Arc::new(MethodMetrics {
            service: self.service,
            method: path.rsplit('/').next().unwrap_or_default().into(),
            by_code: Default::default(),
        });
        let mut cache = self.methods.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED_PATHS && !cache.contains_key(path) {
            return method;
        }
        Arc::clone(cache.entry(Box::from(path)).or_insert(method))
    }
}

impl MethodMetrics {
    fn record(&self, code: tonic::Code, elapsed: std::time::Duration) {
        let (count, duration) = self.by_code[code as usize % GRPC_CODES].get_or_init(|| {
            let labels = vec![
                metrics::Label::from_static_parts("service", self.service),
                metrics::Label::new("method", self.method.to_string()),
                metrics::Label::from_static_parts("code", grpc_code_name(code)),
            ];
            (
                metrics::counter!("admesh_grpc_server_requests_total", labels.clone()),
                metrics::histogram!("admesh_grpc_server_duration_seconds", labels),
            )
        });
        count.increment(1);
        duration.record(elapsed.as_secs_f64());
    }
}

const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

impl<S, B, ResB> Service<http::Request<B>> for GrpcTelemetry<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResB>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TelemetryFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !is_grpc {
            return TelemetryFuture {
                inner: RequestScope::default()
                    .run(self.inner.call(request))
                    .instrument(tracing::Span::none()),
                recording: None,
            };
        }
        let path = request.uri().path();
        let method = self.metrics.method(path);
        let request_id = request
            .headers()
            .get(X_REQUEST_ID)
            .and_then(|v| v.to_str().ok());
        // Without an exporter no span is made at all: log lines take the
        // trace and request ids from the request scope (see `telemetry`),
        // which costs a fraction of a span per RPC.
        let (scope, span) = match incoming_trace(request.headers()).into_scope() {
            Ok(scope) => (scope, tracing::Span::none()),
            Err(trace) => {
                let span = tracing::info_span!(
                    "grpc",
                    otel.name = path,
                    otel.kind = "server",
                    rpc.system = "grpc",
                    rpc.grpc.status_code = Empty,
                );
                (trace.attach(&span), span)
            }
        };
        let scope = scope.with_request_id(request_id);
        let started = Instant::now();
        TelemetryFuture {
            inner: scope.run(self.inner.call(request)).instrument(span.clone()),
            recording: Some(Recording {
                method,
                span,
                started,
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// An RPC's response future inside its request scope and span; records
    /// the metrics when it completes. A named future rather than a boxed
    /// one: no allocation per RPC.
    pub struct TelemetryFuture<F> {
        #[pin]
        inner: Instrumented<ScopedFuture<F>>,
        recording: Option<Recording>,
    }
}

/// What a gRPC call's completion records.
struct Recording {
    method: Arc<MethodMetrics>,
    span: tracing::Span,
    started: Instant,
}

impl<F, ResB, E> Future for TelemetryFuture<F>
where
    F: Future<Output = Result<http::Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(recording) = this.recording.take() {
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
            recording.span.record("rpc.grpc.status_code", code);
            recording
                .method
                .record(tonic::Code::from_i32(code), recording.started.elapsed());
        }
        Poll::Ready(result)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn grpc_request(path: &str, refused: bool) -> http::Request<()> {
        let mut request = http::Request::builder()
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/grpc");
        if refused {
            request = request.header("x-refuse", "1");
        }
        request.body(()).expect("request")
    }

    #[tokio::test]
    async fn each_rpc_is_counted_by_method_and_status_code() {
        let metrics = crate::metrics::prometheus_handle();
        // Errors of unary calls come as trailers-only responses: the code
        // is in the headers; a success carries none there.
        let service = tower::service_fn(|request: http::Request<()>| async move {
            let mut response = http::Response::builder();
            if request.headers().contains_key("x-refuse") {
                response = response.header("grpc-status", "3");
            }
            Ok::<_, std::convert::Infallible>(response.body(()).expect("response"))
        });
        let mut layered = GrpcTelemetryLayer::new("telemetry-test").layer(service);
        for (path, refused) in [
            ("/t.v1.T/Answers", false),
            ("/t.v1.T/Mixed", false),
            ("/t.v1.T/Mixed", true),
            ("/t.v1.T/Mixed", true),
        ] {
            let _ = layered.call(grpc_request(path, refused)).await;
        }
        let text = metrics.render();
        for line in [
            r#"admesh_grpc_server_requests_total{service="telemetry-test",method="Answers",code="OK"} 1"#,
            r#"admesh_grpc_server_requests_total{service="telemetry-test",method="Mixed",code="OK"} 1"#,
            r#"admesh_grpc_server_requests_total{service="telemetry-test",method="Mixed",code="INVALID_ARGUMENT"} 2"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
