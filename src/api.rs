//! HTTP routes besides the chat socket and the pages: email link entry (`/c/`), checkout
//! redirects (`/r/`) and the shop's conversion webhook (`/api/conversions`). Every failure is a
//! 4xx with a reason: an HTML page for shoppers' browsers, JSON for the shop's server.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use maud::html;
use serde_json::json;

use crate::app::App;
use crate::domain::{Change, ConsentChange, Spend, Status};
use crate::ids::VisitorId;
use crate::leads::{self, Conversion, EmailLink, LinkError};
use crate::pages::{document, html_page};
use crate::signing::{Claims, TokenError, constant_time_eq};
use crate::store::{Command, EmailEvent, StoreError};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/c/{token}", web::get().to(email_link))
        .route("/r/{token}", web::get().to(checkout))
        .route("/api/conversions", web::post().to(conversion))
        .route("/api/spend", web::post().to(spend))
        .route("/o/{token}", web::get().to(opened))
        .route("/l/{token}", web::get().to(clicked))
        .route("/u/{token}", web::get().to(unsubscribe_page))
        .route("/u/{token}", web::post().to(unsubscribe))
        .route("/v/{token}", web::get().to(confirm_page))
        .route("/v/{token}", web::post().to(confirm));
}

/// A failed request: its status, the reason, and whether a person (HTML) or a program (JSON)
/// reads it.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    reason: String,
    page: bool,
}

impl Failure {
    fn page(status: StatusCode, reason: impl Into<String>) -> Failure {
        Failure { status, reason: reason.into(), page: true }
    }

    pub(crate) fn json(status: StatusCode, reason: impl Into<String>) -> Failure {
        Failure { status, reason: reason.into(), page: false }
    }

    /// The status a bad token deserves: 400 when it is not even well-formed, 403 when it was not
    /// signed by us, 410 when it expired.
    fn token(error: TokenError, page: bool) -> Failure {
        let status = match error {
            TokenError::Malformed => StatusCode::BAD_REQUEST,
            TokenError::UnknownKey | TokenError::BadSignature => StatusCode::FORBIDDEN,
            TokenError::Expired => StatusCode::GONE,
        };
        Failure { status, reason: error.to_string(), page }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        log::error!("store: {error}");
        Failure::json(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; retry later")
    }
}

impl ResponseError for Failure {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        if self.page {
            let body = html! {
                h1 { "This link cannot be used" }
                p { (self.reason) "." }
                p { a href="/chat" { "Start a new chat" } }
            };
            response.content_type("text/html; charset=utf-8").body(document("Link not valid", body))
        } else {
            response.json(json!({ "error": self.reason }))
        }
    }
}

/// `GET /c/{token}`: an email link. Links the email (and name, product, campaign) to a visitor,
/// then lands on the hosted chat, which presents the same token in `hello`.
async fn email_link(app: web::Data<App>, token: web::Path<String>) -> Result<HttpResponse, Failure> {
    let token = token.into_inner();
    let link = EmailLink::verify(&app.signer, &token, app.now_secs()).map_err(|e| match e {
        LinkError::Token(e) => Failure::token(e, true),
        other => Failure::page(StatusCode::BAD_REQUEST, other.to_string()),
    })?;
    let (link, existing) = app
        .store
        .read(move |store| {
            let existing = link.find(store)?;
            Ok((link, existing))
        })
        .await?;
    let now = app.now_ms();
    let mut commands = Vec::new();
    let visitor = match existing {
        Some(profile) => profile.id,
        None => {
            let visitor = VisitorId::mint(now);
            commands.push(Command::Visitor { visitor, change: Change::Create { at: now, locale: "en".into() } });
            visitor
        }
    };
    commands.extend(link.changes(now).into_iter().map(|change| Command::Visitor { visitor, change }));
    commands.push(link.link(visitor));
    app.store.commit(commands).await?;
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, format!("/chat?nudge={token}"))).finish())
}

/// `GET /r/{token}`: a checkout link. Records the click and redirects, only to an allow-listed
/// shop host.
async fn checkout(app: web::Data<App>, token: web::Path<String>) -> Result<HttpResponse, Failure> {
    let Claims::Checkout { visitor, target, .. } =
        app.signer.verify(&token, app.now_secs()).map_err(|e| Failure::token(e, true))?
    else {
        return Err(Failure::page(StatusCode::BAD_REQUEST, "this is not a checkout link"));
    };
    // The redirect goes to the URL that was checked, as the parser wrote it, never the raw claim.
    let target = url::Url::parse(&target).ok().filter(|url| leads::target_allowed(url, &app.config.shop_hosts));
    let Some(target) = target else {
        log::warn!("refused a checkout redirect to a host outside shop_hosts");
        return Err(Failure::page(StatusCode::FORBIDDEN, "the link leads to a shop this server does not allow"));
    };
    let clicked = Change::Status { status: Status::CheckoutClicked, at: app.now_ms() };
    app.store.commit(vec![Command::Visitor { visitor, change: clicked }]).await?;
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, target.as_str())).finish())
}

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// `GET /o/{token}`: the open pixel of a sent email. Counted once per email; mail clients that
/// fetch images ahead inflate opens, so clicks are the signal to trust.
async fn opened(app: web::Data<App>, token: web::Path<String>) -> Result<HttpResponse, Failure> {
    let Claims::Open { item } = app.signer.verify(&token, app.now_secs()).map_err(|e| Failure::token(e, true))? else {
        return Err(Failure::page(StatusCode::BAD_REQUEST, "this is not an email's open pixel"));
    };
    app.store.commit(vec![Command::EmailEvent { item, event: EmailEvent::Opened, at: app.now_ms() }]).await?;
    Ok(HttpResponse::Ok().content_type("image/gif").insert_header((header::CACHE_CONTROL, "no-store")).body(PIXEL))
}

