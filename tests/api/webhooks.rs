//! Webhooks, end to end: the state change enqueues a notice in its own
//! transaction, the webhook worker posts it to a real HTTP receiver, and
//! the test checks the Standard Webhooks signature itself (HMAC computed
//! here from the specification, not with Assent's signer).

use assent::clock::Clock;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Duration;
use diesel::prelude::*;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::webhook_receiver::{ReceivedWebhook, WebhookReceiver};

/// The signing key of the test endpoints (32 bytes).
const KEY: &[u8; 32] = b"assent-test-webhook-signing-key!";

fn secret() -> String {
    format!("whsec_{}", STANDARD.encode(KEY))
}

/// A list `members` whose webhooks go to `url` (all events), plus any
/// further `[[lists.webhooks]]` tables.
fn members_list(url: &str, more: &str) -> String {
    format!(
        r#"
[[lists]]
slug = "members"
name = "Members"
from = "Members <members@clinic.example>"
[[lists.consent_texts]]
text = "I agree to receive the members' letter by email."
[[lists.webhooks]]
url = "{url}"
secret = "{secret}"
{more}
"#,
        secret = secret()
    )
}

/// Verifies `webhook-signature` as a receiver would: base64 HMAC-SHA256
/// keyed with the bytes behind `whsec_`, over `{id}.{timestamp}.{body}`;
/// the header may list several space-separated signatures.
fn signature_is_valid(hook: &ReceivedWebhook, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64");
    let id = hook.header("webhook-id").expect("webhook-id");
    let timestamp = hook.header("webhook-timestamp").expect("webhook-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{}", hook.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    hook.header("webhook-signature")
        .expect("webhook-signature")
        .split(' ')
        .any(|signature| signature == expected)
}

/// A webhook row of the outbox.
#[derive(Debug, Clone)]
struct WebhookRow {
    id: String,
    kind: String,
    state: String,
    attempts: i32,
    last_error: Option<String>,
    payload: String,
}

fn webhook_rows(app: &TestApp) -> Vec<WebhookRow> {
    use assent::db::schema::outbox;
    let mut conn = app.db();
    outbox::table
        .filter(outbox::kind.like("webhook:%"))
        .order((outbox::created_at.asc(), outbox::id.asc()))
        .select((
            outbox::id,
            outbox::kind,
            outbox::state,
            outbox::attempts,
            outbox::last_error,
            outbox::payload,
        ))
        .load::<(String, String, String, i32, Option<String>, String)>(&mut conn)
        .unwrap()
        .into_iter()
        .map(
            |(id, kind, state, attempts, last_error, payload)| WebhookRow {
                id,
                kind,
                state,
                attempts,
                last_error,
                payload,
            },
        )
        .collect()
}

fn subscription_id(app: &TestApp, email: &str, list: &str) -> String {
    use assent::db::schema::{lists, subscribers, subscriptions};
    let mut conn = app.db();
    subscriptions::table
        .inner_join(subscribers::table)
        .inner_join(lists::table)
        .filter(subscribers::email_key.eq(email))
        .filter(lists::slug.eq(list))
        .select(subscriptions::id)
        .first(&mut conn)
        .unwrap()
}

fn of_type<'a>(hooks: &'a [ReceivedWebhook], event: &str) -> Vec<&'a ReceivedWebhook> {
    hooks.iter().filter(|h| h.event_type() == event).collect()
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn a_confirmation_is_delivered_once_and_signed(backend: Backend) {
    let receiver = WebhookReceiver::start().await;
    let app = spawn_app_with(backend, &members_list(&receiver.url("/hooks/esp"), "")).await;
    app.confirmed_subscriber("ann@example.org", "members").await;
    // The mail worker delivered the welcome email and left the webhook to
    // the webhook worker.
    let rows = webhook_rows(&app);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].kind, "webhook:subscription.confirmed");
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("pending", 0));
    assert!(receiver.received().is_empty());

    assert_eq!(app.dispatch_all_pending_webhooks().await, 1);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let hook = &received[0];
    assert_eq!(hook.method, "POST");
    assert_eq!(hook.path, "/hooks/esp");
    assert_eq!(hook.header("content-type"), Some("application/json"));
    assert_eq!(hook.header("webhook-id"), Some(rows[0].id.as_str()));
    assert_eq!(
        hook.header("webhook-timestamp"),
        Some(app.clock.now().timestamp().to_string().as_str())
    );
    assert!(signature_is_valid(hook, &secret()), "{hook:?}");
    assert!(!signature_is_valid(
        hook,
        &format!("whsec_{}", STANDARD.encode([0u8; 32]))
    ));

    let body = hook.json();
    assert_eq!(body["type"], "subscription.confirmed");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let data = &body["data"];
    assert_eq!(data["email"], "ann@example.org");
    assert_eq!(data["list"], "members");
    assert_eq!(data["method"], "confirmation_page");
    assert_eq!(
        data["subscription_id"],
        subscription_id(&app, "ann@example.org", "members")
    );
    assert_eq!(data["occurred_at"], body["timestamp"]);

    // Delivered means done: the payload is forgotten, nothing is sent
    // again, and a second click on the link announces nothing new.
    let rows = webhook_rows(&app);
    assert_eq!(rows[0].state, "sent");
    assert_eq!(rows[0].payload, "{}");
    let link = app.local(app.confirmation_links("ann@example.org").last().unwrap());
    assert_eq!(app.client.post(&link).send().await.unwrap().status(), 200);
    app.clock.advance(Duration::days(1));
    assert_eq!(app.dispatch_all_pending_webhooks().await, 0);
    assert_eq!(receiver.received().len(), 1);
    // Lists without webhooks announce nothing.
    app.confirmed_subscriber("ann@example.org", "newsletter")
        .await;
    assert_eq!(webhook_rows(&app).len(), 1);
}

