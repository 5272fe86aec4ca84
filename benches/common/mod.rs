//! What the benches share: a sign-up as the route builds it.

use assent::context::SharedContext;
use assent::db::repo::lists::ConsentRef;
use assent::db::repo::signup::{ConfirmationBudget, ConsentSource, SignupInput};
use assent::domain::{ConfirmationToken, EmailAddress};
use assent::ledger::{EventMethod, Evidence};

/// A double-opt-in API sign-up of `email` to the list `newsletter`, with
/// the default budget, as `POST /subscriptions` would record it.
pub fn newsletter_signup(ctx: &SharedContext, email: &str, message_domain: &str) -> SignupInput {
    let list = ctx.lists.by_slug("newsletter").expect("the example list");
    let email = EmailAddress::parse(email).expect("a valid address");
    SignupInput {
        list_id: list.id.clone(),
        double_opt_in: true,
        welcome: true,
        email_hmac: ctx.subject_hash(&email),
        email,
        name: None,
        consent: ConsentRef::Id(list.current.id.clone()),
        consent_source: ConsentSource::VersionId,
        method: EventMethod::Api,
        evidence: Evidence::new(
            Some("127.0.0.1".into()),
            Some("peer"),
            Some("bench".into()),
            None,
        )
        .seal(),
        token: ConfirmationToken::generate(),
        token_ttl: chrono::Duration::days(7),
        message_domain: message_domain.into(),
        budget: ConfirmationBudget {
            interval: chrono::Duration::minutes(10),
            per_day: 3,
        },
        webhooks: std::sync::Arc::clone(&ctx.webhooks),
    }
}
