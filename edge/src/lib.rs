//! The edge: REST for browsers in front of the gRPC mesh (SPEC §7).
//!
//! Every REST route comes from an RPC's `google.api.http` binding
//! ([`transcode`]); the edge adds what HTTP needs: auth and roles
//! ([`auth`]), shared rate limits ([`ratelimit`]), JSON errors with request
//! ids ([`error`]), the OpenAPI document ([`openapi`]), the live feed
//! ([`feed`]), health and readiness ([`health`]).

pub mod admin;
pub mod auth;
pub mod error;
pub mod feed;
pub mod health;
pub mod openapi;
pub mod ratelimit;
pub mod transcode;

use std::{future::IntoFuture, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, Request, State},
    response::{IntoResponse, Response},
    routing::get,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use prost_reflect::DynamicMessage;
use tokio::net::TcpListener;
use tonic::{Code, metadata::MetadataMap};
use tracing::Instrument;

use admesh_common::{
    ServiceContext, ServiceKind,
    identity::{ROLE_METADATA, USER_METADATA},
};
use admesh_proto::edge::v1::edge_admin_server::EdgeAdminServer;

use crate::{
    admin::EdgeAdminService,
    auth::{Authenticator, Identity, authorize, store::AuthStore, tokens::TokenIssuer},
    error::{ApiError, RequestId},
    feed::Feed,
    ratelimit::{
        RateLimiter,
        bucket::Decision,
        store::{BucketStore, MemoryBuckets, RedisBuckets},
    },
    transcode::{
        Upstreams,
        json::{BadRequest, build_request, response_json},
        routes::{Answer, Lookup, Route, RouteTable},
    },
};

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::Edge;

/// Everything a request needs.
#[derive(Debug)]
pub struct Gateway {
    pub routes: RouteTable,
    pub upstreams: Upstreams,
    pub auth: Authenticator,
    pub limiter: Arc<RateLimiter>,
    pub max_body_bytes: usize,
    pub upstream_timeout: Duration,
    pub openapi: Bytes,
    pub feed: Feed,
}

/// Shared state of the edge's handlers.
#[derive(Clone, Debug)]
pub struct EdgeState {
    pub health: Arc<health::Upstreams>,
    pub gateway: Arc<Gateway>,
}

/// The edge's HTTP routes: a few of its own, then every transcoded one.
pub fn router(state: EdgeState, cors_origins: &[String]) -> Router {
    let router = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/events", get(live_feed))
        .fallback(gateway)
        .with_state(state)
        .merge(admesh_common::metrics::metrics_router());
    let router = match cors(cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    };
    router.layer(axum::middleware::from_fn(request_context))
}

fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                http::HeaderName::from_static("x-api-key"),
                http::HeaderName::from_static("x-request-id"),
                http::HeaderName::from_static("grpc-timeout"),
            ])
            .expose_headers([
                http::HeaderName::from_static("x-request-id"),
                http::HeaderName::from_static("x-ratelimit-limit"),
                http::HeaderName::from_static("x-ratelimit-remaining"),
                http::HeaderName::from_static("x-ratelimit-reset"),
                header::RETRY_AFTER,
            ]),
    )
}

async fn openapi_json(State(state): State<EdgeState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.gateway.openapi.clone(),
    )
        .into_response()
}

/// `GET /api/v1/events`: needs a viewer; browsers' EventSource cannot send
/// headers, so the token may come as `?access_token=`.
async fn live_feed(State(state): State<EdgeState>, request: Request) -> Response {
    let gateway = &state.gateway;
    let query_token = request.uri().query().and_then(|query| {
        query.split('&').find_map(|pair| {
            pair.strip_prefix("access_token=")
                .and_then(transcode::template::decode)
        })
    });
    let identity = match gateway
        .auth
        .identify(request.headers(), query_token.as_deref())
        .await
    {
        Ok(identity) => identity,
        Err(error) => return error.into_response(),
    };
    if let Err(error) = authorize(auth::Access::Viewer, identity.as_ref()) {
        return error.into_response();
    }
    gateway.feed.subscribe().into_response()
}

/// Every transcoded route.
async fn gateway(State(state): State<EdgeState>, request: Request) -> Response {
    let gateway = &state.gateway;
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string());
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let mut limit: Option<Decision> = None;
    let result = transcode_call(gateway, request, peer, &request_id, &mut limit).await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    if let Some(decision) = limit {
        rate_limit_headers(response.headers_mut(), &decision);
    }
    response
}

