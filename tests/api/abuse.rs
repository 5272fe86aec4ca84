use chrono::Duration;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp, links_in, spawn_app, spawn_app_with, text_part};

const BEHIND_PROXY: &str = r#"[http]
trusted_proxies = ["127.0.0.1/32"]
[abuse]
rate_limit_exempt = ["0.0.0.0/0", "::/0"]"#;

async fn sign_up_from(app: &TestApp, email: &str, ip: &str) -> reqwest::StatusCode {
    app.client
        .post(app.url("/subscriptions"))
        .header("X-Forwarded-For", format!("6.6.6.6, {ip}"))
        .json(&json!({ "email": email, "consent": true }))
        .send()
        .await
        .unwrap()
        .status()
}

async fn subscription_bombing_yields_one_email(backend: Backend) {
    let app = spawn_app_with(backend, BEHIND_PROXY).await;
    for i in 0..100 {
        assert_eq!(
            sign_up_from(&app, "victim@example.org", &format!("198.51.100.{i}")).await,
            202
        );
        app.clock.advance(Duration::milliseconds(500));
    }
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to("victim@example.org").len(), 1);
    let events = app.events_for("victim@example.org");
    let requested: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "consent_requested")
        .collect();
    assert_eq!(requested.len(), 100);
    assert_eq!(
        requested
            .iter()
            .filter(|e| e.details.contains(r#""throttled":true"#))
            .count(),
        99
    );
    // The client address came from the proxy's header, right-most untrusted.
    let (ip, _, _) = app
        .evidence(requested[5].evidence_sha256.as_deref().unwrap())
        .unwrap();
    assert_eq!(ip.as_deref(), Some("198.51.100.5"));
    // Ten minutes after the first email, a second one may go.
    app.clock.advance(Duration::minutes(10));
    sign_up_from(&app, "victim@example.org", "192.0.2.1").await;
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to("victim@example.org").len(), 2);
    app.clock.advance(Duration::minutes(11));
    sign_up_from(&app, "victim@example.org", "192.0.2.1").await;
    app.clock.advance(Duration::minutes(11));
    // The fourth within 24 hours is not sent.
    sign_up_from(&app, "VICTIM@example.org", "192.0.2.1").await;
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to("victim@example.org").len(), 3);
    app.clock.advance(Duration::hours(24));
    sign_up_from(&app, "victim@example.org", "192.0.2.1").await;
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to("victim@example.org").len(), 4);
}

async fn forwarded_headers_from_untrusted_peers_are_ignored(backend: Backend) {
    let app = spawn_app(backend).await;
    sign_up_from(&app, "wil@example.org", "198.51.100.9").await;
    let event = &app.events_for("wil@example.org")[0];
    let (ip, _, _) = app
        .evidence(event.evidence_sha256.as_deref().unwrap())
        .unwrap();
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    let source: String = {
        use assent::db::schema::evidence;
        use diesel::prelude::*;
        evidence::table
            .find(event.evidence_sha256.clone().unwrap())
            .select(evidence::ip_source.assume_not_null())
            .first(&mut app.db())
            .unwrap()
    };
    assert_eq!(source, "peer");
}

