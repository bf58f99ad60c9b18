//! A channel over a list of replicas (`http://a,http://b`) keeps working
//! when the replica it used fails and another comes back.

mod support;

use std::time::Duration;

use support::CuttableProxy;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A gRPC health server on a loopback port, behind a proxy that can cut
/// every connection (a replica that dies and comes back).
async fn replica() -> CuttableProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (_reporter, service) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(admesh_common::nodelay_incoming(listener))
            .await;
    });
    let proxy = CuttableProxy::start(address).await;
    proxy.restore();
    proxy
}

async fn answers(client: &HealthClient<tonic::transport::Channel>) -> bool {
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.set_timeout(Duration::from_secs(1));
    client.clone().check(request).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_failed_and_came_back_takes_calls_again() {
    let (first, second) = (replica().await, replica().await);
    let client = HealthClient::new(
        admesh_common::lazy_channel(&format!(
            "http://{},http://{}",
            first.address, second.address
        ))
        .expect("channel"),
    );
    let within = Duration::from_secs(30);
    support::eventually("both replicas up", within, || async {
        answers(&client).await.then_some(())
    })
    .await;

    // The second fails: the balancer drops it; calls go on through the first.
    second.cut();
    for _ in 0..20 {
        answers(&client).await;
    }
    support::eventually("the first replica alone", within, || async {
        answers(&client).await.then_some(())
    })
    .await;

    // The first fails and the second comes back: calls reach it again.
    first.cut();
    second.restore();
    support::eventually("the second replica back", within, || async {
        answers(&client).await.then_some(())
    })
    .await;
}
