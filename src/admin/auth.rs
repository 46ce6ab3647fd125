//! The admin's login: the password checked against its Argon2id hash (at most two checks at once,
//! a per-address rate limit and a global one), a signed session cookie naming a session the store
//! holds and tied to that hash, and the checks every other admin route makes (a live session;
//! for POSTs, our own origin). Logging out ends the session in the store, so a copied cookie
//! stops working too; a new password ends every session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::ErrorInternalServerError;
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{html, secured, views};
use crate::app::App;
use crate::chat::limits::{Bucket, client_ip};
use crate::ids::AdminSessionId;
use crate::signing::Claims;
use crate::store::Command;

const COOKIE: &str = "nudge_admin";
/// The name the person gave at login, as shoppers see it when they answer a chat.
const NAME_COOKIE: &str = "nudge_name";
/// What a person who gave no name is called in the chat.
const DEFAULT_NAME: &str = "Support";
const MAX_NAME_CHARS: usize = 40;
const SESSION_SECS: u64 = 12 * 60 * 60;
/// Login attempts per address: a burst of 10, then one every 6 seconds ...
const LOGIN_BURST: f64 = 10.0;
const LOGIN_RATE: f64 = 1.0 / 6.0;
/// ... and from all addresses together: a burst of 30, then one every 2 seconds, so guesses
/// spread over many addresses slow down too.
const GLOBAL_BURST: f64 = 30.0;
const GLOBAL_RATE: f64 = 0.5;

/// Login attempts per address and overall, and a cap on password checks running at once: each
/// Argon2 check takes 19 MiB and tens of milliseconds, so many addresses at once must queue
/// rather than exhaust memory.
pub struct Logins {
    attempts: Mutex<(HashMap<IpAddr, Bucket>, Bucket)>,
    checking: tokio::sync::Semaphore,
}

impl Default for Logins {
    fn default() -> Self {
        let attempts = Mutex::new((HashMap::new(), Bucket::new(GLOBAL_RATE, GLOBAL_BURST)));
        Logins { attempts, checking: tokio::sync::Semaphore::new(2) }
    }
}

impl Logins {
    fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let (per_address, global) = &mut *attempts;
        if per_address.len() > 10_000 {
            // Only addresses whose budget has refilled are forgotten: that gives nothing away.
            per_address.retain(|_, bucket| !bucket.is_full(now));
        }
        per_address.entry(ip).or_insert_with(|| Bucket::new(LOGIN_RATE, LOGIN_BURST)).take(now) && global.take(now)
    }
}

/// Why a request is turned away: pages send the browser to the login form, the API and exports
/// answer 401 with a reason.
enum Denied {
    Login,
    Api,
}

impl From<Denied> for actix_web::Error {
    fn from(denied: Denied) -> actix_web::Error {
        let response = match denied {
            Denied::Login => {
                secured(HttpResponse::SeeOther()).insert_header((header::LOCATION, "/admin/login")).finish()
            }
            Denied::Api => secured(HttpResponse::Unauthorized()).json(serde_json::json!({
                "error": "log in at /admin/login first (the session cookie is missing, expired or from an old password)"
            })),
        };
        actix_web::error::InternalError::from_response("not logged in", response).into()
    }
}

/// The session the request's cookie names, when the cookie is ours and for the current password.
fn claimed_session(app: &App, req: &HttpRequest) -> Option<AdminSessionId> {
    let token = cookie(req, COOKIE)?;
    match app.signer.verify(&token, app.now_secs()) {
        Ok(claims @ Claims::Admin { sid, .. }) if claims == app.secrets.admin_claims(sid) => Some(sid),
        _ => None,
    }
}

/// Whether the request carries the cookie of a live session (one not logged out).
pub(super) async fn logged_in(app: &App, req: &HttpRequest) -> bool {
    let Some(sid) = claimed_session(app, req) else { return false };
    let now = app.now_ms();
    app.store.read(move |store| store.admin_session_live(&sid, now)).await.unwrap_or_else(|e| {
        log::error!("admin: cannot check a session: {e}");
        false
    })
}

/// Paths anyone may reach: the login form and logging out (which clears the cookies whatever
/// state they are in); the lead page's script holds nothing.
const OPEN: [&str; 3] = ["/admin/login", "/admin/logout", "/admin/live.js"];

/// In front of every `/admin` route: without a live session, pages send the browser to the
/// login form and the API, exports and a lead page's live part answer 401. A route added to
/// the scope is behind it without a line of its own.
pub(super) async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    if OPEN.contains(&req.path()) {
        return next.call(req).await;
    }
    let app = req.app_data::<web::Data<App>>().cloned().ok_or_else(|| ErrorInternalServerError("no app"))?;
    if logged_in(&app, req.request()).await {
        return next.call(req).await;
    }
    let path = req.path();
    let api = path.starts_with("/admin/api/") || path.starts_with("/admin/export/") || path.ends_with("/live");
    Err(if api { Denied::Api } else { Denied::Login }.into())
}

/// Who is logged in: their session (one per login, so two people are two sessions even with one
/// password) and the name they gave.
pub(super) struct Person {
    pub session: AdminSessionId,
    pub name: String,
}

/// The logged-in person making the request (`guard` let only them through).
pub(super) fn person(app: &App, req: &HttpRequest) -> Result<Person, actix_web::Error> {
    let session = claimed_session(app, req).ok_or(Denied::Login)?;
    let name = cookie(req, NAME_COOKIE).and_then(|name| clean_name(&name)).unwrap_or_else(|| DEFAULT_NAME.to_string());
    Ok(Person { session, name })
}

