//! gRPC client channels between the services.
//!
//! One replica: [`DirectChannel`], calls written straight onto one shared
//! HTTP/2 connection. tonic's `Channel` puts a `tower::Buffer` in front of
//! its connection, so every call is handed to a worker task and its answer
//! handed back over a oneshot, one more task hop per call. On the serve
//! path that hop is paid twice per ad (edge → ad-server → bid-engine).
//! Several replicas: tonic's balanced channel (power of two choices).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::Context as _;
use arc_swap::ArcSwapOption;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::{Status, body::Body};

/// How long a connection attempt may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connection attempt, calls fail at once for this long
/// instead of each trying again in turn: against a replica that drops
/// packets, calls queued behind one 2 s attempt would otherwise wait 2 s
/// more each.
const AFTER_A_FAILED_CONNECT: Duration = Duration::from_millis(100);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A gRPC client channel to `url` that connects on first use, so services
/// can start in any order. A comma-separated list of URLs balances calls
/// across the replicas it names (power of two choices); a replica whose
/// connection fails is reconnected on use, so one that comes back takes
/// calls again (`tests/balancing.rs`).
pub fn lazy_channel(url: &str) -> anyhow::Result<MeshChannel> {
    let urls: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect();
    match urls.as_slice() {
        [] => anyhow::bail!("no service URL in {url:?}"),
        [one] => Ok(MeshChannel::Direct(DirectChannel::lazy(one)?)),
        many => {
            let endpoints = many
                .iter()
                .map(|url| {
                    Ok(tonic::transport::Endpoint::from_shared(url.to_string())
                        .with_context(|| format!("invalid service URL {url:?}"))?
                        .tcp_nodelay(true)
                        .connect_timeout(CONNECT_TIMEOUT))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(MeshChannel::Balanced(
                tonic::transport::Channel::balance_list(endpoints.into_iter()),
            ))
        }
    }
}

/// The channel [`lazy_channel`] makes: direct to one replica, or balanced.
#[derive(Clone, Debug)]
pub enum MeshChannel {
    Direct(DirectChannel),
    Balanced(tonic::transport::Channel),
}

impl tower::Service<http::Request<Body>> for MeshChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Direct(_) => Poll::Ready(Ok(())),
            Self::Balanced(channel) => channel.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self {
            Self::Direct(channel) => channel.call(request),
            Self::Balanced(channel) => {
                let answer = channel.call(request);
                Box::pin(async move { answer.await.map_err(Into::into) })
            }
        }
    }
}

/// One lazily made HTTP/2 connection to one replica, shared by every clone.
/// A call finding it closed (the replica restarted, the network dropped it)
/// connects again; a call that cannot connect fails UNAVAILABLE.
#[derive(Clone, Debug)]
pub struct DirectChannel {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    connection: ArcSwapOption<http2::SendRequest<Body>>,
    /// Held while connecting, so concurrent calls make one connection; it
    /// keeps the last failed attempt (when, and why).
    connecting: tokio::sync::Mutex<Option<(std::time::Instant, Status)>>,
}

impl DirectChannel {
    /// A channel to `url` (`http://host:port`); nothing is connected yet.
    pub fn lazy(url: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("invalid service URL {url:?}"))?;
        let scheme = uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP);
        anyhow::ensure!(
            scheme == http::uri::Scheme::HTTP,
            "service URL {url:?}: only http:// is supported between services"
        );
        let authority = uri
            .authority()
            .cloned()
            .with_context(|| format!("service URL {url:?} names no host"))?;
        anyhow::ensure!(
            authority.port_u16().is_some(),
            "service URL {url:?} names no port"
        );
        Ok(Self {
            shared: Arc::new(Shared {
                scheme,
                authority,
                connection: ArcSwapOption::empty(),
                connecting: tokio::sync::Mutex::new(None),
            }),
        })
    }

    fn call(
        &self,
        mut request: http::Request<Body>,
    ) -> BoxFuture<Result<http::Response<Body>, BoxError>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let mut connection = shared.open_connection().await?;
            *request.uri_mut() = shared.origin_of(request.uri())?;
            match connection.send_request(request).await {
                Ok(response) => Ok(response.map(Body::new)),
                // The next call finds the connection closed and connects again.
                Err(error) if connection_lost(&error) => Err(Status::unavailable(format!(
                    "connection to {} lost: {error}",
                    shared.authority
                ))
                .into()),
                // A stream-level error (e.g. RST_STREAM): tonic's own mapping.
                Err(error) => Err(Status::from_error(Box::new(error)).into()),
            }
        })
    }
}

impl Shared {
    /// The open connection, connecting first if there is none.
    async fn open_connection(&self) -> Result<http2::SendRequest<Body>, Status> {
        if let Some(open) = self.connection.load().as_deref()
            && !open.is_closed()
        {
            return Ok(open.clone());
        }
        let mut last_failure = self.connecting.lock().await;
        // Another call may have connected while this one waited.
        if let Some(open) = self.connection.load().as_deref()
            && !open.is_closed()
        {
            return Ok(open.clone());
        }
        if let Some((at, status)) = last_failure.as_ref()
            && at.elapsed() < AFTER_A_FAILED_CONNECT
        {
            return Err(status.clone());
        }
        let connection = match self.connect().await {
            Ok(connection) => connection,
            Err(error) => {
                let status =
                    Status::unavailable(format!("connecting to {}: {error:#}", self.authority));
                *last_failure = Some((std::time::Instant::now(), status.clone()));
                return Err(status);
            }
        };
        *last_failure = None;
        self.connection.store(Some(Arc::new(connection.clone())));
        Ok(connection)
    }

    async fn connect(&self) -> anyhow::Result<http2::SendRequest<Body>> {
        let address = self.authority.as_str();
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .context("timed out")??;
        stream.set_nodelay(true)?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await?;
        let authority = self.authority.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%authority, %error, "gRPC connection ended");
            }
        });
        Ok(sender)
    }

    /// `uri` (a method path) with this replica's scheme and authority, as
    /// HTTP/2's `:scheme` and `:authority` need them.
    fn origin_of(&self, uri: &http::Uri) -> Result<http::Uri, Status> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = uri.path_and_query().cloned();
        http::Uri::from_parts(parts)
            .map_err(|error| Status::internal(format!("building the request URI: {error}")))
    }
}

/// Whether a failed send means the connection is gone (closed, reset, gone
/// away), which gRPC reports as UNAVAILABLE, rather than one call failing.
fn connection_lost(error: &hyper::Error) -> bool {
    if error.is_closed() || error.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        if let Some(h2) = cause.downcast_ref::<h2::Error>()
            && (h2.is_io() || h2.is_go_away())
        {
            return true;
        }
        source = cause.source();
    }
    false
}
