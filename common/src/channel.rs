//! gRPC client channels between the services.
//!
//! One replica: [`DirectChannel`], calls written straight onto one shared
//! HTTP/2 connection with the `h2` crate, from the caller's own task.
//! tonic's `Channel` puts a `tower::Buffer` in front of hyper's client, and
//! hyper's client hands each request to its connection task and spawns a
//! task per call to await the answer: three task hops per call, paid twice
//! per ad on the serve path (edge → ad-server → bid-engine).
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
use bytes::Bytes;
use std::task::ready;
use tokio::task::JoinHandle;
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

/// One lazily made HTTP/2 connection to one replica, shared by every clone
/// (see the module's notes for why it is written with `h2` directly).
/// A call finding it closed (the replica restarted, the network dropped it)
/// connects again; a call that cannot connect fails UNAVAILABLE.
#[derive(Clone, Debug)]
pub struct DirectChannel {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    authority: http::uri::Authority,
    connection: ArcSwapOption<Connection>,
    /// Held while connecting, so concurrent calls make one connection; it
    /// keeps the last failed attempt (when, and why).
    connecting: tokio::sync::Mutex<Option<(std::time::Instant, Status)>>,
}

/// An open HTTP/2 connection: its request handle, and the task driving
/// it, which ends when the connection does.
#[derive(Debug)]
struct Connection {
    authority: http::uri::Authority,
    sender: h2::client::SendRequest<Bytes>,
    driver: JoinHandle<()>,
}

impl Connection {
    fn is_closed(&self) -> bool {
        self.driver.is_finished()
    }

    /// A failed call's status: a lost connection (closed, reset, gone
    /// away) is UNAVAILABLE, and the next call finds it closed and
    /// connects again; a stream-level error (e.g. RST_STREAM) takes
    /// tonic's own mapping.
    fn status_of(&self, error: h2::Error) -> Status {
        if error.is_io() || error.is_go_away() || self.is_closed() {
            Status::unavailable(format!("connection to {} lost: {error}", self.authority))
        } else {
            Status::from_error(Box::new(error))
        }
    }
}

/// HTTP/2 windows as hyper's client sets them: a stream may have 2 MiB in
/// flight, the connection 5 MiB, before the reader acknowledges.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

impl DirectChannel {
    /// A channel to `url` (`http://host:port`); nothing is connected yet.
    pub fn lazy(url: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("invalid service URL {url:?}"))?;
        anyhow::ensure!(
            uri.scheme()
                .is_none_or(|scheme| *scheme == http::uri::Scheme::HTTP),
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
                authority,
                connection: ArcSwapOption::empty(),
                connecting: tokio::sync::Mutex::new(None),
            }),
        })
    }

    fn call(
        &self,
        request: http::Request<Body>,
    ) -> BoxFuture<Result<http::Response<Body>, BoxError>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let connection = shared.open_connection().await?;
            let lost = |error: h2::Error| connection.status_of(error);
            let (mut parts, body) = request.into_parts();
            parts.uri = shared.origin_of(&parts.uri)?;
            let mut sender = connection.sender.clone().ready().await.map_err(lost)?;
            let (response, stream) = sender
                .send_request(http::Request::from_parts(parts, ()), false)
                .map_err(lost)?;
            send_body(body, stream, &connection)?;
            let response = response.await.map_err(lost)?;
            Ok(response.map(|recv| {
                Body::new(ResponseBody {
                    recv,
                    data_done: false,
                    connection,
                })
            }))
        })
    }
}

/// Writes the request body: inline as far as it is ready (all of it, for
/// a unary call), then from a task of its own for a body that streams.
fn send_body(
    mut body: Body,
    mut stream: h2::SendStream<Bytes>,
    connection: &Arc<Connection>,
) -> Result<(), Status> {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    match pump(&mut body, &mut stream, connection, &mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => {
            let connection = Arc::clone(connection);
            tokio::spawn(async move {
                // The stream resets itself when dropped unfinished.
                let _ =
                    std::future::poll_fn(|cx| pump(&mut body, &mut stream, &connection, cx)).await;
            });
            Ok(())
        }
    }
}

