//! Building the messages Assent sends. Nothing a subscriber or a bot typed
//! (name, source URL) ever goes into a message.

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use minijinja::context;

use crate::mail::headers;
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

/// The double-opt-in email.
pub fn confirmation(
    templates: &Templates,
    list: &ListEntry,
    to: &str,
    confirm_url: &str,
    message_id: &str,
    ttl_days: u64,
) -> Result<Message, MessageError> {
    let lang = list.language();
    let subject = strings(lang)
        .get_attr("confirm_subject")
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "Please confirm your subscription".to_owned());
    let ctx = context! {
        list_name => list.settings.name.as_str(),
        confirm_url => confirm_url,
        subject => subject.as_str(),
        ttl_days => ttl_days.to_string(),
    };
    let text = templates.render("confirmation_email.txt", lang, ctx.clone())?;
    let html = templates.render("confirmation_email.html", lang, ctx)?;
    let recipient: Mailbox = to
        .parse()
        .map_err(|_| MessageError::Recipient(crate::domain::email::mask(to)))?;
    let mut builder = Message::builder()
        .from(list.settings.from.clone())
        .to(recipient)
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
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )
        .map_err(|e| MessageError::Build(e.to_string()))
}
