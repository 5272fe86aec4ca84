//! The sign-up writer: requests hand their validated sign-ups to a few
//! writer threads, each of which takes whatever has queued up (up to a
//! batch size, optionally waiting a short window for more) and commits it
//! in one transaction (group commit). A request is answered only after its
//! batch committed; errors stay per sign-up (see `db::repo::signup::batch`).
//!
//! On SQLite there is one writer, the database's single writer anyway; on
//! PostgreSQL several, so one batch is being collected while another
//! commits.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::db::repo::signup::{PendingSignup, SignupError, SignupOutcome, record_batch};
use crate::db::{DbError, DbPool};

/// Sign-ups waiting for a writer, at most; past that a sign-up is answered
/// 503 at once rather than queued without bound.
const QUEUE_CAPACITY: usize = 4096;

/// How the writer batches.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Writer threads.
    pub writers: usize,
    /// Most sign-ups in one transaction.
    pub max_batch: usize,
    /// How long a writer waits for more sign-ups once it has one and the
    /// queue is empty (zero: commit what has queued up at once).
    pub window: Duration,
}

type Answer = Result<SignupOutcome, SignupError>;

struct Job {
    pending: PendingSignup,
    reply: oneshot::Sender<Answer>,
}

/// The handle requests record sign-ups through.
pub struct SignupWriter {
    queue: SyncSender<Job>,
}

impl SignupWriter {
    /// Starts the writer threads on `pool`.
    pub fn start(pool: DbPool, config: WriterConfig) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::sync_channel(QUEUE_CAPACITY);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..config.writers.max(1) {
            let pool = pool.clone();
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(format!("signup-writer-{n}"))
                .spawn(move || write_loop(&pool, &jobs, config))?;
        }
        Ok(SignupWriter { queue })
    }

    /// Records one sign-up with whatever others commit alongside it.
    pub async fn record(&self, pending: PendingSignup) -> Answer {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { pending, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(unavailable("the sign-up queue is full")),
            Err(TrySendError::Disconnected(_)) => {
                return Err(unavailable("the sign-up writer has stopped"));
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(unavailable("the sign-up writer has stopped")))
    }
}

fn unavailable(why: &str) -> SignupError {
    SignupError::Db(DbError::Unavailable(why.to_owned()))
}

fn write_loop(pool: &DbPool, jobs: &Mutex<Receiver<Job>>, config: WriterConfig) {
    while let Some(batch) = next_batch(jobs, config) {
        let (pending, replies): (Vec<PendingSignup>, Vec<_>) = batch
            .into_iter()
            .map(|job| (job.pending, job.reply))
            .unzip();
        let answers = match pool.get() {
            Ok(mut conn) => {
                std::panic::catch_unwind(AssertUnwindSafe(|| record_batch(&mut conn, &pending)))
                    .unwrap_or_else(|_| {
                        tracing::error!(
                            size = pending.len(),
                            "recording a batch of sign-ups panicked"
                        );
                        pending
                            .iter()
                            .map(|_| Err(unavailable("internal error")))
                            .collect()
                    })
            }
            Err(error) => {
                // The database is out of reach: answer everything queued now
                // instead of making each batch wait out the pool timeout.
                let why = error.to_string();
                tracing::warn!(error = %why, "no database connection for the sign-up writer");
                fail_queued(jobs, &why);
                pending.iter().map(|_| Err(unavailable(&why))).collect()
            }
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            // The client may have gone; its sign-up is recorded all the same.
            let _ = reply.send(answer);
        }
    }
}

/// Waits for the first sign-up, then takes what follows up to the batch
/// size. `None` once every sender is gone.
fn next_batch(jobs: &Mutex<Receiver<Job>>, config: WriterConfig) -> Option<Vec<Job>> {
    let jobs = jobs.lock().unwrap_or_else(PoisonError::into_inner);
    let first = jobs.recv().ok()?;
    let mut batch = Vec::with_capacity(config.max_batch.min(64));
    batch.push(first);
    let deadline = Instant::now() + config.window;
    while batch.len() < config.max_batch {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match jobs.recv_timeout(left) {
                    Ok(job) => batch.push(job),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
    }
    Some(batch)
}

fn fail_queued(jobs: &Mutex<Receiver<Job>>, why: &str) {
    // Another writer holding the queue is waiting for a sign-up: nothing
    // is queued then.
    let Ok(jobs) = jobs.try_lock() else {
        return;
    };
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(Err(unavailable(why)));
    }
}
