//! A real SMTP server on TCP for tests: it speaks enough ESMTP for lettre,
//! offers PIPELINING as production relays do (or not, to test clients
//! that wait for each reply), records what it accepts, and misbehaves on
//! demand (4xx/5xx replies at any stage, dropped connections, a greeting
//! that never comes, replies held back). Commands out of order get the
//! replies RFC 5321 gives them (`RCPT` without `MAIL`, `DATA` without a
//! recipient), which is what a pipelining client meets after a refusal.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// Where in the exchange a scripted reply is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Instead of the `220` greeting; the server then closes.
    Greeting,
    /// To `MAIL FROM`.
    MailFrom,
    /// To `RCPT TO`.
    RcptTo,
    /// To the final `.` of the message, which is then not kept.
    AfterData,
}

/// What the server does with the next message (or, for [`Stage::Greeting`]
/// and [`Behaviour::Silent`], the next connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// `250` after DATA.
    Accept,
    /// This reply (e.g. `451 4.3.0 try later`, `550 5.1.1 no such user`) to
    /// MAIL FROM: short for `ReplyAt(Stage::MailFrom, …)`.
    Reply(String),
    /// This reply at that stage. After a `421` the server closes the
    /// connection, as RFC 5321 says it does.
    ReplyAt(Stage, String),
    /// Read the first line of the message after `354`, then close: the
    /// connection is lost in the middle of DATA, before the final dot.
    DropMidData,
    /// Read the whole message, then close without a reply.
    DropAfterData,
    /// Accept the connection and never greet.
    Silent,
    /// Never answer MAIL FROM: hold the client until it goes away (a kill
    /// in the middle of a send).
    #[allow(dead_code)] // used by tests/faults
    Stall,
    /// Read the whole message, wait this long, keep it, then reply `250`
    /// (a slow relay: the send is still in progress meanwhile).
    #[allow(dead_code)] // used by tests/faults
    DelayAfterData(Duration),
}

impl Behaviour {
    /// Whether it acts when a connection opens rather than on a message.
    fn on_connect(&self) -> bool {
        matches!(
            self,
            Behaviour::Silent | Behaviour::ReplyAt(Stage::Greeting, _)
        )
    }

    /// The reply this behaviour gives at `stage`, if any.
    fn reply_at(&self, stage: Stage) -> Option<&str> {
        match self {
            Behaviour::Reply(reply) if stage == Stage::MailFrom => Some(reply),
            Behaviour::ReplyAt(at, reply) if *at == stage => Some(reply),
            _ => None,
        }
    }
}

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
    /// When the server kept it (wall clock).
    #[allow(dead_code)] // used by tests/faults
    pub received_at: SystemTime,
}

#[derive(Default)]
struct State {
    script: VecDeque<Behaviour>,
    received: Vec<ReceivedMail>,
    rejected: Vec<ReceivedMail>,
    attempts: usize,
    held: usize,
    pipelined: usize,
    chained: usize,
}

/// The running server.
#[derive(Clone)]
pub struct SmtpServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    /// Bumped when a behaviour that acts on connect is scripted: idle
    /// connections then close, so that the client's next message opens a
    /// new connection and meets it (lettre keeps connections in a pool).
    close_idle: Arc<watch::Sender<u64>>,
    /// Whether `EHLO` lists PIPELINING.
    pipelining: bool,
}

impl SmtpServer {
    /// Starts listening on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts listening on a free loopback port, without offering
    /// PIPELINING: clients must wait for each reply.
    #[allow(dead_code)] // not every test binary uses it
    pub async fn start_without_pipelining() -> Self {
        Self::start_with(0, false).await
    }

    /// Starts listening on a given loopback port (0: any free one).
    pub async fn start_on(port: u16) -> Self {
        Self::start_with(port, true).await
    }