/// Moves body frames to the stream until the body ends or has nothing yet.
fn pump(
    body: &mut Body,
    stream: &mut h2::SendStream<Bytes>,
    connection: &Connection,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Status>> {
    use http_body::Body as _;
    let sending = |error: h2::Error| connection.status_of(error);
    loop {
        let frame = match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                return Poll::Ready(stream.send_data(Bytes::new(), true).map_err(sending));
            }
            Poll::Ready(Some(Err(status))) => {
                stream.send_reset(h2::Reason::CANCEL);
                return Poll::Ready(Err(status));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                let end = body.is_end_stream();
                stream.send_data(data, end).map_err(sending)?;
                if end {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            return Poll::Ready(stream.send_trailers(trailers).map_err(sending));
        }
    }
}

/// A response's body as tonic reads it: data frames (their window given
/// back as they are read), then the trailers that carry `grpc-status`.
struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
    connection: Arc<Connection>,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Only fails once the stream is gone, when nothing more is read.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
                }
                Some(Err(error)) => {
                    return Poll::Ready(Some(Err(this.connection.status_of(error))));
                }
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(this.connection.status_of(error)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

impl Shared {
    /// The open connection, connecting first if there is none.
    async fn open_connection(&self) -> Result<Arc<Connection>, Status> {
        if let Some(open) = self.connection.load_full()
            && !open.is_closed()
        {
            return Ok(open);
        }
        let mut last_failure = self.connecting.lock().await;
        // Another call may have connected while this one waited.
        if let Some(open) = self.connection.load_full()
            && !open.is_closed()
        {
            return Ok(open);
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
        let connection = Arc::new(connection);
        self.connection.store(Some(Arc::clone(&connection)));
        Ok(connection)
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        let address = self.authority.as_str();
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .context("timed out")??;
        stream.set_nodelay(true)?;
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(stream)
            .await?;
        let authority = self.authority.clone();
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%authority, %error, "gRPC connection ended");
            }
        });
        Ok(Connection {
            authority: self.authority.clone(),
            sender,
            driver,
        })
    }

    /// `uri` (a method path) with this replica's authority and `http`, as
    /// HTTP/2's `:scheme` and `:authority` need them.
    fn origin_of(&self, uri: &http::Uri) -> Result<http::Uri, Status> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = uri.path_and_query().cloned();
        http::Uri::from_parts(parts)
            .map_err(|error| Status::internal(format!("building the request URI: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare HTTP/2 server for one connection: each request's body is read
    /// whole, then `answer` gives the response headers' `x-received` and
    /// how many body bytes to send back before `grpc-status: 0`.
    async fn h2_server(answer_bytes: usize) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let mut connection = h2::server::handshake(socket).await.expect("handshake");
            while let Some(Ok((request, mut respond))) = connection.accept().await {
                tokio::spawn(async move {
                    let mut body = request.into_body();
                    let mut received = 0;
                    while let Some(Ok(data)) = body.data().await {
                        received += data.len();
                        let _ = body.flow_control().release_capacity(data.len());
                    }
                    let response = http::Response::builder()
                        .header("x-received", received.to_string())
                        .body(())
                        .expect("response");
                    let mut send = respond.send_response(response, false).expect("send");
                    let chunk = Bytes::from(vec![7u8; 16 * 1024]);
                    let mut left = answer_bytes;
                    while left > 0 {
                        let part = chunk.slice(..left.min(chunk.len()));
                        left -= part.len();
                        send.reserve_capacity(part.len());
                        while send.capacity() < part.len() {
                            match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                                Some(Ok(_)) => {}
                                _ => return,
                            }
                        }
                        send.send_data(part, false).expect("data");
                    }
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    send.send_trailers(trailers).expect("trailers");
                });
            }
        });
        address
    }

    /// Reads a response body to its end: its data's length and trailers.
    async fn read_all(mut body: Body) -> (usize, Option<http::HeaderMap>) {
        use http_body::Body as _;
        let mut length = 0;
        let mut trailers = None;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.expect("a frame");
            match frame.into_data() {
                Ok(data) => length += data.len(),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        (length, trailers)
    }

    /// A request body fed from a channel: frames arrive after the call began.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl http_body::Body for ChannelBody {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
            self.0
                .poll_recv(cx)
                .map(|data| data.map(|data| Ok(http_body::Frame::data(data))))
        }
    }

    fn request(body: Body) -> http::Request<Body> {
        http::Request::builder()
            .method("POST")
            .uri("/test.Service/Method")
            .header("content-type", "application/grpc")
            .body(body)
            .expect("request")
    }

    /// A caller that gives up (its deadline passed, its own caller went
    /// away) cancels the call at the server too, so the server stops
    /// working on it and its stream is freed.
    #[tokio::test]
    async fn a_call_dropped_in_flight_is_reset_at_the_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (arrived, request_arrived) = tokio::sync::oneshot::channel();
        let (reset, reset_seen) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let mut connection = h2::server::handshake(socket).await.expect("handshake");
            let Some(Ok((_request, mut respond))) = connection.accept().await else {
                return;
            };
            let _ = arrived.send(());
            // Never answers; drives the connection until the caller resets.
            let reason = tokio::select! {
                reason = std::future::poll_fn(|cx| respond.poll_reset(cx)) => reason.ok(),
                _ = connection.accept() => None,
            };
            let _ = reset.send(reason);
            while connection.accept().await.is_some() {}
        });
        let channel = DirectChannel::lazy(&format!("http://{address}")).expect("channel");
        tokio::select! {
            answer = channel.call(request(Body::empty())) => panic!("answered: {:?}", answer.map(|r| r.status())),
            _ = request_arrived => {}
        }
        let reason = tokio::time::timeout(Duration::from_secs(20), reset_seen)
            .await
            .expect("the server never saw the call end")
            .expect("the server task");
        assert_eq!(reason, Some(h2::Reason::CANCEL));
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_connection_window_arrives_whole() {
        // More than the 5 MiB connection window: it only arrives if the
        // reader gives the window back as it reads.
        let size = CONNECTION_WINDOW as usize + 1024 * 1024;
        let address = h2_server(size).await;
        let channel = DirectChannel::lazy(&format!("http://{address}")).expect("channel");
        let answer = tokio::time::timeout(Duration::from_secs(20), async {
            let response = channel.call(request(Body::empty())).await.expect("call");
            read_all(response.into_body()).await
        })
        .await
        .expect("the answer stalled");
        assert_eq!(answer.0, size);
        let trailers = answer.1.expect("trailers");
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
    }

    #[tokio::test]
    async fn a_request_body_that_streams_is_sent_whole() {
        let address = h2_server(0).await;
        let channel = DirectChannel::lazy(&format!("http://{address}")).expect("channel");
        let (frames, receiver) = tokio::sync::mpsc::channel(4);
        frames
            .send(Bytes::from_static(b"first"))
            .await
            .expect("send");
        // The call goes out with the first frame; the rest follow from the
        // task that takes over the body once it has nothing ready.
        let call = tokio::spawn({
            let channel = channel.clone();
            async move {
                channel
                    .call(request(Body::new(ChannelBody(receiver))))
                    .await
            }
        });
        // Polled until the call has taken the first frame and found no
        // second: from then on the body is the pump task's.
        while frames.capacity() < frames.max_capacity() {
            tokio::task::yield_now().await;
        }
        frames
            .send(Bytes::from_static(b"second"))
            .await
            .expect("send");
        frames
            .send(Bytes::from_static(b"third"))
            .await
            .expect("send");
        drop(frames);
        let response = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("the call stalled")
            .expect("the call's task")
            .expect("the call");
        let received = response
            .headers()
            .get("x-received")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(received.as_deref(), Some("16"));
        let (_, trailers) = read_all(response.into_body()).await;
        assert!(trailers.is_some());
    }
}
