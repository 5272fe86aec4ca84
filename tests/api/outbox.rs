use chrono::Duration;

use crate::helpers::{
    Backend, TestApp, header, spawn_app, spawn_app_with, spawn_app_without_pipelining,
};
use crate::smtp_server::{Behaviour, Stage};

async fn a_temporary_failure_is_retried_and_delivered_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.smtp
        .script([Behaviour::Reply("451 4.3.0 try again later".to_owned())]);
    app.sign_up("ida@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    assert!(app.mails_to("ida@example.org").is_empty());
    let rows = app.outbox_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "pending");
    assert_eq!(rows[0].1, 1);
    assert!(rows[0].2.as_deref().unwrap().contains("451"), "{rows:?}");
    // Not due before the backoff passes.
    assert_eq!(app.dispatch_all_pending_emails().await, 0);
    app.clock.advance(Duration::seconds(61));
    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    assert_eq!(app.mails_to("ida@example.org").len(), 1);
    let rows = app.outbox_rows();
    assert_eq!(rows[0].0, "sent");
    assert_eq!(rows[0].1, 2);
    // Nothing more to send, ever.
    app.clock.advance(Duration::days(1));
    assert_eq!(app.dispatch_all_pending_emails().await, 0);
    assert_eq!(app.mails_to("ida@example.org").len(), 1);
    assert_eq!(
        app.event_kinds("ida@example.org"),
        ["consent_requested", "confirmation_sent"]
    );
}

async fn a_permanent_refusal_is_retried_then_dead(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.admin_key("ops");
    // The relay refuses the recipient (550 at RCPT) every time.
    let refusal = Behaviour::ReplyAt(Stage::RcptTo, "550 5.1.1 no such user".to_owned());
    app.smtp.script([refusal.clone(), refusal.clone(), refusal]);
    app.sign_up("jo@example.org", "newsletter").await;
    for _ in 0..3 {
        app.dispatch_all_pending_emails().await;
        app.clock.advance(Duration::hours(2));
    }
    assert_eq!(app.smtp.attempts(), 3);
    assert!(app.mails_to("jo@example.org").is_empty());
    let rows = app.outbox_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "dead");
    assert_eq!(rows[0].1, 3);
    let error = rows[0].2.as_deref().unwrap();
    assert!(
        error.starts_with("permanent:") && error.contains("550"),
        "{error}"
    );
    // Dead letters stay dead until retried by an operator.
    app.clock.advance(Duration::days(2));
    assert_eq!(app.dispatch_all_pending_emails().await, 0);
    assert_eq!(app.event_kinds("jo@example.org"), ["consent_requested"]);
    // The operator sees it among the dead letters and retries it once the
    // relay accepts again: delivered once.
    let dead = app.admin_json("/admin/outbox?state=dead", &key).await;
    let listed = dead["rows"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{dead}");
    let id = listed[0]["id"].as_str().unwrap();
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
    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    assert_eq!(app.mails_to("jo@example.org").len(), 1);
    assert_eq!(app.outbox_rows()[0].0, "sent");
    let dead = app.admin_json("/admin/outbox?state=dead", &key).await;
    assert!(dead["rows"].as_array().unwrap().is_empty(), "{dead}");
    app.clock.advance(Duration::days(1));
    assert_eq!(app.dispatch_all_pending_emails().await, 0);
    assert_eq!(app.mails_to("jo@example.org").len(), 1);
    assert_eq!(
        app.event_kinds("jo@example.org"),
        ["consent_requested", "confirmation_sent"]
    );
}

/// One scripted fault per case; the failure must be temporary, the row
/// retried after its backoff and then delivered exactly once. The relay
/// offers PIPELINING, so the replies to the commands after a refusal are
/// read too.
async fn every_temporary_smtp_fault_is_retried_and_delivered_once(backend: Backend) {
    let app = spawn_app(backend).await;
    every_temporary_fault_is_retried(&app).await;
    assert_eq!(app.smtp.pipelined(), app.smtp.attempts());
}

/// The same with a relay that does not offer PIPELINING: Assent waits for
/// each reply (RFC 2920 forbids pipelining to it).
async fn every_temporary_smtp_fault_without_pipelining_is_retried_and_delivered_once(
    backend: Backend,
) {
    let app = spawn_app_without_pipelining(backend).await;
    every_temporary_fault_is_retried(&app).await;
    assert_eq!(app.smtp.pipelined(), 0);
}

