//! `Diagnose` reports what it measured and nothing it did not: every
//! service's health, and the queue backlog only when the queue-service
//! gives it.

mod support;

use admesh_proto::{
    agent::v1::{DiagnoseRequest, agent_service_client::AgentServiceClient},
    queue::v1::{GetQueueStatsRequest, queue_service_client::QueueServiceClient},
};
use support::Mesh;

fn channel(url: String) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url)
        .expect("endpoint")
        .connect_lazy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_reports_health_and_only_measured_figures() {
    let mesh = Mesh::start(&[]);
    for (name, _) in support::GRPC_SERVICES {
        support::wait_until_serving(mesh.address(name)).await;
    }
    let diagnosis = AgentServiceClient::new(channel(mesh.url("agent-service")))
        .diagnose(DiagnoseRequest {})
        .await
        .expect("diagnose")
        .into_inner();
    assert_eq!(diagnosis.overall, "healthy", "{diagnosis:?}");
    assert_eq!(diagnosis.services.len(), 4);
    for service in &diagnosis.services {
        assert_eq!(service.status, "serving", "{service:?}");
        assert!(service.latency.is_some());
    }
    // Real traffic, then the figures come from the services' own metrics.
    let mut server = admesh_proto::adserver::v1::ad_server_client::AdServerClient::new(channel(
        mesh.url("ad-server"),
    ));
    for n in 0..20 {
        server
            .serve(support::serve_request(&format!("diagnose-{n}"), "home"))
            .await
            .expect("serve");
    }
    let diagnosis = AgentServiceClient::new(channel(mesh.url("agent-service")))
        .diagnose(DiagnoseRequest {})
        .await
        .expect("diagnose")
        .into_inner();
    for name in ["ad-server", "bid-engine"] {
        let service = diagnosis
            .services
            .iter()
            .find(|s| s.service == name)
            .expect("checked");
        assert_eq!(service.error_rate, Some(0.0), "{service:?}");
        assert!(service.p99_latency.is_some(), "{service:?}");
    }

    let stats = QueueServiceClient::new(channel(mesh.url("queue-service")))
        .get_queue_stats(GetQueueStatsRequest {})
        .await;
    match stats {
        Ok(stats) => assert_eq!(diagnosis.queue_backlog, Some(stats.into_inner().total)),
        Err(_) => {
            assert_eq!(diagnosis.queue_backlog, None);
            assert!(
                diagnosis
                    .findings
                    .iter()
                    .any(|f| f.title == "queue backlog unknown"),
                "{:?}",
                diagnosis.findings
            );
        }
    }
}
