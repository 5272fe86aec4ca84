//! The pages in a real browser (headless Chromium over WebDriver): sign up
//! on the hosted form, confirm from the email, unsubscribe, withdraw and
//! erase; with and without JavaScript; an accessibility check and a
//! screenshot on every page (`target/browser-screenshots/<backend>/`).
//! Every state change is asserted to happen on a button press, never on
//! opening a page.

use std::time::Duration;

use crate::browser_driver::{Driver, Scripts, Session};
use crate::helpers::{Backend, CURRENT_TEXT, TestApp, header, links_in, spawn_app, text_part};

/// The longest a whole browser test may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);

/// The ids and kinds of a subscriber's ledger events, found by subscriber
/// id (an erased subscriber has no address left to look up).
fn event_kinds_of(app: &TestApp, subscriber_id: &str) -> Vec<String> {
    use assent::db::schema::consent_events;
    use diesel::prelude::*;
    consent_events::table
        .filter(consent_events::subscriber_id.eq(subscriber_id))
        .order(consent_events::seq.asc())
        .select(consent_events::kind)
        .load(&mut app.db())
        .expect("the subscriber's events")
}

/// The id of the subscriber with this address.
fn subscriber_id(app: &TestApp, email: &str) -> String {
    use assent::db::schema::subscribers;
    use diesel::prelude::*;
    subscribers::table
        .filter(subscribers::email_key.eq(email.to_lowercase()))
        .select(subscribers::id)
        .first(&mut app.db())
        .expect("the subscriber")
}

/// What a page visit must not change: the subscription's state, the ledger
/// and the outbox.
fn stored_state(app: &TestApp, email: &str) -> (Option<String>, Vec<String>, usize) {
    (
        app.subscription_state(email, "newsletter"),
        app.event_kinds(email),
        app.outbox_rows().len(),
    )
}

/// The first link in the text part of a mail that contains `path`.
fn link_in_mail(app: &TestApp, raw: &str, path: &str) -> String {
    let link = links_in(&text_part(raw))
        .into_iter()
        .find(|l| l.contains(path))
        .unwrap_or_else(|| panic!("no {path} link in the mail"));
    app.local(&link)
}

/// The whole journey of one person, then "withdraw and erase" for a second.
/// Screenshots are numbered `NN-{label}{page}`.
async fn sign_up_confirm_and_leave(
    app: &TestApp,
    browser: &Session,
    label: &str,
    first: &str,
    second: &str,
) {
    let shot = |n: u32, page: &str| format!("{n:02}-{label}{page}");

    // The form: consent unticked, the current text beside the box.
    browser.open(&app.url("/lists/newsletter/form")).await;
    browser.wait_for_heading("Clinic news").await;
    assert_eq!(
        browser.attribute("html", "lang").await.as_deref(),
        Some("en")
    );
    assert_eq!(browser.text("label[for=consent]").await, CURRENT_TEXT);
    assert!(!browser.is_ticked("#consent").await);
    browser.record(&shot(1, "form")).await;

    // Without the tick: an error on the page, nothing stored or sent.
    browser.type_into("#email", first).await;
    browser.press("Subscribe").await;
    browser
        .wait_for_heading("The sign-up is not complete")
        .await;
    assert_eq!(
        browser.texts("[role=alert] li").await,
        ["Please tick the consent box to subscribe."]
    );
    assert_eq!(app.find_text_anywhere(first), Vec::<String>::new());
    assert!(app.mails_to(first).is_empty());
    browser.record(&shot(2, "consent-missing")).await;

    // Back to the form, ticked this time.
    browser.follow("Back to the form").await;
    browser.wait_for_heading("Clinic news").await;
    browser.type_into("#email", first).await;
    browser.click("#consent").await;
    assert!(browser.is_ticked("#consent").await);
    browser.record(&shot(3, "form-ticked")).await;
    browser.press("Subscribe").await;
    browser.wait_for_heading("Please check your inbox").await;
    assert_eq!(browser.path().await, "/lists/newsletter/check-inbox");
    browser.record(&shot(4, "check-inbox")).await;
    assert_eq!(
        app.subscription_state(first, "newsletter").as_deref(),
        Some("pending")
    );
    assert_eq!(app.event_kinds(first), ["consent_requested"]);

    // The confirmation email's link shows the consent text and changes
    // nothing.
    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    let confirmation = app.mails_to(first);
    assert_eq!(confirmation.len(), 1);
    let confirm_link = link_in_mail(app, &confirmation[0].data, "/confirm/");
    let before = stored_state(app, first);
    assert_eq!(before.1, ["consent_requested", "confirmation_sent"]);
    browser.open(&confirm_link).await;
    browser.wait_for_heading("Confirm your subscription").await;
    assert_eq!(browser.text("blockquote").await, CURRENT_TEXT);
    assert!(browser.text("main").await.contains("Clinic news"));
    assert_eq!(stored_state(app, first), before, "opening the confirm page");
    browser.record(&shot(5, "confirm")).await;

    // The button confirms.
    browser.press("Confirm subscription").await;
    browser.wait_for_heading("Subscription confirmed").await;
    browser.record(&shot(6, "confirmed")).await;
    assert_eq!(
        app.subscription_state(first, "newsletter").as_deref(),
        Some("confirmed")
    );
    let confirmed = app.events_for(first);
    let last = confirmed.last().expect("events");
    assert_eq!(last.kind, "consent_confirmed");
    assert_eq!(last.method.as_deref(), Some("confirmation_page"));

    // The welcome email's unsubscribe link shows a page and changes nothing;
    // the button unsubscribes.
    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    let welcome = app
        .mails_to(first)
        .into_iter()
        .find(|m| header(&m.data, "List-Unsubscribe").is_some())
        .expect("a welcome email");
    let unsubscribe_link = link_in_mail(app, &welcome.data, "/unsubscribe/");
    let before = stored_state(app, first);
    browser.open(&unsubscribe_link).await;
    browser.wait_for_heading("Unsubscribe").await;
    assert_eq!(
        stored_state(app, first),
        before,
        "opening the unsubscribe page"
    );
    browser.record(&shot(7, "unsubscribe")).await;
    browser.press("Unsubscribe").await;
    browser.wait_for_heading("Unsubscribed").await;
    browser.record(&shot(8, "unsubscribed")).await;
    assert_eq!(
        app.subscription_state(first, "newsletter").as_deref(),
        Some("unsubscribed")
    );
    let left = app.events_for(first);
    let last = left.last().expect("events");
    assert_eq!(last.kind, "unsubscribed");
    assert_eq!(last.method.as_deref(), Some("page"));

    // A second subscriber withdraws and erases from the same page.
    let leave_link = app.confirmed_subscriber(second, "newsletter").await;
    let id = subscriber_id(app, second);
    let before = stored_state(app, second);
    browser.open(&leave_link).await;
    browser.wait_for_heading("Unsubscribe").await;
    assert_eq!(
        stored_state(app, second),
        before,
        "opening the unsubscribe page"
    );
    assert!(!app.find_text_anywhere(second).is_empty());
    browser.record(&shot(9, "unsubscribe-second")).await;
    browser
        .press("Withdraw my consent for all lists and erase my data")
        .await;
    browser.wait_for_heading("Data erased").await;
    browser.record(&shot(10, "erased")).await;
    assert_eq!(app.find_text_anywhere(second), Vec::<String>::new());
    let kinds = event_kinds_of(app, &id);
    assert_eq!(
        &kinds[kinds.len() - 2..],
        ["consent_withdrawn", "erased"],
        "{kinds:?}"
    );
}