async fn every_temporary_fault_is_retried(app: &TestApp) {
    let reply = |stage, text: &str| Behaviour::ReplyAt(stage, text.to_owned());
    let cases = [
        // Accepts the connection, never greets: cut off by the send
        // deadline (mail.send_timeout_secs, 2 s in tests).
        ("silent", Behaviour::Silent, "no answer within 2 s"),
        (
            "greeting-421",
            reply(Stage::Greeting, "421 4.3.2 shutting down"),
            "421",
        ),
        (
            "greeting-451",
            reply(Stage::Greeting, "451 4.3.0 not now"),
            "451",
        ),
        (
            "mail-421",
            reply(Stage::MailFrom, "421 4.7.0 too busy, closing"),
            "421",
        ),
        ("rcpt-421", reply(Stage::RcptTo, "421 4.4.5 closing"), "421"),
        (
            "rcpt-451",
            reply(Stage::RcptTo, "451 4.7.1 greylisted"),
            "451",
        ),
        (
            "data-421",
            reply(Stage::AfterData, "421 4.3.0 closing"),
            "421",
        ),
        (
            "data-451",
            reply(Stage::AfterData, "451 4.3.0 queue full"),
            "451",
        ),
        // The connection is lost before the final dot of the message.
        ("mid-data", Behaviour::DropMidData, "temporary:"),
        // Lost after the final dot, before a reply: the test server throws
        // the message away (a real relay may have kept it: the one case of
        // at-least-once delivery).
        ("after-data", Behaviour::DropAfterData, "temporary:"),
    ];
    for (i, (name, fault, expected)) in cases.iter().enumerate() {
        let email = format!("{name}@example.org");
        app.smtp.script([fault.clone()]);
        assert_eq!(app.sign_up(&email, "newsletter").await.status(), 202);
        assert_eq!(app.dispatch_all_pending_emails().await, 1, "{name}");
        let (state, attempts, error) = app.outbox_rows().pop().unwrap();
        let error = error.unwrap_or_default();
        assert_eq!((state.as_str(), attempts), ("pending", 1), "{name}");
        assert!(
            error.starts_with("temporary:") && error.contains(expected),
            "{name}: {error}"
        );
        assert!(app.mails_to(&email).is_empty(), "{name}");
        // Due again after the backoff (60 s in tests), and then delivered.
        app.clock.advance(Duration::seconds(61));
        assert_eq!(app.dispatch_all_pending_emails().await, 1, "{name}");
        assert_eq!(app.mails_to(&email).len(), 1, "{name}");
        let (state, attempts, _) = app.outbox_rows().pop().unwrap();
        assert_eq!((state.as_str(), attempts), ("sent", 2), "{name}");
        assert_eq!(app.smtp.received().len(), i + 1, "{name}: a duplicate");
        assert_eq!(
            app.event_kinds(&email),
            ["consent_requested", "confirmation_sent"],
            "{name}"
        );
    }
    // Nothing is sent again later.
    app.clock.advance(Duration::days(1));
    assert_eq!(app.dispatch_all_pending_emails().await, 0);
    assert_eq!(app.smtp.received().len(), cases.len());
}

