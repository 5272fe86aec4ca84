use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Options, Server, load, message_id, stored_signups, verify_ledger, wait_for};
use crate::helpers::{Backend, TestDatabase};
use crate::smtp_server::{Behaviour, SmtpServer};

/// SIGKILL in the middle of a sign-up load: every acknowledged sign-up is
/// stored with its consent event, and after a restart its confirmation
/// email arrives (rows leased by the dead process are taken over when
/// their lease expires).
async fn killed_mid_load_loses_nothing(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let (_database, url) = TestDatabase::create(backend);
    let mut first = Server::start(&url, smtp.port).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(
        vec![first.port],
        8,
        "crash",
        stop.clone(),
        Duration::from_secs(20),
    ));
    // Kill once a good number of sign-ups went through.
    wait_for("sign-ups before the kill", Duration::from_secs(15), || {
        smtp.received().len() >= 20
    })
    .await;
    first.kill();
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();
    let stored = stored_signups(&url);
    let lost: Vec<_> = report.acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");

    let _second = Server::start(&url, smtp.port).await;
    wait_for(
        "every acknowledged sign-up's email",
        Duration::from_secs(30),
        || {
            let received: std::collections::BTreeSet<String> = smtp
                .received()
                .iter()
                .flat_map(|m| m.rcpt_to.clone())
                .map(|r| r.trim_matches(|c| c == '<' || c == '>').to_owned())
                .collect();
            report.acknowledged.iter().all(|a| received.contains(a))
        },
    )
    .await;
    let mut by_recipient: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for mail in smtp.received() {
        by_recipient
            .entry(mail.rcpt_to.join(","))
            .or_default()
            .push(message_id(&mail.data));
    }
    // At-least-once: a recipient may get a message twice only when the
    // process died between the server's 250 and the row being marked, and
    // then with the same Message-ID.
    let duplicates = by_recipient.values().filter(|ids| ids.len() > 1).count();
    for ids in by_recipient.values() {
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "different messages to one address: {ids:?}"
        );
    }
    let verified = verify_ledger(&url);
    assert_eq!(verified["ok"], true, "{verified}");
    println!(
        "crash/{backend:?}: sent {} acknowledged {} stored {} unanswered {} delivered {} duplicates {}",
        report.sent,
        report.acknowledged.len(),
        stored.len(),
        report.unanswered,
        by_recipient.len(),
        duplicates
    );
}

/// A sign-up whose head the server has read (it answered `100 Continue`)
/// and whose body is still to come: in flight for certain.
struct InFlight {
    stream: tokio::net::TcpStream,
    body: Vec<u8>,
}

impl InFlight {
    async fn open(port: u16, email: &str) -> InFlight {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = serde_json::json!({ "email": email, "consent": true })
            .to_string()
            .into_bytes();
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let head = format!(
            "POST /subscriptions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Expect: 100-continue\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("an answer to the head")
                .unwrap();
            assert!(n > 0, "closed before 100 Continue");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(
            seen.starts_with(b"HTTP/1.1 100 Continue"),
            "{}",
            String::from_utf8_lossy(&seen)
        );
        InFlight { stream, body }
    }

    /// Sends the body and reads the whole answer (until the server closes).
    async fn finish(mut self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(&self.body).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            self.stream.read_to_end(&mut answer),
        )
        .await
        .expect("the answer within the grace period")
        .expect("an answer, not a reset");
        String::from_utf8_lossy(&answer).into_owned()
    }
}

/// Outbox rows still leased by some worker.
fn leased_rows(database_url: &str) -> i64 {
    use assent::db::schema::outbox;
    use diesel::prelude::*;
    outbox::table
        .filter(outbox::lease_owner.is_not_null())
        .count()
        .get_result(&mut crate::harness::connect(database_url))
        .unwrap()
}

