//! The SMTP relay: lettre's SMTP client over connections Assent opens and
//! keeps itself.
//!
//! lettre's own pooled transport opens its sockets with Nagle's algorithm
//! on and writes a message's content and its closing `.` in two writes, so
//! the `.` waits for the relay to acknowledge the content, which a relay
//! that is itself waiting for the `.` delays by its delayed-ACK timer
//! (40 ms on Linux): at most 25 messages a second per connection, whatever
//! the relay could take. It also sends a `NOOP` before every message.
//! Here each connection is a socket of ours with `TCP_NODELAY`, handed to
//! lettre's `AsyncSmtpConnection` (which does the protocol: EHLO,
//! STARTTLS, AUTH, MAIL/RCPT/DATA). Before an idle connection is reused,
//! its socket is peeked at without blocking: a relay that closed it (or
//! said goodbye, `421`) leaves something to read, and a new connection is
//! opened instead; after a longer rest it must also answer `NOOP`.
//!
//! When the relay offers PIPELINING (RFC 2920), as Postfix, Exim and the
//! large providers do, a message takes two round trips instead of four:
//! `MAIL FROM`, `RCPT TO` and `DATA` go out in one write and their replies
//! are read together, then the content and its final `.` in another. A
//! [`Chain`] of messages on one connection takes one round trip per
//! message: each message's content goes out in the same write as the next
//! message's `MAIL FROM`, `RCPT TO` and `DATA` (RFC 2920 lets the content
//! start a group of commands).
//! lettre's `AsyncSmtpConnection::send` waits for each reply in turn, and
//! lettre does not record PIPELINING among a relay's extensions, so a new
//! connection asks `EHLO` once more (before `AUTH`) to learn it, and the
//! commands are lettre's own (`Mail`, `Rcpt`, `Data`) written together.

use std::os::fd::AsFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::mail::{Outgoing, SendError};

/// An idle connection is also checked with `NOOP` before reuse once it sat
/// unused this long (a relay or a NAT on the way may have dropped it
/// without a word).
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(10);

/// An idle connection unused this long is closed rather than reused
/// (relays drop idle clients after a few minutes; Postfix after 300 s).
const MAX_IDLE: Duration = Duration::from_secs(60);

/// How a connection is secured.
#[derive(Clone)]
enum Security {
    /// Plain SMTP (`smtp://` without `tls`).
    None,
    /// STARTTLS when the relay offers it (`?tls=opportunistic`).
    StartTlsIfOffered(TlsParameters),
    /// STARTTLS or fail (`?tls=required`).
    StartTls(TlsParameters),
    /// TLS from the first byte (`smtps://`).
    ImplicitTls(TlsParameters),
}

/// Why the relay could not be configured.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RelayUrlError(String);

/// An SMTP relay and the connections to it that are open and idle.
pub struct SmtpRelay {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// Bounds one exchange, from connect (or reuse) to the final reply.
    deadline: Duration,
    /// One permit per connection in use: at most `max_connections` at once,
    /// however many sends are waiting.
    connections: Semaphore,
    idle: Mutex<Vec<Connection>>,
}

/// An open connection to the relay.
struct Connection {
    smtp: AsyncSmtpConnection,
    /// The same socket, to peek at while the connection is idle.
    probe: std::net::TcpStream,
    idle_since: Instant,
    /// The relay offered PIPELINING.
    pipelining: bool,
}

