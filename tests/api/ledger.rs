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

crate::backend_tests!(
    chains_verify_after_a_realistic_mix,
    editing_an_event_is_found_at_that_event,
    deleting_an_event_is_found,
    deleting_the_last_event_is_found,
);
