//! Templates compiled into the binary (pages and emails), rendered with
//! minijinja; HTML templates escape everything they show.

mod stamp;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use minijinja::{Environment, Value, context};

use stamp::{Stamp, StampKey, Stamps};

/// The stylesheet every page links to.
pub const STYLESHEET: &str = include_str!("templates/assent.css");

/// `fixed` with the slot variables added.
fn with_slots<S: AsRef<str>>(fixed: Value, names: &[&'static str], values: &[S]) -> Value {
    let slots: Value = names
        .iter()
        .zip(values)
        .map(|(name, value)| (*name, Value::from(value.as_ref())))
        .collect();
    minijinja::value::merge_maps([slots, fixed])
}

/// Pairs each template name with its source, compiled in.
macro_rules! compiled_in {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = compiled_in![
    "layout.html",
    "index.html",
    "form.html",
    "check_inbox.html",
    "signup_errors.html",
    "confirm.html",
    "confirmed.html",
    "message.html",
    "unsubscribe.html",
    "refuse.html",
    "confirmation_email.txt",
    "confirmation_email.html",
    "welcome_email.txt",
    "welcome_email.html",
];

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
    /// Mail bodies rendered once per list (see `render_slotted`).
    stamps: Stamps,
}

/// A template failed to render (a bug in a template, never user input).
#[derive(Debug, thiserror::Error)]
#[error("rendering {template}: {source}")]
pub struct RenderError {
    template: String,
    #[source]
    source: minijinja::Error,
}

impl Templates {
    /// Compiles the built-in templates; a broken one fails here, at start-up.
    pub fn builtin() -> Result<Self, RenderError> {
        Self::load(None, &[])
    }

    /// The built-in templates, overridden by files in `dir`: `dir/NAME`
    /// replaces a template for every list, `dir/SLUG/NAME` for one list.
    /// Every template is compiled and rendered once with sample values, so
    /// a broken override stops the start-up instead of the first email.
    pub fn load(dir: Option<&Path>, slugs: &[&str]) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        // Escape .html by name; .txt stays as is (mail text parts).
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_formatter(html_formatter);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|source| RenderError {
                    template: (*name).to_owned(),
                    source,
                })?;
        }
        if let Some(dir) = dir {
            for (name, source) in overrides(dir, slugs)? {
                env.add_template_owned(name.clone(), source)
                    .map_err(|source| RenderError {
                        template: name.clone(),
                        source,
                    })?;
            }
        }
        let templates = Templates {
            env,
            stamps: Stamps::default(),
        };
        templates.check_all()?;
        Ok(templates)
    }

    /// Renders every template once in every built-in language.
    fn check_all(&self) -> Result<(), RenderError> {
        let names: Vec<String> = self
            .env
            .templates()
            .map(|(name, _)| name.to_owned())
            .collect();
        for name in names {
            for lang in ["en", "de"] {
                self.render(&name, lang, sample_context())?;
            }
        }
        Ok(())
    }

    /// Renders a template with the strings of `lang` available as `t`.
    pub fn render(&self, name: &str, lang: &str, ctx: Value) -> Result<String, RenderError> {
        let template = self.env.get_template(name).map_err(|source| RenderError {
            template: name.to_owned(),
            source,
        })?;
        let full = context! { t => strings(lang), lang => lang, ..ctx };
        template.render(full).map_err(|source| RenderError {
            template: name.to_owned(),
            source,
        })
    }

    /// Renders a list's template as [`Templates::render_for`] does, with
    /// the variables of `fixed` and `slots`; `slots` are those whose values
    /// differ from message to message (links). The first call for a list,
    /// template and language makes a stamp of the rendered text, later ones
    /// fill it in, when the template allows that (see `render::stamp`).
    pub fn render_slotted(
        &self,
        list: &str,
        name: &str,
        lang: &str,
        fixed: Value,
        slots: &[(&'static str, &str)],
    ) -> Result<String, RenderError> {
        let names: Vec<&'static str> = slots.iter().map(|(name, _)| *name).collect();
        let values: Vec<&str> = slots.iter().map(|(_, value)| *value).collect();
        let stamp = match self.stamps.get(list, name, lang, &fixed) {
            Some(stamp) => stamp,
            None => {
                let key = StampKey {
                    list: list.to_owned(),
                    name: name.to_owned(),
                    lang: lang.to_owned(),
                };
                let made = self.make_stamp(&key, &fixed, &names)?.map(Arc::new);
                self.stamps.put(key, made.clone());
                made
            }
        };
        match stamp {
            Some(stamp) => Ok(stamp.fill(&values)),
            None => self.render_for(list, name, lang, with_slots(fixed, &names, &values)),
        }
    }

    /// A stamp of the template, if filling it in gives what rendering
    /// gives for two unlike sets of values.
    fn make_stamp(
        &self,
        key: &StampKey,
        fixed: &Value,
        names: &[&'static str],
    ) -> Result<Option<Stamp>, RenderError> {
        let render = |values: &[String]| {
            self.render_for(
                &key.list,
                &key.name,
                &key.lang,
                with_slots(fixed.clone(), names, values),
            )
        };
        let marks = stamp::placeholders(names.len());
        let stamp = Stamp::cut(fixed.clone(), &render(&marks)?, &marks);
        let samples = stamp::samples(names.len());
        let rendered = samples
            .iter()
            .map(|values| render(values))
            .collect::<Result<Vec<_>, _>>()?;
        let fits = |stamp: &Stamp| {
            samples
                .iter()
                .zip(&rendered)
                .all(|(values, text)| stamp.fill(values) == *text)
        };
        if fits(&stamp) {
            return Ok(Some(stamp));
        }
        let escaping = stamp.escaping(true);
        Ok(fits(&escaping).then_some(escaping))
    }

    /// Renders a list's override of a template if it has one, else the
    /// shared one.
    pub fn render_for(
        &self,
        list: &str,
        name: &str,
        lang: &str,
        ctx: Value,
    ) -> Result<String, RenderError> {
        let specific = format!("{list}/{name}");
        if self.env.get_template(&specific).is_ok() {
            self.render(&specific, lang, ctx)
        } else {
            self.render(name, lang, ctx)
        }
    }
}

/// The override files in `dir`, as (template name, source). Files that
/// name no template are refused, so a typo does not go unnoticed.
fn overrides(dir: &Path, slugs: &[&str]) -> Result<Vec<(String, String)>, RenderError> {
    let problem = |what: String| RenderError {
        template: dir.display().to_string(),
        source: minijinja::Error::new(minijinja::ErrorKind::TemplateNotFound, what),
    };
    let known = |file: &str| TEMPLATES.iter().any(|(name, _)| *name == file);
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| problem(format!("reading the folder: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| problem(e.to_string()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            if !slugs.contains(&file.as_str()) {
                return Err(problem(format!(
                    "{file}/ is not the slug of a configured list"
                )));
            }
            let inner = std::fs::read_dir(&path).map_err(|e| problem(e.to_string()))?;
            for entry in inner {
                let entry = entry.map_err(|e| problem(e.to_string()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !known(&name) {
                    return Err(problem(format!(
                        "{file}/{name} is not one of Assent's templates"
                    )));
                }
                let source =
                    std::fs::read_to_string(entry.path()).map_err(|e| problem(e.to_string()))?;
                found.push((format!("{file}/{name}"), source));
            }
        } else {
            if !known(&file) {
                return Err(problem(format!("{file} is not one of Assent's templates")));
            }
            let source = std::fs::read_to_string(&path).map_err(|e| problem(e.to_string()))?;
            found.push((file, source));
        }
    }
    Ok(found)
}

/// Values for every variable any template uses, to try overrides out.
fn sample_context() -> Value {
    context! {
        title => "Title",
        lists => vec![context! { slug => "newsletter", name => "Newsletter" }],
        list_name => "Newsletter",
        slug => "newsletter",
        consent_version_id => "00000000-0000-7000-8000-000000000000",
        consent_text => "I agree.",
        errors => vec![context! { detail => "An error." }],
        back_url => "/",
        action => "/",
        message => "A message.",
        link => "/",
        link_text => "A link",
        confirm_url => "https://example.org/confirm/x",
        refuse_url => "https://example.org/refuse/x",
        unsubscribe_url => "https://example.org/unsubscribe/x",
        subject => "A subject",
        ttl_days => "7",
        already_left => false,
        erased => false,
        unsubscribe_action => "/",
        withdraw_action => "/",
        refused_until => Option::<String>::None,
        days => "365",
        proof_of_work => false,
        email => "",
        name => "",
    }
}

/// Escapes `& < > " '` in HTML templates. minijinja's default also escapes
/// `/`, which turns every URL in a page or mail into `&#x2f;` soup.
fn html_formatter(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if state.auto_escape() == minijinja::AutoEscape::Html
        && !value.is_safe()
        && let Some(text) = value.as_str()
    {
        return out
            .write_str(&escape_html(text))
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()));
    }
    minijinja::escape_formatter(out, state, value)
}

/// Escapes text for HTML element content and quoted attributes.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}

fn is_german(lang: &str) -> bool {
    lang == "de" || lang.starts_with("de-")
}

/// The title and text of an error page by problem code, in `lang`, when
/// that is not English (English pages use the problem+json wording of
/// `error.rs`). `{secs}` stands for the seconds to wait.
pub fn problem_text(lang: &str, code: &str) -> Option<(&'static str, &'static str)> {
    if !is_german(lang) {
        return None;
    }
    Some(match code {
        "validation_failed" => (
            "Die Anmeldung ist nicht vollständig",
            "Bitte korrigieren Sie die markierten Angaben.",
        ),
        "malformed_request" => (
            "Die Anfrage konnte nicht gelesen werden",
            "Bitte versuchen Sie es noch einmal über die Seite, von der Sie kamen.",
        ),
        "not_found" => ("Nicht gefunden", "Unter dieser Adresse gibt es nichts."),
        "unauthorized" => (
            "Ein gültiger API-Schlüssel ist nötig",
            "Senden Sie einen aktiven Admin-API-Schlüssel als `Authorization: Bearer ak_...`.",
        ),
        "conflict" => (
            "Die Anfrage passt nicht zum aktuellen Stand",
            "Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.",
        ),
        "forbidden" => (
            "Diese Anfrage ist nicht erlaubt",
            "Von dieser Seite aus ist diese Anfrage nicht erlaubt.",
        ),
        "rate_limited" => (
            "Zu viele Anfragen",
            "Bitte warten Sie {secs} Sekunden und versuchen Sie es dann noch einmal.",
        ),
        "payload_too_large" => ("Die Anfrage ist zu groß", "Senden Sie höchstens 16 KiB."),
        "unsupported_media_type" => (
            "Dieses Format wird nicht unterstützt",
            "Senden Sie application/x-www-form-urlencoded, multipart/form-data oder application/json.",
        ),
        "service_unavailable" => (
            "Der Dienst ist vorübergehend nicht erreichbar",
            "Bitte versuchen Sie es gleich noch einmal.",
        ),
        "internal_error" => (
            "Bei uns ist etwas schiefgegangen",
            "Der Fehler wurde protokolliert. Bitte versuchen Sie es später noch einmal.",
        ),
        _ => return None,
    })
}

/// The text of a sign-up field error by its code, in `lang`, when that is
/// not English (English pages show the error's own detail).
pub fn field_error_text(lang: &str, code: &str) -> Option<&'static str> {
    if !is_german(lang) {
        return None;
    }
    Some(match code {
        "list_unknown" => "Diese Liste gibt es nicht.",
        "email_required" => "Bitte geben Sie Ihre E-Mail-Adresse ein.",
        "email_too_long" => "Die E-Mail-Adresse ist zu lang (höchstens 254 Zeichen).",
        "email_invalid" => "Bitte geben Sie eine gültige E-Mail-Adresse ein.",
        "consent_required" => {
            "Bitte setzen Sie das Häkchen bei der Einwilligung, um sich anzumelden."
        }
        "name_too_long" => "Der Name darf höchstens 100 Zeichen lang sein.",
        "name_invalid" => "Der Name darf keine Zeilenumbrüche oder Steuerzeichen enthalten.",
        "consent_text_unknown" => "Der Einwilligungstext gehört nicht zu dieser Liste.",
        "consent_text_mismatch" => "Der Einwilligungstext passt nicht zur Einwilligungsversion.",
        "consent_version_unknown" => "Die Einwilligungsversion gehört nicht zu dieser Liste.",
        "source_url_invalid" => "Die Quell-URL ist zu lang oder fehlerhaft.",
        "proof_of_work_failed" => {
            "Die automatische Prüfung ist fehlgeschlagen; bitte laden Sie das Formular neu und versuchen Sie es noch einmal."
        }
        "wrong_type" => "Ein Feld hat den falschen Typ.",
        _ => return None,
    })
}

