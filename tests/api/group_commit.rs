//! Group commit: sign-ups committed together give exactly the outcomes,
//! rows and emails that recording them one by one gives.

use assent::clock::naive;
use assent::db::repo::lists::ConsentRef;
use assent::db::repo::signup::{
    self, ConfirmationBudget, ConsentSource, PendingSignup, SignupError, SignupInput, SignupOutcome,
};
use assent::db::{retry, write_transaction};
use assent::domain::{ConfirmationToken, EmailAddress};
use assent::ledger::EventMethod;
use assent::ledger::evidence::Evidence;
use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

/// A sign-up as the route builds it, for `list` and `email`.
fn pending(app: &TestApp, list: &str, email: &str, consent: Option<ConsentRef>) -> PendingSignup {
    let ctx = &app.context;
    let entry = ctx.lists.by_slug(list).expect("a test list");
    let email = EmailAddress::parse(email).expect("a valid address");
    PendingSignup {
        input: SignupInput {
            list_id: entry.id.clone(),
            double_opt_in: entry.settings.double_opt_in,
            welcome: entry.settings.welcome,
            email_hmac: ctx.subject_hash(&email),
            email,
            name: None,
            consent: consent.unwrap_or_else(|| ConsentRef::Id(entry.current.id.clone())),
            consent_source: ConsentSource::VersionId,
            method: EventMethod::Api,
            evidence: Evidence::new(
                Some("192.0.2.7".into()),
                Some("peer"),
                Some("test".into()),
                None,
            )
            .seal(),
            token: ConfirmationToken::generate(),
            token_ttl: chrono::Duration::days(7),
            message_domain: "clinic.example".into(),
            budget: ConfirmationBudget {
                interval: chrono::Duration::minutes(10),
                per_day: 3,
            },
            webhooks: std::sync::Arc::clone(&ctx.webhooks),
        },
        now: naive(ctx.clock.now()),
    }
}

/// An outcome without the ids that differ between two databases.
fn shape(result: &Result<SignupOutcome, SignupError>) -> &'static str {
    match result {
        Ok(SignupOutcome::ConfirmationQueued { .. }) => "queued",
        Ok(SignupOutcome::AlreadyConfirmed) => "already_confirmed",
        Ok(SignupOutcome::ConfirmedWithoutOptIn) => "confirmed_without_opt_in",
        Ok(SignupOutcome::Throttled) => "throttled",
        Ok(SignupOutcome::Refused) => "refused",
        Err(SignupError::ConsentVersionUnknown) => "consent_version_unknown",
        Err(SignupError::Db(_)) => "database_error",
    }
}

/// The same history on a fresh app: one confirmed and one pending address.
async fn prepared(backend: Backend) -> TestApp {
    let app = spawn_app(backend).await;
    app.confirmed_subscriber("known@clinic.example", "newsletter")
        .await;
    assert_eq!(
        app.sign_up("pending@clinic.example", "newsletter")
            .await
            .status(),
        202
    );
    app.dispatch_all_pending_emails().await;
    app
}

fn mixed_batch(app: &TestApp) -> Vec<PendingSignup> {
    let unknown = ConsentRef::Id(uuid::Uuid::now_v7().to_string());
    vec![
        pending(app, "newsletter", "new1@clinic.example", None),
        pending(app, "newsletter", "new2@clinic.example", None),
        // The same address again in the same batch: over its budget.
        pending(app, "newsletter", "New1@Clinic.example", None),
        pending(app, "newsletter", "known@clinic.example", None),
        pending(app, "newsletter", "pending@clinic.example", None),
        pending(app, "newsletter", "new3@clinic.example", Some(unknown)),
        // The budget holds across lists.
        pending(app, "offers", "new1@clinic.example", None),
        pending(app, "offers", "NEW4@clinic.example", None),
        pending(app, "newsletter", "new4@clinic.example", None),
        pending(app, "offers", "known@clinic.example", None),
        pending(app, "newsletter", "new5@clinic.example", None),
    ]
}

const ADDRESSES: [&str; 7] = [
    "new1@clinic.example",
    "new2@clinic.example",
    "new3@clinic.example",
    "new4@clinic.example",
    "new5@clinic.example",
    "known@clinic.example",
    "pending@clinic.example",
];

