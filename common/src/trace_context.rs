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
/// trace context travels in [`CURRENT_REQUEST`] instead: trace ids still reach
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
    /// The request this task serves: its ids for the logs and, when spans
    /// are not exported, the trace context for the next hop.
    static CURRENT_REQUEST: RequestScope;
}

/// What a request's handling runs inside (see [`RequestScope::run`]).
#[derive(Clone, Debug, Default)]
pub struct RequestScope {
    /// Without an exporter: this hop's span context, for propagation.
    span_context: Option<SpanContext>,
    trace_id: Option<opentelemetry::trace::TraceId>,
    request_id: Option<Box<str>>,
}

impl RequestScope {
    pub fn run<F: std::future::Future>(
        self,
        future: F,
    ) -> impl std::future::Future<Output = F::Output> {
        CURRENT_REQUEST.scope(self, future)
    }

    pub fn with_request_id(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(Box::from);
        self
    }
}

/// The ids of the request the current task serves, for log lines:
/// (trace id as 32 hex digits, request id).
pub fn current_log_ids() -> Option<(Option<String>, Option<String>)> {
    CURRENT_REQUEST
        .try_with(|scope| {
            (
                scope.trace_id.map(|id| id.to_string()),
                scope.request_id.as_deref().map(str::to_owned),
            )
        })
        .ok()
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
    /// Without an exporter: the scope to run the request in; no span is
    /// needed (the log lines take their ids from the scope).
    pub fn into_scope(self) -> Result<RequestScope, Self> {
        match self.local {
            Some(span_context) => Ok(RequestScope {
                trace_id: Some(span_context.trace_id()),
                span_context: Some(span_context),
                request_id: None,
            }),
            None => Err(self),
        }
    }

    /// With an exporter: joins `span` to the trace.
    pub fn attach(self, span: &tracing::Span) -> RequestScope {
        let _ = span.set_parent(self.parent);
        let trace_id = span.context().span().span_context().trace_id();
        RequestScope {
            span_context: None,
            trace_id: Some(trace_id),
            request_id: None,
        }
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
    // The propagator is W3C trace context: without `traceparent` there is
    // nothing to extract, and most requests have none.
    if !headers.contains_key("traceparent") {
        return opentelemetry::Context::new();
    }
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// Writes the current request's trace context into `headers`.
pub fn inject_current_context(headers: &mut http::HeaderMap) {
    let context = if exporting() {
        tracing::Span::current().context()
    } else {
        match CURRENT_REQUEST.try_with(|scope| scope.span_context.clone()) {
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