impl Connection {
    /// Whether the relay closed the idle connection or wrote into it (an
    /// idle SMTP client is owed nothing, so anything readable is a goodbye
    /// such as `421`). Peeks without blocking and without consuming.
    fn hung_up(&self) -> bool {
        let mut byte = [0u8; 1];
        !matches!(self.probe.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

impl std::fmt::Debug for SmtpRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpRelay")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl SmtpRelay {
    /// Reads `smtp://[user:pass@]host[:port][/ehlo-name][?tls=required|opportunistic]`
    /// or `smtps://...`, with lettre's defaults: port 25 for plain SMTP,
    /// 587 with STARTTLS, 465 with implicit TLS; the EHLO name from the
    /// path, else this host's name; user and password percent-decoded.
    pub fn from_url(
        url: &str,
        deadline: Duration,
        max_connections: usize,
    ) -> Result<Self, RelayUrlError> {
        let url = url::Url::parse(url).map_err(|e| RelayUrlError(e.to_string()))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| RelayUrlError("the SMTP URL has no host".to_owned()))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned();
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let parameters =
            || TlsParameters::new(host.clone()).map_err(|e| RelayUrlError(format!("TLS: {e}")));
        let (security, default_port) = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::None, 25),
            ("smtp", Some("required")) => (Security::StartTls(parameters()?), 587),
            ("smtp", Some("opportunistic")) => (Security::StartTlsIfOffered(parameters()?), 587),
            ("smtps", _) => (Security::ImplicitTls(parameters()?), 465),
            (scheme, tls) => {
                return Err(RelayUrlError(format!(
                    "unsupported SMTP URL: scheme {scheme}, tls {tls:?}"
                )));
            }
        };
        let hello = match url.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| RelayUrlError("the SMTP credentials are not UTF-8".to_owned()))
        };
        let credentials = match url.password() {
            Some(password) => Some(Credentials::new(decode(url.username())?, decode(password)?)),
            None => None,
        };
        Ok(SmtpRelay {
            port: url.port().unwrap_or(default_port),
            host,
            security,
            credentials,
            hello,
            deadline,
            connections: Semaphore::new(max_connections.max(1)),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends one message on its own: a chain of one (see [`Chain`]), whose
    /// connection is kept for the next message if the exchange left it
    /// usable.
    pub async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
        let mut chain = self.chain().await?;
        let (_, progress) = chain.send(message).await;
        let last = chain.close().await;
        match progress {
            Progress::Begun => last.unwrap_or_else(|| Err(lost())),
            Progress::Done(result) => result,
        }
    }

    /// An idle connection that is still open, or a new one.
    async fn checkout(&self) -> Result<Connection, SendError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut conn) = idle else {
                return self.connect().await;
            };
            let unused = conn.idle_since.elapsed();
            if unused >= MAX_IDLE || conn.hung_up() {
                conn.smtp.abort().await;
                continue;
            }
            if unused < CHECK_AFTER_IDLE || conn.smtp.test_connected().await {
                return Ok(conn);
            }
            conn.smtp.abort().await;
        }
    }

    /// Opens a connection: TCP without Nagle, TLS as configured, EHLO,
    /// AUTH when credentials are set.
    async fn connect(&self) -> Result<Connection, SendError> {
        let address = format!("{}:{}", self.host, self.port);
        let local = |what: &str, e: std::io::Error| SendError::Transient(format!("{what}: {e}"));
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| local(&format!("connecting to {address}"), e))?;
        tcp.set_nodelay(true).map_err(|e| local("TCP_NODELAY", e))?;
        let probe = std::net::TcpStream::from(
            tcp.as_fd()
                .try_clone_to_owned()
                .map_err(|e| local("duplicating the socket", e))?,
        );
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::ImplicitTls(parameters) => Box::new(implicit_tls(tcp, parameters).await?),
            _ => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(|e| classify(&e))?;
        let secured = match &self.security {
            Security::StartTls(parameters) => conn.starttls(parameters.clone(), &self.hello).await,
            Security::StartTlsIfOffered(parameters) if conn.can_starttls() => {
                conn.starttls(parameters.clone(), &self.hello).await
            }
            _ => Ok(()),
        };
        secured.map_err(|e| classify(&e))?;
        // Asked before AUTH: a relay may reset its session on EHLO.
        let pipelining = conn
            .command(Ehlo::new(self.hello.clone()))
            .await
            .map(|reply| offers(&reply, "PIPELINING"))
            .map_err(|e| classify(&e))?;
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(|e| classify(&e))?;
        }
        Ok(Connection {
            smtp: conn,
            probe,
            idle_since: Instant::now(),
            pipelining,
        })
    }
}

/// Messages sent one after another on one connection, each in one round
/// trip where the relay pipelines: a message's content goes out in the
/// same write as the next message's envelope (see the module
/// documentation). The connection is held until [`Chain::close`], which
/// keeps it for later messages if it is still in step; a chain dropped
/// with a message begun closes it, and the relay discards that message.
pub struct Chain<'a> {
    relay: &'a SmtpRelay,
    _permit: SemaphorePermit<'a>,
    conn: Option<Connection>,
    /// The content, transparent and with its final `.`, of the message
    /// whose envelope the relay accepted last.
    open: Option<String>,
}