/// `GET /l/{token}`: a link in a sent email. Counts the click, then redirects, only to Nudge's
/// own chat links or an allow-listed shop host (checked again here, not only when mailed).
async fn clicked(app: web::Data<App>, token: web::Path<String>) -> Result<HttpResponse, Failure> {
    let Claims::Click { item, target } =
        app.signer.verify(&token, app.now_secs()).map_err(|e| Failure::token(e, true))?
    else {
        return Err(Failure::page(StatusCode::BAD_REQUEST, "this is not an email's link"));
    };
    let Some(target) = leads::email_target(&target, &app.public_url, &app.config.shop_hosts) else {
        log::warn!("refused an email link to a place outside shop_hosts");
        return Err(Failure::page(StatusCode::FORBIDDEN, "the link leads to a shop this server does not allow"));
    };
    app.store.commit(vec![Command::EmailEvent { item, event: EmailEvent::Clicked, at: app.now_ms() }]).await?;
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, target.as_str())).finish())
}

/// The shop's server calls: the conversions API key as a bearer token, a JSON body.
fn shop_call(app: &App, req: &HttpRequest) -> Result<(), Failure> {
    let key =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match key {
        None => {
            return Err(Failure::json(StatusCode::UNAUTHORIZED, "send the API key as `Authorization: Bearer <key>`"));
        }
        Some(key) if !constant_time_eq(key.trim().as_bytes(), app.secrets.conversions_api_key.as_bytes()) => {
            return Err(Failure::json(StatusCode::UNAUTHORIZED, "wrong API key"));
        }
        Some(_) => {}
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(Failure::json(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send `Content-Type: application/json`"));
    }
    Ok(())
}

/// `POST /api/spend`: a JSON array of `{date, campaign, platform, amount, currency}` rows, all
/// or none; a row reported again (same date, campaign and platform) replaces the first.
async fn spend(app: web::Data<App>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, Failure> {
    shop_call(&app, &req)?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| Failure::json(StatusCode::BAD_REQUEST, format!("the body must be a JSON array of rows: {e}")))?;
    let mut commands = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let row = serde_json::from_value::<Spend>(row)
            .map_err(|e| e.to_string())
            .and_then(Spend::checked)
            .map_err(|e| Failure::json(StatusCode::BAD_REQUEST, format!("row {}: {e}", i + 1)))?;
        commands.push(Command::RecordSpend(row));
    }
    let count = commands.len();
    app.store.commit(commands).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "recorded", "rows": count })))
}

