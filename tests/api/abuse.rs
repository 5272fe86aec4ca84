use chrono::Duration;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp, header, links_in, spawn_app, spawn_app_with, text_part};

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
    assert_eq!(
        ip_and_source(&app, event.evidence_sha256.as_deref().unwrap()),
        ("127.0.0.1".to_owned(), "peer".to_owned())
    );
}

/// The client address of an evidence row and where it was read from.
fn ip_and_source(app: &TestApp, evidence_sha256: &str) -> (String, String) {
    use assent::db::schema::evidence;
    use diesel::prelude::*;
    evidence::table
        .find(evidence_sha256)
        .select((
            evidence::ip.assume_not_null(),
            evidence::ip_source.assume_not_null(),
        ))
        .first(&mut app.db())
        .unwrap()
}

async fn trusted_proxy_headers_are_recorded_with_their_source(backend: Backend) {
    let app = spawn_app_with(backend, BEHIND_PROXY).await;
    let key = app.admin_key("ops");
    // The peer (loopback) is a trusted proxy: the right-most address it
    // forwarded that is not itself trusted is the client's.
    let cases = [
        (
            "fwd@example.org",
            "Forwarded",
            "for=6.6.6.6, for=198.51.100.7;proto=https",
            "198.51.100.7",
            "forwarded",
        ),
        (
            "xff@example.org",
            "X-Forwarded-For",
            "6.6.6.6, 198.51.100.8",
            "198.51.100.8",
            "x-forwarded-for",
        ),
    ];
    for (email, name, value, ip, source) in cases {
        let response = app
            .client
            .post(app.url("/subscriptions"))
            .header(name, value)
            .json(&json!({ "email": email, "consent": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let event = &app.events_for(email)[0];
        let evidence = event.evidence_sha256.as_deref().unwrap();
        assert_eq!(
            ip_and_source(&app, evidence),
            (ip.to_owned(), source.to_owned()),
            "{name}"
        );
        // The person's data export carries it too.
        let export = app
            .admin_json(&format!("/admin/subjects/{email}/export"), &key)
            .await;
        let exported = &export["evidence"][0];
        assert_eq!(exported["ip"], ip, "{export}");
        assert_eq!(exported["ip_source"], source, "{export}");
    }
}

async fn the_budget_holds_across_lists(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "two-lists@example.org";
    assert_eq!(app.sign_up(email, "newsletter").await.status(), 202);
    app.clock.advance(Duration::minutes(5));
    assert_eq!(app.sign_up(email, "offers").await.status(), 202);
    app.dispatch_all_pending_emails().await;
    // One email in the 10 minutes, though two lists were asked for.
    assert_eq!(app.mails_to(email).len(), 1);
    let requested: Vec<_> = app
        .events_for(email)
        .into_iter()
        .filter(|e| e.kind == "consent_requested")
        .collect();
    assert_eq!(requested.len(), 2);
    assert!(!requested[0].details.contains(r#""throttled":true"#));
    assert!(requested[1].details.contains(r#""throttled":true"#));
    assert_eq!(
        app.subscription_state(email, "offers").as_deref(),
        Some("pending")
    );
    // After the interval, the second list's sign-up sends its own email.
    app.clock.advance(Duration::minutes(6));
    assert_eq!(app.sign_up(email, "offers").await.status(), 202);
    app.dispatch_all_pending_emails().await;
    let mails = app.mails_to(email);
    assert_eq!(mails.len(), 2);
    let list_id = header(&mails[1].data, "List-Id").unwrap();
    assert!(list_id.contains("<offers."), "{list_id}");
}

async fn a_refusal_ends_after_its_period(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = "ren@example.org";
    app.sign_up(email, "newsletter").await;
    app.dispatch_all_pending_emails().await;
    let refuse = links_in(&text_part(&app.mails_to(email)[0].data))
        .into_iter()
        .find(|l| l.contains("/refuse/"))
        .unwrap();
    let refuse = app.local(&refuse);
    let response = app
        .client
        .post(&refuse)
        .form(&[("action", "refuse")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Inside the period (refusal_days, 365 by default): answered as usual,
    // nothing sent.
    app.clock.advance(Duration::days(364));
    assert_eq!(app.sign_up(email, "newsletter").await.status(), 202);
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to(email).len(), 1);
    let last = app.events_for(email).pop().unwrap();
    assert!(
        last.details.contains(r#""refused":true"#),
        "{}",
        last.details
    );
    // Past it: a sign-up sends a confirmation email again, and the
    // refusal page offers to refuse rather than to lift.
    app.clock.advance(Duration::days(2));
    assert_eq!(app.sign_up(email, "newsletter").await.status(), 202);
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to(email).len(), 2);
    let last = app.events_for(email).pop().unwrap();
    assert_eq!(last.kind, "confirmation_sent");
    let page = app
        .client
        .get(&refuse)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Stop confirmation emails"), "{page}");
    assert!(!page.contains("Lift the block"));
}

async fn a_name_with_a_line_break_gets_a_422_page(backend: Backend) {
    let app = spawn_app(backend).await;
    for name in [
        "Ann\r\nBcc: victim@example.org",
        "Ann\nLee",
        "Ann\rLee",
        "Ann\u{0}Lee",
    ] {
        let response = app
            .post_form(&[
                ("email", "crlf@example.org"),
                ("consent", "on"),
                ("name", name),
            ])
            .await;
        assert_eq!(response.status(), 422, "{name:?}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{name:?}"
        );
        let page = response.text().await.unwrap();
        assert!(
            page.contains("The name may not contain line breaks or control characters."),
            "{page}"
        );
        assert!(page.contains(r#"href="/lists/newsletter/form""#));
        assert!(!page.contains("Bcc: victim"));
    }
    assert!(app.events_for("crlf@example.org").is_empty());
    assert!(app.find_text_anywhere("crlf@example.org").is_empty());
    assert_eq!(app.dispatch_all_pending_emails().await, 0);
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
    // A bot's answer is byte for byte a real sign-up's (status, every
    // header but Date, body): as a form, with a valid redirect, and as JSON.
    for redirect in ["", "https://clinic.example/thanks"] {
        let bot = app
            .post_form(&[
                ("email", "bot@example.org"),
                ("consent", "on"),
                ("website", "http://spam.example"),
                ("redirect", redirect),
            ])
            .await;
        let human_email = format!("human{}@example.org", redirect.len());
        let human = app
            .post_form(&[
                ("email", human_email.as_str()),
                ("consent", "on"),
                ("website", ""),
                ("redirect", redirect),
            ])
            .await;
        let (bot, human) = (observed(bot).await, observed(human).await);
        assert_eq!(bot.0, 303);
        assert_eq!(bot, human, "redirect {redirect:?}");
    }
    let bot = app
        .post_json(&json!({ "email": "bot@example.org", "consent": true, "website": "x" }))
        .await;
    let human = app.sign_up("human-json@example.org", "newsletter").await;
    let (bot, human) = (observed(bot).await, observed(human).await);
    assert_eq!(bot.0, 202);
    assert_eq!(bot, human);
    assert!(app.events_for("bot@example.org").is_empty());
    assert!(app.find_text_anywhere("bot@example.org").is_empty());
    app.dispatch_all_pending_emails().await;
    assert!(app.mails_to("bot@example.org").is_empty());
    assert_eq!(app.mails_to("human-json@example.org").len(), 1);
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

/// The states a sign-up must not reveal, in the order the test answers them.
const STATES: [&str; 8] = [
    "new",
    "pending",
    "confirmed",
    "unsubscribed",
    "withdrawn",
    "erased",
    "throttled",
    "refused",
];

/// Brings `{leg}-{state}@example.org` into each state but `new`, for each
/// leg. Pending addresses are signed up first, so that their email is
/// older than the budget's interval when they sign up again; throttled ones
/// last, so that theirs is not.
async fn bring_into_every_state(app: &TestApp, key: &str, legs: &[&str]) {
    let address = |leg: &str, state: &str| format!("{leg}-{state}@example.org");
    for leg in legs {
        app.sign_up(&address(leg, "pending"), "newsletter").await;
    }
    for leg in legs {
        app.confirmed_subscriber(&address(leg, "confirmed"), "newsletter")
            .await;
        let unsubscribe = app
            .confirmed_subscriber(&address(leg, "unsubscribed"), "newsletter")
            .await;
        app.one_click(&unsubscribe).await;
        let withdraw = app
            .confirmed_subscriber(&address(leg, "withdrawn"), "newsletter")
            .await
            .replace("/unsubscribe/", "/withdraw/");
        let response = app
            .client
            .post(withdraw)
            .form(&[("x", "1")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let erased = address(leg, "erased");
        app.confirmed_subscriber(&erased, "newsletter").await;
        let response = app
            .admin(Method::DELETE, &format!("/admin/subjects/{erased}"), key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for leg in legs {
        let refused = address(leg, "refused");
        app.sign_up(&refused, "newsletter").await;
        app.dispatch_all_pending_emails().await;
        let mail = &app.mails_to(&refused)[0];
        let refuse = links_in(&text_part(&mail.data))
            .into_iter()
            .find(|l| l.contains("/refuse/"))
            .unwrap();
        let response = app
            .client
            .post(app.local(&refuse))
            .form(&[("action", "refuse")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for leg in legs {
        app.sign_up(&address(leg, "throttled"), "newsletter").await;
    }
    app.dispatch_all_pending_emails().await;
    for leg in legs {
        let state = |s: &str| app.subscription_state(&address(leg, s), "newsletter");
        assert_eq!(state("pending").as_deref(), Some("pending"));
        assert_eq!(state("confirmed").as_deref(), Some("confirmed"));
        assert_eq!(state("unsubscribed").as_deref(), Some("unsubscribed"));
        assert_eq!(state("withdrawn").as_deref(), Some("withdrawn"));
        assert_eq!(
            state("erased"),
            None,
            "erased: no subscriber has the address"
        );
        assert_eq!(state("new"), None);
    }
}

async fn every_state_answers_byte_for_byte_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.admin_key("ops");
    // Separate addresses per leg: a JSON sign-up moves an address out of
    // its state (an unsubscribed one becomes pending), so the form leg must
    // not reuse them.
    bring_into_every_state(&app, &key, &["json", "form"]).await;
    let events_before: Vec<usize> = STATES
        .iter()
        .map(|state| app.events_for(&format!("form-{state}@example.org")).len())
        .collect();
    let mut json_answers = Vec::new();
    for state in STATES {
        let email = format!("json-{state}@example.org");
        json_answers.push((
            state,
            observed(app.sign_up(&email, "newsletter").await).await,
        ));
    }
    let mut form_answers = Vec::new();
    for state in STATES {
        let email = format!("form-{state}@example.org");
        let response = app
            .post_form(&[("email", email.as_str()), ("consent", "on")])
            .await;
        form_answers.push((state, observed(response).await));
    }
    for answers in [&json_answers, &form_answers] {
        let (_, new) = &answers[0];
        for (state, answer) in answers.iter().skip(1) {
            assert_eq!(answer, new, "{state} is answered differently from new");
        }
    }
    assert_eq!(json_answers[0].1.0, 202);
    assert_eq!(form_answers[0].1.0, 303);
    // The states were real when the form leg answered: each sign-up was
    // handled as its state requires.
    let last = |state: &str| {
        app.events_for(&format!("form-{state}@example.org"))
            .pop()
            .unwrap()
    };
    assert!(last("throttled").details.contains(r#""throttled":true"#));
    assert!(last("refused").details.contains(r#""refused":true"#));
    assert!(!last("pending").details.contains(r#""throttled":true"#));
    assert!(!last("unsubscribed").details.contains(r#""throttled":true"#));
    let confirmed = STATES.iter().position(|s| *s == "confirmed").unwrap();
    assert_eq!(
        app.events_for("form-confirmed@example.org").len(),
        events_before[confirmed],
        "a sign-up of a confirmed address records nothing"
    );
    let new = app.events_for("form-new@example.org");
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].method.as_deref(), Some("form"));
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

/// A list whose configured name and consent text carry markup, to see that
/// every page escapes what it shows.
const HOSTILE_LIST: &str = r#"[[lists]]
slug = "hostile"
name = "<script>alert(1)</script> news"
from = "hostile@clinic.example"
[[lists.consent_texts]]
text = "I agree to <script>alert(1)</script> mail."
"#;

/// The script the corpus plants; no page may show it unescaped.
const SCRIPT: &str = "<script>alert(1)</script>";

async fn a_hostile_input_corpus_never_gets_a_500(backend: Backend) {
    let app = spawn_app_with(backend, HOSTILE_LIST).await;
    let script = SCRIPT;
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
    hostile_form_fields(&app).await;
    hostile_multipart_bodies(&app).await;
    hostile_tokens_on_every_token_page(&app).await;
    hostile_bodies_and_stored_script_on_real_links(&app).await;
}

/// A status that is a normal answer (`expected`) or a client error.
fn assert_no_server_error(status: reqwest::StatusCode, expected: u16, what: &str) {
    assert!(
        status.as_u16() == expected || status.is_client_error(),
        "{what}: {status}"
    );
}

/// Posts raw bytes to a path.
async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    request.send().await.unwrap()
}

/// Invalid UTF-8 inside one field of an otherwise valid body.
async fn hostile_form_fields(app: &TestApp) {
    let form = "application/x-www-form-urlencoded";
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "raw bytes in the name",
            form,
            [
                b"email=corpus%40example.org&consent=on&name=".as_slice(),
                &[0xff, 0xfe, b'x'],
                b"&list=newsletter",
            ]
            .concat(),
        ),
        (
            "percent-encoded bytes in the name",
            form,
            b"email=corpus%40example.org&consent=on&name=%FF%FE%00".to_vec(),
        ),
        (
            "a broken sequence in the email",
            form,
            [
                b"email=".as_slice(),
                &[0xc3, 0x28],
                b"%40example.org&consent=on",
            ]
            .concat(),
        ),
        (
            "a truncated sequence in consent",
            form,
            [
                b"email=corpus%40example.org&consent=".as_slice(),
                &[0xe2, 0x82],
            ]
            .concat(),
        ),
        (
            "an encoded surrogate in the source URL",
            form,
            b"email=corpus%40example.org&consent=on&source_url=%ED%A0%80".to_vec(),
        ),
        (
            "raw bytes inside a JSON string",
            "application/json",
            [
                br#"{"email":"corpus@example.org","consent":true,"name":""#.as_slice(),
                &[0xff, 0xfe],
                br#""}"#,
            ]
            .concat(),
        ),
    ];
    for (what, content_type, body) in bodies {
        let response = post_raw(app, "/subscriptions", Some(content_type), body).await;
        let expected = if content_type == form { 303 } else { 202 };
        assert_no_server_error(response.status(), expected, what);
        let page = response.text().await.unwrap();
        assert!(!page.contains(SCRIPT), "{what}");
    }
}

/// A `multipart/form-data` body from raw part headers and bodies.
fn multipart(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (headers, value) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// The part header of a named field.
fn part(name: &str) -> String {
    format!("Content-Disposition: form-data; name=\"{name}\"")
}

/// Multipart bodies with hostile parts: huge, NUL, CR/LF in a part's
/// name, invalid UTF-8, no boundary, a wrong or missing end.
async fn hostile_multipart_bodies(app: &TestApp) {
    let boundary = "assent-hostile-boundary";
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let (email, consent, name) = (part("email"), part("consent"), part("name"));
    let valid = |extra: (&str, &[u8])| {
        multipart(
            boundary,
            &[
                (email.as_str(), b"corpus@example.org".as_slice()),
                (consent.as_str(), b"on"),
                extra,
            ],
        )
    };
    let huge = "x".repeat(20_000);
    let large = "y".repeat(12_000);
    let crlf_name = "Content-Disposition: form-data; name=\"email\r\nBcc: victim@example.org\"";
    let nul_name = part("em\0ail");
    let file = "Content-Disposition: form-data; name=\"file\"; filename=\"../../x.exe\"\r\nContent-Type: application/octet-stream";
    let mut truncated = valid((name.as_str(), b"Ann"));
    truncated.truncate(truncated.len() - 30);
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        (
            "a huge part",
            content_type.clone(),
            valid((name.as_str(), huge.as_bytes())),
            413,
        ),
        (
            "a large part",
            content_type.clone(),
            valid((name.as_str(), large.as_bytes())),
            422,
        ),
        (
            "NUL in a value",
            content_type.clone(),
            multipart(
                boundary,
                &[
                    (email.as_str(), b"a\0b@example.org"),
                    (consent.as_str(), b"on"),
                ],
            ),
            422,
        ),
        (
            "NUL in a part name",
            content_type.clone(),
            multipart(
                boundary,
                &[
                    (nul_name.as_str(), b"corpus@example.org"),
                    (consent.as_str(), b"on"),
                ],
            ),
            0,
        ),
        (
            "CR/LF in a part name",
            content_type.clone(),
            multipart(
                boundary,
                &[
                    (crlf_name, b"corpus@example.org"),
                    (consent.as_str(), b"on"),
                ],
            ),
            0,
        ),
        (
            "CR/LF in a value",
            content_type.clone(),
            valid((name.as_str(), b"Ann\r\nBcc: victim@example.org")),
            422,
        ),
        (
            "invalid UTF-8 in a part",
            content_type.clone(),
            valid((name.as_str(), &[0xff, 0xfe])),
            400,
        ),
        (
            "a binary file part",
            content_type.clone(),
            valid((file, &[0, 159, 146, 150, 0xff])),
            400,
        ),
        (
            "no boundary",
            "multipart/form-data".to_owned(),
            valid((name.as_str(), b"Ann")),
            400,
        ),
        (
            "another boundary",
            "multipart/form-data; boundary=other".to_owned(),
            valid((name.as_str(), b"Ann")),
            0,
        ),
        ("no closing boundary", content_type.clone(), truncated, 0),
    ];
    for (what, content_type, body, expected) in cases {
        let response = post_raw(app, "/subscriptions", Some(&content_type), body).await;
        let status = response.status();
        if expected == 0 {
            assert!(status.is_client_error(), "{what}: {status}");
        } else {
            assert_eq!(status.as_u16(), expected, "{what}");
        }
        let page = response.text().await.unwrap();
        assert!(!page.contains("Bcc: victim"), "{what}");
    }
}

/// Malformed and hostile tokens on every page reached through a token:
/// a clear 4xx, as a page or as JSON, and nothing shown unescaped.
async fn hostile_tokens_on_every_token_page(app: &TestApp) {
    let tokens = [
        SCRIPT.to_owned(),
        "'; DROP TABLE subscribers; --".to_owned(),
        "x".repeat(10_000),
        "\0".to_owned(),
        "a\r\nSet-Cookie: x=1".to_owned(),
        "../../etc/passwd".to_owned(),
        "auto.00000000-0000-0000-0000-000000000000.AAAA".to_owned(),
        "тест\u{202e}".to_owned(),
        "%".to_owned(),
    ];
    for token in &tokens {
        let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        for route in ["confirm", "unsubscribe", "withdraw", "refuse"] {
            let path = format!("/{route}/{encoded}");
            let what = format!("{route} {:.40?}", token);
            for accept in ["text/html", "application/json"] {
                let get = app
                    .client
                    .get(app.url(&path))
                    .header("Accept", accept)
                    .send()
                    .await
                    .unwrap();
                assert!(
                    get.status().is_client_error(),
                    "GET {what}: {}",
                    get.status()
                );
                assert!(!get.headers().contains_key("set-cookie"), "GET {what}");
                assert!(!get.text().await.unwrap().contains(SCRIPT), "GET {what}");
            }
            for (content_type, body) in [
                (
                    "application/x-www-form-urlencoded",
                    b"List-Unsubscribe=One-Click".to_vec(),
                ),
                (
                    "application/x-www-form-urlencoded",
                    b"action=refuse".to_vec(),
                ),
                ("application/x-www-form-urlencoded", b"erase=true".to_vec()),
                ("application/x-www-form-urlencoded", b"x=\0\xff".to_vec()),
                ("application/json", br#"{"erase":true}"#.to_vec()),
            ] {
                let post = post_raw(app, &path, Some(content_type), body).await;
                assert!(
                    post.status().is_client_error(),
                    "POST {what}: {}",
                    post.status()
                );
                assert!(!post.text().await.unwrap().contains(SCRIPT), "POST {what}");
            }
        }
    }
}

/// Bodies no leave or refusal route accepts: each is refused with a 4xx
/// before anything changes.
fn unreadable_bodies() -> Vec<(&'static str, Option<&'static str>, Vec<u8>)> {
    let boundary = "assent-hostile-boundary";
    vec![
        (
            "huge",
            Some("application/x-www-form-urlencoded"),
            format!(
                "List-Unsubscribe=One-Click&action=refuse&pad={}",
                "x".repeat(20_000)
            )
            .into_bytes(),
        ),
        (
            "multipart without a boundary",
            Some("multipart/form-data"),
            multipart(boundary, &[(part("action").as_str(), b"refuse")]),
        ),
        (
            "invalid UTF-8 in a multipart part",
            Some("multipart/form-data; boundary=assent-hostile-boundary"),
            multipart(boundary, &[(part("erase").as_str(), &[0xff, b't'])]),
        ),
        (
            "JSON",
            Some("application/json"),
            br#"{"action":"refuse","erase":true}"#.to_vec(),
        ),
        (
            "plain text",
            Some("text/plain"),
            b"List-Unsubscribe=One-Click".to_vec(),
        ),
        (
            "no content type",
            None,
            b"List-Unsubscribe=One-Click".to_vec(),
        ),
    ]
}

/// Bodies that decode as forms but are not what the route takes.
fn wrong_forms() -> Vec<(&'static str, Option<&'static str>, Vec<u8>)> {
    let form = Some("application/x-www-form-urlencoded");
    let boundary = "assent-hostile-boundary";
    vec![
        (
            "NUL in the value",
            form,
            b"List-Unsubscribe=One-Click%00".to_vec(),
        ),
        (
            "raw invalid UTF-8 in the value",
            form,
            b"List-Unsubscribe=One-Cl\xffick".to_vec(),
        ),
        (
            "the field twice",
            form,
            b"action=refuse&action=refuse".to_vec(),
        ),
        (
            "a script as the action",
            form,
            format!("action={SCRIPT}").into_bytes(),
        ),
        (
            "CR/LF in the field name",
            form,
            b"List-Unsubscribe%0D%0ABcc=One-Click".to_vec(),
        ),
        (
            "CR/LF in a multipart part name",
            Some("multipart/form-data; boundary=assent-hostile-boundary"),
            multipart(
                boundary,
                &[(
                    "Content-Disposition: form-data; name=\"action\r\nX: y\"",
                    b"refuse",
                )],
            ),
        ),
    ]
}

/// Signs up on the hostile list with markup in every stored field, then
/// walks every page a person sees through the emails' links (confirm,
/// refuse, unsubscribe, the result pages): none shows the script
/// unescaped. On the way, hostile bodies on those real links are refused
/// and change nothing.
async fn hostile_bodies_and_stored_script_on_real_links(app: &TestApp) {
    // minijinja escapes `/` too (`&#x2f;`): compare the opening tag only.
    let escaped = "&lt;script&gt;alert(1)";
    let email = "stored@example.org";
    let response = app
        .post_json(&json!({
            "email": email,
            "consent": true,
            "list": "hostile",
            "name": SCRIPT,
            "source_url": format!("https://evil.example/{SCRIPT}"),
        }))
        .await;
    assert_eq!(response.status(), 202);
    // A consent text with markup registered by an operator, shown on the
    // confirmation page of a sign-up that agreed to it.
    let key = app.admin_key("hostile-ops");
    let version: serde_json::Value = app
        .admin(
            Method::POST,
            "/admin/lists/newsletter/consent-versions",
            &key,
        )
        .json(&json!({ "text": format!("Operator text {SCRIPT}") }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let operator = "operator-text@example.org";
    let response = app
        .post_json(&json!({ "email": operator, "consent": true, "consent_version": version["id"] }))
        .await;
    assert_eq!(response.status(), 202);
    app.dispatch_all_pending_emails().await;
    let link = |address: &str, route: &str| {
        let mail = &app.mails_to(address)[0];
        app.local(
            &links_in(&text_part(&mail.data))
                .into_iter()
                .find(|l| l.contains(route))
                .unwrap(),
        )
    };
    let (confirm, refuse) = (link(email, "/confirm/"), link(email, "/refuse/"));
    let shown = |body: &str, what: &str| {
        assert!(!body.contains(SCRIPT), "{what} shows the script unescaped");
        assert!(
            body.contains(escaped),
            "{what} does not show the list's name or text"
        );
    };
    for (url, what) in [
        (confirm.clone(), "the confirmation page"),
        (refuse.clone(), "the refusal page"),
        (
            link(operator, "/confirm/"),
            "the confirmation page of an operator's text",
        ),
        (app.url("/lists/hostile/form"), "the hosted form"),
    ] {
        let page = app.client.get(&url).send().await.unwrap();
        assert_eq!(page.status(), 200, "{what}");
        shown(&page.text().await.unwrap(), what);
    }
    // The refusal link refuses nothing for a hostile body.
    for (what, content_type, body) in unreadable_bodies().into_iter().chain(wrong_forms()) {
        let path = refuse.trim_start_matches(&app.address).to_owned();
        let response = post_raw(app, &path, content_type, body).await;
        assert!(
            response.status().is_client_error(),
            "refuse, {what}: {}",
            response.status()
        );
        assert!(
            !response.text().await.unwrap().contains(SCRIPT),
            "refuse, {what}"
        );
    }
    assert!(
        !app.event_kinds(email)
            .contains(&"confirmation_refused".to_owned())
    );
    let confirmed = app.client.post(&confirm).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    assert!(
        !confirmed.text().await.unwrap().contains(SCRIPT),
        "the confirmed page"
    );
    app.dispatch_all_pending_emails().await;
    let welcome = app
        .mails_to(email)
        .into_iter()
        .find_map(|m| header(&m.data, "List-Unsubscribe"))
        .expect("a welcome email");
    let unsubscribe = app.local(welcome.trim_start_matches('<').trim_end_matches('>'));
    let page = app.client.get(&unsubscribe).send().await.unwrap();
    assert_eq!(page.status(), 200);
    shown(&page.text().await.unwrap(), "the unsubscribe page");
    let path = unsubscribe.trim_start_matches(&app.address).to_owned();
    let withdraw = path.replace("/unsubscribe/", "/withdraw/");
    for (what, content_type, body) in unreadable_bodies() {
        for route in [&path, &withdraw] {
            let response = post_raw(app, route, content_type, body.clone()).await;
            assert!(
                response.status().is_client_error(),
                "{route}, {what}: {}",
                response.status()
            );
        }
    }
    for (what, content_type, body) in wrong_forms() {
        let response = post_raw(app, &path, content_type, body).await;
        assert!(
            response.status().is_client_error(),
            "unsubscribe, {what}: {}",
            response.status()
        );
    }
    assert_eq!(
        app.subscription_state(email, "hostile").as_deref(),
        Some("confirmed")
    );
    assert_eq!(
        app.event_kinds(email).last().map(String::as_str),
        Some("consent_confirmed")
    );
    // The page's own button, then a withdrawal whose body carries markup.
    let done = app
        .client
        .post(&unsubscribe)
        .form(&[("action", "unsubscribe")])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert!(
        !done.text().await.unwrap().contains(SCRIPT),
        "the unsubscribed page"
    );
    let page = app
        .client
        .get(&unsubscribe)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    shown(&page, "the unsubscribe page after leaving");
    let withdrawn = app
        .client
        .post(app.url(&withdraw))
        .form(&[("erase", SCRIPT)])
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), 200);
    assert!(
        !withdrawn.text().await.unwrap().contains(SCRIPT),
        "the withdrawn page"
    );
    assert_eq!(
        app.subscription_state(email, "hostile").as_deref(),
        Some("withdrawn")
    );
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
    trusted_proxy_headers_are_recorded_with_their_source,
    the_budget_holds_across_lists,
    a_refusal_ends_after_its_period,
    a_name_with_a_line_break_gets_a_422_page,
);