/// What became of a message handed to [`Chain::send`].
#[derive(Debug)]
pub enum Progress {
    /// The relay accepted its envelope: its content goes out with the next
    /// message's envelope, or in [`Chain::finish`], which give its outcome.
    Begun,
    /// Its outcome.
    Done(Result<(), SendError>),
}

impl SmtpRelay {
    /// A chain, once a connection is free (idle or new, opened at the
    /// first message).
    pub async fn chain(&self) -> Result<Chain<'_>, SendError> {
        let permit = self
            .connections
            .acquire()
            .await
            .map_err(|_| SendError::Transient("the SMTP relay is closed".to_owned()))?;
        Ok(Chain {
            relay: self,
            _permit: permit,
            conn: None,
            open: None,
        })
    }

    /// The error of an exchange cut off by the deadline.
    fn late(&self) -> SendError {
        SendError::Transient(format!("no answer within {} s", self.deadline.as_secs()))
    }
}

impl Chain<'_> {
    /// Sends `message`'s envelope, in one write with the content of the
    /// message begun before if there is one, each step bounded by the
    /// relay's deadline. Returns that earlier message's outcome (if one
    /// was begun) and what became of `message`.
    pub async fn send(&mut self, message: &Outgoing) -> (Option<Result<(), SendError>>, Progress) {
        let before = self.open.take();
        let mut earlier = None;
        let deadline = self.relay.deadline;
        let step = tokio::time::timeout(
            deadline,
            self.step(before.as_deref(), message, &mut earlier),
        )
        .await;
        let progress = step.unwrap_or_else(|_| {
            // The connection is dropped, which closes it.
            self.conn = None;
            Progress::Done(Err(self.relay.late()))
        });
        let earlier = before.map(|_| earlier.unwrap_or_else(|| Err(self.relay.late())));
        (earlier, progress)
    }

    async fn step(
        &mut self,
        before: Option<&str>,
        message: &Outgoing,
        earlier: &mut Option<Result<(), SendError>>,
    ) -> Progress {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                if before.is_some() {
                    *earlier = Some(Err(lost()));
                }
                match self.relay.checkout().await {
                    Ok(conn) => conn,
                    Err(error) => return Progress::Done(Err(error)),
                }
            }
        };
        let (envelope, bytes) = message.parts();
        // Only a connection that may pipeline looks at the message.
        let content = conn
            .pipelining
            .then(|| pipelinable(envelope, bytes))
            .flatten();
        let Some(content) = content else {
            // What is open goes out on its own, then the message in
            // lettre's exchange (SMTPUTF8, 8BITMIME, waiting for each reply).
            if let Some(before) = before {
                pipeline(&mut conn.smtp, Some(before), None, earlier).await;
                if conn.smtp.has_broken() {
                    return Progress::Done(Err(lost()));
                }
            }
            let sent = conn.smtp.send(envelope, bytes).await;
            return match sent {
                Ok(_) => {
                    self.conn = Some(conn);
                    Progress::Done(Ok(()))
                }
                Err(error) => Progress::Done(Err(classify(&error))),
            };
        };
        let begun = pipeline(&mut conn.smtp, before, Some(envelope), earlier)
            .await
            .unwrap_or(Ok(()));
        match begun {
            Ok(()) => {
                self.open = Some(transparent(content));
                self.conn = Some(conn);
                Progress::Begun
            }
            Err(error) => {
                // A transaction begun and refused: the connection is not
                // reused.
                if !conn.smtp.has_broken() {
                    conn.smtp.abort().await;
                }
                Progress::Done(Err(error))
            }
        }
    }

    /// Sends the content of the message begun last on its own and returns
    /// its outcome; none when no message is begun.
    pub async fn finish(&mut self) -> Option<Result<(), SendError>> {
        let content = self.open.take()?;
        let Some(mut conn) = self.conn.take() else {
            return Some(Err(lost()));
        };
        let mut sent = None;
        let deadline = self.relay.deadline;
        let step = tokio::time::timeout(
            deadline,
            pipeline(&mut conn.smtp, Some(&content), None, &mut sent),
        )
        .await;
        if step.is_ok() && !conn.smtp.has_broken() {
            self.conn = Some(conn);
        }
        Some(sent.unwrap_or_else(|| Err(self.relay.late())))
    }

    /// Finishes the message begun last, if any (its outcome), and gives
    /// the connection back for later messages if it is still in step.
    pub async fn close(mut self) -> Option<Result<(), SendError>> {
        let last = self.finish().await;
        if let Some(mut conn) = self.conn.take()
            && !conn.smtp.has_broken()
        {
            conn.idle_since = Instant::now();
            self.relay
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
        last
    }
}

