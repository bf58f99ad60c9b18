//! One conformance test for both event streams (SPEC §5): events come out in
//! order, an append is one entry acknowledged as a whole, acknowledged
//! entries are not delivered again, and after a restart the unacknowledged
//! ones are delivered again (at-least-once).

mod support;

use std::time::Duration;

use admesh_common::{
    Database, Redis,
    events::{EventStream, RedisEventStream, SqlEventStream},
};
use admesh_proto::analytics::v1::{AdEvent, EventType};

fn event(n: usize) -> AdEvent {
    AdEvent {
        event_id: format!("event-{n}"),
        event_type: EventType::Impression as i32,
        campaign_id: "c-1".into(),
        spend: n as i64,
        ..Default::default()
    }
}

const BLOCK: Duration = Duration::from_millis(200);

/// `open` makes a fresh handle on the same stream: a restarted consumer.
async fn conforms<S, F, Fut>(open: F)
where
    S: EventStream,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    let stream = open().await;
    // One entry per append: events 1 and 2 on their own, 3 and 4 together.
    stream.append(&[event(1)]).await.expect("append");
    stream.append(&[event(2)]).await.expect("append");
    stream.append(&[event(3), event(4)]).await.expect("append");
    let read = stream.read("consumer-1", 10, BLOCK).await.expect("read");
    let ids: Vec<_> = read
        .iter()
        .map(|entry| entry.event.event_id.as_str())
        .collect();
    assert_eq!(ids, ["event-1", "event-2", "event-3", "event-4"]);
    assert_eq!(read[1].event, event(2));
    assert_eq!(read[2].id, read[3].id, "a batch is one entry");
    assert_ne!(read[1].id, read[2].id);
    // Acknowledging an entry once per event, as consumers do.
    stream
        .ack(&[read[0].id.clone(), read[2].id.clone(), read[3].id.clone()])
        .await
        .expect("ack");
    assert!(
        stream
            .read("consumer-1", 10, BLOCK)
            .await
            .expect("read")
            .is_empty(),
        "nothing new"
    );

    let restarted = open().await;
    let again = restarted.read("consumer-1", 10, BLOCK).await.expect("read");
    let ids: Vec<_> = again
        .iter()
        .map(|entry| entry.event.event_id.as_str())
        .collect();
    assert_eq!(ids, ["event-2"], "the unacknowledged event comes back");
    restarted.ack(&[again[0].id.clone()]).await.expect("ack");
    assert!(
        restarted
            .read("consumer-1", 10, BLOCK)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        open()
            .await
            .read("consumer-1", 10, BLOCK)
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_event_stream_delivers_at_least_once() {
    let data = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", data.path().join("events.db").display());
    let database = Database::connect_and_migrate(&url, 2)
        .await
        .expect("SQLite");
    conforms(|| async { SqlEventStream::new(database.clone()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_event_stream_delivers_at_least_once() {
    let redis = Redis::connect(&support::redis_url()).await.expect("Redis");
    let key = format!("admesh:test-events:{}", uuid::Uuid::new_v4().simple());
    conforms(|| async { RedisEventStream::with_key(redis.clone(), &key) }).await;
    let mut connection = redis.connection();
    let _: redis::RedisResult<i64> = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut connection)
        .await;
}
