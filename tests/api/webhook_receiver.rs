//! A webhook receiver for tests: plain HTTP/1.1 on 127.0.0.1 (a free port),
//! recording every request it reads and answering each with the next
//! scripted status (200 once the script is used up), then closing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A request as it arrived, and the status it was answered with.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    pub method: String,
    pub path: String,
    /// Header names in lowercase.
    pub headers: HashMap<String, String>,
    pub body: String,
    pub status: u16,
}

impl ReceivedWebhook {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_lowercase()).map(String::as_str)
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// The `type` of the body.
    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<u16>,
    received: Vec<ReceivedWebhook>,
}

/// The running receiver.
#[derive(Clone)]
pub struct WebhookReceiver {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl WebhookReceiver {
    /// Starts listening on a free loopback port.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts listening on a given loopback port (0: any free one).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the webhook receiver");
        let receiver = WebhookReceiver {
            port: listener.local_addr().unwrap().port(),
            state: Arc::new(Mutex::new(State::default())),
        };
        let serving = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = serving.clone();
                tokio::spawn(async move {
                    let _ = conn.serve(stream).await;
                });
            }
        });
        receiver
    }

    /// The URL of a path on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Queues statuses for the next requests; afterwards it answers 200.
    pub fn script(&self, statuses: impl IntoIterator<Item = u16>) {
        self.state.lock().unwrap().script.extend(statuses);
    }

    /// Every request read so far, whatever it was answered.
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        self.state.lock().unwrap().received.clone()
    }

    /// The requests answered with a 2xx: what a receiver would process.
    pub fn accepted(&self) -> Vec<ReceivedWebhook> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = HashMap::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let status = {
            let mut state = self.state.lock().unwrap();
            let status = state.script.pop_front().unwrap_or(200);
            state.received.push(ReceivedWebhook {
                method,
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                status,
            });
            status
        };
        let answer =
            format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let stream = reader.get_mut();
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    }
}
