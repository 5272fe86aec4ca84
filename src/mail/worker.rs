//! The outbox worker for mail: claims due rows under a lease, sends
//! outside any transaction, records the outcome; retries with exponential
//! backoff and moves a row to `dead` after the configured attempts. Nothing
//! is dropped.
//!
//! `assent serve` runs it as a pipeline of three stages, so that the relay
//! never waits for the database nor the database for the relay: one claims
//! due rows and builds their messages ahead (up to five batches claimed
//! and not yet recorded), one task per SMTP connection sends them, and one
//! records what was sent, many rows per transaction. [`dispatch_due`] runs
//! the same steps once, one after the other (tests drive the outbox so).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::NaiveDateTime;
use tokio::sync::{Mutex, Notify, mpsc, watch};

use crate::clock::naive;
use crate::context::SharedContext;
use crate::db::models::OutboxRow;
use crate::db::repo::confirm::{self, ConfirmationMailContext, ConfirmationSent};
use crate::db::repo::outbox::{self, OutboxKind};
use crate::db::{Backend, DbError, retry, with_index_lookups, write_transaction};
use crate::delivery::{self, WorkerError, backoff};
use crate::domain::SubscriptionState;
use crate::mail::smtp::{Chain, Progress};
use crate::mail::{Mailer, Outgoing, SendError, message};
use crate::metrics::Metrics;
use crate::telemetry::spawn_blocking_in_span;
use crate::tokens::Purpose;

/// The mail kinds of outbox rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MailKind {
    Confirmation,
    Welcome,
}

/// A claimed row, ready to send or to be settled without sending.
enum Prepared {
    Send {
        row: OutboxRow,
        mail: Outgoing,
        context: ConfirmationMailContext,
    },
    /// Cannot be delivered any more (erased subscriber, subscription no
    /// longer pending): cancelled, kept for the record.
    Cancel { row: OutboxRow, reason: String },
    /// Could not be built (a template or data problem): counts as a failed
    /// attempt so it ends in `dead` if it never works.
    Fail { row: OutboxRow, error: String },
}

/// Runs until `shutdown` turns true, then gives back its leases: the
/// sends under way finish, messages claimed but not yet sent are left for
/// the next start (or another instance), and everything sent is recorded
/// first.
pub async fn run(ctx: SharedContext, shutdown: watch::Receiver<bool>) {
    let connections = ctx.settings.mail.smtp_pool_max_size.max(1) as usize;
    tracing::info!(instance = %ctx.instance_id, mailer = ctx.mailer.kind(), connections, "outbox worker started");
    let batch = ctx.settings.outbox.batch_size.max(1) as usize;
    let in_flight = Count::default();
    let unrecorded = Count::default();
    let (to_send, queue) = mpsc::channel::<Prepared>(batch);
    let queue = Mutex::new(queue);
    let (to_record, inboxes) = ToRecord::new(recorders(&ctx));
    let senders = futures_util::future::join_all((0..connections).map(|_| {
        send_queued(
            &ctx,
            &queue,
            to_record.clone(),
            Stages {
                in_flight: &in_flight,
                unrecorded: &unrecorded,
            },
            UNRECORDED_BATCHES * batch,
            shutdown.clone(),
        )
    }));
    drop(to_record);
    tokio::join!(
        claim_ahead(&ctx, to_send, &in_flight, batch, shutdown),
        senders,
        futures_util::future::join_all(inboxes.into_iter().map(|inbox| {
            record_sent_behind(
                &ctx,
                inbox,
                Stages {
                    in_flight: &in_flight,
                    unrecorded: &unrecorded,
                },
            )
        })),
    );
    let mut queue = queue.into_inner();
    let mut unsent = Vec::new();
    while let Ok(item) = queue.try_recv() {
        unsent.push(item.into_row());
    }
    release_unsent(&ctx, unsent).await;
    delivery::release_leases(&ctx, "mail", &OutboxKind::MAIL).await;
}