/// The German list's form and confirmation page.
async fn german_pages(app: &TestApp, browser: &Session) {
    let email = "erna@example.org";
    assert_eq!(app.sign_up(email, "offers").await.status(), 202);
    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    let confirm_link = link_in_mail(app, &app.mails_to(email)[0].data, "/confirm/");

    browser.open(&app.url("/lists/offers/form")).await;
    browser.wait_for_heading("Offers").await;
    assert_eq!(
        browser.attribute("html", "lang").await.as_deref(),
        Some("de")
    );
    assert_eq!(browser.text("label[for=email]").await, "E-Mail-Adresse");
    assert_eq!(
        browser.text("label[for=consent]").await,
        "Ich willige ein, Angebote per E-Mail zu erhalten."
    );
    assert_eq!(browser.text("form button").await, "Anmelden");
    browser.record("11-de-form").await;

    let before = app.event_kinds(email);
    browser.open(&confirm_link).await;
    browser.wait_for_heading("Anmeldung bestätigen").await;
    assert_eq!(
        browser.attribute("html", "lang").await.as_deref(),
        Some("de")
    );
    assert!(
        browser
            .text("main")
            .await
            .contains("Sie haben dieser Erklärung zugestimmt:")
    );
    assert_eq!(
        browser.text("blockquote").await,
        "Ich willige ein, Angebote per E-Mail zu erhalten."
    );
    assert_eq!(browser.text("form button").await, "Anmeldung bestätigen");
    browser.record("12-de-confirm").await;
    assert_eq!(app.event_kinds(email), before, "opening the confirm page");
    assert_eq!(
        app.subscription_state(email, "offers").as_deref(),
        Some("pending")
    );
}

async fn the_pages_work_in_a_browser(backend: Backend) {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let app = spawn_app(backend).await;
    let browser = driver.session(Scripts::Enabled, backend).await;
    assert_eq!(browser.scripts(), Scripts::Enabled);
    let journey = async {
        sign_up_confirm_and_leave(&app, &browser, "", "ada@example.org", "bo@example.org").await;
        german_pages(&app, &browser).await;
    };
    tokio::time::timeout(TEST_TIMEOUT, journey)
        .await
        .expect("the browser test finishes in time");
    browser.close().await;
}

async fn the_pages_work_without_javascript(backend: Backend) {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let app = spawn_app(backend).await;
    let browser = driver.session(Scripts::Disabled, backend).await;
    assert_eq!(browser.scripts(), Scripts::Disabled);
    let journey = sign_up_confirm_and_leave(
        &app,
        &browser,
        "nojs-",
        "cyd@example.org",
        "dora@example.org",
    );
    tokio::time::timeout(TEST_TIMEOUT, journey)
        .await
        .expect("the browser test finishes in time");
    browser.close().await;
}

crate::backend_tests!(
    the_pages_work_in_a_browser,
    the_pages_work_without_javascript
);
