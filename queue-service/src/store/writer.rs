//! Group commit: changes from many concurrent calls go to SQL in one
//! transaction, and each call returns once its change is committed. One
//! writer task, so changes reach SQL in the order they were made.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::records::{JobRecords, WriteBatch};

/// Most job rows merged into one transaction.
const MAX_JOBS_PER_COMMIT: usize = 4_096;

type Reply = oneshot::Sender<Result<(), String>>;

/// Sends changes to the writer task.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    sender: mpsc::UnboundedSender<(WriteBatch, Reply)>,
}

impl GroupCommit {
    /// Starts the writer task.
    pub fn spawn(records: JobRecords) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(records, receiver));
        Self { sender }
    }

    /// Queues `batch` for the next commit, in call order. Cheap and
    /// synchronous, so callers can enqueue while holding their state lock
    /// (which keeps SQL in the order of the changes).
    pub fn enqueue(&self, batch: WriteBatch) -> Pending {
        let (reply, done) = oneshot::channel();
        if batch.is_empty() {
            let _ = reply.send(Ok(()));
        } else if self.sender.send((batch, reply)).is_err() {
            let (reply, done) = oneshot::channel();
            let _ = reply.send(Err("the SQL writer has stopped".into()));
            return Pending { done };
        }
        Pending { done }
    }
}

impl GroupCommit {
    /// Completes once everything queued before it is committed.
    pub fn barrier(&self) -> Pending {
        let (reply, done) = oneshot::channel();
        if self.sender.send((WriteBatch::default(), reply)).is_err() {
            let (reply, done) = oneshot::channel();
            let _ = reply.send(Err("the SQL writer has stopped".into()));
            return Pending { done };
        }
        Pending { done }
    }
}

/// A queued change; await [`Pending::committed`].
#[derive(Debug)]
pub struct Pending {
    done: oneshot::Receiver<Result<(), String>>,
}

impl Pending {
    pub async fn committed(self) -> anyhow::Result<()> {
        match self.done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(anyhow::anyhow!("writing the queue to SQL: {error}")),
            Err(_) => Err(anyhow::anyhow!("the SQL writer has stopped")),
        }
    }
}

async fn write_loop(
    records: JobRecords,
    mut receiver: mpsc::UnboundedReceiver<(WriteBatch, Reply)>,
) {
    // A batch that failed stays and is written again with what follows, so
    // SQL catches up with memory once the database is back.
    let mut carried = WriteBatch::default();
    let mut failures = 0u32;
    loop {
        let mut batch = std::mem::take(&mut carried);
        let mut replies = Vec::new();
        if batch.is_empty() {
            match receiver.recv().await {
                Some((first, reply)) => {
                    batch.extend(first);
                    replies.push(reply);
                }
                None => return,
            }
        }
        while batch.jobs.len() < MAX_JOBS_PER_COMMIT {
            match receiver.try_recv() {
                Ok((more, reply)) => {
                    batch.extend(more);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        match records.write(&mut batch).await {
            Ok(()) => {
                failures = 0;
                // Written: the events must not be written again.
                drop(batch);
                for reply in replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(error) => {
                failures += 1;
                tracing::error!(error = %format!("{error:#}"), "queue write to SQL failed; retrying");
                for reply in replies {
                    let _ = reply.send(Err(format!("{error:#}")));
                }
                carried = batch;
                let backoff = Duration::from_millis(50 * u64::from(failures.min(40)));
                tokio::time::sleep(backoff).await;
            }
        }
    }
}
