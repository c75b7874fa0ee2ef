//! Batching of concurrent writes: requests that arrive while a write is under way go together
//! in the next one, so a busy relay makes one round trip and one commit per batch, not per
//! request. One write at a time: the batch grows with the write's duration, and parallel
//! writes would only split it (and pay the per-statement cost more often).

use std::future::Future;

use deadpool_postgres::{Object, Pool};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

type Job<J, A> = (J, oneshot::Sender<A>);

pub struct Batcher<J, A> {
    tx: mpsc::UnboundedSender<Job<J, A>>,
    task: tokio::task::JoinHandle<()>,
}

impl<J: Send + 'static, A: Send + 'static> Batcher<J, A> {
    /// Starts the task that takes what is queued (up to `max` by `weight`) and hands it to
    /// `write`, which answers each job in order.
    pub fn start<W, F>(max: usize, weight: fn(&J) -> usize, write: W) -> Self
    where
        W: Fn(Vec<J>) -> F + Send + 'static,
        F: Future<Output = Vec<A>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel::<Job<J, A>>();
        let task = tokio::spawn(run(rx, max, weight, write));
        Batcher { tx, task }
    }

    /// Queues `job`; resolves with its answer once its batch is written.
    pub async fn submit(&self, job: J) -> Result<A, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((job, tx)).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn run<J, A, W, F>(
    mut rx: mpsc::UnboundedReceiver<Job<J, A>>,
    max: usize,
    weight: fn(&J) -> usize,
    write: W,
) where
    W: Fn(Vec<J>) -> F,
    F: Future<Output = Vec<A>>,
{
    while let Some(first) = rx.recv().await {
        let mut n = weight(&first.0);
        let mut jobs = vec![first];
        while n < max {
            match rx.try_recv() {
                Ok(job) => {
                    n += weight(&job.0);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (batch, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        for (reply, answer) in replies.into_iter().zip(write(batch).await) {
            let _ = reply.send(answer);
        }
    }
}

/// A connection for one batch's write; the error is the batch's answer.
pub async fn connection(pool: &Pool) -> Result<Object, String> {
    pool.get()
        .await
        .map_err(|e| format!("no database connection: {e}"))
}