async fn unsubscribing_is_announced(backend: Backend) {
    let receiver = WebhookReceiver::start().await;
    let app = spawn_app_with(backend, &members_list(&receiver.url("/hooks/esp"), "")).await;
    let url = app.confirmed_subscriber("bo@example.org", "members").await;
    app.dispatch_all_pending_webhooks().await;
    app.one_click(&url).await;
    // Repeating the one-click POST changes nothing and announces nothing.
    app.one_click(&url).await;
    assert_eq!(app.dispatch_all_pending_webhooks().await, 1);
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 2);
    let (confirmed, unsubscribed) = (&accepted[0], &accepted[1]);
    assert_eq!(unsubscribed.event_type(), "subscription.unsubscribed");
    assert!(signature_is_valid(unsubscribed, &secret()));
    assert_ne!(
        unsubscribed.header("webhook-id"),
        confirmed.header("webhook-id")
    );
    let data = &unsubscribed.json()["data"];
    assert_eq!(data["email"], "bo@example.org");
    assert_eq!(data["method"], "one_click");
    assert_eq!(data["list"], "members");
    assert_eq!(
        data["subscription_id"],
        confirmed.json()["data"]["subscription_id"]
    );
}

async fn withdrawal_with_erasure_announces_both_and_erasure_carries_no_address(backend: Backend) {
    let esp = WebhookReceiver::start().await;
    let crm = WebhookReceiver::start().await;
    let more = format!(
        "[[lists.webhooks]]\nurl = \"{}\"\nsecret = \"{}\"\nevents = [\"subject.erased\"]\n",
        crm.url("/crm"),
        secret()
    );
    let app = spawn_app_with(backend, &members_list(&esp.url("/hooks/esp"), &more)).await;
    let url = app.confirmed_subscriber("cy@example.org", "members").await;
    app.dispatch_all_pending_webhooks().await;
    assert_eq!(esp.accepted().len(), 1);
    assert!(crm.received().is_empty(), "the CRM wants only erasures");

    let withdraw = url.replace("/unsubscribe/", "/withdraw/");
    let response = app
        .client
        .post(&withdraw)
        .form(&[("erase", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Until it is delivered, the withdrawal notice is the one place the
    // address survives: the ESP needs it to stop mailing the person.
    assert_eq!(app.find_text_anywhere("cy@example.org"), ["outbox.payload"]);

    assert_eq!(app.dispatch_all_pending_webhooks().await, 3);
    let at_esp = esp.accepted();
    assert_eq!(at_esp.len(), 3);
    let withdrawn = of_type(&at_esp, "consent.withdrawn");
    let erased = of_type(&at_esp, "subject.erased");
    assert_eq!((withdrawn.len(), erased.len()), (1, 1), "{at_esp:?}");
    let withdrawn_data = &withdrawn[0].json()["data"];
    assert_eq!(withdrawn_data["email"], "cy@example.org");
    assert_eq!(withdrawn_data["method"], "page");

    let erased = erased[0];
    assert!(signature_is_valid(erased, &secret()));
    assert!(!erased.body.contains("cy@example.org"), "{}", erased.body);
    let data = &erased.json()["data"];
    assert!(data.get("email").is_none());
    let hash = data["email_hmac"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(data["subscriber_id"], withdrawn_data["subscriber_id"]);
    assert_eq!(data["subscription_id"], withdrawn_data["subscription_id"]);
    assert_eq!(data["method"], "page");

    // The CRM got the same erasure notice under its own webhook-id.
    let at_crm = crm.accepted();
    assert_eq!(at_crm.len(), 1);
    assert_eq!(at_crm[0].body, erased.body);
    assert_ne!(at_crm[0].header("webhook-id"), erased.header("webhook-id"));
    assert!(signature_is_valid(&at_crm[0], &secret()));

    // Delivered, the notices are forgotten: the address is gone everywhere.
    assert_eq!(
        app.find_text_anywhere("cy@example.org"),
        Vec::<String>::new()
    );
    assert!(webhook_rows(&app).iter().all(|r| r.state == "sent"));
}

async fn erasure_cancels_a_confirmation_not_yet_delivered(backend: Backend) {
    let receiver = WebhookReceiver::start().await;
    receiver.script([500]);
    let app = spawn_app_with(backend, &members_list(&receiver.url("/hooks/esp"), "")).await;
    app.confirmed_subscriber("di@example.org", "members").await;
    app.dispatch_all_pending_webhooks().await;
    assert_eq!(webhook_rows(&app)[0].state, "pending");

    let key = app.admin_key("dpo");
    let response = app
        .admin(
            reqwest::Method::DELETE,
            "/admin/subjects/di@example.org",
            &key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rows = webhook_rows(&app);
    assert_eq!(rows[0].kind, "webhook:subscription.confirmed");
    assert_eq!(rows[0].state, "cancelled");
    assert_eq!(rows[0].payload, "{}");
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some("superseded by consent.withdrawn")
    );

    // Even after the confirmation's backoff, only the withdrawal and the
    // erasure are delivered: the receiver is never told to add the person.
    app.clock.advance(Duration::hours(1));
    assert_eq!(app.dispatch_all_pending_webhooks().await, 2);
    let accepted = receiver.accepted();
    let mut types: Vec<String> = accepted.iter().map(|h| h.event_type()).collect();
    types.sort();
    assert_eq!(types, ["consent.withdrawn", "subject.erased"]);
    assert!(
        accepted
            .iter()
            .all(|h| h.json()["data"]["method"] == "admin")
    );
    assert_eq!(
        app.find_text_anywhere("di@example.org"),
        Vec::<String>::new()
    );
}

async fn a_failed_delivery_is_retried_with_the_same_webhook_id(backend: Backend) {
    let receiver = WebhookReceiver::start().await;
    receiver.script([500]);
    let app = spawn_app_with(backend, &members_list(&receiver.url("/hooks/esp"), "")).await;
    app.confirmed_subscriber("ed@example.org", "members").await;
    assert_eq!(app.dispatch_all_pending_webhooks().await, 1);
    let rows = webhook_rows(&app);
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("pending", 1));
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    // Not due before the backoff (60 s in tests) has passed.
    assert_eq!(app.dispatch_all_pending_webhooks().await, 0);
    app.clock.advance(Duration::seconds(61));
    assert_eq!(app.dispatch_all_pending_webhooks().await, 1);

    let received = receiver.received();
    assert_eq!(
        received.iter().map(|h| h.status).collect::<Vec<_>>(),
        [500, 200]
    );
    assert_eq!(
        received[0].header("webhook-id"),
        received[1].header("webhook-id")
    );
    assert_eq!(received[0].body, received[1].body);
    // Each attempt is signed at its own time.
    assert_eq!(
        received[1].header("webhook-timestamp"),
        Some(app.clock.now().timestamp().to_string().as_str())
    );
    assert!(received.iter().all(|h| signature_is_valid(h, &secret())));
    assert_eq!(receiver.accepted().len(), 1);
    let rows = webhook_rows(&app);
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("sent", 2));
    assert_eq!(rows[0].last_error, None);

    let metrics = metrics(&app).await;
    assert!(
        metrics.contains("assent_webhook_attempts_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("assent_webhook_failures_total{class=\"transient\"} 1"));
    assert!(metrics.contains("assent_webhook_failures_total{class=\"permanent\"} 0"));
}

async fn a_refused_delivery_ends_dead_visible_and_retryable(backend: Backend) {
    let receiver = WebhookReceiver::start().await;
    receiver.script([400, 400, 400]);
    let app = spawn_app_with(backend, &members_list(&receiver.url("/hooks/esp"), "")).await;
    app.confirmed_subscriber("flo@example.org", "members").await;
    // The outbox's rules: a refusal counts as a failed attempt, and after
    // `outbox.max_attempts` (3 in tests) the row is dead.
    for _ in 0..3 {
        app.dispatch_all_pending_webhooks().await;
        app.clock.advance(Duration::hours(2));
    }
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|h| h.status == 400));
    let rows = webhook_rows(&app);
    let id = rows[0].id.clone();
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("dead", 3));
    assert_eq!(rows[0].last_error.as_deref(), Some("HTTP 400 Bad Request"));
    app.clock.advance(Duration::days(2));
    assert_eq!(app.dispatch_all_pending_webhooks().await, 0);

    let key = app.admin_key("ops");
    let dead = app.admin_json("/admin/outbox?state=dead", &key).await;
    let listed: Vec<&Value> = dead["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"] == id.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "{dead}");
    assert_eq!(listed[0]["kind"], "webhook:subscription.confirmed");
    assert_eq!(listed[0]["last_error"], "HTTP 400 Bad Request");
    assert_eq!(
        listed[0]["webhook_host"],
        format!("127.0.0.1:{}", receiver.port)
    );
    assert!(!dead.to_string().contains("flo@example.org"));

    let retried = app
        .admin(
            reqwest::Method::POST,
            &format!("/admin/outbox/{id}/retry"),
            &key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    assert_eq!(app.dispatch_all_pending_webhooks().await, 1);
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].header("webhook-id"), Some(id.as_str()));
    assert_eq!(webhook_rows(&app)[0].state, "sent");
    let metrics = metrics(&app).await;
    assert!(metrics.contains("assent_webhook_failures_total{class=\"permanent\"} 3"));
}