/// The outcome of a message whose connection broke before its reply.
pub(crate) fn lost() -> SendError {
    SendError::Transient("the connection to the relay was lost".to_owned())
}

/// Whether an `EHLO` reply lists the extension (its lines after the first
/// name the extensions, each with its parameters).
fn offers(reply: &Response, extension: &str) -> bool {
    reply.message().skip(1).any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case(extension))
    })
}

/// The message as text, when it can go out without the parameters that
/// lettre adds for non-ASCII addresses or content (SMTPUTF8, 8BITMIME):
/// every message Assent builds, whose headers and parts lettre encodes to
/// ASCII.
fn pipelinable<'a>(envelope: &Envelope, message: &'a [u8]) -> Option<&'a str> {
    let ascii_addresses = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .all(|address| AsRef::<str>::as_ref(address).is_ascii());
    if !ascii_addresses || !message.is_ascii() {
        return None;
    }
    std::str::from_utf8(message).ok()
}

/// Text written as it is: lettre's `command` writes anything that
/// displays, in one write, and reads one reply.
struct Raw<'a>(&'a str);

impl std::fmt::Display for Raw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One write, then every reply it asks for, in order: `content` (a
/// message's content made transparent, with its final `.`, after its
/// `354`), then `MAIL`, every `RCPT` and `DATA` for `envelope`. The
/// content's outcome goes into `sent` as soon as its reply is read (a
/// deadline that cuts the rest short does not lose it); the envelope's is
/// returned: the first refusal among its replies, every reply read even
/// after one so that the connection stays in step. An error without a
/// reply code means the connection is gone: no further reply comes, and
/// what was not answered fails with it.
async fn pipeline(
    smtp: &mut AsyncSmtpConnection,
    content: Option<&str>,
    envelope: Option<&Envelope>,
    sent: &mut Option<Result<(), SendError>>,
) -> Option<Result<(), SendError>> {
    let mut write = String::new();
    if let Some(content) = content {
        write.push_str(content);
    }
    if let Some(envelope) = envelope {
        write.push_str(&Mail::new(envelope.from().cloned(), Vec::new()).to_string());
        for recipient in envelope.to() {
            write.push_str(&Rcpt::new(recipient.clone(), Vec::new()).to_string());
        }
        write.push_str(&Data.to_string());
    }
    // lettre's `command` writes and reads the first reply.
    let first = smtp.command(Raw(&write)).await.map(drop);
    let mut gone = first.as_ref().is_err_and(|e| e.status().is_none());
    let mut outcome = match content {
        Some(_) => {
            *sent = Some(first.map_err(|e| classify(&e)));
            Ok(())
        }
        None => first,
    };
    let envelope = envelope?;
    if gone && content.is_some() {
        return Some(Err(lost()));
    }
    // The envelope's replies still to read: MAIL (unless it came first),
    // one per RCPT, DATA.
    let unread = envelope.to().len() + 1 + usize::from(content.is_some());
    for _ in 0..unread {
        if gone {
            break;
        }
        // A refusal is a reply like any other: the next one still comes.
        if let Err(error) = smtp.read_response().await {
            gone = error.status().is_none();
            if outcome.is_ok() {
                outcome = Err(error);
            }
        }
    }
    Some(outcome.map_err(|e| classify(&e)))
}

/// The content as it goes after `DATA` (RFC 5321 4.5.2): a `.` doubled at
/// the start of every line, then the end marker `CRLF . CRLF`, exactly as
/// lettre sends it.
fn transparent(content: &str) -> String {
    let mut out = String::with_capacity(content.len() + 64);
    let mut line_start = true;
    for line in content.split_inclusive('\n') {
        if line_start && line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        line_start = line.ends_with("\r\n");
    }
    out.push_str("\r\n.\r\n");
    out
}

/// A 5xx reply is permanent; anything else (4xx, the network, TLS) may
/// pass.
fn classify(error: &SmtpError) -> SendError {
    if error.is_permanent() {
        SendError::Permanent(error.to_string())
    } else {
        SendError::Transient(error.to_string())
    }
}

/// A TLS stream from the first byte, for `smtps://`: lettre wraps our
/// socket with the same TLS configuration (roots, versions) it uses for
/// STARTTLS, and the result goes back to lettre as a plain stream.
#[allow(deprecated)] // `AsyncNetworkStream` is lettre's only way to TLS-wrap a socket of ours.
async fn implicit_tls(tcp: TcpStream, parameters: &TlsParameters) -> Result<TlsStream, SendError> {
    use tokio_util::compat::FuturesAsyncReadCompatExt;
    let peer = tcp
        .peer_addr()
        .map_err(|e| SendError::Transient(format!("TLS: {e}")))?;
    let mut stream =
        lettre::transport::smtp::client::AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
    stream
        .upgrade_tls(parameters.clone())
        .await
        .map_err(|e| classify(&e))?;
    Ok(TlsStream {
        inner: stream.compat(),
        peer,
    })
}

/// lettre's TLS stream seen through tokio's I/O traits.
#[allow(deprecated)]
#[derive(Debug)]
struct TlsStream {
    inner: tokio_util::compat::Compat<lettre::transport::smtp::client::AsyncNetworkStream>,
    peer: std::net::SocketAddr,
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(url: &str) -> Result<SmtpRelay, RelayUrlError> {
        SmtpRelay::from_url(url, Duration::from_secs(1), 4)
    }

    #[test]
    fn ports_follow_the_scheme_and_tls_mode() {
        assert_eq!(relay("smtp://relay.example").unwrap().port, 25);
        assert_eq!(
            relay("smtp://relay.example?tls=required").unwrap().port,
            587
        );
        assert_eq!(
            relay("smtp://relay.example?tls=opportunistic")
                .unwrap()
                .port,
            587
        );
        assert_eq!(relay("smtps://relay.example").unwrap().port, 465);
        assert_eq!(relay("smtp://relay.example:2525").unwrap().port, 2525);
    }

    #[test]
    fn credentials_are_percent_decoded_and_the_path_names_the_client() {
        let relay = relay("smtp://a%40b.example:p%40ss@relay.example/mail.example.org").unwrap();
        assert_eq!(
            relay.credentials,
            Some(Credentials::new("a@b.example".into(), "p@ss".into()))
        );
        assert_eq!(relay.hello, ClientId::Domain("mail.example.org".into()));
    }

    #[test]
    fn content_is_made_transparent_as_lettre_does() {
        assert_eq!(transparent("a\r\n.b\r\n"), "a\r\n..b\r\n\r\n.\r\n");
        assert_eq!(transparent(".\r\n..\r\nx"), "..\r\n...\r\nx\r\n.\r\n");
        // Only a dot after CRLF starts a line; a bare LF does not.
        assert_eq!(transparent("a\n.b"), "a\n.b\r\n.\r\n");
        assert_eq!(transparent("a.b\r\n"), "a.b\r\n\r\n.\r\n");
    }

    #[test]
    fn pipelining_is_read_from_the_ehlo_reply() {
        use lettre::transport::smtp::response::{Category, Code, Detail, Severity};
        let code = Code::new(
            Severity::PositiveCompletion,
            Category::MailSystem,
            Detail::Zero,
        );
        let reply =
            |lines: &[&str]| Response::new(code, lines.iter().map(|l| (*l).to_owned()).collect());
        assert!(offers(
            &reply(&["relay.example", "SIZE 1000", "pipelining", "8BITMIME"]),
            "PIPELINING"
        ));
        // The first line is the relay's name, not an extension.
        assert!(!offers(&reply(&["PIPELINING", "8BITMIME"]), "PIPELINING"));
        assert!(!offers(
            &reply(&["relay.example", "XPIPELINING"]),
            "PIPELINING"
        ));
    }

    #[test]
    fn unknown_forms_are_refused() {
        assert!(relay("smtp://relay.example?tls=sometimes").is_err());
        assert!(relay("smtp://").is_err());
        assert!(relay("http://relay.example").is_err());
    }
}
