use crate::helpers::{Backend, TestApp, spawn_app};

/// Subscribers doing what people do: sign up, confirm, leave, come back,
/// withdraw, get erased.
async fn realistic_mix(app: &TestApp) {
    let ann = app
        .confirmed_subscriber("ann@example.org", "newsletter")
        .await;
    app.confirmed_subscriber("ann@example.org", "offers").await;
    let bob = app
        .confirmed_subscriber("bob@example.org", "newsletter")
        .await;
    app.confirmed_subscriber("cat@example.org", "offers").await;
    app.sign_up("dan@example.org", "newsletter").await;
    app.sign_up("dan@example.org", "newsletter").await;
    app.one_click(&ann).await;
    app.sign_up("ann@example.org", "newsletter").await;
    app.client
        .post(bob.replace("/unsubscribe/", "/withdraw/"))
        .form(&[("erase", "true")])
        .send()
        .await
        .unwrap();
    app.dispatch_all_pending_emails().await;
}

fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(args)
        .env("ASSENT_DATABASE_URL", &app.database_url)
        .env("ASSENT_LOG__FILTER", "warn")
        .output()
        .unwrap()
}

fn event_count(app: &TestApp) -> i64 {
    use assent::db::schema::consent_events;
    use diesel::prelude::*;
    consent_events::table
        .count()
        .get_result(&mut app.db())
        .unwrap()
}

fn event_id(app: &TestApp, email: &str, kind: &str) -> (String, i64) {
    use assent::db::schema::{consent_events, subscribers};
    use diesel::prelude::*;
    consent_events::table
        .inner_join(subscribers::table)
        .filter(subscribers::email_key.eq(email))
        .filter(consent_events::kind.eq(kind))
        .select((consent_events::id, consent_events::seq))
        .first(&mut app.db())
        .unwrap()
}

async fn chains_verify_after_a_realistic_mix(backend: Backend) {
    let app = spawn_app(backend).await;
    realistic_mix(&app).await;
    let key = app.admin_key("auditor");
    let report = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events"], event_count(&app));
    assert_eq!(report["subscribers"], 4);
    assert_eq!(report["head"].as_str().unwrap().len(), 64);
    let output = cli(&app, &["ledger", "verify"]);
    assert!(output.status.success());
    let cli_report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(cli_report["head"], report["head"]);
    // The head moves with every new event.
    app.sign_up("eve@example.org", "newsletter").await;
    let later = app.admin_json("/admin/ledger/verify", &key).await;
    assert_ne!(later["head"], report["head"]);
}

async fn editing_an_event_is_found_at_that_event(backend: Backend) {
    let app = spawn_app(backend).await;
    realistic_mix(&app).await;
    let key = app.admin_key("auditor");
    let (id, seq) = event_id(&app, "cat@example.org", "consent_confirmed");
    assert_eq!(
        app.execute(&format!(
            "UPDATE consent_events SET occurred_at = '2020-01-01 00:00:00' WHERE id = '{id}'"
        )),
        1
    );
    let report = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["broken"]["event_id"], id.as_str());
    assert_eq!(report["broken"]["seq"], seq);
    let output = cli(&app, &["ledger", "verify"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(&id));
}

async fn deleting_an_event_is_found(backend: Backend) {
    let app = spawn_app(backend).await;
    realistic_mix(&app).await;
    let key = app.admin_key("auditor");
    // A middle event.
    let (id, seq) = event_id(&app, "cat@example.org", "confirmation_sent");
    assert_eq!(
        app.execute(&format!("DELETE FROM consent_events WHERE id = '{id}'")),
        1
    );
    let report = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["broken"]["seq"], seq);
    assert!(
        report["broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{report}"
    );
}

async fn deleting_the_last_event_is_found(backend: Backend) {
    let app = spawn_app(backend).await;
    realistic_mix(&app).await;
    let key = app.admin_key("auditor");
    let last_of_dan: (String, String) = {
        use assent::db::schema::{consent_events, subscribers};
        use diesel::prelude::*;
        consent_events::table
            .inner_join(subscribers::table)
            .filter(subscribers::email_key.eq("dan@example.org"))
            .order(consent_events::seq.desc())
            .select((consent_events::id, consent_events::kind))
            .first(&mut app.db())
            .unwrap()
    };
    let (id, kind) = last_of_dan;
    assert_eq!(kind, "confirmation_sent");
    app.execute(&format!("DELETE FROM consent_events WHERE id = '{id}'"));
    let report = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["ok"], false);
    assert!(
        report["broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("deleted"),
        "{report}"
    );
}

/// The event of a kind of an address, with the evidence it points to.
fn event_with_evidence(app: &TestApp, email: &str, kind: &str) -> (String, i64, String) {
    use assent::db::schema::{consent_events, subscribers};
    use diesel::prelude::*;
    let (id, seq, evidence): (String, i64, Option<String>) = consent_events::table
        .inner_join(subscribers::table)
        .filter(subscribers::email_key.eq(email))
        .filter(consent_events::kind.eq(kind))
        .select((
            consent_events::id,
            consent_events::seq,
            consent_events::evidence_sha256,
        ))
        .first(&mut app.db())
        .unwrap();
    (id, seq, evidence.expect("the event points to evidence"))
}

