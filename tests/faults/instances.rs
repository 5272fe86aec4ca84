use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::harness::{Server, load, message_id, stored_signups, verify_ledger, wait_for};
use crate::helpers::{Backend, TestDatabase};
use crate::smtp_server::SmtpServer;

/// Three instances on one PostgreSQL database, each with its own worker:
/// every confirmation email is delivered exactly once (by Message-ID),
/// every chain verifies, and the per-address budget holds across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: three binaries under load; CI runs it"]
async fn three_instances_send_each_email_once() {
    let smtp = SmtpServer::start().await;
    let (_database, url) = TestDatabase::create(Backend::Postgres);
    let servers = vec![
        Server::start(&url, smtp.port).await,
        Server::start(&url, smtp.port).await,
        Server::start(&url, smtp.port).await,
    ];
    let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(
        ports.clone(),
        12,
        "multi",
        stop.clone(),
        Duration::from_secs(4),
    ));
    // Meanwhile one address is signed up 30 times across the instances.
    let client = reqwest::Client::new();
    for i in 0..30 {
        let port = ports[i % ports.len()];
        let response = client
            .post(format!("http://127.0.0.1:{port}/subscriptions"))
            .json(&serde_json::json!({ "email": "bombed@example.org", "consent": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let report = running.await.unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    let expected = report.acknowledged.len() + 1;
    wait_for("every confirmation email", Duration::from_secs(60), || {
        smtp.received().len() >= expected
    })
    .await;
    // Give a duplicate, if any, the time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut by_message_id: BTreeMap<String, usize> = BTreeMap::new();
    for mail in smtp.received() {
        *by_message_id.entry(message_id(&mail.data)).or_default() += 1;
    }
    let duplicated: Vec<_> = by_message_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "sent more than once: {duplicated:?}");
    assert_eq!(smtp.received().len(), expected);
    let bombed = smtp
        .received()
        .iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r.contains("bombed@example.org")))
        .count();
    assert_eq!(bombed, 1);
    let stored = stored_signups(&url);
    assert!(report.acknowledged.is_subset(&stored));
    let verified = verify_ledger(&url);
    assert_eq!(verified["ok"], true, "{verified}");
    println!(
        "instances: sent {} acknowledged {} stored {} delivered {} duplicates {} bombed-address emails {}",
        report.sent,
        report.acknowledged.len(),
        stored.len(),
        smtp.received().len(),
        duplicated.len(),
        bombed
    );
    drop(servers);
}
