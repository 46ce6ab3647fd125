//! The `chat.v1` WebSocket session (the imperative shell around `dialogue`): checks the
//! handshake, decodes frames, keeps the conversation state, applies the engine's effects through
//! the store (durably) and only then sends the frames. Heartbeats and the idle timeout live here.

pub mod agents;
mod effects;
mod hello;
pub mod limits;
mod session;
mod unsaved;

pub(crate) use session::forget_mail;

use std::cell::Cell;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::App;
use crate::ids::{ConversationId, VisitorId};
use crate::protocol::SUBPROTOCOL;

tokio::task_local! {
    /// Who a connection's task is about, once `hello` told: every log line it writes names them
    /// (see `about`). A task-local costs a connection 40 bytes where a tracing span with these
    /// fields cost it about 2 KiB (BENCHMARKS.md).
    static ABOUT: Cell<Option<(VisitorId, ConversationId)>>;
}

/// The visitor and conversation of the chat whose task is running, if any: for the log format.
pub fn about() -> Option<(VisitorId, ConversationId)> {
    ABOUT.try_with(Cell::get).ok().flatten()
}

/// From now on the running chat task's log lines name this visitor and conversation.
fn now_about(visitor: VisitorId, conversation: ConversationId) {
    let _ = ABOUT.try_with(|about| about.set(Some((visitor, conversation))));
}

/// Close code sent when a connection was idle too long; the widget reconnects when the shopper
/// types again rather than at once.
pub const CLOSE_IDLE: u16 = 4000;

pub async fn ws(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<App>,
    per_ip: web::Data<limits::PerIp>,
) -> actix_web::Result<HttpResponse> {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_allowed(&app, &req, origin) {
            return Ok(HttpResponse::Forbidden()
                .body(format!("origin {origin:?} may not open the chat socket; add it to allowed_origins")));
        }
    }
    let offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offered {
        return Ok(HttpResponse::BadRequest().body(format!(
            "the chat socket speaks the WebSocket subprotocol {SUBPROTOCOL}; offer it in Sec-WebSocket-Protocol"
        )));
    }
    // Raw IP addresses are only held in memory, for these limits, while connected.
    let peer = req.peer_addr().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let ip = limits::client_ip(peer, req.headers(), &app.config.trusted_proxies);
    let Some(admitted) = per_ip.admit(ip, app.config.max_connections_per_ip) else {
        return Ok(HttpResponse::TooManyRequests().body("too many chat connections from this address"));
    };
    let (response, ws_session, stream) = actix_ws::handle_with_protocols(&req, body, &[SUBPROTOCOL])?;
    tidy();
    let limit = app.config.max_frame_bytes;
    let stream = stream.max_frame_size(limit).aggregate_continuations().max_continuation_size(limit);
    // Every log line of the connection names its visitor and conversation (once `hello` told).
    actix_web::rt::spawn(ABOUT.scope(Cell::new(None), session::run(Arc::clone(&app), admitted, ws_session, stream)));
    Ok(response)
}

/// Starts, once per worker thread, a task that hands the memory the thread freed back to the
/// system every second (`allocator::collect`): what ten thousand connections' handshakes freed
/// would otherwise stay resident while they sit idle. A call took 30–40 µs with 10,000 idle
/// connections and 0.15–0.5 ms under 1,000 busy ones (uprobes), at most a twentieth of a
/// percent of a worker.
fn tidy() {
    thread_local! {
        static TIDYING: Cell<bool> = const { Cell::new(false) };
    }
    if TIDYING.replace(true) {
        return;
    }
    actix_web::rt::spawn(async {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            crate::allocator::collect();
        }
    });
}

/// Browsers always send `Origin`; a page may open the socket when it is one of ours (the
/// request's own host or the public URL) or allow-listed. Non-browser clients send none. The
/// host a proxy forwarded (`X-Forwarded-Host`, `Forwarded`) counts only from `trusted_proxies`:
/// anyone else could name any host there.
fn origin_allowed(app: &App, req: &HttpRequest, origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    let peer = req.peer_addr().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let proxied = app.config.trusted_proxies.iter().any(|n| n.0.contains(&peer));
    let host = if proxied {
        req.connection_info().host().to_string()
    } else {
        req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_string()
    };
    let own = [format!("http://{host}"), format!("https://{host}")];
    own.iter().any(|o| o.eq_ignore_ascii_case(origin))
        || app.public_origin.eq_ignore_ascii_case(origin)
        || app.config.allowed_origins.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}
