use chrono::Duration;

use crate::helpers::{Backend, header, spawn_app, spawn_app_with};
use crate::smtp_server::Behaviour;

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
    let refusal = Behaviour::Reply("550 5.1.1 no such user".to_owned());
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
    assert!(rows[0].2.as_deref().unwrap().contains("550"));
    // Dead letters stay dead (and visible) until retried by an operator.
    app.clock.advance(Duration::days(2));
    assert_eq!(app.dispatch_all_pending_emails().await, 0);
    assert_eq!(app.event_kinds("jo@example.org"), ["consent_requested"]);
}

async fn a_dropped_connection_and_a_silent_server_are_retried(backend: Backend) {
    let app = spawn_app(backend).await;
    app.smtp
        .script([Behaviour::DropAfterData, Behaviour::Silent]);
    app.sign_up("kim@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.outbox_rows()[0].0, "pending");
    app.clock.advance(Duration::seconds(61));
    // The silent server is cut off by the send deadline (2 s in tests).
    app.dispatch_all_pending_emails().await;
    let rows = app.outbox_rows();
    assert_eq!(rows[0].0, "pending");
    assert_eq!(rows[0].1, 2);
    app.clock.advance(Duration::seconds(121));
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to("kim@example.org").len(), 1);
    assert_eq!(app.outbox_rows()[0].0, "sent");
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

async fn a_421_is_temporary(backend: Backend) {
    let app = spawn_app(backend).await;
    app.smtp
        .script([Behaviour::Reply("421 4.7.0 too busy, closing".to_owned())]);
    app.sign_up("mo@example.org", "newsletter").await;
    app.dispatch_all_pending_emails().await;
    assert!(app.outbox_rows()[0].2.as_deref().unwrap().contains("421"));
    app.clock.advance(Duration::seconds(61));
    app.dispatch_all_pending_emails().await;
    assert_eq!(app.mails_to("mo@example.org").len(), 1);
}

async fn a_retried_confirmation_keeps_its_message_id(backend: Backend) {
    let app = spawn_app(backend).await;
    // The relay reads the whole message, then says "later".
    app.smtp.script([Behaviour::ReplyAfterData(
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

crate::backend_tests!(
    a_retried_confirmation_keeps_its_message_id,
    an_smtp_server_that_is_down_then_back_gets_the_mail,
    a_421_is_temporary,
    a_temporary_failure_is_retried_and_delivered_once,
    a_permanent_refusal_is_retried_then_dead,
    a_dropped_connection_and_a_silent_server_are_retried,
);
