//! Domain values to their protobuf messages.

use admesh_common::time::timestamp;
use admesh_proto::queue::v1 as pb;

use crate::{
    job::{Job, JobStatus},
    records::StoredJobEvent,
    store::{JobView, Lease},
};

/// `millis` as a protobuf duration.
pub fn duration(millis: i64) -> prost_types::Duration {
    let millis = millis.max(0);
    prost_types::Duration {
        seconds: millis / 1000,
        nanos: i32::try_from((millis % 1000) * 1_000_000).unwrap_or(0),
    }
}

/// A job as the API shows it at `now`, with its estimated start from the
/// processing rate (jobs per second; none when nothing completed lately).
pub fn job(view: &JobView, now: i64, processing_rate: f64) -> pb::AdJob {
    let job: &Job = &view.job;
    let estimated_process_time = match (job.status, view.position) {
        (JobStatus::Queued, Some(position)) if processing_rate > 0.0 => {
            let wait_ms = ((position.saturating_sub(1)) as f64 / processing_rate * 1000.0) as i64;
            let start = job.not_before.unwrap_or(now).max(now) + wait_ms;
            Some(timestamp(start))
        }
        _ => None,
    };
    pb::AdJob {
        ad_id: job.id.clone(),
        title: job.title.clone(),
        description: job.description.clone(),
        game_family: job.game_family.clone(),
        target_audience: job.target_audience.clone(),
        visual_elements: job.visual_elements.clone(),
        call_to_action: job.call_to_action.clone(),
        duration: job.duration,
        priority: i32::from(job.priority),
        max_wait_time: job.max_wait_secs,
        status: job.status.to_proto() as i32,
        attempt: job.attempt,
        version: job.version,
        created_at: Some(timestamp(job.created_at)),
        queued_at: Some(timestamp(job.queued_at)),
        processing_started_at: job.processing_started_at.map(timestamp),
        processed_at: job.processed_at.map(timestamp),
        progress: job.progress,
        progress_message: job.progress_message.clone(),
        analysis: job.analysis.as_ref().map(|analysis| analysis.to_proto()),
        last_error: job.last_error.clone(),
        position: view.position,
        wait_time: Some(duration(job.wait_ms(now))),
        estimated_process_time,
        not_before: job.not_before.filter(|due| *due > now).map(timestamp),
    }
}

pub fn lease(lease: &Lease, now: i64) -> pb::JobLease {
    pb::JobLease {
        lease_id: lease.lease_id.clone(),
        job: Some(job(
            &JobView {
                job: lease.job.clone(),
                position: None,
            },
            now,
            0.0,
        )),
        expires_at: Some(timestamp(lease.expires_at)),
    }
}

pub fn event(event: StoredJobEvent) -> pb::JobEvent {
    pb::JobEvent {
        ad_id: event.ad_id,
        kind: event.kind,
        status: event.status.to_proto() as i32,
        attempt: event.attempt,
        cause: event.cause,
        detail: event.detail,
        time: Some(timestamp(event.time)),
    }
}