async fn a_receiver_that_is_down_is_retried_and_no_url_is_kept(backend: Backend) {
    // Nothing listens on the port at first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hooks/token-s3cr3t?key=hunter2");
    let app = spawn_app_with(backend, &members_list(&url, "")).await;
    app.confirmed_subscriber("gus@example.org", "members").await;
    app.dispatch_all_pending_webhooks().await;
    let rows = webhook_rows(&app);
    assert_eq!(rows[0].state, "pending");
    let error = rows[0].last_error.clone().expect("the connection error");
    assert!(
        !error.contains("s3cr3t") && !error.contains("hunter2"),
        "{error}"
    );
    assert!(
        !rows[0].payload.contains("s3cr3t"),
        "the outbox names endpoints by fingerprint"
    );

    let receiver = WebhookReceiver::start_on(port).await;
    app.clock.advance(Duration::seconds(61));
    assert_eq!(app.dispatch_all_pending_webhooks().await, 1);
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].path, "/hooks/token-s3cr3t?key=hunter2");
    assert_eq!(webhook_rows(&app)[0].state, "sent");
}

crate::backend_tests!(
    a_confirmation_is_delivered_once_and_signed,
    unsubscribing_is_announced,
    withdrawal_with_erasure_announces_both_and_erasure_carries_no_address,
    erasure_cancels_a_confirmation_not_yet_delivered,
    a_failed_delivery_is_retried_with_the_same_webhook_id,
    a_refused_delivery_ends_dead_visible_and_retryable,
    a_receiver_that_is_down_is_retried_and_no_url_is_kept,
);