/// Gives back claimed rows that were never tried (see
/// `outbox::release_unsent`).
async fn release_unsent(ctx: &SharedContext, rows: Vec<OutboxRow>) {
    if rows.is_empty() {
        return;
    }
    let pool = ctx.pool.clone();
    let owner = ctx.instance_id.clone();
    let released = spawn_blocking_in_span(move || {
        let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
        let mut conn = pool.get().map_err(DbError::from)?;
        outbox::release_unsent(&mut conn, &owner, &ids)
    })
    .await;
    match released {
        Ok(Ok(n)) => tracing::debug!(released = n, "claimed mail given back unsent"),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "could not give back unsent mail; its leases will expire")
        }
        Err(_) => tracing::warn!("could not give back unsent mail; its leases will expire"),
    }
}

/// A number of rows between two stages, which a stage can wait to fall.
#[derive(Default)]
struct Count {
    rows: AtomicUsize,
    fell: Notify,
}

impl Count {
    fn add(&self, n: usize) {
        self.rows.fetch_add(n, Ordering::SeqCst);
    }

    fn sub(&self, n: usize) {
        self.rows.fetch_sub(n, Ordering::SeqCst);
        self.fell.notify_waiters();
    }

    /// Waits until the count is at most `limit`, or shutdown began.
    async fn wait_until_at_most(&self, limit: usize, shutdown: &mut watch::Receiver<bool>) {
        loop {
            let fell = self.fell.notified();
            tokio::pin!(fell);
            fell.as_mut().enable();
            if self.rows.load(Ordering::SeqCst) <= limit || *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = fell => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// The counts the send and record stages keep.
#[derive(Clone, Copy)]
struct Stages<'a> {
    /// Rows claimed and not yet settled (recorded sent, failed, cancelled
    /// or given back).
    in_flight: &'a Count,
    /// Messages the relay accepted that are not yet recorded as sent:
    /// what a crash would send a second time. The senders wait while too
    /// many are (a database slower than the relay, or busy: SQLite's
    /// single writer), which bounds the duplicates a crash can cause.
    unrecorded: &'a Count,
}

/// How many batches of sent messages may wait to be recorded before the
/// senders wait for the record stage: what a crash can cause to be sent
/// twice (see `Stages`), 1,024 messages by default, each again with its
/// Message-ID. One batch held the senders up while a transaction recorded
/// the batch before: since each message takes one round trip, four record
/// transactions of up to 1,000 rows instead of 256 were measured to deliver
/// 14 % more (docs/performance.md).
const UNRECORDED_BATCHES: usize = 4;

/// How many batches may be claimed and not yet recorded when the claim
/// stage claims the next one. Enough that the senders never wait for a
/// claim (which reads and builds a whole batch on one thread while they
/// send the ones before; one batch was measured to leave them idle), few
/// enough that a slow relay holds few rows under lease: at most five
/// batches, 1,280 messages of a few kilobytes each by default.
const BATCHES_AHEAD: usize = 4;

/// The first stage: claims due rows a batch at a time, builds their
/// messages and queues them, staying at most [`BATCHES_AHEAD`] batches
/// ahead of what is recorded when it claims (their leases run from the
/// claim).
async fn claim_ahead(
    ctx: &SharedContext,
    to_send: mpsc::Sender<Prepared>,
    in_flight: &Count,
    batch: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        in_flight
            .wait_until_at_most(BATCHES_AHEAD * batch, &mut shutdown)
            .await;
        if *shutdown.borrow() {
            break;
        }
        match claim_and_prepare(ctx).await {
            Ok(prepared) if !prepared.is_empty() => {
                in_flight.add(prepared.len());
                let mut prepared = prepared.into_iter();
                while let Some(item) = prepared.next() {
                    // Waits for room in the queue, which a stalled relay may
                    // keep full; on shutdown the senders stop taking from
                    // it, so what is not queued yet is given back instead.
                    let room = tokio::select! {
                        biased;
                        _ = shutdown.wait_for(|stop| *stop) => None,
                        permit = to_send.reserve() => permit.ok(),
                    };
                    let Some(room) = room else {
                        let unqueued: Vec<OutboxRow> = std::iter::once(item)
                            .chain(prepared)
                            .map(Prepared::into_row)
                            .collect();
                        let count = unqueued.len();
                        release_unsent(ctx, unqueued).await;
                        in_flight.sub(count);
                        return;
                    };
                    room.send(item);
                }
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "claiming mail failed"),
        }
        delivery::idle(ctx, &ctx.outbox_wake, &mut shutdown).await;
    }
}

/// The second stage, once per SMTP connection: takes the next queued
/// message and sends it (or settles it without sending), handing what was
/// sent on to be recorded. While messages keep coming it keeps its
/// connection, and each message's content goes out with the next one's
/// envelope (see [`Sender`]); when none is at hand it finishes the one
/// begun and gives the connection back. Stops after the send under way
/// once shutdown began.
async fn send_queued(
    ctx: &SharedContext,
    queue: &Mutex<mpsc::Receiver<Prepared>>,
    to_record: ToRecord,
    stages: Stages<'_>,
    most_unrecorded: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let in_flight = stages.in_flight;
    let mut sender = Sender::new(ctx);
    loop {
        let next = match take_now(queue, stages.unrecorded, most_unrecorded) {
            Some(item) => Some(item),
            None => {
                if let Some(outcome) = sender.close().await {
                    report(ctx, outcome, &to_record, stages).await;
                }
                if *shutdown.borrow() {
                    break;
                }
                stages
                    .unrecorded
                    .wait_until_at_most(most_unrecorded, &mut shutdown)
                    .await;
                let mut queue = queue.lock().await;
                tokio::select! {
                    item = queue.recv() => item,
                    _ = shutdown.changed() => None,
                }
            }
        };
        let Some(item) = next else {
            break;
        };
        // A message that waited in the queue behind slow sends is given back
        // rather than sent once its lease is half gone: its lease could run
        // out during its own send, and another worker take the row over and
        // send it too.
        let lease_left = item
            .row()
            .lease_until
            .map(|until| until - naive(ctx.clock.now()))
            .unwrap_or_default();
        if lease_left < send_margin(ctx) {
            // No database work while a message is begun: the relay waits for
            // its content, and a slow database would hold it past its lease.
            finish_begun(ctx, &mut sender, &to_record, stages).await;
            release_unsent(ctx, vec![item.into_row()]).await;
            in_flight.sub(1);
            continue;
        }
        match item {
            Prepared::Send { row, mail, context } => {
                let mut outcomes = sender.send(row, mail, context).await;
                // A failure is recorded at once; what was begun goes out
                // first (see above).
                if outcomes.iter().any(|(_, _, result)| result.is_err())
                    && let Some(outcome) = sender.finish().await
                {
                    outcomes.push(outcome);
                }
                for outcome in outcomes {
                    report(ctx, outcome, &to_record, stages).await;
                }
            }
            // What is begun goes out first (see above).
            Prepared::Cancel { row, reason } => {
                finish_begun(ctx, &mut sender, &to_record, stages).await;
                settled(cancel(ctx, row, reason).await, in_flight);
            }
            Prepared::Fail { row, error } => {
                finish_begun(ctx, &mut sender, &to_record, stages).await;
                let now = naive(ctx.clock.now());
                let failed = record_failure(ctx, row, SendError::Permanent(error), now).await;
                settled(failed, in_flight);
            }
        }
        if *shutdown.borrow() {
            break;
        }
    }
    if let Some(outcome) = sender.close().await {
        report(ctx, outcome, &to_record, stages).await;
    }
}

/// The next queued message if one is there now and the record stage keeps
/// up; none when another sender holds the queue (it waits there because
/// the queue is empty).
fn take_now(
    queue: &Mutex<mpsc::Receiver<Prepared>>,
    unrecorded: &Count,
    most_unrecorded: usize,
) -> Option<Prepared> {
    if unrecorded.rows.load(Ordering::SeqCst) > most_unrecorded {
        return None;
    }
    queue.try_lock().ok()?.try_recv().ok()
}

/// A message sent or not: the row, what it was sent for, the outcome.
type Outcome = (OutboxRow, ConfirmationMailContext, Result<(), SendError>);

/// Sends one sender task's messages: through a [`Chain`] on a connection of
/// its own when the mail goes to an SMTP relay, else one at a time.
struct Sender<'a> {
    ctx: &'a SharedContext,
    chain: Option<Chain<'a>>,
    /// The message whose envelope the relay accepted and whose content goes
    /// out with the next message's envelope.
    open: Option<(OutboxRow, ConfirmationMailContext)>,
}

