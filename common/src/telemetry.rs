//! Logs and traces. Logs go to stdout as JSON (or text); a line written while
//! serving a request carries its `trace_id` and `request_id`. Trace ids exist
//! and propagate across every hop; spans are built and exported over
//! OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_subscriber::{
    EnvFilter, Layer,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::config::{LogFormat, TelemetryConfig};

/// Flushes buffered spans when the process ends.
#[must_use = "dropping the guard does not flush; call shutdown() at exit"]
pub struct TelemetryGuard {
    tracer_provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Exports the spans still buffered; call once, at the end of `main`.
    pub fn shutdown(self) {
        if let Err(error) = self.tracer_provider.shutdown() {
            eprintln!("failed to flush traces: {error}");
        }
    }
}

/// Installs the global subscriber, tracer provider and W3C propagator.
/// `service_name` becomes the OTel `service.name` (unless
/// `OTEL_SERVICE_NAME` overrides it).
pub fn init_telemetry(
    service_name: &str,
    config: &TelemetryConfig,
) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let service_name =
        std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service_name.to_string());
    let resource = Resource::builder().with_service_name(service_name).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let exporting = otlp_endpoint_configured();
    crate::trace_context::set_exporting(exporting);
    if exporting {
        // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT itself.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .context("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter cannot be built")?;
        builder = builder.with_batch_exporter(exporter);
    } else {
        // Nothing exports spans: keep trace ids (logs and propagation carry
        // them) but record nothing, which costs a fraction per RPC. A caller's
        // sampled trace is still continued (parent-based).
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
    }
    let tracer_provider = builder.build();
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());
    let tracer = tracer_provider.tracer("admesh");

    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
        _ => EnvFilter::try_new(&config.log_level),
    }
    .with_context(|| {
        format!(
            "`telemetry.log_level`: invalid filter {:?}",
            config.log_level
        )
    })?;

    let fmt_layer = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(WithRequestIds {
                inner: tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .flatten_event(true),
                json: true,
            })
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .event_format(WithRequestIds {
                inner: tracing_subscriber::fmt::format(),
                json: false,
            })
            .boxed(),
    };
    // A second init in one process (tests, `admesh up` helpers) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(exporting.then(|| {
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // Per-poll busy/idle timing and code locations cost on every
                // RPC and say little about a gRPC call.
                .with_tracked_inactivity(false)
                .with_location(false)
                .with_threads(false)
                .with_level(false)
                .with_target(false)
                // Propagation reads the tracing span's context directly
                // (trace_context.rs), so nothing needs the OTel context made
                // current on every poll.
                .with_context_activation(false)
        }))
        .try_init();
    Ok(TelemetryGuard { tracer_provider })
}

fn otlp_endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty()))
}

/// Adds `trace_id` and `request_id` of the request being served (from its
/// [`crate::trace_context::RequestScope`]) to every log line written while
/// serving it: top-level fields in JSON, `key=value` in text.
struct WithRequestIds<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithRequestIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, request_id)) = crate::trace_context::current_log_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        let mut extra = String::new();
        for (key, value) in [("trace_id", trace_id), ("request_id", request_id)] {
            let Some(value) = value else { continue };
            if self.json {
                let quoted = serde_json::to_string(&value).map_err(|_| std::fmt::Error)?;
                extra.push_str(&format!(",\"{key}\":{quoted}"));
            } else {
                extra.push_str(&format!(" {key}={value}"));
            }
        }
        match body.strip_suffix('}') {
            Some(open) if self.json => writeln!(writer, "{open}{extra}}}"),
            _ => writeln!(writer, "{body}{extra}"),
        }
    }
}
