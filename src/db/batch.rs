//! Group commit: writes queued from many requests go to the database in one
//! transaction, so a burst of publishes costs one sync, not one per event.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Most rows written in one transaction.
const MAX_BATCH: usize = 1024;

/// Why a queued write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    /// The writer has stopped (shutdown).
    #[error("the writer has stopped")]
    Stopped,
    /// The queue is full.
    #[error("the write queue is full")]
    Full,
    /// The transaction failed.
    #[error("{0}")]
    Failed(Arc<str>),
}

enum Job<T> {
    /// A row, and who waits for its commit.
    Item(T, Option<oneshot::Sender<Result<(), BatchError>>>),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The sending side of a batch writer; cheap to clone.
pub struct BatchWriter<T> {
    jobs: mpsc::Sender<Job<T>>,
}

impl<T> Clone for BatchWriter<T> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<T> std::fmt::Debug for BatchWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> BatchWriter<T> {
    /// Starts a writer task that calls `write` with each batch. The task ends,
    /// having written everything queued, once every `BatchWriter` is dropped.
    pub fn spawn<W, F, E>(queue: usize, write: W) -> (Self, JoinHandle<()>)
    where
        W: Fn(Vec<T>) -> F + Send + 'static,
        F: Future<Output = Result<(), E>> + Send,
        E: std::fmt::Display,
    {
        let (jobs, mut rx) = mpsc::channel::<Job<T>>(queue);
        let task = tokio::spawn(async move {
            let mut next = rx.recv().await;
            while let Some(job) = next.take() {
                let mut items = Vec::new();
                let mut waiters = Vec::new();
                let mut flushed = None;
                let mut job = Some(job);
                while let Some(current) = job.take() {
                    match current {
                        Job::Item(item, done) => {
                            items.push(item);
                            waiters.extend(done);
                        }
                        Job::Flush(done) => {
                            flushed = Some(done);
                            break;
                        }
                    }
                    if items.len() < MAX_BATCH {
                        job = rx.try_recv().ok();
                    }
                }
                if !items.is_empty() {
                    let outcome = write(items)
                        .await
                        .map_err(|e| BatchError::Failed(e.to_string().into()));
                    for waiter in waiters {
                        let _ = waiter.send(outcome.clone());
                    }
                }
                if let Some(done) = flushed {
                    let _ = done.send(());
                }
                next = rx.recv().await;
            }
        });
        (Self { jobs }, task)
    }

    /// Queues `item` and waits until its transaction committed.
    pub async fn write(&self, item: T) -> Result<(), BatchError> {
        let (done, written) = oneshot::channel();
        self.jobs
            .send(Job::Item(item, Some(done)))
            .await
            .map_err(|_| BatchError::Stopped)?;
        written.await.map_err(|_| BatchError::Stopped)?
    }

    /// Waits until everything queued so far is written.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.jobs.send(Job::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// Queues `item` without waiting; refuses when the queue is full.
    pub fn enqueue(&self, item: T) -> Result<(), BatchError> {
        self.jobs
            .try_send(Job::Item(item, None))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BatchError::Full,
                mpsc::error::TrySendError::Closed(_) => BatchError::Stopped,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn queued_items_are_written_in_batches_and_flushed_at_the_end() {
        let batches = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let seen = batches.clone();
        let (writer, task) = BatchWriter::spawn(64, move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                seen.lock().map_err(|_| "poisoned")?.push(items);
                Ok::<_, &str>(())
            }
        });
        for i in 0..10 {
            writer.enqueue(i).expect("queued");
        }
        writer.write(10).await.expect("written");
        writer.enqueue(11).expect("queued");
        writer.flush().await;
        assert_eq!(seen_len(&batches), 12, "flush waits for what was queued");
        drop(writer);
        task.await.expect("the task ends");
        let batches = batches.lock().expect("lock");
        let all: Vec<u32> = batches.iter().flatten().copied().collect();
        assert_eq!(all, (0..=11).collect::<Vec<_>>());
        assert!(
            batches.len() < 11,
            "some items shared a transaction: {batches:?}"
        );
    }

    fn seen_len(batches: &Mutex<Vec<Vec<u32>>>) -> usize {
        batches.lock().expect("lock").iter().map(Vec::len).sum()
    }

    #[tokio::test]
    async fn a_failed_transaction_is_reported_to_every_waiter() {
        let (writer, _task) =
            BatchWriter::spawn(8, |_items: Vec<u32>| async { Err::<(), _>("disk full") });
        let err = writer.write(1).await.expect_err("fails");
        assert_eq!(err.to_string(), "disk full");
    }
}