impl<'a> Sender<'a> {
    fn new(ctx: &'a SharedContext) -> Self {
        Sender {
            ctx,
            chain: None,
            open: None,
        }
    }

    /// Sends a message; returns the outcomes now known: the message begun
    /// before it, itself, both or neither.
    async fn send(
        &mut self,
        row: OutboxRow,
        mail: Outgoing,
        context: ConfirmationMailContext,
    ) -> Vec<Outcome> {
        let ctx: &'a SharedContext = self.ctx;
        Metrics::incr(&ctx.metrics.send_attempts);
        let relay = match &ctx.mailer {
            Mailer::Smtp(relay) => relay,
            other => {
                let result = other.send(&mail, &row.id).await;
                return vec![(row, context, result)];
            }
        };
        let chain = match &mut self.chain {
            Some(chain) => chain,
            None => match relay.chain().await {
                Ok(chain) => self.chain.insert(chain),
                Err(error) => return vec![(row, context, Err(error))],
            },
        };
        let (earlier, progress) = chain.send(&mail).await;
        let mut outcomes = Vec::with_capacity(2);
        if let (Some(result), Some((row, context))) = (earlier, self.open.take()) {
            outcomes.push((row, context, result));
        }
        match progress {
            Progress::Begun => self.open = Some((row, context)),
            Progress::Done(result) => outcomes.push((row, context, result)),
        }
        outcomes
    }