async fn an_smtp_server_that_is_down_then_back_gets_the_mail(backend: Backend) {
    // Nothing listens on the configured port at first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(backend, &format!("mail_url = \"smtp://127.0.0.1:{port}\"")).await;
    app.sign_up("lu@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    let rows = app.outbox_rows();
    assert_eq!(rows[0].0, "pending");
    assert!(rows[0].2.is_some(), "the connection error is kept");
    let smtp = crate::smtp_server::SmtpServer::start_on(port).await;
    app.clock.advance(Duration::seconds(61));
    app.dispatch_all_pending_emails().await;
    assert_eq!(smtp.received().len(), 1);
    assert_eq!(app.outbox_rows()[0].0, "sent");
}

async fn a_retried_confirmation_keeps_its_message_id(backend: Backend) {
    let app = spawn_app(backend).await;
    // The relay reads the whole message, then says "later".
    app.smtp.script([Behaviour::ReplyAt(
        Stage::AfterData,
        "451 4.3.0 try again later".to_owned(),
    )]);
    app.sign_up("nat@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    let refused = app.smtp.rejected();
    assert_eq!(refused.len(), 1);
    assert!(app.mails_to("nat@example.org").is_empty());
    let first = header(&refused[0].data, "Message-ID").unwrap();
    let rows = app.outbox_rows();
    assert_eq!(rows[0].0, "pending");
    assert!(rows[0].2.as_deref().unwrap().contains("451"), "{rows:?}");
    app.clock.advance(Duration::seconds(61));
    assert_eq!(app.dispatch_all_pending_emails().await, 1);
    let delivered = app.mails_to("nat@example.org");
    assert_eq!(delivered.len(), 1);
    let second = header(&delivered[0].data, "Message-ID").unwrap();
    assert_eq!(first, second);
    assert!(second.ends_with("@clinic.example>"), "{second}");
    // The ledger names the Message-ID that was delivered.
    let sent = app
        .events_for("nat@example.org")
        .into_iter()
        .find(|e| e.kind == "confirmation_sent")
        .unwrap();
    assert!(sent.details.contains(&second), "{}", sent.details);
}

/// Messages of one pass go out one after another on each connection, a
/// message's content in the same write as the next one's envelope. A
/// refusal or a lost connection in the middle of such a chain fails only
/// the messages it concerns; they are retried, and in the end every
/// address gets its confirmation once, recorded in its ledger.
async fn faults_in_a_chain_of_messages_fail_only_their_messages(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = |stage, text: &str| Behaviour::ReplyAt(stage, text.to_owned());
    let emails: Vec<String> = (0..24).map(|i| format!("chain{i}@example.org")).collect();
    for email in &emails {
        assert_eq!(app.sign_up(email, "newsletter").await.status(), 202);
    }
    app.smtp.script([
        Behaviour::Accept,
        Behaviour::Accept,
        reply(Stage::AfterData, "550 5.7.1 content refused"),
        Behaviour::Accept,
        reply(Stage::MailFrom, "451 4.3.0 try later"),
        Behaviour::Accept,
        reply(Stage::AfterData, "451 4.3.0 queue full"),
        Behaviour::Accept,
        reply(Stage::RcptTo, "450 4.2.0 mailbox busy"),
        Behaviour::Accept,
        Behaviour::DropAfterData,
        Behaviour::Accept,
        Behaviour::DropMidData,
    ]);
    assert_eq!(app.dispatch_all_pending_emails().await, emails.len());
    // Each message's content went out with the next one's envelope.
    assert!(app.smtp.chained() > 0, "no message was chained");
    let rows = app.outbox_rows();
    let failed: Vec<String> = rows
        .iter()
        .filter(|(state, _, _)| state == "pending")
        .filter_map(|(_, _, error)| error.clone())
        .collect();
    for (kind, expected) in [
        ("permanent:", "(550): 5.7.1 content refused"),
        ("temporary:", "(451): 4.3.0 try later"),
        ("temporary:", "(451): 4.3.0 queue full"),
        ("temporary:", "(450): 4.2.0 mailbox busy"),
        // The connection lost after a message and in the middle of one.
        ("temporary:", "incomplete response"),
    ] {
        assert!(
            failed
                .iter()
                .any(|error| error.starts_with(kind) && error.contains(expected)),
            "{expected} in {failed:?}"
        );
    }
    let sent = rows.iter().filter(|(state, _, _)| state == "sent").count();
    assert_eq!(sent + failed.len(), emails.len(), "{rows:?}");
    assert_eq!(app.smtp.received().len(), sent, "a duplicate or a loss");
    // The failed ones are due again after the backoff, and delivered.
    app.clock.advance(Duration::seconds(61));
    assert_eq!(app.dispatch_all_pending_emails().await, failed.len());
    for email in &emails {
        assert_eq!(app.mails_to(email).len(), 1, "{email}");
        assert_eq!(
            app.event_kinds(email),
            ["consent_requested", "confirmation_sent"],
            "{email}"
        );
    }
    assert!(
        app.outbox_rows()
            .iter()
            .all(|(state, _, _)| state == "sent")
    );
}

crate::backend_tests!(
    faults_in_a_chain_of_messages_fail_only_their_messages,
    a_retried_confirmation_keeps_its_message_id,
    an_smtp_server_that_is_down_then_back_gets_the_mail,
    a_temporary_failure_is_retried_and_delivered_once,
    a_permanent_refusal_is_retried_then_dead,
    every_temporary_smtp_fault_is_retried_and_delivered_once,
    every_temporary_smtp_fault_without_pipelining_is_retried_and_delivered_once,
);
