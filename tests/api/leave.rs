use serde_json::json;

use crate::helpers::{Backend, header, html_part, spawn_app, spawn_app_with, text_part};

fn unsubscribed_events(
    app: &crate::helpers::TestApp,
    email: &str,
) -> Vec<crate::helpers::EventSummary> {
    app.events_for(email)
        .into_iter()
        .filter(|e| e.kind == "unsubscribed")
        .collect()
}

async fn welcome_mail_carries_one_click_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app
        .confirmed_subscriber("lee@example.org", "newsletter")
        .await;
    let welcome = app.mails_to("lee@example.org").pop().unwrap();
    let raw = &welcome.data;
    let list_unsubscribe = header(raw, "List-Unsubscribe").unwrap();
    // Folded header lines come back unfolded.
    assert!(!list_unsubscribe.contains('\n'));
    assert!(
        list_unsubscribe.starts_with("<http://127.0.0.1:8080/unsubscribe/"),
        "{list_unsubscribe}"
    );
    assert_eq!(
        header(raw, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert_eq!(
        header(raw, "List-Id").as_deref(),
        Some("\"Clinic news\" <newsletter.clinic.example>")
    );
    let link = list_unsubscribe
        .trim_start_matches('<')
        .trim_end_matches('>');
    assert!(text_part(raw).contains(link));
    assert!(html_part(raw).contains(&format!("href=\"{link}\"")));
    assert!(url.contains("/unsubscribe/"));
}

async fn one_click_unsubscribe_in_both_encodings(backend: Backend) {
    let app = spawn_app(backend).await;
    let form_url = app
        .confirmed_subscriber("ma@example.org", "newsletter")
        .await;
    let multipart_url = app
        .confirmed_subscriber("ned@example.org", "newsletter")
        .await;
    // Link scanners and previews GET the URL: nothing changes.
    for _ in 0..5 {
        let page = app.client.get(&form_url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert_eq!(page.headers()["referrer-policy"], "no-referrer");
        let body = page.text().await.unwrap();
        assert!(body.contains("Clinic news"));
        assert!(body.contains("Withdraw my consent for all lists and erase my data"));
    }
    assert_eq!(
        app.subscription_state("ma@example.org", "newsletter")
            .as_deref(),
        Some("confirmed")
    );
    assert!(unsubscribed_events(&app, "ma@example.org").is_empty());

    // A mail client's one-click POST: no cookies, no other context.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..2 {
        let response = client
            .post(&form_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("location").is_none());
    }
    assert_eq!(
        app.subscription_state("ma@example.org", "newsletter")
            .as_deref(),
        Some("unsubscribed")
    );
    let events = unsubscribed_events(&app, "ma@example.org");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].method.as_deref(), Some("one_click"));
    assert!(events[0].details.contains("effective_at"));

    let form = reqwest::multipart::Form::new().text("List-Unsubscribe", "One-Click");
    let response = client
        .post(&multipart_url)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("location").is_none());
    assert_eq!(
        app.subscription_state("ned@example.org", "newsletter")
            .as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(unsubscribed_events(&app, "ned@example.org").len(), 1);
    // The other subscriber is untouched.
    assert_eq!(
        app.subscription_state("lee@example.org", "newsletter"),
        None
    );
}

async fn the_page_button_unsubscribes(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.confirmed_subscriber("ola@example.org", "offers").await;
    let page = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Offers"));
    assert!(page.contains(r#"name="action" value="unsubscribe""#));
    let response = app
        .client
        .post(&url)
        .header("Accept", "application/json")
        .form(&[("action", "unsubscribe")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({ "status": "unsubscribed" })
    );
    let events = unsubscribed_events(&app, "ola@example.org");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].method.as_deref(), Some("page"));
    let page = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("already unsubscribed") || page.contains("bereits abgemeldet"));
}