    /// Sends the content of the message begun, if any: its outcome.
    async fn finish(&mut self) -> Option<Outcome> {
        let (row, context) = self.open.take()?;
        let result = match &mut self.chain {
            Some(chain) => chain.finish().await,
            None => None,
        };
        let result = result.unwrap_or_else(|| Err(crate::mail::smtp::lost()));
        Some((row, context, result))
    }

    /// Finishes the message begun, if any (its outcome), and gives the
    /// connection back.
    async fn close(&mut self) -> Option<Outcome> {
        let last = self.finish().await;
        if let Some(chain) = self.chain.take() {
            chain.close().await;
        }
        last
    }
}

/// Hands a sent message on to be recorded, or records why it was not sent.
async fn report(
    ctx: &SharedContext,
    (row, context, result): Outcome,
    to_record: &ToRecord,
    stages: Stages<'_>,
) {
    match &result {
        Err(SendError::Transient(_)) => Metrics::incr(&ctx.metrics.send_failures_transient),
        Err(SendError::Permanent(_)) => Metrics::incr(&ctx.metrics.send_failures_permanent),
        Ok(()) => {}
    }
    let now = naive(ctx.clock.now());
    match result {
        Ok(()) => match to_record.send(Sent {
            row,
            context,
            at: now,
        }) {
            Ok(()) => stages.unrecorded.add(1),
            Err(outbox_id) => {
                tracing::warn!(outbox_id = %outbox_id, "sent but not recorded; the lease will expire and the row be sent again");
                stages.in_flight.sub(1);
            }
        },
        Err(error) => settled(record_failure(ctx, row, error, now).await, stages.in_flight),
    }
}

/// Sends the content of the message a sender has begun, if any, and
/// reports its outcome.
async fn finish_begun(
    ctx: &SharedContext,
    sender: &mut Sender<'_>,
    to_record: &ToRecord,
    stages: Stages<'_>,
) {
    if let Some(outcome) = sender.finish().await {
        report(ctx, outcome, to_record, stages).await;
    }
}

/// A claimed row is no longer in flight once its outcome is recorded; if
/// recording failed, its lease expires and it is tried again.
fn settled(recorded: Result<(), WorkerError>, in_flight: &Count) {
    if let Err(error) = recorded {
        tracing::warn!(error = %error, "recording an outbox outcome failed; the lease will expire and the row be retried");
    }
    in_flight.sub(1);
}

/// How many transactions record sent mail at a time: on PostgreSQL two,
/// which keeps both cores of a small machine busy where one transaction
/// at a time was the slowest stage (measured: 7 % more mail delivered,
/// docs/performance.md); on SQLite, whose one writer would make the second
/// wait, one.
fn recorders(ctx: &SharedContext) -> usize {
    match ctx.settings.database_url.backend() {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    }
}

