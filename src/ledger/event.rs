//! Event kinds and methods as stored in the ledger.

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A sign-up: the person asked to subscribe, agreeing to a consent text.
    ConsentRequested,
    /// The double-opt-in email left for the recipient's server.
    ConfirmationSent,
    /// The deliberate click on the confirmation page.
    ConsentConfirmed,
    /// Left one list.
    Unsubscribed,
    /// Withdrew consent.
    ConsentWithdrawn,
    /// Personal data removed.
    Erased,
    /// "I did not ask for this": no more confirmation emails for a while.
    ConfirmationRefused,
    /// The person lifted their refusal.
    RefusalLifted,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ConsentRequested => "consent_requested",
            EventKind::ConfirmationSent => "confirmation_sent",
            EventKind::ConsentConfirmed => "consent_confirmed",
            EventKind::Unsubscribed => "unsubscribed",
            EventKind::ConsentWithdrawn => "consent_withdrawn",
            EventKind::Erased => "erased",
            EventKind::ConfirmationRefused => "confirmation_refused",
            EventKind::RefusalLifted => "refusal_lifted",
        }
    }
}

/// How an event came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMethod {
    /// A web form post.
    Form,
    /// A JSON API call.
    Api,
    /// The confirmation page's button.
    ConfirmationPage,
    /// A list without double opt-in: confirmed by the sign-up itself.
    SingleOptIn,
    /// Sent by the outbox worker.
    Mail,
    /// A mail client's unsubscribe button (RFC 8058 one-click POST).
    OneClick,
    /// A button on Assent's own page.
    Page,
    /// An operator through the admin API.
    Admin,
}

impl EventMethod {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventMethod::Form => "form",
            EventMethod::Api => "api",
            EventMethod::ConfirmationPage => "confirmation_page",
            EventMethod::SingleOptIn => "single_opt_in",
            EventMethod::Mail => "mail",
            EventMethod::OneClick => "one_click",
            EventMethod::Page => "page",
            EventMethod::Admin => "admin",
        }
    }
}
