//! The mesh's channels keep working when a replica fails and comes back:
//! one replica (`http://a`, calls straight onto one connection) and a list
//! of replicas (`http://a,http://b`, balanced).

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

async fn answers(client: &HealthClient<admesh_common::MeshChannel>) -> bool {
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

/// One replica: calls go straight onto one shared connection. While the
/// replica is away every call fails UNAVAILABLE (a lost connection is not
/// an unknown error); once it is back, the next calls connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_that_failed_and_came_back_takes_calls_again() {
    let replica = replica().await;
    let channel =
        admesh_common::lazy_channel(&format!("http://{}", replica.address)).expect("channel");
    assert!(
        matches!(channel, admesh_common::MeshChannel::Direct(_)),
        "one URL makes a direct channel"
    );
    let client = HealthClient::new(channel);
    let within = Duration::from_secs(30);
    support::eventually("the replica up", within, || async {
        answers(&client).await.then_some(())
    })
    .await;

    replica.cut();
    for _ in 0..5 {
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        request.set_timeout(Duration::from_secs(5));
        let status = client
            .clone()
            .check(request)
            .await
            .expect_err("the replica is cut off");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }

    replica.restore();
    support::eventually("the replica back", within, || async {
        answers(&client).await.then_some(())
    })
    .await;
    // Calls from many tasks at once all go through the new connection.
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { answers(&client).await })
        })
        .collect();
    for call in calls {
        assert!(
            call.await.expect("call task"),
            "a call after the replica came back"
        );
    }
}

/// An unreachable replica answers UNAVAILABLE at once, without a server.
#[tokio::test]
async fn a_replica_nobody_listens_on_answers_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    let mut client = HealthClient::new(
        admesh_common::lazy_channel(&format!("http://{address}")).expect("channel"),
    );
    let status = client
        .check(HealthCheckRequest::default())
        .await
        .expect_err("nobody listens");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&address.to_string()),
        "{status:?}"
    );
}