/// SIGTERM under load: every request sent before the signal is answered
/// (the instance drains first, closing each connection after its answer),
/// the process exits cleanly, every acknowledged sign-up is stored, and the
/// worker finishes the send it is in and gives back its leases, so that
/// after a restart every email arrives exactly once.
async fn sigterm_finishes_in_flight_requests(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let (_database, url) = TestDatabase::create(backend);
    let mut server = Server::start(&url, smtp.port).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(
        vec![server.port],
        8,
        "term",
        stop.clone(),
        Duration::from_secs(20),
    ));
    wait_for("mail under load", Duration::from_secs(15), || {
        smtp.received().len() >= 10
    })
    .await;
    // The next message's relay takes 2 s to answer: a send is in progress
    // when the signal comes.
    smtp.script([Behaviour::DelayAfterData(Duration::from_secs(2))]);
    wait_for("a send in progress", Duration::from_secs(15), || {
        smtp.held() >= 1
    })
    .await;
    let probes = [
        InFlight::open(server.port, "inflight0@example.org").await,
        InFlight::open(server.port, "inflight1@example.org").await,
    ];
    let sigterm_at = Instant::now();
    server.send_sigterm();
    let closed_at = server.wait_listener_closed(Duration::from_secs(5)).await;
    // Only now the bodies of the requests in flight: they still complete.
    let mut answers = Vec::new();
    for probe in probes {
        answers.push(probe.finish().await);
    }
    let status = server.wait_exit(Duration::from_secs(30)).await;
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();
    assert!(status.success(), "exit status {status}");
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    assert!(
        report.refused.iter().all(|s| *s == 503),
        "answers: {:?}",
        report.refused
    );
    // Every request sent before the signal is answered: the instance
    // drains first (`http.shutdown_drain_ms`), answering each with
    // `Connection: close`, so no kept-alive connection is closed under a
    // request the client has just written into it.
    let stored = stored_signups(&url);
    let unread_before: Vec<_> = report
        .failures
        .iter()
        .filter(|f| f.sent_at < sigterm_at)
        .collect();
    assert!(
        unread_before.is_empty(),
        "sent before SIGTERM and not answered: {unread_before:?}"
    );
    // Later ones may meet the closing listener; none of them is stored
    // without an answer.
    for failure in &report.failures {
        assert!(
            !stored.contains(&failure.email),
            "processed but not answered: {failure:?}"
        );
    }
    let after_close: Vec<_> = report
        .failures
        .iter()
        .filter(|f| f.sent_at >= closed_at)
        .collect();
    let refused_after_close = after_close.iter().filter(|f| f.connect).count();
    let between = report.failures.len() - after_close.len() - unread_before.len();
    assert!(report.acknowledged.is_subset(&stored));
    assert!(!report.acknowledged.is_empty());
    assert!(stored.contains("inflight0@example.org") && stored.contains("inflight1@example.org"));
    // The worker finished or released what it held.
    assert_eq!(leased_rows(&url), 0, "leases left behind");
    let sent_before_restart = smtp.received().len();

    let _second = Server::start(&url, smtp.port).await;
    let expected = stored.len();
    wait_for(
        "every stored sign-up's email",
        Duration::from_secs(60),
        || smtp.received().len() >= expected,
    )
    .await;
    let mut by_message_id: BTreeMap<String, usize> = BTreeMap::new();
    for mail in smtp.received() {
        *by_message_id.entry(message_id(&mail.data)).or_default() += 1;
    }
    let duplicated: Vec<_> = by_message_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "sent more than once: {duplicated:?}");
    assert_eq!(by_message_id.len(), expected);
    let verified = verify_ledger(&url);
    assert_eq!(verified["ok"], true, "{verified}");
    println!(
        "sigterm/{backend:?}: sent {} acknowledged {} stored {} in-flight-finished {} \
         unanswered {} (sent before SIGTERM, closed unread {}, between SIGTERM and the listener closing {between}, \
         after it {} of which refused at connect {refused_after_close}) \
         delivered-before-restart {sent_before_restart} delivered {} duplicates {}",
        report.sent,
        report.acknowledged.len(),
        stored.len(),
        answers.len(),
        report.unanswered,
        unread_before.len(),
        after_close.len(),
        by_message_id.len(),
        duplicated.len(),
    );
}