async fn editing_evidence_is_found_at_its_event(backend: Backend) {
    let app = spawn_app(backend).await;
    realistic_mix(&app).await;
    let key = app.admin_key("auditor");
    assert_eq!(
        app.admin_json("/admin/ledger/verify", &key).await["ok"],
        true
    );
    // Someone with database access rewrites where a confirmation came from.
    let (id, seq, evidence) = event_with_evidence(&app, "cat@example.org", "consent_confirmed");
    assert_eq!(
        app.execute(&format!(
            "UPDATE evidence SET ip = '203.0.113.9' WHERE sha256 = '{evidence}'"
        )),
        1
    );
    let report = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["broken"]["event_id"], id.as_str());
    assert_eq!(report["broken"]["seq"], seq);
    assert!(
        report["broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("evidence"),
        "{report}"
    );
    let output = cli(&app, &["ledger", "verify"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(&id));
    // Every hashed field counts (see also the unit test in
    // src/ledger/evidence.rs): a forged user agent elsewhere is found too,
    // once the first break is repaired.
    app.execute(&format!(
        "UPDATE evidence SET ip = '127.0.0.1' WHERE sha256 = '{evidence}'"
    ));
    assert_eq!(
        app.admin_json("/admin/ledger/verify", &key).await["ok"],
        true
    );
    let (id, _, evidence) = event_with_evidence(&app, "dan@example.org", "consent_requested");
    app.execute(&format!(
        "UPDATE evidence SET user_agent = 'Forged/1.0' WHERE sha256 = '{evidence}'"
    ));
    let report = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["broken"]["event_id"], id.as_str(), "{report}");
}

async fn missing_evidence_is_found_unless_the_person_was_erased(backend: Backend) {
    let app = spawn_app(backend).await;
    realistic_mix(&app).await;
    let key = app.admin_key("auditor");
    // Erasure (bob by his withdrawal link, cat by an operator) deletes the
    // evidence; the ledger still verifies.
    let erased = app
        .admin(
            reqwest::Method::DELETE,
            "/admin/subjects/cat@example.org",
            &key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    let report = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events"], event_count(&app));
    // Evidence deleted behind the back of a person who was not erased.
    let (id, seq, evidence) = event_with_evidence(&app, "dan@example.org", "consent_requested");
    assert_eq!(
        app.execute(&format!("DELETE FROM evidence WHERE sha256 = '{evidence}'")),
        1
    );
    let report = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["broken"]["event_id"], id.as_str());
    assert_eq!(report["broken"]["seq"], seq);
    assert!(
        report["broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{report}"
    );
}

async fn verification_reads_one_snapshot_while_others_write(backend: Backend) {
    use assent::db::repo::{leave, ledger};
    use assent::db::write_transaction;
    use assent::ledger::EventMethod;
    use diesel::prelude::*;
    let app = spawn_app(backend).await;
    app.confirmed_subscriber("ann@example.org", "newsletter")
        .await;
    let before = event_count(&app);
    let subscription: String = {
        use assent::db::schema::{subscribers, subscriptions};
        subscriptions::table
            .inner_join(subscribers::table)
            .filter(subscribers::email_key.eq("ann@example.org"))
            .select(subscriptions::id)
            .first(&mut app.db())
            .unwrap()
    };
    // Between reading the subscriber and reading its events, another
    // connection appends an event (an unsubscribe) and commits.
    let mut writer = app.db();
    let mut wrote = 0;
    let now = chrono::Utc::now().naive_utc();
    let report = ledger::verify_all_pausing(&mut app.db(), None, 5_000, || {
        if wrote == 0 {
            write_transaction(&mut writer, |conn| {
                leave::unsubscribe(
                    conn,
                    &subscription,
                    EventMethod::OneClick,
                    None,
                    &app.context.webhooks,
                    now,
                )
            })
            .unwrap();
        }
        wrote += 1;
    })
    .unwrap();
    assert_eq!(wrote, 1);
    assert_eq!(event_count(&app), before + 1);
    // The report describes the ledger as it was when verification began.
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events, before as u64);
    // And the next run sees the new event, still sound.
    let key = app.admin_key("auditor");
    let after = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(after["ok"], true, "{after}");
    assert_eq!(after["events"], before + 1);
}

/// With a second connection the evidence is looked up on it, in the
/// snapshot the first connection reads: evidence deleted after
/// verification began is still seen (on SQLite, one connection reads
/// everything).
async fn the_evidence_reader_shares_the_snapshot(backend: Backend) {
    use assent::db::repo::ledger;
    let app = spawn_app(backend).await;
    realistic_mix(&app).await;
    let before = event_count(&app);
    let (_, _, evidence) = event_with_evidence(&app, "dan@example.org", "consent_requested");
    let mut deleted = 0;
    let report = ledger::verify_all_pausing(&mut app.db(), Some(&mut app.db()), 2, || {
        if deleted == 0 {
            deleted = app.execute(&format!("DELETE FROM evidence WHERE sha256 = '{evidence}'"));
        }
    })
    .unwrap();
    assert_eq!(deleted, 1);
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events, before as u64);
    // The next verification sees the evidence gone.
    let key = app.admin_key("auditor");
    let after = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(after["ok"], false, "{after}");
}

crate::backend_tests!(
    chains_verify_after_a_realistic_mix,
    editing_an_event_is_found_at_that_event,
    deleting_an_event_is_found,
    deleting_the_last_event_is_found,
    editing_evidence_is_found_at_its_event,
    missing_evidence_is_found_unless_the_person_was_erased,
    verification_reads_one_snapshot_while_others_write,
    the_evidence_reader_shares_the_snapshot,
);
