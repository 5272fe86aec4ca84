//! Building the messages Assent sends. Nothing a subscriber or a bot typed
//! (name, source URL) ever goes into a message.

use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};
use minijinja::context;

use crate::mail::{body, headers};
use crate::registry::ListEntry;
use crate::render::{RenderError, Templates, strings};

/// Why a message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the recipient address {0} cannot be put on a message")]
    Recipient(String),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("building the message: {0}")]
    Build(String),
}

/// The domain that names the list in `List-Id` and `Message-ID`s: the
/// From address's domain.
pub fn list_domain(list: &ListEntry) -> String {
    list.settings.from.email.domain().to_owned()
}

fn subject_in(lang: &str, key: &str, fallback: &str) -> String {
    strings(lang)
        .get_attr(key)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| fallback.to_owned())
}

/// The parts every list message shares: From, Reply-To, To, Subject,
/// Message-ID, Auto-Submitted and List-Id.
fn list_message(
    list: &ListEntry,
    to: &str,
    subject: String,
    message_id: &str,
) -> Result<lettre::message::MessageBuilder, MessageError> {
    // A bare address: parsed as one, without the parser of display names.
    let recipient = to
        .parse::<Address>()
        .map_err(|_| MessageError::Recipient(crate::domain::email::mask(to)))?;
    // The envelope given, lettre does not parse it back from the headers.
    let envelope = Envelope::new(
        Some(list.settings.from.email.clone()),
        vec![recipient.clone()],
    )
    .map_err(|e| MessageError::Build(e.to_string()))?;
    let mut builder = Message::builder()
        .envelope(envelope)
        .from(list.settings.from.clone())
        .to(Mailbox::new(None, recipient))
        .subject(subject)
        .message_id(Some(message_id.to_owned()))
        .raw_header(headers::auto_submitted())
        .raw_header(headers::list_id(
            &list.settings.name,
            list.slug(),
            &list_domain(list),
        ));
    if let Some(reply_to) = &list.settings.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    Ok(builder)
}

fn alternative(text: &str, html: &str) -> MultiPart {
    MultiPart::alternative()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(body::text(text)),
        )
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(body::text(html)),
        )
}

/// The welcome email: confirms the subscription and carries the RFC 8058
/// one-click unsubscribe headers and a visible unsubscribe link.
pub fn welcome(
    templates: &Templates,
    list: &ListEntry,
    to: &str,
    unsubscribe_url: &str,
    message_id: &str,
) -> Result<Message, MessageError> {
    let lang = list.language();
    let subject = list.settings.subjects.welcome.clone().unwrap_or_else(|| {
        format!(
            "{}: {}",
            subject_in(lang, "welcome_subject", "Welcome"),
            list.settings.name
        )
    });
    let fixed = context! {
        list_name => list.settings.name.as_str(),
        subject => subject.as_str(),
    };
    let slots = [("unsubscribe_url", unsubscribe_url)];
    let text = templates.render_slotted(
        list.slug(),
        "welcome_email.txt",
        lang,
        fixed.clone(),
        &slots,
    )?;
    let html = templates.render_slotted(list.slug(), "welcome_email.html", lang, fixed, &slots)?;
    let mailto = list
        .settings
        .unsubscribe_mailto
        .as_ref()
        .map(|a| a.as_str());
    list_message(list, to, subject, message_id)?
        .raw_header(headers::list_unsubscribe(unsubscribe_url, mailto))
        .raw_header(headers::list_unsubscribe_post())
        .multipart(alternative(&text, &html))
        .map_err(|e| MessageError::Build(e.to_string()))
}

/// The double-opt-in email.
pub fn confirmation(
    templates: &Templates,
    list: &ListEntry,
    to: &str,
    confirm_url: &str,
    refuse_url: &str,
    message_id: &str,
    ttl_days: u64,
) -> Result<Message, MessageError> {
    let lang = list.language();
    let subject = list
        .settings
        .subjects
        .confirmation
        .clone()
        .unwrap_or_else(|| subject_in(lang, "confirm_subject", "Please confirm your subscription"));
    let fixed = context! {
        list_name => list.settings.name.as_str(),
        subject => subject.as_str(),
        ttl_days => ttl_days.to_string(),
    };
    let slots = [("confirm_url", confirm_url), ("refuse_url", refuse_url)];
    let text = templates.render_slotted(
        list.slug(),
        "confirmation_email.txt",
        lang,
        fixed.clone(),
        &slots,
    )?;
    let html =
        templates.render_slotted(list.slug(), "confirmation_email.html", lang, fixed, &slots)?;
    list_message(list, to, subject, message_id)?
        .multipart(alternative(&text, &html))
        .map_err(|e| MessageError::Build(e.to_string()))
}