async fn i_did_not_ask_for_this_stops_confirmation_emails(backend: Backend) {
    let app = spawn_app(backend).await;
    app.sign_up("xen@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    let mail = &app.mails_to("xen@example.org")[0];
    let refuse = links_in(&text_part(&mail.data))
        .into_iter()
        .find(|l| l.contains("/refuse/"))
        .expect("a refusal link in the confirmation email");
    let refuse = app.local(&refuse);
    // GET changes nothing.
    let page = app.client.get(&refuse).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Stop confirmation emails")
    );
    assert!(
        !app.event_kinds("xen@example.org")
            .contains(&"confirmation_refused".to_owned())
    );
    let response = app
        .client
        .post(&refuse)
        .form(&[("action", "refuse")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        app.event_kinds("xen@example.org")
            .contains(&"confirmation_refused".to_owned())
    );
    // Later sign-ups answer as usual and send nothing, on any list.
    app.clock.advance(Duration::hours(25));
    let again = app.sign_up("xen@example.org", "offers").await;
    assert_eq!(again.status(), 202);
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to("xen@example.org").len(), 1);
    let last = app.events_for("xen@example.org").pop().unwrap();
    assert!(
        last.details.contains(r#""refused":true"#),
        "{}",
        last.details
    );
    // The person can lift it from the same link, and subscribe.
    let page = app
        .client
        .get(&refuse)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Lift the block"));
    let lifted = app
        .client
        .post(&refuse)
        .form(&[("action", "lift")])
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 200);
    app.sign_up("xen@example.org", "offers").await;
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to("xen@example.org").len(), 2);
    // A refusal link is not an unsubscribe or confirmation link.
    let token = refuse.rsplit('/').next().unwrap();
    let wrong = app
        .client
        .get(app.url(&format!("/unsubscribe/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
}

async fn the_honeypot_stores_and_sends_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let bot = app
        .post_form(&[
            ("email", "bot@example.org"),
            ("consent", "on"),
            ("website", "http://spam.example"),
        ])
        .await;
    let human = app
        .post_form(&[
            ("email", "human@example.org"),
            ("consent", "on"),
            ("website", ""),
        ])
        .await;
    assert_eq!(bot.status(), human.status());
    assert_eq!(
        bot.headers().get("location"),
        human.headers().get("location")
    );
    assert!(app.events_for("bot@example.org").is_empty());
    assert!(app.find_text_anywhere("bot@example.org").is_empty());
    app.dispatch_all_pending_emails().await;
    assert!(app.mails_to("bot@example.org").is_empty());
    let form = app
        .client
        .get(app.url("/lists/newsletter/form"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains(r#"name="website""#));
}

const RATE_LIMITED: &str = r#"[abuse]
rate_limit_per_minute = 10
rate_limit_burst = 20"#;

async fn rate_limit_answers_429_with_retry_after(backend: Backend) {
    let app = spawn_app_with(backend, RATE_LIMITED).await;
    for i in 0..20 {
        let status = app
            .sign_up(&format!("r{i}@example.org"), "newsletter")
            .await
            .status();
        assert_eq!(status, 202);
    }
    let limited = app.sign_up("r20@example.org", "newsletter").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "6");
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    let page = app
        .post_form(&[("email", "r21@example.org"), ("consent", "on")])
        .await;
    assert_eq!(page.status(), 429);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("Too many requests"));
    app.clock.advance(Duration::seconds(6));
    assert_eq!(
        app.sign_up("r22@example.org", "newsletter").await.status(),
        202
    );
}

/// The answer as a client sees it: status, every header but Date, body.
async fn observed(response: reqwest::Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

async fn every_state_answers_byte_for_byte_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.admin_key("ops");
    // Bring addresses into every state.
    app.sign_up("pending@example.org", "newsletter").await;
    app.confirmed_subscriber("confirmed@example.org", "newsletter")
        .await;
    let unsub = app
        .confirmed_subscriber("unsub@example.org", "newsletter")
        .await;
    app.one_click(&unsub).await;
    let withdrawn = app
        .confirmed_subscriber("withdrawn@example.org", "newsletter")
        .await;
    app.client
        .post(withdrawn.replace("/unsubscribe/", "/withdraw/"))
        .form(&[("x", "1")])
        .send()
        .await
        .unwrap();
    app.confirmed_subscriber("erased@example.org", "newsletter")
        .await;
    app.admin(Method::DELETE, "/admin/subjects/erased@example.org", &key)
        .send()
        .await
        .unwrap();
    app.sign_up("throttled@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    let refuse = {
        app.sign_up("refused@example.org", "newsletter").await;
        app.dispatch_all_pending_emails().await;
        let mail = &app.mails_to("refused@example.org")[0];
        app.local(
            &links_in(&text_part(&mail.data))
                .into_iter()
                .find(|l| l.contains("/refuse/"))
                .unwrap(),
        )
    };
    app.client
        .post(&refuse)
        .form(&[("action", "refuse")])
        .send()
        .await
        .unwrap();
    let states = [
        "new@example.org",
        "pending@example.org",
        "confirmed@example.org",
        "unsub@example.org",
        "withdrawn@example.org",
        "erased@example.org",
        "throttled@example.org",
        "refused@example.org",
    ];
    let mut json_answers = Vec::new();
    let mut form_answers = Vec::new();
    for email in states {
        json_answers.push((
            email,
            observed(app.sign_up(email, "newsletter").await).await,
        ));
        form_answers.push((
            email,
            observed(app.post_form(&[("email", email), ("consent", "on")]).await).await,
        ));
    }
    for answers in [&json_answers, &form_answers] {
        let (first_email, first) = &answers[0];
        for (email, answer) in answers.iter().skip(1) {
            assert_eq!(
                answer, first,
                "{email} is answered differently from {first_email}"
            );
        }
    }
    assert_eq!(json_answers[0].1.0, 202);
    assert_eq!(form_answers[0].1.0, 303);
}

async fn foreign_origins_are_refused_and_allowed_ones_get_cors(backend: Backend) {
    let app = spawn_app(backend).await;
    let foreign = app
        .client
        .post(app.url("/subscriptions"))
        .header("Origin", "https://evil.example")
        .form(&[
            ("email", "o@example.org"),
            ("consent", "on"),
            ("list", "offers"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(app.events_for("o@example.org").is_empty());
    let allowed = app
        .client
        .post(app.url("/subscriptions"))
        .header("Origin", "https://clinic.example")
        .json(&json!({ "email": "o@example.org", "consent": true, "list": "offers" }))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 202);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://clinic.example"
    );
    let preflight = app
        .client
        .request(Method::OPTIONS, app.url("/subscriptions"))
        .header("Origin", "https://clinic.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://clinic.example"
    );
    let other = app
        .client
        .request(Method::OPTIONS, app.url("/subscriptions"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // The newsletter list restricts nothing.
    let open = app
        .client
        .post(app.url("/subscriptions"))
        .header("Origin", "https://anywhere.example")
        .form(&[("email", "p@example.org"), ("consent", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 303);
}

async fn pages_send_security_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let form = app
        .client
        .get(app.url("/lists/offers/form"))
        .send()
        .await
        .unwrap();
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("frame-ancestors https://clinic.example"),
        "{csp}"
    );
    assert!(csp.contains("default-src 'none'"));
    assert!(form.headers().get("x-frame-options").is_none());
    assert_eq!(form.headers()["x-content-type-options"], "nosniff");
    let plain = app
        .client
        .get(app.url("/lists/newsletter/form"))
        .send()
        .await
        .unwrap();
    assert!(
        plain.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(plain.headers()["x-frame-options"], "DENY");
    for path in [
        "/",
        "/lists/newsletter/check-inbox",
        "/confirm/nope",
        "/unsubscribe/nope",
    ] {
        let page = app.client.get(app.url(path)).send().await.unwrap();
        assert!(
            page.headers().contains_key("content-security-policy"),
            "{path}"
        );
        assert_eq!(
            page.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
}

async fn a_hostile_input_corpus_never_gets_a_500(backend: Backend) {
    let app = spawn_app(backend).await;
    let script = "<script>alert(1)</script>";
    let values: Vec<String> = vec![
        "x".repeat(20_000),
        "a\0b@example.org".to_owned(),
        "a@example.org\r\nBcc: victim@example.org".to_owned(),
        script.to_owned(),
        format!("{script}@example.org"),
        "'; DROP TABLE subscribers; --".to_owned(),
        "\" OR 1=1 --@example.org".to_owned(),
        format!("{}@example.org", "a".repeat(10_000)),
        "用户@例子.广告".to_owned(),
        "anna@bücher.example".to_owned(),
        "раypal@example.org".to_owned(),
        "Ann\u{202e}gnp.exe".to_owned(),
        "=HYPERLINK(\"http://x\")".to_owned(),
        "\u{feff}zero@example.org".to_owned(),
    ];
    let fields = [
        "email",
        "list",
        "consent",
        "consent_version",
        "consent_text",
        "name",
        "source_url",
        "redirect",
        "website",
    ];
    for field in fields {
        for value in &values {
            let mut body = serde_json::Map::new();
            body.insert("email".into(), json!("corpus@example.org"));
            body.insert("consent".into(), json!(true));
            body.insert(field.into(), json!(value));
            let response = app.post_json(&serde_json::Value::Object(body)).await;
            let status = response.status().as_u16();
            assert!(
                status == 202 || (400..500).contains(&status),
                "{field}={value:?}: {status}"
            );
            let mut form = vec![
                ("email", "corpus@example.org".to_owned()),
                ("consent", "on".to_owned()),
            ];
            form.retain(|(k, _)| *k != field);
            form.push((field, value.clone()));
            let response = app
                .client
                .post(app.url("/subscriptions"))
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!(
                status == 303 || (400..500).contains(&status),
                "form {field}={value:?}: {status}"
            );
            let body = response.text().await.unwrap();
            assert!(
                !body.contains(script),
                "{field}: a script came back unescaped"
            );
        }
    }
    // Raw bytes that are not UTF-8 at all.
    for content_type in ["application/json", "application/x-www-form-urlencoded"] {
        let response = app
            .client
            .post(app.url("/subscriptions"))
            .header("Content-Type", content_type)
            .body(vec![0xff, 0xfe, 0x00, b'=', 0x80])
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_client_error(),
            "{content_type}: {}",
            response.status()
        );
    }
    // Nothing stored shows up unescaped on any page.
    for path in [
        "/",
        "/lists/newsletter/form",
        "/lists/offers/form",
        "/lists/newsletter/check-inbox",
    ] {
        let page = app
            .client
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!page.contains(script), "{path}");
    }
    app.dispatch_all_pending_emails().await;
    for link in app.confirmation_links("corpus@example.org") {
        let page = app
            .client
            .get(app.local(&link))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!page.contains(script));
    }
}

const PROOF_OF_WORK: &str = r#"[[lists]]
slug = "guarded"
name = "Guarded"
from = "guarded@clinic.example"
proof_of_work = true
[[lists.consent_texts]]
text = "I agree to receive the guarded newsletter."
[abuse]
rate_limit_exempt = ["127.0.0.0/8"]
proof_of_work_max_number = 2000"#;

async fn lists_can_require_a_proof_of_work(backend: Backend) {
    let app = spawn_app_with(backend, PROOF_OF_WORK).await;
    let form = app
        .client
        .get(app.url("/lists/guarded/form"))
        .send()
        .await
        .unwrap();
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let body = form.text().await.unwrap();
    assert!(body.contains(r#"data-pow="/lists/guarded/challenge""#));
    assert!(body.contains(r#"<script src="/assets/pow.js" defer></script>"#));
    let script = app
        .client
        .get(app.url("/assets/pow.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    // Without a solution: refused with a clear code.
    let unsolved = app
        .post_json(&json!({ "email": "pow@example.org", "consent": true, "list": "guarded" }))
        .await;
    assert_eq!(unsolved.status(), 422);
    assert!(
        unsolved
            .text()
            .await
            .unwrap()
            .contains("proof_of_work_failed")
    );
    // Solved as the form's script does it: accepted, once.
    let challenge: assent::pow::Challenge = app
        .client
        .get(app.url("/lists/guarded/challenge"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answer = assent::pow::solve(&challenge).unwrap();
    let body =
        json!({ "email": "pow@example.org", "consent": true, "list": "guarded", "altcha": answer });
    assert_eq!(app.post_json(&body).await.status(), 202);
    assert_eq!(
        app.post_json(&body).await.status(),
        422,
        "a solution is spent once"
    );
    // Lists without it need none, and have no challenge.
    assert_eq!(
        app.client
            .get(app.url("/lists/newsletter/challenge"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

crate::backend_tests!(
    subscription_bombing_yields_one_email,
    forwarded_headers_from_untrusted_peers_are_ignored,
    i_did_not_ask_for_this_stops_confirmation_emails,
    the_honeypot_stores_and_sends_nothing,
    rate_limit_answers_429_with_retry_after,
    every_state_answers_byte_for_byte_the_same,
    foreign_origins_are_refused_and_allowed_ones_get_cors,
    pages_send_security_headers,
    a_hostile_input_corpus_never_gets_a_500,
    lists_can_require_a_proof_of_work,
);
