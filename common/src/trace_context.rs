//! W3C trace context across gRPC hops: extracted from incoming request
//! headers by the server layer, injected into outgoing metadata by
//! [`TraceContextInterceptor`], so one serve request is one trace across
//! edge, ad-server and bid-engine.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::{
    propagation::{Extractor, Injector},
    trace::{SpanId, TraceContextExt, TraceId},
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

/// A future running inside a [`RequestScope`].
pub type ScopedFuture<F> = tokio::task::futures::TaskLocalFuture<RequestScope, F>;

/// What a request's handling runs inside (see [`RequestScope::run`]).
#[derive(Clone, Debug, Default)]
pub struct RequestScope {
    /// Without an exporter: this hop's trace context, for propagation.
    local: Option<LocalTrace>,
    /// For log lines.
    trace_id: Option<opentelemetry::trace::TraceId>,
    request_id: Option<Box<str>>,
}

/// A W3C trace context read and written directly when no spans are
/// exported, without the OpenTelemetry propagator's global lock and
/// context map (no measurable change in the serve benchmark, but less
/// work per hop).
#[derive(Clone, Debug)]
struct LocalTrace {
    trace_id: TraceId,
    span_id: SpanId,
    flags: u8,
    /// The caller's `tracestate`, passed on as it came.
    state: Option<http::HeaderValue>,
}

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// `traceparent` as (trace id, flags): version 00 exactly, later versions
/// by their first four fields; `None` when malformed or all-zero ids.
fn parse_traceparent(value: &[u8]) -> Option<(TraceId, u8)> {
    if value.len() < 55 || (value.len() > 55 && value[55] != b'-') {
        return None;
    }
    let hex = |range: std::ops::Range<usize>| -> Option<u128> {
        let text = std::str::from_utf8(value.get(range)?).ok()?;
        if !text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        {
            return None;
        }
        u128::from_str_radix(text, 16).ok()
    };
    let version = hex(0..2)?;
    if version == 0xff || (version == 0 && value.len() != 55) {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = hex(3..35)?;
    let parent_id = hex(36..52)?;
    let flags = hex(53..55)?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some((TraceId::from(trace_id), flags as u8))
}

/// `00-{trace id}-{span id}-{flags}`, written digit by digit: `format!`
/// through the ids' `Display` cost several times as much, on every hop.
fn format_traceparent(trace: &LocalTrace) -> Option<http::HeaderValue> {
    fn hex_into(out: &mut [u8], bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
    }
    let mut text = *b"00-................................-................-..";
    hex_into(&mut text[3..35], &trace.trace_id.to_bytes());
    hex_into(&mut text[36..52], &trace.span_id.to_bytes());
    hex_into(&mut text[53..55], &[trace.flags]);
    let mut value = http::HeaderValue::from_bytes(&text).ok()?;
    // Unique per request, so never worth a slot in the HPACK table: as an
    // indexed literal each one evicted the connection's steady headers
    // (content-type, te, user-agent…), which were then sent again in full.
    value.set_sensitive(true);
    Some(value)
}

impl RequestScope {
    pub fn run<F: std::future::Future>(self, future: F) -> ScopedFuture<F> {
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
pub struct IncomingTrace(Incoming);

#[derive(Debug)]
enum Incoming {
    /// Spans are exported: the caller's context, to parent this hop's span.
    Exported(opentelemetry::Context),
    /// No exporter: this hop's trace context, known up front.
    Local(LocalTrace),
}

/// Reads the caller's trace context from `headers`.
pub fn incoming_trace(headers: &http::HeaderMap) -> IncomingTrace {
    if exporting() {
        return IncomingTrace(Incoming::Exported(extract_context(headers)));
    }
    let remote = headers
        .get(TRACEPARENT)
        .and_then(|value| parse_traceparent(value.as_bytes()));
    let ids = RandomIdGenerator::default();
    let (trace_id, flags, state) = match remote {
        Some((trace_id, flags)) => (trace_id, flags, headers.get(TRACESTATE).cloned()),
        None => (ids.new_trace_id(), 0, None),
    };
    IncomingTrace(Incoming::Local(LocalTrace {
        trace_id,
        span_id: ids.new_span_id(),
        flags,
        state,
    }))
}

impl IncomingTrace {
    /// Without an exporter: the scope to run the request in; no span is
    /// needed (the log lines take their ids from the scope). With one, the
    /// trace back, to [`attach`](Self::attach) to a span.
    pub fn into_scope(self) -> Result<RequestScope, Self> {
        match self.0 {
            Incoming::Local(local) => Ok(RequestScope {
                trace_id: Some(local.trace_id),
                local: Some(local),
                request_id: None,
            }),
            exported @ Incoming::Exported(_) => Err(Self(exported)),
        }
    }

    /// With an exporter: joins `span` to the trace.
    pub fn attach(self, span: &tracing::Span) -> RequestScope {
        if let Incoming::Exported(parent) = self.0 {
            let _ = span.set_parent(parent);
        }
        let trace_id = span.context().span().span_context().trace_id();
        RequestScope {
            local: None,
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
        if let (Ok(name), Ok(mut value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            // As in `format_traceparent`: kept out of the HPACK table.
            value.set_sensitive(name == TRACEPARENT);
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
    if exporting() {
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderInjector(headers));
        });
        return;
    }
    let _ = CURRENT_REQUEST.try_with(|scope| {
        let Some(local) = &scope.local else {
            return;
        };
        if let Some(value) = format_traceparent(local) {
            headers.insert(TRACEPARENT, value);
        }
        if let Some(state) = local.state.as_ref().filter(|state| !state.is_empty()) {
            headers.insert(TRACESTATE, state.clone());
        }
    });
}

/// Puts the current trace context into every outgoing gRPC request of a
/// client: `Client::with_interceptor(channel, TraceContextInterceptor)`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_read_and_written_in_the_w3c_format() {
        let header = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace_id, flags) = parse_traceparent(header).expect("valid");
        assert_eq!(trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(flags, 1);
        let local = LocalTrace {
            trace_id,
            span_id: SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            flags,
            state: None,
        };
        assert_eq!(
            format_traceparent(&local).expect("header").as_bytes(),
            header
        );
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        for bad in [
            &b""[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(
                parse_traceparent(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A later version may carry more fields.
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .is_some()
        );
    }

    #[test]
    fn a_hop_keeps_the_trace_and_passes_on_a_span_of_its_own() {
        let mut incoming = http::HeaderMap::new();
        incoming.insert(
            TRACEPARENT,
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        incoming.insert(TRACESTATE, http::HeaderValue::from_static("vendor=1"));
        let scope = incoming_trace(&incoming)
            .into_scope()
            .expect("not exporting");
        let mut outgoing = http::HeaderMap::new();
        futures_lite_block_on(scope.run(async {
            inject_current_context(&mut outgoing);
        }));
        let sent = outgoing
            .get(TRACEPARENT)
            .expect("traceparent")
            .to_str()
            .expect("ascii");
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert!(!sent.contains("00f067aa0ba902b7"), "a new span id: {sent}");
        assert!(sent.ends_with("-01"));
        assert!(
            outgoing.get(TRACEPARENT).is_some_and(|v| v.is_sensitive()),
            "a traceparent must stay out of the HPACK table"
        );
        assert_eq!(
            outgoing.get(TRACESTATE).map(|v| v.as_bytes()),
            Some(&b"vendor=1"[..])
        );
    }

    fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }
}