/// The record stage's inboxes. A subscriber's sent mail always goes to
/// the same one, so two record transactions never move the same chain
/// head: they cannot conflict or deadlock with each other.
#[derive(Clone)]
struct ToRecord(Vec<mpsc::UnboundedSender<Sent>>);

impl ToRecord {
    fn new(count: usize) -> (Self, Vec<mpsc::UnboundedReceiver<Sent>>) {
        let (inboxes, receivers) = (0..count.max(1)).map(|_| mpsc::unbounded_channel()).unzip();
        (ToRecord(inboxes), receivers)
    }

    /// Hands a sent message to its inbox; if the record stage is gone, gives
    /// back the outbox id of the message that will not be recorded.
    fn send(&self, sent: Sent) -> Result<(), String> {
        let key = sent.context.subscriber_id.bytes().fold(0usize, |key, b| {
            key.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        self.0[key % self.0.len()]
            .send(sent)
            .map_err(|lost| lost.0.row.id)
    }
}

/// The third stage, once per inbox: records sent mail, everything that
/// arrived while the previous transaction ran in the next one.
async fn record_sent_behind(
    ctx: &SharedContext,
    mut sent: mpsc::UnboundedReceiver<Sent>,
    stages: Stages<'_>,
) {
    /// Most rows recorded in one transaction.
    const MOST: usize = 1_000;
    while let Some(first) = sent.recv().await {
        let mut batch = vec![first];
        while batch.len() < MOST {
            match sent.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let count = batch.len();
        if let Err(error) = record_sent(ctx, batch).await {
            tracing::warn!(error = %error, "recording sent mail failed; the leases will expire and the rows be sent again");
        }
        stages.unrecorded.sub(count);
        stages.in_flight.sub(count);
    }
}

/// Claims a batch of due rows and builds their messages, on a blocking
/// thread (off the one that drives the SMTP connections).
async fn claim_and_prepare(ctx: &SharedContext) -> Result<Vec<Prepared>, WorkerError> {
    let now = ctx.clock.now();
    let lease = chrono::Duration::seconds(ctx.settings.outbox.lease_secs as i64);
    let limit = i64::from(ctx.settings.outbox.batch_size);
    let worker = Arc::clone(ctx);
    let prepared = spawn_blocking_in_span(move || {
        let mut conn = worker.pool.get().map_err(DbError::from)?;
        let claimed = retry(|| {
            outbox::claim_due_mail(
                &mut conn,
                &worker.instance_id,
                naive(now),
                naive(now + lease),
                limit,
            )
        })?;
        drop(conn);
        Ok::<_, DbError>(
            claimed
                .into_iter()
                .map(|(row, context)| prepare(&worker, row, context))
                .collect::<Vec<_>>(),
        )
    })
    .await
    .map_err(|_| WorkerError::Blocking)??;
    Ok(prepared)
}

/// One pass: claims a batch of due rows, sends them as the worker's send
/// stage does (over up to one SMTP connection per `mail.smtp_pool_max_size`)
/// and records what was sent. Returns how many rows it claimed (0 when
/// nothing was due).
pub async fn dispatch_due(ctx: &SharedContext) -> Result<usize, WorkerError> {
    let prepared = claim_and_prepare(ctx).await?;
    let count = prepared.len();
    if count == 0 {
        return Ok(0);
    }
    let (to_send, queue) = mpsc::channel::<Prepared>(count);
    for item in prepared {
        // The channel holds the whole batch.
        let _ = to_send.try_send(item);
    }
    drop(to_send);
    let queue = Mutex::new(queue);
    let in_flight = Count::default();
    in_flight.add(count);
    let unrecorded = Count::default();
    let stages = Stages {
        in_flight: &in_flight,
        unrecorded: &unrecorded,
    };
    let (to_record, inboxes) = ToRecord::new(1);
    let (_running, shutdown) = watch::channel(false);
    let concurrency = ctx.settings.mail.smtp_pool_max_size.max(1) as usize;
    futures_util::future::join_all((0..concurrency).map(|_| {
        // Everything is recorded at the end, in one transaction.
        send_queued(
            ctx,
            &queue,
            to_record.clone(),
            stages,
            usize::MAX,
            shutdown.clone(),
        )
    }))
    .await;
    drop(to_record);
    let mut batch = Vec::new();
    for mut inbox in inboxes {
        while let Ok(one) = inbox.try_recv() {
            batch.push(one);
        }
    }
    if let Err(error) = record_sent(ctx, batch).await {
        tracing::warn!(error = %error, "recording sent mail failed; the leases will expire and the rows be retried");
    }
    Ok(count)
}

/// How much of its lease a row must have left for a send to start: half.
/// Rows are sent moments after they are claimed unless the relay is slow;
/// with `outbox.lease_secs` above twice `mail.send_timeout_secs` (300 and
/// 30 by default) a send that starts always ends, and is recorded, before
/// the lease does.
fn send_margin(ctx: &SharedContext) -> chrono::Duration {
    chrono::Duration::seconds(ctx.settings.outbox.lease_secs as i64 / 2)
}

impl Prepared {
    fn row(&self) -> &OutboxRow {
        match self {
            Prepared::Send { row, .. }
            | Prepared::Cancel { row, .. }
            | Prepared::Fail { row, .. } => row,
        }
    }

    fn into_row(self) -> OutboxRow {
        match self {
            Prepared::Send { row, .. }
            | Prepared::Cancel { row, .. }
            | Prepared::Fail { row, .. } => row,
        }
    }
}

/// A message the relay accepted, to be recorded as sent.
struct Sent {
    row: OutboxRow,
    context: ConfirmationMailContext,
    at: NaiveDateTime,
}

fn prepare(
    ctx: &SharedContext,
    row: OutboxRow,
    context: Option<ConfirmationMailContext>,
) -> Prepared {
    let kind = match OutboxKind::parse(&row.kind) {
        Some(OutboxKind::Confirmation) => MailKind::Confirmation,
        Some(OutboxKind::Welcome) => MailKind::Welcome,
        // Webhook rows are the webhook worker's; claim_due never hands
        // them here.
        Some(OutboxKind::Webhook(_)) | None => {
            let error = format!("not a mail kind: {:?}", row.kind);
            return Prepared::Fail { row, error };
        }
    };
    let Some(context) = context else {
        let error = match row.subscription_id {
            Some(_) => "the subscription no longer exists",
            None => "outbox row without a subscription",
        };
        return Prepared::Fail {
            row,
            error: error.to_owned(),
        };
    };
    let Some(email) = context.email.clone() else {
        return Prepared::Cancel {
            row,
            reason: "subscriber erased".to_owned(),
        };
    };
    let wanted_state = match kind {
        MailKind::Confirmation => SubscriptionState::Pending,
        MailKind::Welcome => SubscriptionState::Confirmed,
    };
    if context.state != wanted_state {
        return Prepared::Cancel {
            row,
            reason: format!("subscription is {}", context.state.as_str()),
        };
    }
    let Some(list) = ctx.lists.by_id(&context.list_id) else {
        return Prepared::Fail {
            row,
            error: "the list is no longer configured".to_owned(),
        };
    };
    let Ok(subscription_id) = uuid::Uuid::parse_str(&context.subscription_id) else {
        return Prepared::Fail {
            row,
            error: "the subscription id is not a UUID".to_owned(),
        };
    };
    let built = match kind {
        MailKind::Confirmation => {
            let token = serde_json::from_str::<serde_json::Value>(&row.payload)
                .ok()
                .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(str::to_owned));
            let Some(token) = token else {
                return Prepared::Fail {
                    row,
                    error: "the confirmation payload has no token".to_owned(),
                };
            };
            let url = ctx.settings.public_url(&format!("confirm/{token}"));
            let refuse = ctx.link_keys.mint(Purpose::Refuse, subscription_id);
            let refuse_url = ctx.settings.public_url(&format!("refuse/{refuse}"));
            let ttl_days = ctx.settings.tokens.confirmation_ttl_hours.div_ceil(24);
            message::confirmation(
                &ctx.templates,
                list,
                &email,
                &url,
                &refuse_url,
                &row.message_id,
                ttl_days,
            )
        }
        MailKind::Welcome => {
            let token = ctx.link_keys.mint(Purpose::Leave, subscription_id);
            let url = ctx.settings.public_url(&format!("unsubscribe/{token}"));
            message::welcome(&ctx.templates, list, &email, &url, &row.message_id)
        }
    };
    match built {
        Ok(mut message) => {
            if let Some(dkim) = &ctx.settings.dkim {
                dkim.sign(&mut message);
            }
            Prepared::Send {
                row,
                mail: Outgoing::from(message),
                context,
            }
        }
        Err(error) => Prepared::Fail {
            row,
            error: error.to_string(),
        },
    }
}

/// Cancels a claimed row that can no longer be delivered.
async fn cancel(ctx: &SharedContext, row: OutboxRow, reason: String) -> Result<(), WorkerError> {
    let pool = ctx.pool.clone();
    spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        outbox::cancel(&mut conn, &row.id, &reason)
    })
    .await
    .map_err(|_| WorkerError::Blocking)??;
    Ok(())
}