    async fn start_with(port: u16, pipelining: bool) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind smtp");
        let port = listener.local_addr().unwrap().port();
        let server = SmtpServer {
            port,
            state: Arc::new(Mutex::new(State::default())),
            arrived: Arc::new(Notify::new()),
            close_idle: Arc::new(watch::Sender::new(0)),
            pipelining,
        };
        let accepting = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = accepting.clone();
                tokio::spawn(async move {
                    let _ = conn.serve(stream).await;
                });
            }
        });
        server
    }

    /// Queues behaviours for the next messages; afterwards it accepts.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        let mut state = self.state.lock().unwrap();
        state.script.extend(behaviours);
        if state.script.iter().any(Behaviour::on_connect) {
            self.close_idle.send_modify(|generation| *generation += 1);
        }
    }

    /// Everything accepted so far.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.state.lock().unwrap().received.clone()
    }

    /// Messages read in full and then refused (a reply at [`Stage::AfterData`]).
    pub fn rejected(&self) -> Vec<ReceivedMail> {
        self.state.lock().unwrap().rejected.clone()
    }

    /// Messages that reached MAIL FROM (accepted or not).
    pub fn attempts(&self) -> usize {
        self.state.lock().unwrap().attempts
    }

    /// Messages whose `MAIL FROM` arrived with the next commands already
    /// behind it, unanswered: the client pipelined.
    pub fn pipelined(&self) -> usize {
        self.state.lock().unwrap().pipelined
    }

    /// How many messages ended (their final `.`) with more already sent
    /// behind them: the client sent the next message's commands in the same
    /// write as this one's content.
    pub fn chained(&self) -> usize {
        self.state.lock().unwrap().chained
    }

    /// Messages whose reply the server held back ([`Behaviour::Stall`],
    /// [`Behaviour::DelayAfterData`]), counted when the holding begins.
    #[allow(dead_code)] // used by tests/faults
    pub fn held(&self) -> usize {
        self.state.lock().unwrap().held
    }

    fn next_behaviour(&self) -> Behaviour {
        self.state
            .lock()
            .unwrap()
            .script
            .pop_front()
            .unwrap_or(Behaviour::Accept)
    }

    /// Takes the next behaviour if it acts on connect.
    fn connect_behaviour(&self) -> Option<Behaviour> {
        let mut state = self.state.lock().unwrap();
        if state.script.front().is_some_and(Behaviour::on_connect) {
            state.script.pop_front()
        } else {
            None
        }
    }

    fn hold(&self) {
        self.state.lock().unwrap().held += 1;
    }

    async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut close_idle = self.close_idle.subscribe();
        match self.connect_behaviour() {
            Some(Behaviour::Silent) => {
                tokio::time::sleep(Duration::from_secs(600)).await;
                return Ok(());
            }
            Some(Behaviour::ReplyAt(_, reply)) => {
                write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                return Ok(());
            }
            _ => {}
        }
        write.write_all(b"220 test.smtp ESMTP ready\r\n").await?;
        let mut mail_from = String::new();
        // A MAIL FROM was accepted and no message ended since.
        let mut in_transaction = false;
        let mut rcpt_to = Vec::new();
        let mut behaviour = Behaviour::Accept;
        // Between messages; only then may the server close an idle
        // connection.
        let mut idle = true;
        let mut line = String::new();
        loop {
            line.clear();
            let read = if idle {
                tokio::select! {
                    biased;
                    _ = close_idle.changed() => return Ok(()),
                    read = reader.read_line(&mut line) => read?,
                }
            } else {
                reader.read_line(&mut line).await?
            };
            if read == 0 {
                return Ok(());
            }
            let command = line.trim_end().to_owned();
            let upper = command.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                in_transaction = false;
                let pipelining: &[u8] = if self.pipelining {
                    b"250-PIPELINING\r\n"
                } else {
                    b""
                };
                write
                    .write_all(
                        &[
                            b"250-test.smtp\r\n",
                            pipelining,
                            b"250-8BITMIME\r\n250 SMTPUTF8\r\n",
                        ]
                        .concat(),
                    )
                    .await?;
            } else if upper.starts_with("HELO") {
                write.write_all(b"250 test.smtp\r\n").await?;
            } else if upper.starts_with("MAIL FROM:") {
                {
                    let mut state = self.state.lock().unwrap();
                    state.attempts += 1;
                    if !reader.buffer().is_empty() {
                        state.pipelined += 1;
                    }
                }
                behaviour = self.next_behaviour();
                in_transaction = false;
                rcpt_to.clear();
                if let Some(reply) = behaviour.reply_at(Stage::MailFrom) {
                    if write_reply(&mut write, reply).await? {
                        return Ok(());
                    }
                    continue;
                }
                if behaviour == Behaviour::Stall {
                    self.hold();
                    // Until the client goes away, or ten minutes at most.
                    let _ = tokio::time::timeout(Duration::from_secs(600), async {
                        let mut ignored = String::new();
                        while reader.read_line(&mut ignored).await.unwrap_or(0) > 0 {
                            ignored.clear();
                        }
                    })
                    .await;
                    return Ok(());
                }
                mail_from = command[10..].trim().to_owned();
                rcpt_to.clear();
                in_transaction = true;
                idle = false;
                write.write_all(b"250 2.1.0 OK\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                if !in_transaction {
                    write.write_all(b"503 5.5.1 MAIL first\r\n").await?;
                    continue;
                }
                if let Some(reply) = behaviour.reply_at(Stage::RcptTo) {
                    if write_reply(&mut write, reply).await? {
                        return Ok(());
                    }
                    idle = true;
                    continue;
                }
                rcpt_to.push(command[8..].trim().to_owned());
                write.write_all(b"250 2.1.5 OK\r\n").await?;
            } else if upper == "DATA" {
                if !in_transaction || rcpt_to.is_empty() {
                    write
                        .write_all(b"554 5.5.1 no valid recipients\r\n")
                        .await?;
                    in_transaction = false;
                    idle = true;
                    continue;
                }
                in_transaction = false;
                write.write_all(b"354 end with .\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if behaviour == Behaviour::DropMidData {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        if !reader.buffer().is_empty() {
                            self.state.lock().unwrap().chained += 1;
                        }
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                idle = true;
                if behaviour == Behaviour::DropAfterData {
                    return Ok(());
                }
                if let Some(reply) = behaviour.reply_at(Stage::AfterData) {
                    self.state.lock().unwrap().rejected.push(ReceivedMail {
                        mail_from: mail_from.clone(),
                        rcpt_to: rcpt_to.clone(),
                        data,
                        received_at: SystemTime::now(),
                    });
                    if write_reply(&mut write, reply).await? {
                        return Ok(());
                    }
                    continue;
                }
                if let Behaviour::DelayAfterData(delay) = behaviour {
                    self.hold();
                    tokio::time::sleep(delay).await;
                }
                self.state.lock().unwrap().received.push(ReceivedMail {
                    mail_from: mail_from.clone(),
                    rcpt_to: rcpt_to.clone(),
                    data,
                    received_at: SystemTime::now(),
                });
                self.arrived.notify_waiters();
                write.write_all(b"250 2.0.0 queued\r\n").await?;
            } else if upper == "QUIT" {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            } else {
                if upper == "RSET" {
                    in_transaction = false;
                    rcpt_to.clear();
                    idle = true;
                }
                // RSET, NOOP and anything else lettre may say.
                write.write_all(b"250 2.0.0 OK\r\n").await?;
            }
        }
    }
}

/// Writes a scripted reply; returns whether the connection must close (a
/// `421`).
async fn write_reply(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    reply: &str,
) -> std::io::Result<bool> {
    write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    Ok(reply.starts_with("421"))
}