/// SIGKILL while a row is leased (the relay holds its answer to `MAIL
/// FROM`): after a restart the row waits for its lease to expire, is then
/// claimed by the new worker and delivered exactly once.
async fn a_lease_of_a_killed_process_is_reclaimed_when_it_expires(backend: Backend) {
    use assent::db::schema::outbox;
    use diesel::prelude::*;
    let smtp = SmtpServer::start().await;
    smtp.script([Behaviour::Stall]);
    let (_database, url) = TestDatabase::create(backend);
    // A lease long enough that the restart surely comes before it expires.
    let options = Options {
        env: vec![("ASSENT_OUTBOX__LEASE_SECS", "6".to_owned())],
        ..Options::default()
    };
    let mut first = Server::start_with(&url, smtp.port, &options).await;
    let response = reqwest::Client::new()
        .post(first.url("/subscriptions"))
        .json(&serde_json::json!({ "email": "leased@example.org", "consent": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    wait_for("the send to stall", Duration::from_secs(15), || {
        smtp.held() >= 1
    })
    .await;
    type Lease = (Option<String>, Option<chrono::NaiveDateTime>, i32, String);
    let lease = || -> Lease {
        outbox::table
            .select((
                outbox::lease_owner,
                outbox::lease_until,
                outbox::attempts,
                outbox::state,
            ))
            .first(&mut crate::harness::connect(&url))
            .unwrap()
    };
    let (owner, until, attempts, state) = lease();
    assert!(owner.is_some(), "the row is leased");
    assert_eq!((attempts, state.as_str()), (1, "pending"));
    let until = until.unwrap();
    first.kill();
    let _second = Server::start_with(&url, smtp.port, &options).await;
    // Still held by the dead process right after the restart.
    let (still, ..) = lease();
    assert_eq!(still, owner, "taken over before the lease expired");
    wait_for(
        "the re-claimed row's email",
        Duration::from_secs(30),
        || !smtp.received().is_empty(),
    )
    .await;
    wait_for("the row to be marked sent", Duration::from_secs(10), || {
        lease().3 == "sent"
    })
    .await;
    let received = smtp.received();
    assert_eq!(received.len(), 1, "delivered exactly once");
    let delivered = chrono::DateTime::<chrono::Utc>::from(received[0].received_at).naive_utc();
    assert!(
        delivered >= until,
        "delivered at {delivered}, before the lease ran out at {until}"
    );
    let (_, _, attempts, _) = lease();
    assert_eq!(attempts, 2, "one attempt by each process");
    let message_ids: Vec<String> = outbox::table
        .select(outbox::message_id)
        .load(&mut crate::harness::connect(&url))
        .unwrap();
    assert_eq!(message_ids, [message_id(&received[0].data)]);
    let verified = verify_ledger(&url);
    assert_eq!(verified["ok"], true, "{verified}");
    println!(
        "lease-reclaim/{backend:?}: attempts {attempts} delivered {} duplicates 0, \
         delivered {} ms after the lease expired",
        received.len(),
        (delivered - until).num_milliseconds()
    );
}

/// SIGTERM while the relay has stalled and the worker's queue is full: the
/// claim stage, waiting for room in the queue, gives back what it holds,
/// the stalled send ends at its deadline, and the process exits with no
/// row leased. Batches of 2 and one SMTP connection make the queue fill
/// with four claimed rows.
async fn sigterm_with_a_stalled_relay_gives_back_what_it_claimed(backend: Backend) {
    use assent::db::schema::outbox;
    use diesel::prelude::*;
    let smtp = SmtpServer::start().await;
    smtp.script([Behaviour::Stall]);
    let (_database, url) = TestDatabase::create(backend);
    let options = Options {
        env: vec![
            ("ASSENT_OUTBOX__BATCH_SIZE", "2".to_owned()),
            ("ASSENT_OUTBOX__LEASE_SECS", "60".to_owned()),
            ("ASSENT_MAIL__SMTP_POOL_MAX_SIZE", "1".to_owned()),
            ("ASSENT_MAIL__SEND_TIMEOUT_SECS", "5".to_owned()),
            ("ASSENT_HTTP__SHUTDOWN_DRAIN_MS", "100".to_owned()),
        ],
        ..Options::default()
    };
    // The sign-ups first, by an instance without a worker, so that every
    // claim of the next one finds a whole batch due.
    let mut without_worker = options.clone();
    without_worker
        .env
        .push(("ASSENT_OUTBOX__WORKER", "false".to_owned()));
    let mut first = Server::start_with(&url, smtp.port, &without_worker).await;
    let client = reqwest::Client::new();
    for n in 0..8 {
        let response = client
            .post(first.url("/subscriptions"))
            .json(
                &serde_json::json!({ "email": format!("stalled{n}@example.org"), "consent": true }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    first.send_sigterm();
    assert!(first.wait_exit(Duration::from_secs(30)).await.success());
    let mut server = Server::start_with(&url, smtp.port, &options).await;
    // One row in the stalled send, two queued (the queue holds a batch),
    // one claimed and waiting for room.
    wait_for("the send to stall", Duration::from_secs(15), || {
        smtp.held() >= 1
    })
    .await;
    wait_for("the queue to fill", Duration::from_secs(15), || {
        leased_rows(&url) == 4
    })
    .await;
    let sigterm_at = Instant::now();
    server.send_sigterm();
    let status = server.wait_exit(Duration::from_secs(30)).await;
    let exited_after = sigterm_at.elapsed();
    assert!(status.success(), "exit status {status}");
    assert_eq!(leased_rows(&url), 0, "leases left behind");
    let rows: Vec<(String, i32, Option<String>)> = outbox::table
        .select((outbox::state, outbox::attempts, outbox::last_error))
        .order(outbox::attempts.desc())
        .load(&mut crate::harness::connect(&url))
        .unwrap();
    assert_eq!(rows.len(), 8);
    assert!(
        rows.iter().all(|(state, ..)| state == "pending"),
        "{rows:?}"
    );
    // The stalled send counts as a failed attempt; the others were never
    // tried and are given back as they were.
    assert_eq!(rows[0].1, 1, "{rows:?}");
    assert!(rows[0].2.is_some(), "{rows:?}");
    assert!(
        rows[1..].iter().all(|(_, attempts, _)| *attempts == 0),
        "{rows:?}"
    );
    assert!(smtp.received().is_empty());
    println!(
        "sigterm-stalled-relay/{backend:?}: leased 4 at SIGTERM, exited after {} ms, leases left 0, \
         rows pending 8 (attempts 1 for the stalled send, 0 for 7)",
        exited_after.as_millis()
    );
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "slow: runs the binary until a send times out; CI runs it"]
    async fn sigterm_with_a_stalled_relay_gives_back_what_it_claimed() {
        super::sigterm_with_a_stalled_relay_gives_back_what_it_claimed(
            crate::helpers::Backend::Sqlite,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "slow: waits for a lease to expire; CI runs it"]
    async fn a_lease_of_a_killed_process_is_reclaimed_when_it_expires() {
        super::a_lease_of_a_killed_process_is_reclaimed_when_it_expires(
            crate::helpers::Backend::Sqlite,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "slow: runs the binary under load; CI runs it"]
    async fn killed_mid_load_loses_nothing() {
        super::killed_mid_load_loses_nothing(crate::helpers::Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "slow: runs the binary under load; CI runs it"]
    async fn sigterm_finishes_in_flight_requests() {
        super::sigterm_finishes_in_flight_requests(crate::helpers::Backend::Sqlite).await
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "slow: runs the binary until a send times out; CI runs it"]
    async fn sigterm_with_a_stalled_relay_gives_back_what_it_claimed() {
        super::sigterm_with_a_stalled_relay_gives_back_what_it_claimed(
            crate::helpers::Backend::Postgres,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "slow: waits for a lease to expire; CI runs it"]
    async fn a_lease_of_a_killed_process_is_reclaimed_when_it_expires() {
        super::a_lease_of_a_killed_process_is_reclaimed_when_it_expires(
            crate::helpers::Backend::Postgres,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "slow: runs the binary under load; CI runs it"]
    async fn killed_mid_load_loses_nothing() {
        super::killed_mid_load_loses_nothing(crate::helpers::Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "slow: runs the binary under load; CI runs it"]
    async fn sigterm_finishes_in_flight_requests() {
        super::sigterm_finishes_in_flight_requests(crate::helpers::Backend::Postgres).await
    }
}