async fn transcode_call(
    gateway: &Gateway,
    request: Request,
    peer: Option<String>,
    request_id: &str,
    limit: &mut Option<Decision>,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let (route, bindings) = find_route(&gateway.routes, &parts.method, path)?;

    // Public routes ignore credentials that do not check out, rather than
    // failing a page view over a stale token.
    let identity = match gateway.auth.identify(&parts.headers, None).await {
        Ok(identity) => identity,
        Err(_) if route.access == auth::Access::Public => None,
        Err(error) => return Err(error),
    };
    authorize(route.access, identity.as_ref())?;

    *limit = gateway
        .limiter
        .check(&route.key, || {
            identity.as_ref().map_or_else(
                || format!("ip:{}", peer.as_deref().unwrap_or("unknown")),
                |identity| identity.subject.clone(),
            )
        })
        .await;
    if let Some(decision) = limit
        && !decision.allowed
    {
        return Err(ApiError::new(
            Code::ResourceExhausted,
            format!(
                "rate limit of {} exceeded; retry in {} s",
                route.key, decision.retry_after_secs
            ),
        ));
    }

    let body = axum::body::to_bytes(body, gateway.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                Code::InvalidArgument,
                format!(
                    "the request body is larger than {} bytes",
                    gateway.max_body_bytes
                ),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        })?;
    let message = build_request(&route, bindings, parts.uri.query(), &body)
        .map_err(|BadRequest(why)| ApiError::new(Code::InvalidArgument, why))?;

    let timeout = parts
        .headers
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(admesh_common::deadline::parse_grpc_timeout)
        .map_or(gateway.upstream_timeout, |caller| {
            caller.min(gateway.upstream_timeout)
        });
    let metadata = outgoing_metadata(request_id, identity.as_ref(), peer.as_deref());
    let reply = gateway
        .upstreams
        .call(&route, message, metadata, timeout)
        .await
        .map_err(|status| ApiError::from_status(&status))?;
    respond(&route, &reply)
}

/// The route for a request, or the error that answers it.
fn find_route(
    routes: &RouteTable,
    method: &Method,
    path: &str,
) -> Result<(Arc<Route>, Vec<transcode::template::Binding>), ApiError> {
    match routes.lookup(method, path) {
        Lookup::Found(route, bindings) => Ok((route.clone(), bindings)),
        Lookup::BadPath => Err(ApiError::new(
            Code::InvalidArgument,
            "the path is not valid percent-encoded UTF-8",
        )),
        Lookup::MethodNotAllowed(allowed) => {
            let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            Err(ApiError::new(
                Code::Unimplemented,
                format!(
                    "{method} is not allowed on {path}; use {}",
                    allowed.join(", ")
                ),
            )
            .with_status(StatusCode::METHOD_NOT_ALLOWED))
        }
        Lookup::NotFound => Err(ApiError::new(
            Code::NotFound,
            format!("no route for {method} {path}"),
        )),
    }
}

fn respond(route: &Route, reply: &[u8]) -> Result<Response, ApiError> {
    match route.answer {
        Answer::Json => {}
        Answer::NoContent => return Ok(StatusCode::NO_CONTENT.into_response()),
        Answer::Redirect => {
            let location = DynamicMessage::decode(route.rpc.output(), reply)
                .ok()
                .and_then(|reply| {
                    reply
                        .get_field_by_name("redirect_url")
                        .and_then(|value| value.as_str().map(str::to_owned))
                })
                .and_then(|url| HeaderValue::from_str(&url).ok())
                .ok_or_else(|| {
                    ApiError::new(Code::Internal, "the click has no valid redirect URL")
                })?;
            return Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response());
        }
    }
    let body = response_json(route, reply)
        .map_err(|why| ApiError::new(Code::Internal, format!("rendering the answer: {why}")))?;
    Ok((
        route.success,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Trace context, request id, caller identity and address for the service.
fn outgoing_metadata(
    request_id: &str,
    identity: Option<&Identity>,
    peer: Option<&str>,
) -> MetadataMap {
    let mut headers = HeaderMap::new();
    admesh_common::trace_context::inject_current_context(&mut headers);
    // `unique`: a value new on every request is kept out of the HPACK
    // table, where it would evict the headers every call repeats (as
    // `traceparent` is).
    let mut put = |name: &'static str, value: &str, unique: bool| {
        if let Ok(mut value) = HeaderValue::from_str(value) {
            value.set_sensitive(unique);
            headers.insert(name, value);
        }
    };
    put("x-request-id", request_id, true);
    if let Some(identity) = identity {
        put(USER_METADATA, &identity.subject, false);
        put(ROLE_METADATA, identity.role.as_str(), false);
    }
    if let Some(peer) = peer {
        put("x-forwarded-for", peer, false);
    }
    MetadataMap::from_headers(headers)
}

fn rate_limit_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from(decision.reset_secs));
    if !decision.allowed {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(decision.retry_after_secs),
        );
    }
}

/// Gives every request an id (`X-Request-Id`, kept when the client sent
/// one) and a span parented on the caller's W3C trace context; the gRPC
/// calls it makes are children of that span.
async fn request_context(mut request: Request, next: axum::middleware::Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(admesh_common::ids::new_id);
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
        .insert(RequestId(request_id.clone()));
    let mut response = scope.run(next.run(request)).instrument(span.clone()).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        response = (
            status,
            axum::Json(error::error_body(error.code, &error.message, &request_id)),
        )
            .into_response();
        for (name, value) in headers.iter() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
    }
    span.record("http.status", response.status().as_u16());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Builds the gateway: routes, upstream channels, the in-process admin
