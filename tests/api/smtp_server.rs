//! A real SMTP server on TCP for tests: it speaks enough ESMTP for lettre,
//! records what it accepts, and misbehaves on demand (4xx/5xx replies,
//! dropped connections, a greeting that never comes).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// What the server does with the next message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// `250` after DATA.
    Accept,
    /// This reply (e.g. `451 4.3.0 try later`, `550 5.1.1 no such user`) to MAIL FROM.
    Reply(String),
    /// Read the whole message, then close without a reply.
    DropAfterData,
    /// Read the whole message (kept in [`SmtpServer::rejected`]), then
    /// answer this reply (e.g. `451 4.3.0 try later`) instead of `250`.
    ReplyAfterData(String),
    /// Accept the connection and never greet.
    Silent,
}

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
}

#[derive(Default)]
struct State {
    script: VecDeque<Behaviour>,
    received: Vec<ReceivedMail>,
    rejected: Vec<ReceivedMail>,
    attempts: usize,
}

/// The running server.
#[derive(Clone)]
pub struct SmtpServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
}

impl SmtpServer {
    /// Starts listening on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts listening on a given loopback port (0: any free one).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind smtp");
        let port = listener.local_addr().unwrap().port();
        let server = SmtpServer {
            port,
            state: Arc::new(Mutex::new(State::default())),
            arrived: Arc::new(Notify::new()),
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
        self.state.lock().unwrap().script.extend(behaviours);
    }

    /// Everything accepted so far.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.state.lock().unwrap().received.clone()
    }

    /// Messages read in full and then refused ([`Behaviour::ReplyAfterData`]).
    pub fn rejected(&self) -> Vec<ReceivedMail> {
        self.state.lock().unwrap().rejected.clone()
    }

    /// Messages that reached MAIL FROM (accepted or not).
    pub fn attempts(&self) -> usize {
        self.state.lock().unwrap().attempts
    }

    fn next_behaviour(&self) -> Behaviour {
        self.state
            .lock()
            .unwrap()
            .script
            .pop_front()
            .unwrap_or(Behaviour::Accept)
    }

    async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        // The behaviour is decided per message, at MAIL FROM; a silent
        // server is decided at connect.
        if self.peek_silent() {
            tokio::time::sleep(Duration::from_secs(600)).await;
            return Ok(());
        }
        write.write_all(b"220 test.smtp ESMTP ready\r\n").await?;
        let mut mail_from = String::new();
        let mut rcpt_to = Vec::new();
        let mut behaviour = Behaviour::Accept;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let command = line.trim_end().to_owned();
            let upper = command.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                write
                    .write_all(b"250-test.smtp\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                    .await?;
            } else if upper.starts_with("HELO") {
                write.write_all(b"250 test.smtp\r\n").await?;
            } else if upper.starts_with("MAIL FROM:") {
                self.state.lock().unwrap().attempts += 1;
                behaviour = self.next_behaviour();
                if let Behaviour::Reply(reply) = &behaviour {
                    write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                    continue;
                }
                mail_from = command[10..].trim().to_owned();
                rcpt_to.clear();
                write.write_all(b"250 2.1.0 OK\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                rcpt_to.push(command[8..].trim().to_owned());
                write.write_all(b"250 2.1.5 OK\r\n").await?;
            } else if upper == "DATA" {
                write.write_all(b"354 end with .\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                if behaviour == Behaviour::DropAfterData {
                    return Ok(());
                }
                if let Behaviour::ReplyAfterData(reply) = &behaviour {
                    self.state.lock().unwrap().rejected.push(ReceivedMail {
                        mail_from: mail_from.clone(),
                        rcpt_to: rcpt_to.clone(),
                        data,
                    });
                    write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                    continue;
                }
                self.state.lock().unwrap().received.push(ReceivedMail {
                    mail_from: mail_from.clone(),
                    rcpt_to: rcpt_to.clone(),
                    data,
                });
                self.arrived.notify_waiters();
                write.write_all(b"250 2.0.0 queued\r\n").await?;
            } else if upper == "QUIT" {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            } else {
                // RSET, NOOP and anything else lettre may say.
                write.write_all(b"250 2.0.0 OK\r\n").await?;
            }
        }
    }

    fn peek_silent(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        if state.script.front() == Some(&Behaviour::Silent) {
            state.script.pop_front();
            true
        } else {
            false
        }
    }
}