async fn a_batch_records_what_one_by_one_records(backend: Backend) {
    let batched = prepared(backend).await;
    let alone = prepared(backend).await;

    let batch = mixed_batch(&batched);
    let batch_results = signup::record_batch(&mut batched.db(), &batch);
    let mut conn = alone.db();
    let alone_results: Vec<_> = mixed_batch(&alone)
        .iter()
        .map(|p| retry(|| write_transaction(&mut conn, |c| signup::record(c, &p.input, p.now))))
        .collect();

    let batch_shapes: Vec<_> = batch_results.iter().map(shape).collect();
    let alone_shapes: Vec<_> = alone_results.iter().map(shape).collect();
    assert_eq!(batch_shapes, alone_shapes);
    assert_eq!(
        batch_shapes,
        [
            "queued",
            "queued",
            "throttled",
            "already_confirmed",
            "throttled",
            "consent_version_unknown",
            "throttled",
            "queued",
            "throttled",
            "throttled",
            "queued",
        ]
    );

    for address in ADDRESSES {
        assert_eq!(
            batched.event_kinds(address),
            alone.event_kinds(address),
            "{address}"
        );
        // Ids and the clocks differ between the two apps: compare the
        // details' flags and which other fields are there.
        let details = |app: &TestApp| {
            app.events_for(address)
                .into_iter()
                .map(|e| {
                    let mut details: serde_json::Value = serde_json::from_str(&e.details).unwrap();
                    for value in details.as_object_mut().unwrap().values_mut() {
                        if value.is_string() && !value.as_str().unwrap().ends_with("_id") {
                            *value = json!("…");
                        }
                    }
                    details
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(details(&batched), details(&alone), "{address}");
        for list in ["newsletter", "offers"] {
            assert_eq!(
                batched.subscription_state(address, list),
                alone.subscription_state(address, list),
                "{address} on {list}"
            );
        }
    }
    assert_eq!(
        batched
            .subscription_state("new4@clinic.example", "offers")
            .as_deref(),
        Some("pending")
    );

    assert_eq!(
        batched.dispatch_all_pending_emails().await,
        alone.dispatch_all_pending_emails().await
    );
    for address in ADDRESSES {
        assert_eq!(
            batched.confirmation_links(address).len(),
            alone.confirmation_links(address).len(),
            "{address}"
        );
    }
    // Each confirmation link of the batch confirms.
    let link = batched.local(
        batched
            .confirmation_links("new5@clinic.example")
            .last()
            .expect("a confirmation email"),
    );
    let confirmed = batched
        .client
        .post(&link)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);

    let key = batched.admin_key("audit");
    let report = batched.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["ok"], json!(true), "{report}");
}

/// Many concurrent sign-ups through HTTP, batched by a writer that waits
/// for more: every answer as usual, one email per address.
async fn concurrent_signups_are_batched_without_changing_answers(backend: Backend) {
    let app = spawn_app_with(
        backend,
        "[database]\nsignup_batch_window_us = 5000\nsignup_batch_max = 16\n",
    )
    .await;
    app.confirmed_subscriber("known@clinic.example", "newsletter")
        .await;
    let mut posts = Vec::new();
    for n in 0..24 {
        // Every address twice, and the confirmed one among them.
        let email = if n % 6 == 5 {
            "known@clinic.example".to_owned()
        } else {
            format!("crowd{}@clinic.example", n / 2)
        };
        let client = app.client.clone();
        let url = app.url("/subscriptions");
        posts.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({ "email": email, "consent": true }))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }));
    }
    let unknown = app
        .post_json(&json!({
            "email": "crowd-x@clinic.example",
            "consent": true,
            "consent_version": uuid::Uuid::now_v7().to_string(),
        }))
        .await;
    assert_eq!(unknown.status(), 422);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("consent_version_unknown")
    );
    for post in posts {
        let (status, body) = post.await.unwrap();
        assert_eq!(status, 202);
        assert_eq!(body, r#"{"status":"check_inbox"}"#);
    }
    app.dispatch_all_pending_emails().await;
    let mut addresses: Vec<String> = (0..24)
        .filter(|n| n % 6 != 5)
        .map(|n| format!("crowd{}@clinic.example", n / 2))
        .collect();
    addresses.dedup();
    for address in &addresses {
        assert_eq!(app.confirmation_links(address).len(), 1, "{address}");
        let kinds = app.event_kinds(address);
        assert!(
            kinds
                .iter()
                .all(|k| k == "consent_requested" || k == "confirmation_sent"),
            "{address}: {kinds:?}"
        );
    }
    assert!(app.events_for("crowd-x@clinic.example").is_empty());
    assert_eq!(app.confirmation_links("known@clinic.example").len(), 1);
    let key = app.admin_key("audit");
    let report = app.admin_json("/admin/ledger/verify", &key).await;
    assert_eq!(report["ok"], json!(true), "{report}");
}

/// A statement that fails under `with_index_lookups` (which turns the
/// planner's sequential scans off and on again around the batch's
/// look-ups) reports its own error, here the unique violation callers
/// classify, not the refused "on" of the aborted transaction after it.
async fn a_failure_under_index_lookups_reports_its_own_error(backend: Backend) {
    use assent::db::{DbError, with_index_lookups};
    use diesel::RunQueryDsl;
    use diesel::result::{DatabaseErrorKind, Error};
    let app = spawn_app(backend).await;
    let outcome = write_transaction(&mut app.db(), |conn| {
        with_index_lookups(conn, |conn| {
            diesel::sql_query("INSERT INTO lists SELECT * FROM lists").execute(conn)?;
            Ok::<_, DbError>(())
        })
    });
    assert!(
        matches!(
            outcome,
            Err(DbError::Query(Error::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            )))
        ),
        "{outcome:?}"
    );
}

crate::backend_tests!(
    a_batch_records_what_one_by_one_records,
    concurrent_signups_are_batched_without_changing_answers,
    a_failure_under_index_lookups_reports_its_own_error,
);