/// The words of pages and emails in a language (English unless German),
/// built once: every page and email reads them.
pub fn strings(lang: &str) -> Value {
    static GERMAN: LazyLock<Value> = LazyLock::new(|| build_strings(true));
    static ENGLISH: LazyLock<Value> = LazyLock::new(|| build_strings(false));
    if is_german(lang) {
        GERMAN.clone()
    } else {
        ENGLISH.clone()
    }
}

fn build_strings(german: bool) -> Value {
    if german {
        context! {
            email_label => "E-Mail-Adresse",
            name_label => "Name",
            optional => "freiwillig",
            subscribe => "Anmelden",
            fix_errors => "Bitte korrigieren Sie:",
            errors_title => "Die Anmeldung ist nicht vollständig",
            go_back => "Zurück zum Formular",
            check_inbox_title => "Bitte prüfen Sie Ihr Postfach",
            check_inbox_body => "Wenn die Adresse angemeldet werden kann, haben wir eine E-Mail mit einem Bestätigungslink geschickt. Erst nach Ihrem Klick auf diesen Link ist die Anmeldung wirksam.",
            confirm_title => "Anmeldung bestätigen",
            confirm_intro => "Sie sind dabei, Ihre Anmeldung zu bestätigen für",
            you_agreed => "Sie haben dieser Erklärung zugestimmt:",
            confirm_button => "Anmeldung bestätigen",
            confirm_ignore => "Wenn Sie sich nicht angemeldet haben, schließen Sie diese Seite einfach. Ohne Bestätigung erhalten Sie nichts.",
            confirmed_title => "Anmeldung bestätigt",
            confirmed_body => "Vielen Dank. Ihre Anmeldung ist bestätigt für",
            mail_hello => "Hallo,",
            mail_asked => "jemand (hoffentlich Sie) hat diese Adresse angemeldet für",
            mail_click => "Bitte bestätigen Sie die Anmeldung über diesen Link:",
            mail_button => "Anmeldung bestätigen",
            mail_expiry => "Der Link ist {days} Tage gültig.",
            mail_ignore => "Wenn Sie sich nicht angemeldet haben, ignorieren Sie diese E-Mail; Sie erhalten dann nichts weiter.",
            confirm_subject => "Bitte bestätigen Sie Ihre Anmeldung",
            not_found_title => "Link nicht gefunden",
            not_found_body => "Dieser Link ist ungültig. Bitte prüfen Sie, ob er vollständig kopiert wurde.",
            expired_title => "Link abgelaufen",
            expired_body => "Dieser Bestätigungslink ist abgelaufen. Bitte melden Sie sich erneut an; Sie erhalten dann einen neuen Link.",
            superseded_title => "Link nicht mehr gültig",
            superseded_body => "Dieser Link gilt nicht mehr. Bitte melden Sie sich erneut an.",
            sign_up_again => "Erneut anmelden",
            welcome_subject => "Willkommen",
            pow_needs_script => "Dieses Formular braucht JavaScript für einen kurzen Schutz vor automatischen Anmeldungen.",
            mail_not_me => "Sie haben das nicht angefordert? Dann keine weiteren Bestätigungs-E-Mails an diese Adresse:",
            refuse_title => "Keine weiteren Bestätigungs-E-Mails",
            refuse_explain => "Jemand hat diese Adresse ohne Ihr Wissen angemeldet? Mit einem Klick erhält sie {days} Tage lang keine Bestätigungs-E-Mails mehr, für keine Liste. Betroffen war",
            refuse_button => "Keine Bestätigungs-E-Mails mehr an diese Adresse",
            refuse_later => "Möchten Sie sich später doch anmelden, öffnen Sie diesen Link erneut und heben Sie die Sperre auf.",
            refused_now => "Diese Adresse erhält keine Bestätigungs-E-Mails bis",
            refuse_lift_explain => "Sie möchten sich doch anmelden? Heben Sie die Sperre auf und melden Sie sich erneut an.",
            refuse_lift_button => "Sperre aufheben",
            refused_done => "Erledigt. Diese Adresse erhält keine Bestätigungs-E-Mails mehr.",
            lifted_done => "Die Sperre ist aufgehoben. Sie können sich wieder anmelden.",
            welcome_hello => "Hallo,",
            welcome_body => "Ihre Anmeldung ist bestätigt. Sie erhalten ab jetzt",
            welcome_leave => "Abmelden können Sie sich jederzeit mit einem Klick:",
            unsubscribe_link => "Abmelden",
            unsubscribe_title => "Abmelden",
            unsubscribe_intro => "Mit einem Klick melden Sie sich ab von",
            unsubscribe_button => "Abmelden",
            already_left => "Sie sind bereits abgemeldet von",
            withdraw_heading => "Einwilligung widerrufen",
            withdraw_explain => "Sie können Ihre Einwilligung für alle Listen widerrufen und Ihre Daten löschen lassen. Es bleibt nur ein pseudonymer Nachweis ohne Ihre Adresse.",
            withdraw_erase_button => "Einwilligung für alle Listen widerrufen und meine Daten löschen",
            unsubscribed_title => "Abgemeldet",
            unsubscribed_body => "Sie sind abgemeldet und erhalten keine weiteren E-Mails von dieser Liste.",
            withdrawn_title => "Einwilligung widerrufen",
            withdrawn_body => "Ihre Einwilligung ist für alle Listen widerrufen. Sie erhalten keine weiteren E-Mails.",
            erased_title => "Daten gelöscht",
            erased_body => "Ihre Einwilligung ist für alle Listen widerrufen und Ihre personenbezogenen Daten (Adresse, Name, IP-Adressen, Browserangaben) sind gelöscht. Es bleibt ein pseudonymer Nachweis ohne Ihre Adresse.",
        }
    } else {
        context! {
            email_label => "Email address",
            name_label => "Name",
            optional => "optional",
            subscribe => "Subscribe",
            fix_errors => "Please correct the following:",
            errors_title => "The sign-up is not complete",
            go_back => "Back to the form",
            check_inbox_title => "Please check your inbox",
            check_inbox_body => "If this address can be signed up, we have sent it an email with a confirmation link. The subscription starts only when you click that link.",
            confirm_title => "Confirm your subscription",
            confirm_intro => "You are about to confirm your subscription to",
            you_agreed => "You agreed to this statement:",
            confirm_button => "Confirm subscription",
            confirm_ignore => "If you did not sign up, just close this page. Without confirmation you will receive nothing.",
            confirmed_title => "Subscription confirmed",
            confirmed_body => "Thank you. Your subscription is confirmed for",
            mail_hello => "Hello,",
            mail_asked => "someone (hopefully you) signed up this address for",
            mail_click => "Please confirm the subscription by opening this link:",
            mail_button => "Confirm subscription",
            mail_expiry => "The link is valid for {days} days.",
            mail_ignore => "If you did not sign up, ignore this email and you will hear nothing more.",
            confirm_subject => "Please confirm your subscription",
            not_found_title => "Link not found",
            not_found_body => "This link is not valid. Please check that it was copied completely.",
            expired_title => "Link expired",
            expired_body => "This confirmation link has expired. Please sign up again to receive a new link.",
            superseded_title => "Link no longer valid",
            superseded_body => "This link is no longer valid. Please sign up again.",
            sign_up_again => "Sign up again",
            welcome_subject => "Welcome",
            pow_needs_script => "This form needs JavaScript for a short check against automated sign-ups.",
            mail_not_me => "Did not ask for this? Stop all confirmation emails to this address:",
            refuse_title => "No more confirmation emails",
            refuse_explain => "Someone signed this address up without your knowledge? With one click it receives no confirmation emails for {days} days, for any list. The sign-up was for",
            refuse_button => "Stop confirmation emails to this address",
            refuse_later => "If you want to subscribe later after all, open this link again and lift the block.",
            refused_now => "This address receives no confirmation emails until",
            refuse_lift_explain => "Want to subscribe after all? Lift the block, then sign up again.",
            refuse_lift_button => "Lift the block",
            refused_done => "Done. This address receives no more confirmation emails.",
            lifted_done => "The block is lifted. You can sign up again.",
            welcome_hello => "Hello,",
            welcome_body => "your subscription is confirmed. From now on you receive",
            welcome_leave => "You can unsubscribe at any time with one click:",
            unsubscribe_link => "Unsubscribe",
            unsubscribe_title => "Unsubscribe",
            unsubscribe_intro => "With one click you unsubscribe from",
            unsubscribe_button => "Unsubscribe",
            already_left => "You are already unsubscribed from",
            withdraw_heading => "Withdraw consent",
            withdraw_explain => "You can withdraw your consent for all lists and have your data erased. Only a keyed proof without your address remains.",
            withdraw_erase_button => "Withdraw my consent for all lists and erase my data",
            unsubscribed_title => "Unsubscribed",
            unsubscribed_body => "You are unsubscribed and will receive no more emails from this list.",
            withdrawn_title => "Consent withdrawn",
            withdrawn_body => "Your consent is withdrawn for all lists. You will receive no more emails.",
            erased_title => "Data erased",
            erased_body => "Your consent is withdrawn for all lists and your personal data (address, name, IP addresses, browser details) is erased. A keyed proof without your address remains.",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_compiled_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/templates");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".html") || name.ends_with(".txt") {
                assert!(
                    TEMPLATES.iter().any(|(registered, _)| *registered == name),
                    "{name} is not in TEMPLATES"
                );
            }
        }
    }

    #[test]
    fn builtin_templates_compile_and_escape() {
        let templates = Templates::builtin().unwrap();
        let html = templates
            .render(
                "message.html",
                "en",
                context! { title => "<script>", message => "a & b", link => "", link_text => "" },
            )
            .unwrap();
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("lang=\"en\""));
    }

    fn confirmation_fixed() -> Value {
        context! { list_name => "News & more", subject => "Please confirm", ttl_days => "7" }
    }

    /// Renders both confirmation bodies of `newsletter` with the links, from
    /// a stamp and without one.
    fn both_ways(templates: &Templates, confirm: &str, refuse: &str) -> Vec<(String, String)> {
        ["confirmation_email.txt", "confirmation_email.html"]
            .into_iter()
            .map(|name| {
                let slots = [("confirm_url", confirm), ("refuse_url", refuse)];
                let stamped = templates
                    .render_slotted("newsletter", name, "en", confirmation_fixed(), &slots)
                    .unwrap();
                let rendered = templates
                    .render_for(
                        "newsletter",
                        name,
                        "en",
                        with_slots(
                            confirmation_fixed(),
                            &["confirm_url", "refuse_url"],
                            &[confirm, refuse],
                        ),
                    )
                    .unwrap();
                (stamped, rendered)
            })
            .collect()
    }

    #[test]
    fn stamped_mail_bodies_are_what_rendering_gives() {
        let templates = Templates::builtin().unwrap();
        for (confirm, refuse) in [
            (
                "https://x.example/confirm/abc",
                "https://x.example/refuse/def",
            ),
            ("https://y.example/c?a=1&b=<2>", "https://y.example/r/'\""),
        ] {
            for (stamped, rendered) in both_ways(&templates, confirm, refuse) {
                assert_eq!(stamped, rendered);
            }
        }
        let html = &both_ways(&templates, "https://y.example/c?a=1&b=2", "https://r")[1].0;
        assert!(html.contains("href=\"https://y.example/c?a=1&amp;b=2\""));
    }

    #[test]
    fn a_template_that_transforms_a_link_is_rendered_for_every_message() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("newsletter")).unwrap();
        std::fs::write(
            dir.path().join("newsletter/confirmation_email.txt"),
            "{{ confirm_url | upper }} {% if refuse_url | length > 30 %}long{% endif %} {{ refuse_url }}",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path()), &["newsletter"]).unwrap();
        for (confirm, refuse) in [
            ("https://a/b", "https://r/1"),
            ("https://c/d", &*"https://r/".repeat(5)),
        ] {
            let (stamped, rendered) = both_ways(&templates, confirm, refuse).remove(0);
            assert_eq!(stamped, rendered);
        }
        assert!(matches!(
            templates.stamps.get(
                "newsletter",
                "confirmation_email.txt",
                "en",
                &confirmation_fixed()
            ),
            Some(None)
        ));
    }
}
