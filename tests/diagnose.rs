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
        assert_eq!(service.error_rate, None, "error rates are not measured yet");
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