async fn bad_tokens_and_bodies_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app
        .confirmed_subscriber("pat@example.org", "newsletter")
        .await;
    let token = url.rsplit('/').next().unwrap().to_owned();
    let confirmation = app.confirmation_links("pat@example.org")[0]
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (key_id, rest) = token.split_once('.').unwrap();
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let bad_tokens = [
        "short".to_owned(),
        "x".repeat(300),
        format!("{key_id}.{rest}!"),
        format!("unknownkey.{rest}"),
        tampered,
        confirmation.clone(),
    ];
    for bad in &bad_tokens {
        let response = app
            .client
            .post(app.url(&format!("/unsubscribe/{bad}")))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{bad}");
        let get = app
            .client
            .get(app.url(&format!("/unsubscribe/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 404, "{bad}");
        let withdraw = app
            .client
            .post(app.url(&format!("/withdraw/{bad}")))
            .form(&[("erase", "true")])
            .send()
            .await
            .unwrap();
        assert_eq!(withdraw.status(), 404, "{bad}");
    }
    // An unsubscribe token never confirms.
    let response = app
        .client
        .post(app.url(&format!("/confirm/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let bodies: [(&str, Vec<u8>); 4] = [
        ("application/x-www-form-urlencoded", b"foo=bar".to_vec()),
        ("application/x-www-form-urlencoded", b"".to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click&evil=1".to_vec(),
        ),
        (
            "application/json",
            br#"{"List-Unsubscribe":"One-Click"}"#.to_vec(),
        ),
    ];
    for (content_type, body) in bodies {
        let response = app
            .client
            .post(&url)
            .header("Content-Type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_client_error(),
            "{content_type} {body:?}: {}",
            response.status()
        );
    }
    let huge = format!("List-Unsubscribe=One-Click&pad={}", "x".repeat(20_000));
    let response = app
        .client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        app.subscription_state("pat@example.org", "newsletter")
            .as_deref(),
        Some("confirmed")
    );
    assert!(unsubscribed_events(&app, "pat@example.org").is_empty());
}

async fn withdrawal_without_erasure_covers_every_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app
        .confirmed_subscriber("quinn@example.org", "newsletter")
        .await;
    app.confirmed_subscriber("quinn@example.org", "offers")
        .await;
    let withdraw = url.replace("/unsubscribe/", "/withdraw/");
    let response = app
        .client
        .post(&withdraw)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("Consent withdrawn"));
    assert_eq!(
        app.subscription_state("quinn@example.org", "newsletter")
            .as_deref(),
        Some("withdrawn")
    );
    assert_eq!(
        app.subscription_state("quinn@example.org", "offers")
            .as_deref(),
        Some("withdrawn")
    );
    let withdrawn: Vec<_> = app
        .events_for("quinn@example.org")
        .into_iter()
        .filter(|e| e.kind == "consent_withdrawn")
        .collect();
    assert_eq!(withdrawn.len(), 2);
    assert!(
        withdrawn
            .iter()
            .all(|e| e.method.as_deref() == Some("page") && e.evidence_sha256.is_some())
    );
    // Repeating changes nothing.
    app.client
        .post(&withdraw)
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    let again = app
        .events_for("quinn@example.org")
        .iter()
        .filter(|e| e.kind == "consent_withdrawn")
        .count();
    assert_eq!(again, 2);
}

async fn erasure_leaves_no_personal_data_and_sign_up_still_works(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app
        .confirmed_subscriber("Rosa.Erased@Example.org", "newsletter")
        .await;
    app.client
        .post(app.url("/subscriptions"))
        .json(&json!({ "email": "Rosa.Erased@Example.org", "name": "Rosa Secretname", "consent": true, "list": "offers" }))
        .send()
        .await
        .unwrap();
    assert!(!app.find_text_anywhere("rosa.erased@example.org").is_empty());
    assert!(!app.find_text_anywhere("127.0.0.1").is_empty());
    let withdraw = url.replace("/unsubscribe/", "/withdraw/");
    let response = app
        .client
        .post(&withdraw)
        .form(&[("erase", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("Data erased"));
    assert_eq!(app.find_text_anywhere("rosa.erased"), Vec::<String>::new());
    assert_eq!(app.find_text_anywhere("Secretname"), Vec::<String>::new());
    assert_eq!(app.find_text_anywhere("127.0.0.1"), Vec::<String>::new());
    assert_eq!(app.find_text_anywhere("reqwest"), Vec::<String>::new());
    // The pages no longer offer erasure, and links still answer.
    let page = app.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // Signing up again answers exactly as for a new address and starts over.
    let again = app.sign_up("Rosa.Erased@Example.org", "newsletter").await;
    let new = app.sign_up("someone.new@example.org", "newsletter").await;
    assert_eq!(again.status(), new.status());
    assert_eq!(again.text().await.unwrap(), new.text().await.unwrap());
    assert_eq!(
        app.subscription_state("rosa.erased@example.org", "newsletter")
            .as_deref(),
        Some("pending")
    );
    assert_eq!(
        app.event_kinds("rosa.erased@example.org"),
        ["consent_requested"]
    );
}

async fn signing_up_after_leaving_needs_double_opt_in_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app
        .confirmed_subscriber("sam@example.org", "newsletter")
        .await;
    app.client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    let mails_before = app.mails_to("sam@example.org").len();
    app.clock.advance(chrono::Duration::minutes(11));
    let again = app.sign_up("sam@example.org", "newsletter").await;
    assert_eq!(again.status(), 202);
    assert_eq!(
        app.subscription_state("sam@example.org", "newsletter")
            .as_deref(),
        Some("pending")
    );
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to("sam@example.org").len(), mails_before + 1);
    let kinds = app.event_kinds("sam@example.org");
    assert_eq!(
        kinds.iter().filter(|k| *k == "consent_requested").count(),
        2
    );
    assert_eq!(kinds.last().map(String::as_str), Some("confirmation_sent"));
    // The old unsubscribe link does not resubscribe or confirm anything.
    let response = app
        .client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.subscription_state("sam@example.org", "newsletter")
            .as_deref(),
        Some("unsubscribed")
    );
}