/// `POST /api/conversions`: the shop reports an order; idempotent by order id.
async fn conversion(app: web::Data<App>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, Failure> {
    shop_call(&app, &req)?;
    let conversion: Conversion = serde_json::from_slice(&body)
        .map_err(|e| Failure::json(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))?;
    conversion.validate().map_err(|e| Failure::json(StatusCode::BAD_REQUEST, e))?;
    let (visitor, conversation) = match (&conversion.checkout_token, &conversion.visitor) {
        (Some(token), _) => match app.signer.verify(token, 0) {
            // An order may arrive after the link expired; the signature is what matters here.
            Ok(Claims::Checkout { visitor, conversation, .. }) => (visitor, Some(conversation)),
            Ok(_) => return Err(Failure::json(StatusCode::BAD_REQUEST, "`checkout_token` is not a checkout link")),
            Err(e) => return Err(Failure::json(StatusCode::BAD_REQUEST, format!("`checkout_token`: {e}"))),
        },
        (None, Some(visitor)) => {
            let visitor = VisitorId::parse(visitor)
                .map_err(|e| Failure::json(StatusCode::BAD_REQUEST, format!("`visitor`: {e}")))?;
            (visitor, None)
        }
        (None, None) => unreachable!("validate() requires one of them"),
    };
    let _one_at_a_time = app.conversions.lock().await;
    let order_id = conversion.order_id.trim().to_string();
    let lookup = order_id.clone();
    let (existing, profile, conversation, transcript) = app
        .store
        .read(move |store| {
            let existing = store.order(&lookup)?;
            let profile = store.visitor(&visitor)?;
            let conversation = match conversation {
                Some(id) => store.conversation(&id)?,
                None => store.latest_conversation(&visitor)?,
            };
            let transcript = match &conversation {
                Some(c) => store.transcript(&c.id)?,
                None => Vec::new(),
            };
            Ok((existing, profile, conversation, transcript))
        })
        .await?;
    if let Some(order) = existing {
        return Ok(
            HttpResponse::Ok().json(json!({ "status": "duplicate", "order_id": order.id, "visitor": order.visitor }))
        );
    }
    let profile = profile.ok_or_else(|| Failure::json(StatusCode::NOT_FOUND, "unknown visitor"))?;
    let mut variants: Vec<(String, u32)> =
        transcript.iter().filter_map(|e| Some((e.intent.clone()?, e.variant?))).collect();
    variants.sort();
    variants.dedup();
    let now = app.now_ms();
    let order = leads::attribute(&conversion, &profile, conversation.as_ref(), variants, now);
    let response = json!({
        "status": "recorded",
        "order_id": order.id,
        "visitor": order.visitor,
        "conversation": order.conversation,
        "campaign": order.campaign,
    });
    let visitor = profile.id;
    let commands = vec![
        Command::Visitor { visitor, change: Change::Order { id: order.id.clone(), at: now } },
        Command::RecordOrder(Box::new(order)),
        Command::CancelFollowUps { visitor, reason: "converted".into(), at: now },
    ];
    app.store.commit(commands).await?;
    Ok(HttpResponse::Created().json(response))
}

fn unsubscribe_claims(app: &App, token: &str) -> Result<VisitorId, Failure> {
    match app.signer.verify(token, app.now_secs()).map_err(|e| Failure::token(e, true))? {
        Claims::Unsubscribe { visitor } => Ok(visitor),
        _ => Err(Failure::page(StatusCode::BAD_REQUEST, "this is not an unsubscribe link")),
    }
}

/// `GET /u/{token}`: asks to confirm, so that a mail scanner following links unsubscribes nobody.
async fn unsubscribe_page(app: web::Data<App>, token: web::Path<String>) -> Result<HttpResponse, Failure> {
    unsubscribe_claims(&app, &token)?;
    let body = html! {
        h1 { "Unsubscribe from our emails?" }
        form method="post" action={ "/u/" (token) } { button type="submit" { "Unsubscribe" } }
    };
    Ok(html_page(document("Unsubscribe", body)))
}

/// `POST /u/{token}`: unsubscribes (RFC 8058 one-click, or the confirm page's button): withdraws
/// marketing consent and cancels pending follow-ups. Repeating it changes nothing.
async fn unsubscribe(app: web::Data<App>, token: web::Path<String>) -> Result<HttpResponse, Failure> {
    let visitor = unsubscribe_claims(&app, &token)?;
    let now = app.now_ms();
    let commands = vec![
        Command::Visitor { visitor, change: Change::Consent(ConsentChange::unsubscribe(now)) },
        Command::CancelFollowUps { visitor, reason: "unsubscribed".into(), at: now },
    ];
    app.store.commit(commands).await?;
    let body = html! { h1 { "You are unsubscribed" } p { "You will get no more emails from us." } };
    Ok(html_page(document("Unsubscribed", body)))
}

fn confirm_claims(app: &App, token: &str) -> Result<(VisitorId, String), Failure> {
    match app.signer.verify(token, app.now_secs()).map_err(|e| Failure::token(e, true))? {
        Claims::Confirm { visitor, email } => Ok((visitor, email)),
        _ => Err(Failure::page(StatusCode::BAD_REQUEST, "this is not a confirmation link")),
    }
}

/// `GET /v/{token}`: asks to confirm, so that a mail scanner following links confirms nobody.
async fn confirm_page(app: web::Data<App>, token: web::Path<String>) -> Result<HttpResponse, Failure> {
    let (_, email) = confirm_claims(&app, &token)?;
    let body = html! {
        h1 { "Confirm " (email) "?" }
        p { "You will get our emails at this address." }
        form method="post" action={ "/v/" (token) } { button type="submit" { "Confirm" } }
    };
    Ok(html_page(document("Confirm your address", body)))
}

/// `POST /v/{token}`: the double opt-in: records that the address is the visitor's (with time
/// and source). Repeating it changes nothing that matters.
async fn confirm(app: web::Data<App>, token: web::Path<String>) -> Result<HttpResponse, Failure> {
    let (visitor, email) = confirm_claims(&app, &token)?;
    let change = Change::ConfirmEmail { email, at: app.now_ms(), source: "confirmation link".into() };
    app.store.commit(vec![Command::Visitor { visitor, change }]).await?;
    Ok(html_page(document("Confirmed", html! { h1 { "Thank you" } p { "Your address is confirmed." } })))
}