/// A name as shoppers will see it: trimmed, one line, at most `MAX_NAME_CHARS`; `None` when empty.
fn clean_name(name: &str) -> Option<String> {
    let name: String = name.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.cookie(name).map(|c| c.value().to_string())
}

/// One of the admin's cookies, as its `Set-Cookie` value: only sent to `/admin`, never to
/// scripts or other sites, only over https when the public URL is https; the value
/// percent-encoded (a name may be "Zoë Brandt"), as `req.cookie` decodes it.
fn admin_cookie(app: &App, name: &'static str, value: String, max_age: u64) -> String {
    Cookie::build(name, value)
        .path("/admin")
        .max_age(CookieDuration::seconds(max_age as i64))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(app.public_url.starts_with("https://"))
        .finish()
        .encoded()
        .to_string()
}

/// A form posted from another site (login CSRF, forced logout) is refused. Browsers send
/// `Origin` with a POST; where a privacy setting strips it, `Referer` names the page the form was
/// on (our `Referrer-Policy: same-origin` keeps it for our own pages). A POST with neither did
/// not come from our pages, and is refused too.
pub(super) fn same_origin(app: &App, req: &HttpRequest) -> bool {
    let header_value = |name| req.headers().get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    let origin = match (header_value(header::ORIGIN), header_value(header::REFERER)) {
        (Some(origin), _) if origin != "null" => origin.trim_end_matches('/').to_string(),
        (_, Some(referer)) => match url::Url::parse(referer) {
            Ok(url) => url.origin().ascii_serialization(),
            Err(_) => return false,
        },
        _ => return false,
    };
    let host = header_value(header::HOST).unwrap_or("");
    origin.eq_ignore_ascii_case(&app.public_origin)
        || ["http://", "https://"].iter().any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}{host}")))
}

pub(super) async fn login_page(app: web::Data<App>, req: HttpRequest) -> HttpResponse {
    if logged_in(&app, &req).await {
        return secured(HttpResponse::SeeOther()).insert_header((header::LOCATION, "/admin")).finish();
    }
    html(StatusCode::OK, views::login(None))
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    password: String,
    /// The name shoppers see when this person answers (optional).
    #[serde(default)]
    name: String,
}

pub(super) async fn login(
    app: web::Data<App>,
    logins: web::Data<Logins>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> actix_web::Result<HttpResponse> {
    if !same_origin(&app, &req) {
        return Ok(html(StatusCode::FORBIDDEN, views::login(Some("This form was posted from another site."))));
    }
    let peer = req.peer_addr().map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    if !logins.allow(client_ip(peer, req.headers(), &app.config.trusted_proxies)) {
        return Ok(html(StatusCode::TOO_MANY_REQUESTS, views::login(Some("Too many attempts; wait a minute."))));
    }
    let LoginForm { password, name } = form.into_inner();
    let checking = app.clone();
    let _turn = logins.checking.acquire().await.map_err(actix_web::error::ErrorServiceUnavailable)?;
    // Argon2 is slow on purpose: off the async workers.
    let matches = web::block(move || checking.secrets.admin_password_matches(&password)).await?;
    if !matches {
        return Ok(html(StatusCode::UNAUTHORIZED, views::login(Some("Wrong password."))));
    }
    let now = app.now_ms();
    let sid = AdminSessionId::mint(now);
    let session = Command::OpenAdminSession { id: sid, at: now, expires_at: now + SESSION_SECS * 1000 };
    app.store.commit(vec![session]).await.map_err(actix_web::error::ErrorInternalServerError)?;
    let token = app.signer.sign(&app.secrets.admin_claims(sid), now / 1000 + SESSION_SECS);
    Ok(secured(HttpResponse::SeeOther())
        .insert_header((header::LOCATION, "/admin"))
        .append_header((header::SET_COOKIE, admin_cookie(&app, COOKIE, token, SESSION_SECS)))
        .append_header((
            header::SET_COOKIE,
            admin_cookie(&app, NAME_COOKIE, clean_name(&name).unwrap_or_default(), SESSION_SECS),
        ))
        .finish())
}

pub(super) async fn logout(app: web::Data<App>, req: HttpRequest) -> HttpResponse {
    if !same_origin(&app, &req) {
        return html(StatusCode::FORBIDDEN, views::login(Some("This form was posted from another site.")));
    }
    // Ended in the store: the same cookie, copied elsewhere, no longer works either.
    if let Some(sid) = claimed_session(&app, &req)
        && let Err(e) = app.store.commit(vec![Command::EndAdminSession(sid)]).await
    {
        log::error!("admin: cannot end a session: {e}");
        return html(StatusCode::INTERNAL_SERVER_ERROR, views::login(Some("Could not log out; please try again.")));
    }
    secured(HttpResponse::SeeOther())
        .insert_header((header::LOCATION, "/admin/login"))
        .append_header((header::SET_COOKIE, admin_cookie(&app, COOKIE, String::new(), 0)))
        .append_header((header::SET_COOKIE, admin_cookie(&app, NAME_COOKIE, String::new(), 0)))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_from_many_addresses_are_limited_together() {
        let logins = Logins::default();
        let allowed = (0..40u8).filter(|i| logins.allow(IpAddr::from([192, 0, 2, *i]))).count();
        assert_eq!(allowed, GLOBAL_BURST as usize, "one guess each from 40 addresses");
        let one = IpAddr::from([198, 51, 100, 1]);
        assert!(!logins.allow(one), "a new address waits too");
    }
}
