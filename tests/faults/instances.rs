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
    // Meanwhile one address is signed up 30 times at once, spread over the
    // three instances: one confirmation email, whichever instance wins.
    let client = reqwest::Client::new();
    let bombing: Vec<_> = (0..30)
        .map(|i| {
            let url = format!("http://127.0.0.1:{}/subscriptions", ports[i % ports.len()]);
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&serde_json::json!({ "email": "bombed@example.org", "consent": true }))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    for task in bombing {
        assert_eq!(task.await.unwrap().unwrap(), 202);
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
    // All 30 were recorded, 29 of them over the address's budget.
    let (requested, throttled) = {
        use assent::db::schema::{consent_events, subscribers};
        use diesel::prelude::*;
        let details: Vec<String> = consent_events::table
            .inner_join(subscribers::table)
            .filter(subscribers::email_key.eq("bombed@example.org"))
            .filter(consent_events::kind.eq("consent_requested"))
            .select(consent_events::details)
            .load(&mut crate::harness::connect(&url))
            .unwrap();
        let throttled = details
            .iter()
            .filter(|d| d.contains(r#""throttled":true"#))
            .count();
        (details.len(), throttled)
    };
    assert_eq!((requested, throttled), (30, 29));
    let stored = stored_signups(&url);
    assert!(report.acknowledged.is_subset(&stored));
    let verified = verify_ledger(&url);
    assert_eq!(verified["ok"], true, "{verified}");
    println!(
        "instances: sent {} acknowledged {} stored {} delivered {} duplicates {} bombed-address sign-ups {requested} (throttled {throttled}) emails {}",
        report.sent,
        report.acknowledged.len(),
        stored.len(),
        smtp.received().len(),
        duplicated.len(),
        bombed
    );
    drop(servers);
}
