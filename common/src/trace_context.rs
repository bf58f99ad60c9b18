//! W3C trace context across gRPC hops: extracted from incoming request
//! headers by the server layer, injected into outgoing metadata by
//! [`TraceContextInterceptor`], so one serve request is one trace across
//! edge, ad-server and bid-engine.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::{
    propagation::{Extractor, Injector},
    trace::{SpanContext, TraceContextExt},
};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Set when spans are exported (OTLP configured): the OpenTelemetry tracing
/// layer is installed and carries each span's context. Without an exporter
/// that layer is left out, as it is the largest cost of an RPC, and the
/// trace context travels in [`CURRENT_TRACE`] instead: trace ids still reach
/// the logs and the next hop.
static EXPORTING: AtomicBool = AtomicBool::new(false);

pub fn set_exporting(exporting: bool) {
    EXPORTING.store(exporting, Ordering::Relaxed);
}

/// Whether spans are exported (and carry their OTel context themselves).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

tokio::task_local! {
    /// The trace context of the request this task serves, when spans are
    /// not exported.
    static CURRENT_TRACE: Option<SpanContext>;
}

/// The trace a request joined; run its handling inside [`TraceScope::run`].
#[derive(Debug)]
pub struct TraceScope(Option<SpanContext>);

impl TraceScope {
    pub fn run<F: std::future::Future>(
        self,
        future: F,
    ) -> impl std::future::Future<Output = F::Output> {
        CURRENT_TRACE.scope(self.0, future)
    }
}

/// The trace an incoming request belongs to (the caller's, or a new one).
#[derive(Debug)]
pub struct IncomingTrace {
    parent: opentelemetry::Context,
    /// Without an exporter: this hop's span context, known up front.
    local: Option<SpanContext>,
}

/// Reads the caller's trace context from `headers`.
pub fn incoming_trace(headers: &http::HeaderMap) -> IncomingTrace {
    let parent = extract_context(headers);
    if exporting() {
        return IncomingTrace {
            parent,
            local: None,
        };
    }
    let remote = parent.span().span_context().clone();
    let ids = RandomIdGenerator::default();
    let trace_id = if remote.is_valid() {
        remote.trace_id()
    } else {
        ids.new_trace_id()
    };
    IncomingTrace {
        parent: opentelemetry::Context::new(),
        local: Some(SpanContext::new(
            trace_id,
            ids.new_span_id(),
            remote.trace_flags(),
            false,
            remote.trace_state().clone(),
        )),
    }
}

impl IncomingTrace {
    /// The trace id when known before the span exists (no exporter); put it
    /// in the span's `trace_id` field at creation.
    pub fn trace_id(&self) -> Option<opentelemetry::trace::TraceId> {
        self.local.as_ref().map(SpanContext::trace_id)
    }

    /// Joins `span` to the trace; with an exporter this also records the
    /// span's `trace_id` field. Run the request inside the returned scope.
    pub fn attach(self, span: &tracing::Span) -> TraceScope {
        if self.local.is_none() {
            let _ = span.set_parent(self.parent);
            if let Some(trace_id) = trace_id_of(span) {
                span.record("trace_id", trace_id.as_str());
            }
        }
        TraceScope(self.local)
    }
}

/// Reads propagation fields from HTTP headers.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

/// Writes propagation fields into HTTP headers.
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The OTel context carried by `headers` (empty when there is none).
pub fn extract_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// Writes the current request's trace context into `headers`.
pub fn inject_current_context(headers: &mut http::HeaderMap) {
    let context = if exporting() {
        tracing::Span::current().context()
    } else {
        match CURRENT_TRACE.try_with(Clone::clone) {
            Ok(Some(span_context)) => {
                opentelemetry::Context::new().with_remote_span_context(span_context)
            }
            _ => return,
        }
    };
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// The trace id of `span` as 32 hex digits, or `None` when it has none.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Puts the current trace context (and request id, when known) into every
/// outgoing gRPC request of a client: `Client::with_interceptor(channel,
/// TraceContextInterceptor)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let mut headers = std::mem::take(request.metadata_mut()).into_headers();
        inject_current_context(&mut headers);
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        Ok(request)
    }
}
