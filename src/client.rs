//! The `chat.v1` client side: a connection helper shared by `nudge chat`, the load generator
//! and the tests, and the terminal chat client itself.

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::{ClientFrame, Hello, SUBPROTOCOL, ServerFrame};

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("WebSocket: {0}")]
    Ws(#[from] tungstenite::Error),
    #[error("the server sent a frame this client does not understand: {0}")]
    Frame(String),
    #[error("the server closed the connection")]
    Closed,
}

/// Opens a `chat.v1` socket. Chat frames are small, so the read buffer is 4 KiB instead of
/// tungstenite's 128 KiB (which is zero-filled before every read).
pub async fn connect(url: &str) -> Result<Socket, ClientError> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    Ok(socket)
}

pub async fn send(socket: &mut Socket, frame: &ClientFrame) -> Result<(), ClientError> {
    let json = serde_json::to_string(frame).expect("client frames serialize");
    socket.send(Message::text(json)).await?;
    Ok(())
}

/// The next server frame, skipping pings and pongs.
pub async fn recv(socket: &mut Socket) -> Result<ServerFrame, ClientError> {
    loop {
        match socket.next().await {
            None | Some(Ok(Message::Close(_))) => return Err(ClientError::Closed),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).map_err(|_| ClientError::Frame(text.to_string()));
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// `nudge chat`: a terminal conversation that shows the matched intent of every reply.
pub async fn chat(url: &str, campaign: Option<String>) -> anyhow::Result<()> {
    let mut socket = connect(url).await?;
    let locale = std::env::var("LANG").ok().map(|l| l.replace('_', "-"));
    send(&mut socket, &ClientFrame::Hello(Hello { campaign, locale, ..Hello::default() })).await?;
    let mut choices = Vec::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            frame = recv(&mut socket) => {
                let frame = match frame {
                    Err(ClientError::Closed) => { println!("(connection closed)"); return Ok(()); }
                    other => other?,
                };
                show(&frame, &mut choices);
            }
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                let line = line.trim();
                if line.is_empty() { continue; }
                let frame = match line.parse::<usize>().ok().and_then(|n| choices.get(n.wrapping_sub(1))) {
                    Some(value) => ClientFrame::Choose { value: String::clone(value) },
                    None => ClientFrame::Say { text: line.to_string() },
                };
                send(&mut socket, &frame).await?;
            }
        }
    }
}

fn show(frame: &ServerFrame, choices: &mut Vec<String>) {
    match frame {
        ServerFrame::Welcome { visitor, returning, .. } => {
            println!("(connected as visitor {visitor}{})", if *returning { ", returning" } else { "" });
        }
        ServerFrame::Reply(reply) => {
            let how = match (reply.how, reply.confidence) {
                (Some(how), Some(c)) => format!(" via {how:?} {c:.2}").to_lowercase(),
                _ => String::new(),
            };
            let from = reply.agent.as_deref().unwrap_or("bot");
            println!("{from} [{}{how}]: {}", reply.intent, reply.text);
            if !reply.captured.is_empty() {
                let noted: Vec<String> = reply.captured.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("  (noted: {})", noted.join(", "));
            }
            choices.clear();
            for (i, choice) in reply.choices.iter().enumerate() {
                println!("  {}) {}", i + 1, choice.label);
                choices.push(choice.value.clone());
            }
        }
        ServerFrame::Checkout { url, label } => println!("[{label}] {url}"),
        ServerFrame::Tags { tags, .. } => println!("(tags: {})", tags.join(", ")),
        ServerFrame::Handoff { agent: Some(name) } => println!("({name} joined the chat)"),
        ServerFrame::Handoff { agent: None } => println!("(back with the bot)"),
        ServerFrame::Received { agent } => println!("(sent to {agent})"),
        ServerFrame::Error { code, message } => println!("(error {code:?}: {message})"),
    }
}
