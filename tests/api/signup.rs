use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::{
    Backend, CURRENT_TEXT, header, html_part, spawn_app, spawn_app_with, text_part,
};

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The consent version id the hosted form carries.
async fn form_version(app: &crate::helpers::TestApp, slug: &str) -> String {
    let body = app
        .client
        .get(app.url(&format!("/lists/{slug}/form")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = r#"name="consent_version" value=""#;
    let start = body.find(marker).expect("the form carries the version") + marker.len();
    body[start..start + 36].to_owned()
}

async fn form_post_ends_in_a_confirmed_subscription(backend: Backend) {
    let app = spawn_app(backend).await;
    let version = form_version(&app, "newsletter").await;
    let response = app
        .client
        .post(app.url("/subscriptions"))
        .header("User-Agent", "Mozilla/5.0 test")
        .header("Referer", "https://clinic.example/footer")
        .form(&[
            ("email", "Ann.Lee@Example.org"),
            ("name", "Ann <b>Lee</b>"),
            ("consent", "on"),
            ("consent_version", version.as_str()),
            ("list", "newsletter"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/lists/newsletter/check-inbox"
    );
    let landing = app
        .client
        .get(app.url("/lists/newsletter/check-inbox"))
        .send()
        .await
        .unwrap();
    assert_eq!(landing.status(), 200);
    assert!(landing.text().await.unwrap().contains("check your inbox"));
    assert_eq!(
        app.subscription_state("ann.lee@example.org", "newsletter")
            .as_deref(),
        Some("pending")
    );

    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    let mails = app.mails_to("Ann.Lee@example.org");
    assert_eq!(mails.len(), 1);
    let raw = &mails[0].data;
    assert_eq!(mails[0].mail_from, "<news@clinic.example>");
    assert_eq!(
        header(raw, "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert_eq!(
        header(raw, "List-Id").as_deref(),
        Some("\"Clinic news\" <newsletter.clinic.example>")
    );
    assert_eq!(
        header(raw, "Reply-To").as_deref(),
        Some("\"Front desk\" <desk@clinic.example>")
    );
    assert!(header(raw, "From").unwrap().contains("news@clinic.example"));
    let message_id = header(raw, "Message-ID").unwrap();
    assert!(message_id.ends_with("@clinic.example>"), "{message_id}");
    let text = text_part(raw);
    let html = html_part(raw);
    // Nothing the person typed goes into the mail. (With the space: a bare
    // "Ann" turns up now and then inside a random token or boundary.)
    assert!(!text.contains("Ann ") && !html.contains("Ann "));
    assert!(!raw.contains("<b>Lee</b>"));
    assert!(!text.contains("clinic.example/footer"));

    let link = app.confirmation_links("Ann.Lee@example.org").remove(0);
    assert!(link.starts_with("http://127.0.0.1:8080/confirm/"), "{link}");
    let token = link.rsplit('/').next().unwrap();
    assert_eq!(token.len(), 43);
    let link = app.local(&link);

    // A GET (a link scanner, a preview) shows the page and changes nothing.
    for _ in 0..3 {
        let page = app.client.get(&link).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["referrer-policy"], "no-referrer");
        assert_eq!(page.headers()["cache-control"], "no-store");
        let body = page.text().await.unwrap();
        assert!(body.contains(CURRENT_TEXT));
        assert!(body.contains("Clinic news"));
        assert!(body.contains("Confirm subscription"));
        assert!(body.contains(r#"method="post""#));
    }
    assert_eq!(
        app.subscription_state("ann.lee@example.org", "newsletter")
            .as_deref(),
        Some("pending")
    );
    assert_eq!(
        app.event_kinds("ann.lee@example.org"),
        ["consent_requested", "confirmation_sent"]
    );

    let confirmed = app
        .client
        .post(&link)
        .header("User-Agent", "Mozilla/5.0 clicker")
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    assert!(
        confirmed
            .text()
            .await
            .unwrap()
            .contains("Subscription confirmed")
    );
    assert_eq!(
        app.subscription_state("ann.lee@example.org", "newsletter")
            .as_deref(),
        Some("confirmed")
    );

    let events = app.events_for("ann.lee@example.org");
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "consent_requested",
            "confirmation_sent",
            "consent_confirmed"
        ]
    );
    let requested = &events[0];
    assert_eq!(requested.method.as_deref(), Some("form"));
    assert_eq!(
        requested.consent_sha256.as_deref(),
        Some(sha256_hex(CURRENT_TEXT).as_str())
    );
    assert!(
        requested
            .details
            .contains(r#""consent_source":"version_id""#)
    );
    assert!(requested.details.contains("token_expires_at"));
    let (ip, ua, source) = app
        .evidence(requested.evidence_sha256.as_deref().unwrap())
        .unwrap();
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(ua.as_deref(), Some("Mozilla/5.0 test"));
    assert_eq!(source.as_deref(), Some("https://clinic.example/footer"));
    assert!(events[1].details.contains(&message_id));
    let confirmed = &events[2];
    assert_eq!(confirmed.method.as_deref(), Some("confirmation_page"));
    assert_eq!(confirmed.consent_sha256, requested.consent_sha256);
    let (_, ua, _) = app
        .evidence(confirmed.evidence_sha256.as_deref().unwrap())
        .unwrap();
    assert_eq!(ua.as_deref(), Some("Mozilla/5.0 clicker"));
}

async fn json_post_ends_in_a_confirmed_subscription(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .post_json(&json!({
            "email": "bo@example.org",
            "consent": true,
            "consent_text": CURRENT_TEXT,
            "source_url": "https://clinic.example/app",
        }))
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({ "status": "check_inbox" })
    );
    app.dispatch_all_pending_emails().await;
    let link = app.local(&app.confirmation_links("bo@example.org")[0]);
    let first = app
        .client
        .post(&link)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.json::<serde_json::Value>().await.unwrap()["status"],
        "confirmed"
    );
    // A second POST answers the same and records nothing new.
    let second = app
        .client
        .post(&link)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.json::<serde_json::Value>().await.unwrap()["status"],
        "confirmed"
    );
    let events = app.events_for("bo@example.org");
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].method.as_deref(), Some("api"));
    assert!(events[0].details.contains(r#""consent_source":"text""#));
    let (_, _, source) = app
        .evidence(events[0].evidence_sha256.as_deref().unwrap())
        .unwrap();
    assert_eq!(source.as_deref(), Some("https://clinic.example/app"));
}

async fn multipart_post_is_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let form = reqwest::multipart::Form::new()
        .text("email", "cy@example.org")
        .text("consent", "yes")
        .text("list", "offers");
    let response = app
        .client
        .post(app.url("/subscriptions"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "https://clinic.example/offers/thanks"
    );
    assert_eq!(
        app.subscription_state("cy@example.org", "offers")
            .as_deref(),
        Some("pending")
    );
    let events = app.events_for("cy@example.org");
    assert!(
        events[0]
            .details
            .contains(r#""consent_source":"list_current""#)
    );
    assert_eq!(
        events[0].consent_sha256.as_deref(),
        Some(sha256_hex("Ich willige ein, Angebote per E-Mail zu erhalten.").as_str())
    );
    // The list is German: so is its mail.
    app.dispatch_all_pending_emails().await;
    let mail = &app.mails_to("cy@example.org")[0];
    assert!(text_part(&mail.data).contains("Bitte bestätigen Sie"));
    assert_eq!(
        header(&mail.data, "Subject").as_deref(),
        Some("Bitte bestätigen: Angebote der Praxis")
    );
}

async fn an_older_registered_text_is_recorded_as_shown(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .post_json(&json!({ "email": "di@example.org", "consent": true, "consent_text": "An older consent text." }))
        .await;
    assert_eq!(response.status(), 202);
    let events = app.events_for("di@example.org");
    assert_eq!(
        events[0].consent_sha256.as_deref(),
        Some(sha256_hex("An older consent text.").as_str())
    );
}

async fn redirect_is_honoured_only_when_configured(backend: Backend) {
    let app = spawn_app(backend).await;
    let allowed = app
        .post_form(&[
            ("email", "ed@example.org"),
            ("consent", "on"),
            ("redirect", "https://clinic.example/thanks"),
        ])
        .await;
    assert_eq!(allowed.status(), 303);
    assert_eq!(
        allowed.headers()["location"],
        "https://clinic.example/thanks"
    );
    let foreign = app
        .post_form(&[
            ("email", "ed@example.org"),
            ("consent", "on"),
            ("redirect", "https://evil.example/"),
        ])
        .await;
    assert_eq!(foreign.status(), 303);
    assert_eq!(
        foreign.headers()["location"],
        "/lists/newsletter/check-inbox"
    );
}

async fn problem(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "status {status}"
    );
    (status, response.json().await.unwrap())
}

fn codes(body: &serde_json::Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap().to_owned())
        .collect()
}

async fn bad_input_gets_a_clear_4xx(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (json!({ "consent": true }), "email_required"),
        (
            json!({ "email": "not-an-address", "consent": true }),
            "email_invalid",
        ),
        (
            json!({ "email": format!("{}@example.org", "a".repeat(250)), "consent": true }),
            "email_too_long",
        ),
        (
            json!({ "email": "x".repeat(10_000), "consent": true }),
            "email_too_long",
        ),
        (
            json!({ "email": "a@example.org\r\nBcc: b@example.org", "consent": true }),
            "email_invalid",
        ),
        (json!({ "email": "a@example.org" }), "consent_required"),
        (
            json!({ "email": "a@example.org", "consent": false }),
            "consent_required",
        ),
        (
            json!({ "email": "a@example.org", "consent": true, "list": "nope" }),
            "list_unknown",
        ),
        (
            json!({ "email": "a@example.org", "consent": true, "consent_version": "not-a-uuid" }),
            "consent_version_unknown",
        ),
        (
            json!({ "email": "a@example.org", "consent": true, "consent_version": "01a2b3c4-0000-7000-8000-000000000000" }),
            "consent_version_unknown",
        ),
        (
            json!({ "email": "a@example.org", "consent": true, "consent_text": "A text nobody showed." }),
            "consent_text_unknown",
        ),
        (
            json!({ "email": "a@example.org", "consent": true, "name": "n".repeat(101) }),
            "name_too_long",
        ),
        (
            json!({ "email": "a@example.org", "consent": true, "name": "Eve\r\nBcc: x@y.z" }),
            "name_invalid",
        ),
        (json!({ "email": 42, "consent": true }), "wrong_type"),
    ];
    for (body, code) in cases {
        let (status, problem) = problem(app.post_json(&body).await).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            codes(&problem).contains(&code.to_owned()),
            "{body}: {problem}"
        );
        assert_eq!(problem["status"], 422);
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:assent:problem:")
        );
    }
    // A version of another list is not a version of this one.
    let offers_version = {
        let body = app
            .client
            .get(app.url("/lists/offers/form"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let marker = r#"name="consent_version" value=""#;
        let start = body.find(marker).unwrap() + marker.len();
        body[start..start + 36].to_owned()
    };
    let (status, body) = problem(
        app.post_json(&json!({ "email": "a@example.org", "consent": true, "list": "newsletter", "consent_version": offers_version }))
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(codes(&body), ["consent_version_unknown"]);

    let (status, _) = problem(
        app.client
            .post(app.url("/subscriptions"))
            .header("Content-Type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = problem(
        app.client
            .post(app.url("/subscriptions"))
            .header("Content-Type", "text/plain")
            .header("Accept", "application/json")
            .body("email=a@example.org")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 415);
    let huge = format!(
        "email=a%40example.org&consent=on&name={}",
        "x".repeat(17 * 1024)
    );
    let response = app
        .client
        .post(app.url("/subscriptions"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // Invalid UTF-8 in a form.
    let response = app
        .client
        .post(app.url("/subscriptions"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(b"email=a%FF%FE%40example.org&consent=on".to_vec())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    // Nothing was stored by any of it.
    assert!(app.outbox_rows().is_empty());
}

async fn a_browser_gets_a_readable_error_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .post_form(&[
            ("email", "<script>alert(1)</script>"),
            ("name", "<script>x</script>"),
        ])
        .await;
    assert_eq!(response.status(), 422);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("Please enter a valid email address."));
    assert!(body.contains("Please tick the consent box"));
    assert!(body.contains(r#"href="/lists/newsletter/form""#));
    assert!(!body.contains("<script>"));
}

async fn signing_up_again_answers_the_same_whatever_the_state(backend: Backend) {
    let app = spawn_app(backend).await;
    let fresh = app
        .post_form(&[("email", "fay@example.org"), ("consent", "on")])
        .await;
    let fresh = (
        fresh.status(),
        fresh.headers().get("location").cloned(),
        fresh.text().await.unwrap(),
    );
    // Pending, ten minutes later: a fresh token and a fresh email.
    app.clock.advance(chrono::Duration::minutes(11));
    let pending = app
        .post_form(&[("email", "FAY@example.org"), ("consent", "on")])
        .await;
    let pending = (
        pending.status(),
        pending.headers().get("location").cloned(),
        pending.text().await.unwrap(),
    );
    assert_eq!(fresh, pending);
    app.dispatch_all_pending_emails().await;
    let links = app.confirmation_links("fay@example.org");
    assert_eq!(links.len(), 2);
    assert_ne!(links[0], links[1]);
    // Confirm with the older link: both were valid.
    let confirmed = app.client.post(app.local(&links[0])).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    // The welcome email.
    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    let events_before = app.events_for("fay@example.org").len();
    // Confirmed: same answer, nothing changes, nothing is sent.
    let again = app
        .post_form(&[("email", "fay@example.org"), ("consent", "on")])
        .await;
    let again = (
        again.status(),
        again.headers().get("location").cloned(),
        again.text().await.unwrap(),
    );
    assert_eq!(fresh, again);
    assert_eq!(app.dispatch_all_pending_emails().await, 0);
    assert_eq!(app.mails_to("fay@example.org").len(), 3);
    assert_eq!(app.events_for("fay@example.org").len(), events_before);
    let json_new = app.sign_up("gil@example.org", "newsletter").await;
    let json_new = (json_new.status(), json_new.text().await.unwrap());
    let json_confirmed = app.sign_up("fay@example.org", "newsletter").await;
    let json_confirmed = (
        json_confirmed.status(),
        json_confirmed.text().await.unwrap(),
    );
    assert_eq!(json_new, json_confirmed);
}

async fn concurrent_sign_ups_of_one_address_never_fail(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut handles = Vec::new();
    for _ in 0..8 {
        let client = app.client.clone();
        let url = app.url("/subscriptions");
        handles.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({ "email": "race@example.org", "consent": true }))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for handle in handles {
        assert_eq!(handle.await.unwrap(), 202);
    }
    let events = app.events_for("race@example.org");
    assert_eq!(events.len(), 8);
    // One confirmation email; the others are over the address's budget.
    assert_eq!(app.outbox_rows().len(), 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.details.contains(r#""throttled":true"#))
            .count(),
        7
    );
}

async fn form_consent_also_accepts_true_and_1(backend: Backend) {
    let app = spawn_app(backend).await;
    for (email, consent) in [("t@example.org", "true"), ("one@example.org", "1")] {
        let response = app
            .post_form(&[("email", email), ("consent", consent)])
            .await;
        assert_eq!(response.status(), 303, "consent={consent}");
        assert_eq!(
            response.headers()["location"],
            "/lists/newsletter/check-inbox"
        );
        assert_eq!(
            app.subscription_state(email, "newsletter").as_deref(),
            Some("pending"),
            "consent={consent}"
        );
    }
    // Anything else is no consent.
    for consent in ["false", "0", "no", ""] {
        let response = app
            .client
            .post(app.url("/subscriptions"))
            .header("Accept", "application/json")
            .form(&[("email", "no@example.org"), ("consent", consent)])
            .send()
            .await
            .unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, 422, "consent={consent}");
        assert_eq!(codes(&body), ["consent_required"]);
    }
    assert_eq!(app.subscription_state("no@example.org", "newsletter"), None);
}

async fn consent_version_and_text_together_must_agree(backend: Backend) {
    let app = spawn_app(backend).await;
    let version = form_version(&app, "newsletter").await;
    let agreeing = app
        .post_json(&json!({
            "email": "both@example.org",
            "consent": true,
            "consent_version": version,
            "consent_text": CURRENT_TEXT,
        }))
        .await;
    assert_eq!(agreeing.status(), 202);
    let events = app.events_for("both@example.org");
    assert_eq!(
        events[0].consent_sha256.as_deref(),
        Some(sha256_hex(CURRENT_TEXT).as_str())
    );
    assert!(
        events[0]
            .details
            .contains(r#""consent_source":"version_id_and_text""#),
        "{}",
        events[0].details
    );
    // The older text is registered for the list, but it is not this version.
    let (status, body) = problem(
        app.post_json(&json!({
            "email": "mixed@example.org",
            "consent": true,
            "consent_version": version,
            "consent_text": "An older consent text.",
        }))
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(codes(&body), ["consent_text_mismatch"]);
    assert_eq!(body["errors"][0]["field"], "consent_text");
    assert_eq!(
        app.subscription_state("mixed@example.org", "newsletter"),
        None
    );
}

async fn bodies_over_16_kib_get_413_problem_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let padding = "x".repeat(17 * 1024);
    let json_body = app
        .post_json(&json!({ "email": "big@example.org", "consent": true, "name": padding }))
        .await;
    let multipart = app
        .client
        .post(app.url("/subscriptions"))
        .header("Accept", "application/json")
        .multipart(
            reqwest::multipart::Form::new()
                .text("email", "big@example.org")
                .text("consent", "on")
                .text("name", padding.clone()),
        )
        .send()
        .await
        .unwrap();
    for response in [json_body, multipart] {
        let (status, body) = problem(response).await;
        assert_eq!(status, 413);
        assert_eq!(body["code"], "payload_too_large");
        assert_eq!(body["type"], "urn:assent:problem:payload_too_large");
        assert_eq!(body["status"], 413);
        assert_eq!(body["title"], "The request body is too large");
        assert_eq!(body["detail"], "Send at most 16 KiB.");
    }
    // Just under the limit is read.
    let fits = app
        .post_json(
            &json!({ "email": "fits@example.org", "consent": true, "name": "x".repeat(100) }),
        )
        .await;
    assert_eq!(fits.status(), 202);
    assert_eq!(
        app.subscription_state("big@example.org", "newsletter"),
        None
    );
}

async fn a_single_opt_in_list_confirms_at_once_and_welcomes(backend: Backend) {
    let app = spawn_app_with(backend, crate::helpers::SETTINGS_LISTS).await;
    let response = app.sign_up("solo@example.org", "instant").await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({ "status": "check_inbox" })
    );
    assert_eq!(
        app.subscription_state("solo@example.org", "instant")
            .as_deref(),
        Some("confirmed")
    );
    let events = app.events_for("solo@example.org");
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["consent_requested", "consent_confirmed"]);
    assert_eq!(events[1].method.as_deref(), Some("single_opt_in"));
    assert_eq!(events[0].consent_sha256, events[1].consent_sha256);
    assert_eq!(
        events[0].consent_sha256.as_deref(),
        Some(sha256_hex("I agree to receive instant news.").as_str())
    );
    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    let mails = app.mails_to("solo@example.org");
    assert_eq!(mails.len(), 1);
    // The welcome email, not a confirmation request.
    assert!(app.confirmation_links("solo@example.org").is_empty());
    assert!(header(&mails[0].data, "List-Unsubscribe").is_some());
    assert_eq!(mails[0].mail_from, "<instant@clinic.example>");
}

async fn a_list_without_welcome_sends_no_welcome_email(backend: Backend) {
    let app = spawn_app_with(backend, crate::helpers::SETTINGS_LISTS).await;
    app.sign_up("hush@example.org", "quiet").await;
    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    let link = app.local(&app.confirmation_links("hush@example.org")[0]);
    assert_eq!(app.client.post(&link).send().await.unwrap().status(), 200);
    assert_eq!(
        app.subscription_state("hush@example.org", "quiet")
            .as_deref(),
        Some("confirmed")
    );
    app.clock.advance(chrono::Duration::days(1));
    assert_eq!(app.dispatch_all_pending_emails().await, 0);
    assert_eq!(app.mails_to("hush@example.org").len(), 1);
    assert_eq!(app.outbox_rows().len(), 1);
}

async fn an_edited_consent_text_adds_a_version_and_keeps_the_old(backend: Backend) {
    const BEFORE: &str = r#"[[lists]]
slug = "edited"
name = "Edited"
from = "edited@clinic.example"
[[lists.consent_texts]]
text = "I agree to the first wording."
"#;
    const AFTER: &str = r#"[[lists]]
slug = "edited"
name = "Edited"
from = "edited@clinic.example"
[[lists.consent_texts]]
text = "I agree to the second wording."
"#;
    let app = spawn_app_with(backend, BEFORE).await;
    app.sign_up("early@example.org", "edited").await;
    let restarted = app.respawn_with(AFTER).await;
    let key = restarted.admin_key("ops");
    let list = restarted.admin_json("/admin/lists/edited", &key).await;
    let versions = list["consent_versions"].as_array().unwrap();
    let texts: Vec<_> = versions
        .iter()
        .map(|v| v["text"].as_str().unwrap())
        .collect();
    assert_eq!(versions.len(), 2, "{list}");
    assert!(texts.contains(&"I agree to the first wording."), "{list}");
    assert!(texts.contains(&"I agree to the second wording."), "{list}");
    let current = versions
        .iter()
        .find(|v| v["id"] == list["current_consent_version_id"])
        .unwrap();
    assert_eq!(current["text"], "I agree to the second wording.");
    // The earlier sign-up still points at the text it was shown.
    assert_eq!(
        restarted.events_for("early@example.org")[0]
            .consent_sha256
            .as_deref(),
        Some(sha256_hex("I agree to the first wording.").as_str())
    );
    // The hosted form now shows the new text.
    let form = restarted
        .client
        .get(restarted.url("/lists/edited/form"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("I agree to the second wording."));
    assert!(!form.contains("I agree to the first wording."));
}

async fn a_german_lists_form_errors_are_in_german(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .post_form(&[("email", "not-an-address"), ("list", "offers")])
        .await;
    assert_eq!(response.status(), 422);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = response.text().await.unwrap();
    assert!(body.contains(r#"lang="de""#), "{body}");
    assert!(
        body.contains("Die Anmeldung ist nicht vollständig"),
        "{body}"
    );
    assert!(
        body.contains("Bitte geben Sie eine gültige E-Mail-Adresse ein."),
        "{body}"
    );
    assert!(body.contains("Bitte setzen Sie das Häkchen"), "{body}");
    assert!(body.contains("Zurück zum Formular"), "{body}");
    assert!(body.contains(r#"href="/lists/offers/form""#), "{body}");
    assert!(!body.contains("Please"), "{body}");
    // The same mistakes on an English list stay English.
    let english = app.post_form(&[("email", "not-an-address")]).await;
    let body = english.text().await.unwrap();
    assert!(body.contains(r#"lang="en""#), "{body}");
    assert!(
        body.contains("Please enter a valid email address."),
        "{body}"
    );
}

crate::backend_tests!(
    form_post_ends_in_a_confirmed_subscription,
    json_post_ends_in_a_confirmed_subscription,
    multipart_post_is_accepted,
    an_older_registered_text_is_recorded_as_shown,
    redirect_is_honoured_only_when_configured,
    bad_input_gets_a_clear_4xx,
    a_browser_gets_a_readable_error_page,
    signing_up_again_answers_the_same_whatever_the_state,
    concurrent_sign_ups_of_one_address_never_fail,
    form_consent_also_accepts_true_and_1,
    consent_version_and_text_together_must_agree,
    bodies_over_16_kib_get_413_problem_json,
    a_single_opt_in_list_confirms_at_once_and_welcomes,
    a_list_without_welcome_sends_no_welcome_email,
    an_edited_consent_text_adds_a_version_and_keeps_the_old,
    a_german_lists_form_errors_are_in_german,
);