/// service, auth, rate limits, OpenAPI and the live feed. Creates the
/// initial `admin` user when there is none; a generated password is
/// returned so the caller can show it once.
pub async fn build_gateway(
    context: &ServiceContext,
) -> anyhow::Result<(Arc<Gateway>, Option<String>)> {
    let config = &context.config.edge;
    let pool = transcode::descriptor_pool()?;
    let routes = RouteTable::from_pool(&pool)?;

    let store = Arc::new(AuthStore::new(context.database.clone()));
    let signing_key = store.signing_key(config.jwt_secret.expose()).await?;
    let generated_password = store.ensure_admin(config.admin_password.expose()).await?;
    let auth = Authenticator {
        tokens: TokenIssuer::new(&signing_key, Duration::from_secs(config.token_ttl_secs)),
        store,
    };
    let buckets: Arc<dyn BucketStore> = match &context.redis {
        Some(redis) => Arc::new(RedisBuckets::new(redis.clone(), "admesh:ratelimit:")),
        None => Arc::new(MemoryBuckets::default()),
    };
    let limiter = Arc::new(RateLimiter::new(context.database.clone(), buckets));
    limiter.reload().await?;
    tokio::spawn(limiter.clone().keep_reloading(context.shutdown.clone()));

    let mut upstreams = Upstreams::default();
    for (service, url) in [
        ("admesh.adserver.v1.AdServer", &config.ad_server_url),
        ("admesh.bid.v1.BidEngine", &config.bid_engine_url),
        ("admesh.queue.v1.QueueService", &config.queue_url),
        (
            "admesh.analytics.v1.AnalyticsService",
            &config.analytics_url,
        ),
        ("admesh.agent.v1.AgentService", &config.agent_url),
    ] {
        upstreams.insert(
            service,
            transcode::remote(admesh_common::lazy_channel(url)?),
        );
    }
    let admin = EdgeAdminService {
        auth: auth.clone(),
        limiter: limiter.clone(),
        route_keys: Arc::new(
            routes
                .routes()
                .iter()
                .map(|route| route.key.clone())
                .collect(),
        ),
    };
    upstreams.insert(
        "admesh.edge.v1.EdgeAdmin",
        tower::util::BoxCloneSyncService::new(
            tower::ServiceExt::<http::Request<tonic::body::Body>>::map_err(
                EdgeAdminServer::new(admin),
                |never: std::convert::Infallible| -> transcode::TransportError { match never {} },
            ),
        ),
    );

    let openapi = Bytes::from(serde_json::to_vec(&openapi::document(&routes))?);
    let stats_route = routes.find("GET /api/v1/ads/queue/stats").cloned();
    let stats_upstreams = upstreams.clone();
    let stats: feed::StatsSource = Arc::new(move || {
        let route = stats_route.clone();
        let upstreams = stats_upstreams.clone();
        Box::pin(async move {
            let route = route?;
            let reply = upstreams
                .call(
                    &route,
                    Vec::new(),
                    MetadataMap::new(),
                    Duration::from_secs(1),
                )
                .await
                .ok()?;
            let json = response_json(&route, &reply).ok()?;
            serde_json::from_slice(&json).ok()
        })
    });
    let feed = Feed::start(context.database.clone(), stats, context.shutdown.clone());

    let gateway = Gateway {
        routes,
        upstreams,
        auth,
        limiter,
        max_body_bytes: config.max_body_bytes,
        upstream_timeout: Duration::from_millis(config.upstream_timeout_ms),
        openapi,
        feed,
    };
    Ok((Arc::new(gateway), generated_password))
}

/// Users, keys and rules live in SQL: the edge migrates the database (as
/// every service does) and waits for it before taking traffic. False when
/// shut down first.
async fn wait_for_database(context: &ServiceContext) -> bool {
    let mut warned = false;
    loop {
        match context.database.migrate().await {
            Ok(()) => return true,
            Err(error) => {
                if !warned {
                    tracing::warn!(error = %format!("{error:#}"), "waiting for the database");
                    warned = true;
                }
            }
        }
        tokio::select! {
            _ = context.shutdown.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Serves until `context.shutdown` fires, then drains.
pub async fn serve(context: ServiceContext, listener: TcpListener) -> anyhow::Result<()> {
    let health = Arc::new(health::Upstreams::from_config(&context.config)?);
    if !wait_for_database(&context).await {
        return Ok(());
    }
    let (gateway, generated_password) = build_gateway(&context).await?;
    if let Some(password) = generated_password {
        // Shown once: the user is created only on the first start.
        println!(
            "Created the initial edge user admin with the generated password {password} \
             (set ADMESH_ADMIN_PASSWORD to choose it); it is not shown again."
        );
    }
    let app = router(
        EdgeState { health, gateway },
        &context.config.edge.cors_allowed_origins,
    );
    let address = listener.local_addr()?;
    tracing::info!(service = SERVICE.name(), addr = %address, "listening");
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(context.shutdown.clone().cancelled_owned())
    .into_future();
    admesh_common::grpc_host::drain_within_grace(server, &context.shutdown).await?;
    tracing::info!(service = SERVICE.name(), "stopped");
    Ok(())
}