const OLD_KEY: &str = r#"[tokens]
keys = [{ id = "old", secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" }]"#;
const ROTATED_KEYS: &str = r#"[tokens]
keys = [
  { id = "new", secret = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=" },
  { id = "old", secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" },
]"#;

async fn old_links_work_after_a_new_key_is_added_first(backend: Backend) {
    let app = spawn_app_with(backend, OLD_KEY).await;
    let url = app
        .confirmed_subscriber("tia@example.org", "newsletter")
        .await;
    assert!(url.contains("/unsubscribe/old."), "{url}");
    let rotated = app.respawn_with(ROTATED_KEYS).await;
    let url = url.replace(&app.address, &rotated.address);
    let response = rotated
        .client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        rotated
            .subscription_state("tia@example.org", "newsletter")
            .as_deref(),
        Some("unsubscribed")
    );
    // New links are signed with the new key.
    let fresh = rotated
        .confirmed_subscriber("uma@example.org", "newsletter")
        .await;
    assert!(fresh.contains("/unsubscribe/new."), "{fresh}");
}

/// Asserts the headers every answer on a token path carries.
fn assert_token_headers(response: &reqwest::Response, what: &str) {
    assert_eq!(
        response
            .headers()
            .get("referrer-policy")
            .map(|v| v.to_str().unwrap()),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{what}"
    );
}

/// GET, a form POST and a JSON POST of a token path, with their statuses.
async fn token_requests(app: &crate::helpers::TestApp, path: &str) -> Vec<reqwest::Response> {
    let url = app.url(path);
    let body = if path.starts_with("/refuse/") {
        "action=refuse"
    } else if path.starts_with("/withdraw/") {
        "erase=true"
    } else {
        "List-Unsubscribe=One-Click"
    };
    let mut answers = Vec::new();
    if !path.starts_with("/withdraw/") {
        answers.push(app.client.get(&url).send().await.unwrap());
    }
    for accept in ["text/html", "application/json"] {
        answers.push(
            app.client
                .post(&url)
                .header("Accept", accept)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap(),
        );
    }
    answers
}

async fn bad_token_answers_are_neither_referred_nor_cached(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/unsubscribe/short",
        "/unsubscribe/unknownkey.AAAAAAAAAAAAAAAAAAAAAA.AAAA",
        "/withdraw/short",
        "/refuse/short",
        "/confirm/short",
    ] {
        for response in token_requests(&app, path).await {
            assert_eq!(response.status(), 404, "{path}");
            assert_token_headers(&response, path);
        }
    }
    // A method a token path does not serve is a 404 too, with the headers.
    let put = app
        .client
        .put(app.url("/unsubscribe/short"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 404);
    assert_token_headers(&put, "PUT /unsubscribe");
}

async fn a_signed_token_for_no_subscription_is_404_and_changes_nothing(backend: Backend) {
    use assent::tokens::Purpose;
    let app = spawn_app(backend).await;
    app.confirmed_subscriber("sam@example.org", "newsletter")
        .await;
    let events_before = app.events_for("sam@example.org").len();
    let outbox_before = app.outbox_rows();
    // Correctly signed with the app's own key, for a subscription that
    // never existed.
    let nobody = uuid::Uuid::now_v7();
    let leave = app.context.link_keys.mint(Purpose::Leave, nobody);
    let refuse = app.context.link_keys.mint(Purpose::Refuse, nobody);
    for path in [
        format!("/unsubscribe/{leave}"),
        format!("/withdraw/{leave}"),
        format!("/refuse/{refuse}"),
    ] {
        for response in token_requests(&app, &path).await {
            assert_eq!(response.status(), 404, "{path}");
            assert_token_headers(&response, &path);
        }
    }
    assert_eq!(app.events_for("sam@example.org").len(), events_before);
    assert_eq!(app.outbox_rows(), outbox_before);
    assert_eq!(
        app.subscription_state("sam@example.org", "newsletter")
            .as_deref(),
        Some("confirmed")
    );
    let refusals: i64 = {
        use assent::db::schema::refusals;
        use diesel::prelude::*;
        refusals::table.count().get_result(&mut app.db()).unwrap()
    };
    assert_eq!(refusals, 0);
}

async fn a_german_lists_pages_are_in_german(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.confirmed_subscriber("lea@example.org", "offers").await;
    let page = app.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains(r#"lang="de""#), "{body}");
    assert!(
        body.contains("Mit einem Klick melden Sie sich ab von"),
        "{body}"
    );
    // A body the page never sends: the error page is German too.
    let bad = app
        .client
        .post(&url)
        .form(&[("foo", "bar")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_token_headers(&bad, "400");
    let body = bad.text().await.unwrap();
    assert!(body.contains(r#"lang="de""#), "{body}");
    assert!(
        body.contains("Die Anfrage konnte nicht gelesen werden"),
        "{body}"
    );
    let withdraw = url.replace("/unsubscribe/", "/withdraw/");
    let unsupported = app
        .client
        .post(&withdraw)
        .header("Content-Type", "text/plain")
        .body("erase")
        .send()
        .await
        .unwrap();
    assert_eq!(unsupported.status(), 415);
    let body = unsupported.text().await.unwrap();
    assert!(
        body.contains("Dieses Format wird nicht unterstützt"),
        "{body}"
    );
    assert_eq!(
        app.subscription_state("lea@example.org", "offers")
            .as_deref(),
        Some("confirmed")
    );
    // The button, and the page after it.
    let done = app
        .client
        .post(&url)
        .form(&[("action", "unsubscribe")])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let body = done.text().await.unwrap();
    assert!(body.contains(r#"lang="de""#), "{body}");
    assert!(body.contains("Sie sind abgemeldet"), "{body}");
    assert_eq!(
        app.subscription_state("lea@example.org", "offers")
            .as_deref(),
        Some("unsubscribed")
    );
}

async fn a_mailto_list_advertises_both_ways_to_unsubscribe(backend: Backend) {
    let app = spawn_app_with(backend, crate::helpers::SETTINGS_LISTS).await;
    let key = app.admin_key("sender");
    app.confirmed_subscriber("mo@example.org", "mailto").await;
    let welcome = app.mails_to("mo@example.org").pop().unwrap();
    let value = header(&welcome.data, "List-Unsubscribe").unwrap();
    let (https, mailto) = value.split_once(", ").unwrap();
    assert!(
        https.starts_with("<http://127.0.0.1:8080/unsubscribe/") && https.ends_with('>'),
        "{value}"
    );
    assert_eq!(mailto, "<mailto:leave@clinic.example?subject=unsubscribe>");
    assert_eq!(
        header(&welcome.data, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    // Senders get the same header from the audience.
    let audience = app.admin_text("/admin/lists/mailto/audience", &key).await;
    let line: serde_json::Value = serde_json::from_str(audience.lines().next().unwrap()).unwrap();
    assert_eq!(line["list_unsubscribe"], value.as_str());
    // A list without the setting advertises the URL alone.
    app.confirmed_subscriber("mo@example.org", "newsletter")
        .await;
    let welcome = app.mails_to("mo@example.org").pop().unwrap();
    let value = header(&welcome.data, "List-Unsubscribe").unwrap();
    assert!(!value.contains("mailto:"), "{value}");
}

async fn generated_link_keys_survive_a_restart(backend: Backend) {
    // No [tokens] keys: the first start generates the signing key.
    let app = spawn_app(backend).await;
    let url = app
        .confirmed_subscriber("rex@example.org", "newsletter")
        .await;
    assert!(url.contains("/unsubscribe/auto."), "{url}");
    let restarted = app.respawn_with("").await;
    let url = url.replace(&app.address, &restarted.address);
    let page = restarted.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    restarted.one_click(&url).await;
    assert_eq!(
        restarted
            .subscription_state("rex@example.org", "newsletter")
            .as_deref(),
        Some("unsubscribed")
    );
    // And the restarted app signs new links with the same key.
    let fresh = restarted
        .confirmed_subscriber("rae@example.org", "newsletter")
        .await;
    let on_first = fresh.replace(&restarted.address, &app.address);
    assert_eq!(
        app.client.get(&on_first).send().await.unwrap().status(),
        200
    );
}

crate::backend_tests!(
    welcome_mail_carries_one_click_headers,
    one_click_unsubscribe_in_both_encodings,
    the_page_button_unsubscribes,
    bad_tokens_and_bodies_change_nothing,
    withdrawal_without_erasure_covers_every_list,
    erasure_leaves_no_personal_data_and_sign_up_still_works,
    signing_up_after_leaving_needs_double_opt_in_again,
    old_links_work_after_a_new_key_is_added_first,
    bad_token_answers_are_neither_referred_nor_cached,
    a_signed_token_for_no_subscription_is_404_and_changes_nothing,
    a_german_lists_pages_are_in_german,
    a_mailto_list_advertises_both_ways_to_unsubscribe,
    generated_link_keys_survive_a_restart,
);
