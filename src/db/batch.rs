//! Group commit: writes queued from many requests go to the database in one
//! transaction, so a burst of publishes costs one sync, not one per event.
//! A batch that takes longer than [`DB_TIMEOUT`] fails, so a hung database
//! answers its waiters with an error instead of holding them forever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::DB_TIMEOUT;

/// How a writer gathers rows into one transaction.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most rows in one transaction.
    pub max: usize,
    /// When at least `linger_from` rows were waiting, how long the writer
    /// waits for more before it commits: fewer, larger transactions once it
    /// is busy; at once otherwise.
    pub linger: Duration,
    /// See `linger`.
    pub linger_from: usize,
}

impl Batching {
    /// Whatever is waiting, up to 1,024 rows, at once: for writes a request
    /// waits for.
    pub const AT_ONCE: Self = Self {
        max: 1024,
        linger: Duration::ZERO,
        linger_from: usize::MAX,
    };
}

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
    /// Starts a writer task that calls `write` with each batch, gathered as
    /// `batching` says. The task ends, having written everything queued, once
    /// every `BatchWriter` is dropped.
    pub fn spawn<W, F, E>(queue: usize, batching: Batching, write: W) -> (Self, JoinHandle<()>)
    where
        W: Fn(Vec<T>) -> F + Send + 'static,
        F: Future<Output = Result<(), E>> + Send,
        E: std::fmt::Display,
    {
        Self::spawn_with_deadline(queue, batching, DB_TIMEOUT, write)
    }

    /// [`BatchWriter::spawn`], with a batch failing after `deadline`.
    fn spawn_with_deadline<W, F, E>(
        queue: usize,
        batching: Batching,
        deadline: Duration,
        write: W,
    ) -> (Self, JoinHandle<()>)
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
                    if items.len() < batching.max {
                        job = rx.try_recv().ok();
                    }
                }
                if flushed.is_none() && items.len() >= batching.linger_from {
                    // Asleep for the whole linger: a row queued meanwhile
                    // wakes nobody (a wake-up per row costs the requests'
                    // threads more than the rows do).
                    tokio::time::sleep(batching.linger).await;
                    while items.len() < batching.max {
                        match rx.try_recv() {
                            Ok(Job::Item(item, done)) => {
                                items.push(item);
                                waiters.extend(done);
                            }
                            Ok(Job::Flush(done)) => {
                                flushed = Some(done);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
                if !items.is_empty() {
                    let outcome = match tokio::time::timeout(deadline, write(items)).await {
                        Ok(written) => {
                            written.map_err(|e| BatchError::Failed(e.to_string().into()))
                        }
                        Err(_) => Err(BatchError::Failed(
                            format!("the database did not answer within {deadline:?}").into(),
                        )),
                    };
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

    /// Queues `item`, waiting for room in the queue (not for the commit).
    pub async fn queue(&self, item: T) -> Result<(), BatchError> {
        self.jobs
            .send(Job::Item(item, None))
            .await
            .map_err(|_| BatchError::Stopped)
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
        let (writer, task) = BatchWriter::spawn(64, Batching::AT_ONCE, move |items: Vec<u32>| {
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

    #[tokio::test(start_paused = true)]
    async fn a_busy_writer_lingers_for_more_rows() {
        let batches = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let seen = batches.clone();
        let batching = Batching {
            max: 64,
            linger: Duration::from_millis(200),
            linger_from: 4,
        };
        let (writer, _task) = BatchWriter::spawn(64, batching, move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                seen.lock().map_err(|_| "poisoned")?.push(items);
                Ok::<_, &str>(())
            }
        });
        for i in 0..5 {
            writer.enqueue(i).expect("queued");
        }
        // The writer takes the five, and lingers (the paused clock moves on
        // once every task waits).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        for i in 5..10 {
            writer.enqueue(i).expect("queued");
        }
        writer.flush().await;
        let batches = batches.lock().expect("lock");
        assert_eq!(
            *batches,
            vec![(0..10).collect::<Vec<_>>()],
            "one transaction"
        );
    }

    fn seen_len(batches: &Mutex<Vec<Vec<u32>>>) -> usize {
        batches.lock().expect("lock").iter().map(Vec::len).sum()
    }

    #[tokio::test]
    async fn a_hung_transaction_fails_after_the_deadline_and_the_writer_goes_on() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let deadline = Duration::from_millis(50);
        let (writer, _task) = BatchWriter::spawn_with_deadline(
            8,
            Batching::AT_ONCE,
            deadline,
            move |_items: Vec<u32>| {
                let first = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                async move {
                    if first {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, &str>(())
                }
            },
        );
        let err = writer.write(1).await.expect_err("the hung write fails");
        assert!(err.to_string().contains("did not answer"), "{err}");
        writer.write(2).await.expect("the next write goes through");
    }

    #[tokio::test]
    async fn a_full_queue_makes_queue_wait_for_room() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let open = gate.clone();
        let (writer, _task) = BatchWriter::spawn(1, Batching::AT_ONCE, move |_items: Vec<u32>| {
            let gate = open.clone();
            async move {
                let _permit = gate.acquire().await.map_err(|_| "closed")?;
                Ok::<_, &str>(())
            }
        });
        // One item in the stalled write, one in the queue: the queue is full.
        writer.queue(1).await.expect("queued");
        tokio::task::yield_now().await;
        writer.queue(2).await.expect("queued");
        assert!(matches!(writer.enqueue(3), Err(BatchError::Full)));
        let waiting = tokio::spawn({
            let writer = writer.clone();
            async move { writer.queue(3).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "waits for room, never drops");
        gate.add_permits(8);
        waiting
            .await
            .expect("task")
            .expect("queued once there is room");
    }

    #[tokio::test]
    async fn a_failed_transaction_is_reported_to_every_waiter() {
        let (writer, _task) = BatchWriter::spawn(8, Batching::AT_ONCE, |_items: Vec<u32>| async {
            Err::<(), _>("disk full")
        });
        let err = writer.write(1).await.expect_err("fails");
        assert_eq!(err.to_string(), "disk full");
    }
}
