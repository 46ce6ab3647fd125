//! The baseline for `bench/run`: a bare actix-ws echo server speaking the `chat.v1` subprotocol,
//! driven by the same `nudge loadgen` in the same run, so Nudge's speed is reported as a ratio.
//!
//!     cargo run --release --example echo_server -- 127.0.0.1:0

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_ws::AggregatedMessage;

async fn ws(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, mut session, stream) = actix_ws::handle_with_protocols(&req, body, &["chat.v1"])?;
    let mut stream = stream.max_frame_size(16 * 1024).aggregate_continuations();
    actix_web::rt::spawn(async move {
        while let Some(Ok(message)) = stream.recv().await {
            let sent = match message {
                AggregatedMessage::Text(text) => session.text(text).await,
                AggregatedMessage::Ping(bytes) => session.pong(&bytes).await,
                AggregatedMessage::Close(_) => break,
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    actix_web::rt::System::new().block_on(async move {
        let listener = std::net::TcpListener::bind(&addr)?;
        println!("echo listening on http://{}", listener.local_addr()?);
        HttpServer::new(|| App::new().route("/ws", web::get().to(ws))).listen(listener)?.run().await
    })
}