/// Records a pass's sent rows in one transaction (one commit and a few
/// statements for the pass, not several per message); if that keeps
/// failing, row by row. Until then a crash re-sends them after their
/// leases expire, with the same Message-IDs (at least once, see
/// docs/operations.md).
async fn record_sent(ctx: &SharedContext, sent: Vec<Sent>) -> Result<(), WorkerError> {
    if sent.is_empty() {
        return Ok(());
    }
    let pool = ctx.pool.clone();
    let owner = ctx.instance_id.clone();
    spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        let together =
            retry(|| write_transaction(&mut conn, |conn| mark_sent(conn, &sent, &owner)));
        if together.is_ok() {
            return Ok(());
        }
        for one in sent.chunks(1) {
            retry(|| write_transaction(&mut conn, |conn| mark_sent(conn, one, &owner)))?;
        }
        Ok::<_, DbError>(())
    })
    .await
    .map_err(|_| WorkerError::Blocking)??;
    Ok(())
}

/// Marks sent rows sent and appends a `confirmation_sent` event to the
/// chain of each confirmation's subscriber. A row whose lease was lost
/// meanwhile is left to the worker that took it over, which records its
/// own send.
fn mark_sent(
    conn: &mut crate::db::DbConnection,
    sent: &[Sent],
    owner: &str,
) -> Result<(), DbError> {
    let times: Vec<(&str, NaiveDateTime)> =
        sent.iter().map(|s| (s.row.id.as_str(), s.at)).collect();
    // Every statement goes by key (see `with_index_lookups`).
    with_index_lookups(conn, |conn| {
        let marked: std::collections::HashSet<String> =
            outbox::mark_sent_many(conn, &times, owner)?
                .into_iter()
                .collect();
        let mut confirmations = Vec::new();
        for Sent { row, context, at } in sent {
            if !marked.contains(&row.id) {
                tracing::warn!(outbox_id = %row.id, "lease lost before the send was recorded");
                continue;
            }
            tracing::debug!(outbox_id = %row.id, kind = %row.kind, attempts = row.attempts, "mail sent");
            if row.kind == OutboxKind::Confirmation.as_str() {
                confirmations.push(ConfirmationSent {
                    context,
                    message_id: &row.message_id,
                    at: *at,
                });
            }
        }
        confirm::record_confirmations_sent(conn, &confirmations)
    })
}

async fn record_failure(
    ctx: &SharedContext,
    row: OutboxRow,
    error: SendError,
    now: NaiveDateTime,
) -> Result<(), WorkerError> {
    let settings = &ctx.settings.outbox;
    let dead = row.attempts >= settings.max_attempts as i32;
    let retry_at = now
        + backoff(
            row.attempts,
            settings.backoff_base_secs,
            settings.backoff_max_secs,
        );
    let message = crate::domain::email::mask_in_text(&error.to_string());
    if dead {
        tracing::error!(outbox_id = %row.id, attempts = row.attempts, error = %message, "mail moved to dead letters");
    } else {
        tracing::warn!(outbox_id = %row.id, attempts = row.attempts, error = %message, "mail send failed; will retry");
    }
    let pool = ctx.pool.clone();
    let owner = ctx.instance_id.clone();
    spawn_blocking_in_span(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        outbox::mark_failed(&mut conn, &row.id, &owner, &message, retry_at, dead)
    })
    .await
    .map_err(|_| WorkerError::Blocking)??;
    Ok(())
}
