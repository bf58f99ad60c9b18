//! Health follows dependencies: a service is NOT_SERVING until its database
//! answers, SERVING while it does, NOT_SERVING when it stops answering, and
//! SERVING again once it is back; Redis counts in the cluster profile.

mod support;

use support::CuttableProxy;

use std::{net::SocketAddr, sync::Arc};

use admesh_common::{Database, MeshConfig, Redis, ServiceContext};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;

async fn serve_queue_service(
    database: Database,
    redis: Option<Redis>,
) -> (SocketAddr, CancellationToken) {
    let shutdown = CancellationToken::new();
    let context = ServiceContext {
        config: Arc::new(MeshConfig::default()),
        database,
        redis,
        shutdown: shutdown.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(admesh_queue_service::serve(context, listener));
    (address, shutdown)
}

#[tokio::test]
async fn health_follows_the_database_through_an_outage() {
    let postgres = support::TestPostgres::create().await;
    let (host_and_port, path) = postgres
        .url
        .trim_start_matches("postgres://admesh:admesh@")
        .split_once('/')
        .expect("url shape");
    let target: SocketAddr = host_and_port.parse().expect("postgres address");
    let proxy = CuttableProxy::start(target).await;
    let database = Database::connect_lazy(
        &format!("postgres://admesh:admesh@{}/{path}", proxy.address),
        4,
    )
    .expect("pool");

    let (address, shutdown) = serve_queue_service(database, None).await;
    // The database is unreachable: the service runs but does not serve.
    support::wait_for_health(address, ServingStatus::NotServing).await;

    proxy.restore();
    support::wait_for_health(address, ServingStatus::Serving).await;

    proxy.cut();
    support::wait_for_health(address, ServingStatus::NotServing).await;

    proxy.restore();
    support::wait_for_health(address, ServingStatus::Serving).await;

    shutdown.cancel();
    postgres.drop_database().await;
}

#[tokio::test]
async fn the_cluster_profile_serves_once_postgres_and_redis_answer() {
    let postgres = support::TestPostgres::create().await;
    let database = Database::connect_lazy(&postgres.url, 4).expect("pool");
    let redis = Redis::connect(&support::redis_url()).await.expect("redis");
    let (address, shutdown) = serve_queue_service(database, Some(redis)).await;
    support::wait_for_health(address, ServingStatus::Serving).await;
    shutdown.cancel();
    postgres.drop_database().await;
}

#[tokio::test]
async fn health_follows_redis_through_an_outage() {
    let redis_target: SocketAddr = support::redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("redis address");
    let proxy = CuttableProxy::start(redis_target).await;
    proxy.restore();
    let redis = Redis::connect(&format!("redis://{}", proxy.address))
        .await
        .expect("redis through the proxy");
    let dir = tempfile::tempdir().expect("tempdir");
    let database = Database::connect_lazy(
        &format!("sqlite://{}", dir.path().join("h.db").display()),
        2,
    )
    .expect("pool");
    let (address, shutdown) = serve_queue_service(database, Some(redis)).await;
    support::wait_until_serving(address).await;

    proxy.cut();
    support::wait_for_health(address, ServingStatus::NotServing).await;

    // The connection manager reconnects by itself once Redis is back.
    proxy.restore();
    support::wait_until_serving(address).await;
    shutdown.cancel();
}
