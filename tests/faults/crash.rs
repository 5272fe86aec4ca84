use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::{Server, load, message_id, stored_signups, verify_ledger, wait_for};
use crate::helpers::{Backend, TestDatabase};
use crate::smtp_server::SmtpServer;

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

/// SIGTERM under load: in-flight requests finish, the process exits
/// cleanly, and every acknowledged sign-up is stored.
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
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = server.terminate();
    stop.store(true, Ordering::Relaxed);
    let report = running.await.unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        report.refused.iter().all(|s| *s == 503),
        "answers: {:?}",
        report.refused
    );
    let stored = stored_signups(&url);
    assert!(report.acknowledged.is_subset(&stored));
    assert!(!report.acknowledged.is_empty());
    println!(
        "sigterm/{backend:?}: sent {} acknowledged {} stored {} unanswered {}",
        report.sent,
        report.acknowledged.len(),
        stored.len(),
        report.unanswered
    );
}

mod sqlite {
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
