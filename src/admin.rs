//! `/admin`: the marketer's pages, their JSON API and CSV exports, all behind one password.
//! A login sets a signed session cookie (HttpOnly, SameSite=Strict, Path=/admin, Secure when the
//! public URL is https, 12 hours); logins are rate-limited per address; POSTs from other origins
//! are refused; every page is sent with headers that forbid framing, scripts and caching.

mod auth;
pub mod report;
mod views;

pub use auth::Logins;
use auth::{Denied, require, same_origin};

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::domain::Status;
use crate::export::{self, LeadFilter, Platform};
use crate::ids::VisitorId;
use crate::server::App;
use crate::store::{Command, Seen, StoreError};
use crate::{intents, now_ms};

/// Rows shown on a page; the exports have everything.
pub const PAGE_ROWS: usize = 500;

/// No scripts at all; inline styles only; forms post only to us; never framed.
const ADMIN_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/login", web::get().to(auth::login_page))
        .route("/admin/login", web::post().to(auth::login))
        .route("/admin/logout", web::post().to(auth::logout))
        .route("/admin", web::get().to(leads_page))
        .route("/admin/leads/{visitor}", web::get().to(lead_page))
        .route("/admin/leads/{visitor}/erase", web::post().to(erase_lead))
        .route("/admin/leads/{visitor}/reply", web::post().to(reply_to_lead))
        .route("/admin/handoffs", web::get().to(handoffs_page))
        .route("/admin/funnel", web::get().to(funnel_page))
        .route("/admin/emails", web::get().to(emails_page))
        .route("/admin/try", web::get().to(try_page))
        .route("/admin/api/leads", web::get().to(leads_api))
        .route("/admin/api/funnel", web::get().to(funnel_api))
        .route("/admin/export/leads.csv", web::get().to(export_leads))
        .route("/admin/export/audience.csv", web::get().to(export_audience));
}

/// A response with the admin's security headers.
pub(super) fn secured(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, ADMIN_CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Not `no-referrer`: with it browsers send `Origin: null` on our own form posts.
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    builder
}

pub(super) fn html(status: StatusCode, body: String) -> HttpResponse {
    secured(HttpResponse::build(status)).content_type("text/html; charset=utf-8").body(body)
}

fn json(value: impl serde::Serialize) -> HttpResponse {
    secured(HttpResponse::Ok()).json(value)
}

fn csv(name: &str, body: Vec<u8>) -> HttpResponse {
    secured(HttpResponse::Ok())
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .body(body)
}

fn store_error(error: StoreError) -> actix_web::Error {
    log::error!("admin: {error}");
    actix_web::error::ErrorServiceUnavailable("the store is unavailable; retry later")
}

/// Filters as the pages' forms send them: empty fields mean "any".
#[derive(Deserialize, Default)]
struct Filters {
    status: Option<String>,
    campaign: Option<String>,
    tag: Option<String>,
    /// The page after this lead (`<ms>-<visitor>`, as `next` gave it).
    after: Option<String>,
    /// Leads a page (at most `PAGE_ROWS`).
    limit: Option<usize>,
    platform: Option<String>,
    q: Option<String>,
}

fn given(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

impl Filters {
    fn leads(&self) -> Result<LeadFilter, actix_web::Error> {
        let status = match given(&self.status) {
            Some(s) => Some(Status::parse(&s).ok_or_else(|| {
                actix_web::error::ErrorBadRequest(format!(
                    "unknown status {s:?} (chatting, qualified, checkout_clicked, converted)"
                ))
            })?),
            None => None,
        };
        Ok(LeadFilter { status, campaign: given(&self.campaign), tag: given(&self.tag) })
    }
}

/// A lead as `/admin/api/leads` shows it. The API's own type, so that neither a change of the
/// domain nor of the store's encoding changes what programs reading the API see.
#[derive(serde::Serialize)]
struct LeadBody<'a> {
    id: VisitorId,
    created_at: u64,
    last_seen_at: u64,
    locale: &'a str,
    visits: u32,
    status: &'static str,
    status_at: std::collections::BTreeMap<&'static str, u64>,
    score: i64,
    tags: &'a std::collections::BTreeSet<String>,
    campaign: Option<&'a str>,
    preferences: std::collections::BTreeMap<&'a str, PreferenceBody<'a>>,
    consent: Option<ConsentBody<'a>>,
    /// The address the visitor confirmed (double opt-in), if any.
    confirmed_email: Option<&'a str>,
    handoff_at: Option<u64>,
    orders: &'a [String],
}

#[derive(serde::Serialize)]
struct PreferenceBody<'a> {
    value: &'a str,
    at: u64,
    message: &'a str,
}

#[derive(serde::Serialize)]
struct ConsentBody<'a> {
    marketing: bool,
    ads: bool,
    at: u64,
    source: &'a str,
}

impl<'a> From<&'a crate::domain::Profile> for LeadBody<'a> {
    fn from(p: &'a crate::domain::Profile) -> Self {
        LeadBody {
            id: p.id,
            created_at: p.created_at,
            last_seen_at: p.last_seen_at,
            locale: &p.locale,
            visits: p.visits,
            status: p.status.as_str(),
            status_at: p.status_at.iter().map(|(status, at)| (status.as_str(), *at)).collect(),
            score: p.score,
            tags: &p.tags,
            campaign: p.campaign.as_deref(),
            preferences: p
                .preferences
                .iter()
                .map(|(name, pref)| {
                    (name.as_str(), PreferenceBody { value: &pref.value, at: pref.at, message: &pref.message })
                })
                .collect(),
            consent: p.consent.as_ref().map(|c| ConsentBody {
                marketing: c.marketing,
                ads: c.ads,
                at: c.at,
                source: &c.source,
            }),
            confirmed_email: p.confirmed.as_ref().map(|c| c.email.as_str()),
            handoff_at: p.handoff_at,
            orders: &p.orders,
        }
    }
}

/// A page of leads passing the filter, seen last first.
struct Page {
    leads: Vec<crate::domain::Profile>,
    /// Where the next page starts, when there is one.
    next: Option<Seen>,
    /// How many pass in all, when the indexes can say without reading every lead (not with a
    /// tag filter).
    total: Option<usize>,
}

/// One page through the last-seen index: as many leads as the page shows, plus the ones the
/// filter skips on the way, never every lead.
fn page(
    store: &crate::store::Store,
    filter: &LeadFilter,
    after: Option<Seen>,
    limit: usize,
) -> Result<Page, StoreError> {
    let mut leads = Vec::new();
    let mut next = None;
    for found in store.visitors_by_last_seen(after) {
        let (seen, profile) = found?;
        if !filter.matches(&profile) {
            continue;
        }
        if leads.len() == limit {
            break;
        }
        next = Some(seen);
        leads.push(profile);
    }
    if leads.len() < limit {
        next = None;
    }
    let total = match (&filter.status, &filter.campaign, &filter.tag) {
        (_, _, Some(_)) | (Some(_), Some(_), _) => None,
        (Some(status), None, None) => Some(store.count_with_status(*status)),
        (None, Some(campaign), None) => Some(store.count_in_campaign(campaign)),
        (None, None, None) => Some(store.visitor_count()),
    };
    Ok(Page { leads, next, total })
}

/// The page the query asks for; a bad `after` is a 400 with the reason.
async fn read_page(app: &App, filters: &Filters) -> actix_web::Result<Page> {
    let filter = filters.leads()?;
    let after = match given(&filters.after) {
        Some(after) => Some(Seen::parse(&after).ok_or_else(|| {
            actix_web::error::ErrorBadRequest("`after` is the `next` of an earlier page (`<ms>-<visitor>`)")
        })?),
        None => None,
    };
    let limit = filters.limit.unwrap_or(PAGE_ROWS).clamp(1, PAGE_ROWS);
    app.store.read(move |store| page(store, &filter, after, limit)).await.map_err(store_error)
}

async fn leads_page(
    app: web::Data<App>,
    req: HttpRequest,
    query: web::Query<Filters>,
) -> actix_web::Result<HttpResponse> {
    require(&app, &req, Denied::Login).await?;
    let filter = query.leads()?;
    let page = read_page(&app, &query).await?;
    Ok(html(StatusCode::OK, views::leads(&filter, &page.leads, page.total, page.next.map(|n| n.to_string()))))
}

async fn leads_api(
    app: web::Data<App>,
    req: HttpRequest,
    query: web::Query<Filters>,
) -> actix_web::Result<HttpResponse> {
    require(&app, &req, Denied::Api).await?;
    let page = read_page(&app, &query).await?;
    let next = page.next.map(|n| n.to_string());
    let leads: Vec<LeadBody> = page.leads.iter().map(LeadBody::from).collect();
    Ok(json(serde_json::json!({ "total": page.total, "leads": leads, "next": next })))
}

async fn lead_page(
    app: web::Data<App>,
    req: HttpRequest,
    visitor: web::Path<String>,
) -> actix_web::Result<HttpResponse> {
    require(&app, &req, Denied::Login).await?;
    let id = VisitorId::parse(&visitor).map_err(|_| actix_web::error::ErrorBadRequest("not a visitor id"))?;
    let lead = app
        .store
        .read(move |store| {
            let Some(profile) = store.visitor(&id)? else { return Ok(None) };
            let mut conversations = Vec::new();
            for conversation in store.conversations_of(&id)? {
                let transcript = store.transcript(&conversation.id)?;
                conversations.push((conversation, transcript));
            }
            let follow_ups: Vec<_> = store
                .follow_ups()
                .filter(|i| i.as_ref().map_or(true, |i| i.visitor == id))
                .collect::<Result<_, _>>()?;
            Ok(Some(views::Lead { profile, conversations, follow_ups }))
        })
        .await
        .map_err(store_error)?;
    match lead {
        Some(lead) => Ok(html(StatusCode::OK, views::lead(&lead, app.live.is_connected(&id)))),
        None => Ok(html(StatusCode::NOT_FOUND, views::notice("Not found", "No such lead."))),
    }
}

#[derive(Deserialize)]
struct ReplyForm {
    text: String,
}

/// A person answers a shopper: the message goes to every chat the visitor has open.
async fn reply_to_lead(
    app: web::Data<App>,
    req: HttpRequest,
    visitor: web::Path<String>,
    form: web::Form<ReplyForm>,
) -> actix_web::Result<HttpResponse> {
    let id = posted_about(&app, &req, &visitor).await?;
    let text = form.into_inner().text.trim().to_string();
    if text.is_empty() || text.chars().count() > app.config.max_message_chars {
        let limit = app.config.max_message_chars;
        return Err(actix_web::error::ErrorBadRequest(format!("write between 1 and {limit} characters")));
    }
    if app.live.send(&id, &text) == 0 {
        // With several nodes, the chat may be on another one: it gets the answer from there.
        let elsewhere = app
            .store
            .read(move |store| match store.connected_elsewhere(&id)? {
                true => store.post_agent_message(&id, &text).map(|()| true),
                false => Ok(false),
            })
            .await
            .map_err(store_error)?;
        if !elsewhere {
            let message = "The shopper is not in the chat any more; nothing was sent.";
            return Ok(html(StatusCode::CONFLICT, views::notice("Not sent", message)));
        }
    }
    Ok(secured(HttpResponse::SeeOther()).insert_header((header::LOCATION, format!("/admin/leads/{id}"))).finish())
}

/// Shoppers who asked for a person, most recent first, and whether they are still in the chat.
async fn handoffs_page(app: web::Data<App>, req: HttpRequest) -> actix_web::Result<HttpResponse> {
    require(&app, &req, Denied::Login).await?;
    let live = app.live.clone();
    let rows = app
        .store
        .read(move |store| {
            let all = store.visitors().collect::<Result<Vec<_>, _>>()?;
            let mut waiting: Vec<_> = all.into_iter().filter(|p| p.handoff_at.is_some()).collect();
            waiting.sort_by_key(|p| std::cmp::Reverse(p.handoff_at));
            waiting.truncate(PAGE_ROWS);
            // Connected here, or on another node sharing the database.
            waiting
                .into_iter()
                .map(|p| Ok((live.is_connected(&p.id) || store.connected_elsewhere(&p.id)?, p)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(store_error)?;
    Ok(html(StatusCode::OK, views::handoffs(&rows)))
}

/// A form posted about one lead: it needs a session, our own origin and a valid visitor id.
async fn posted_about(app: &App, req: &HttpRequest, visitor: &str) -> actix_web::Result<VisitorId> {
    require(app, req, Denied::Login).await?;
    if !same_origin(app, req) {
        let page = html(StatusCode::FORBIDDEN, views::notice("Refused", "This form was posted from another site."));
        return Err(actix_web::error::InternalError::from_response("foreign origin", page).into());
    }
    VisitorId::parse(visitor).map_err(|_| actix_web::error::ErrorBadRequest("not a visitor id"))
}

#[derive(serde::Deserialize)]
struct EraseForm {
    #[serde(default)]
    confirm: String,
}

/// Erases a lead on request (GDPR): everything stored about the visitor, at once, once the
/// marketer typed the lead's email address or id (one click erases nothing).
async fn erase_lead(
    app: web::Data<App>,
    req: HttpRequest,
    visitor: web::Path<String>,
    form: web::Form<EraseForm>,
) -> actix_web::Result<HttpResponse> {
    let visitor = posted_about(&app, &req, &visitor).await?;
    let profile = app.store.read(move |store| store.visitor(&visitor)).await.map_err(store_error)?;
    let Some(profile) = profile else {
        return Ok(html(StatusCode::NOT_FOUND, views::notice("Not found", "There is no such lead (any more).")));
    };
    let typed = form.confirm.trim().to_lowercase();
    let email = profile.preference("email").map(str::to_lowercase);
    if typed.is_empty() || (typed != visitor.to_string() && Some(&typed) != email.as_ref()) {
        let message = "Nothing was erased: type the lead's email address or id exactly to confirm.";
        return Ok(html(StatusCode::BAD_REQUEST, views::notice("Not erased", message)));
    }
    app.store.commit(vec![Command::Erase { visitor, at: now_ms() }]).await.map_err(store_error)?;
    crate::chat::forget_mail(&app.clone().into_inner(), visitor).await;
    log::info!("admin: erased visitor {visitor}");
    let message =
        format!("Lead {visitor} is erased: profile, conversations, email address and follow-ups are gone for good.");
    Ok(html(StatusCode::OK, views::notice("Erased", &message)))
}

async fn funnel_page(app: web::Data<App>, req: HttpRequest) -> actix_web::Result<HttpResponse> {
    require(&app, &req, Denied::Login).await?;
    let funnel = app.store.read(report::funnel).await.map_err(store_error)?;
    Ok(html(StatusCode::OK, views::funnel(&funnel)))
}

async fn funnel_api(app: web::Data<App>, req: HttpRequest) -> actix_web::Result<HttpResponse> {
    require(&app, &req, Denied::Api).await?;
    Ok(json(app.store.read(report::funnel).await.map_err(store_error)?))
}

async fn emails_page(app: web::Data<App>, req: HttpRequest) -> actix_web::Result<HttpResponse> {
    require(&app, &req, Denied::Login).await?;
    let rows = app
        .store
        .read(|store| {
            let mut items = store.follow_ups().collect::<Result<Vec<_>, _>>()?;
            items.reverse();
            items.truncate(PAGE_ROWS);
            let mut rows = Vec::new();
            for item in items {
                let to = store.visitor(&item.visitor)?.and_then(|p| p.preference("email").map(str::to_string));
                rows.push((item, to));
            }
            Ok(rows)
        })
        .await
        .map_err(store_error)?;
    Ok(html(StatusCode::OK, views::emails(&rows)))
}

async fn try_page(
    app: web::Data<App>,
    req: HttpRequest,
    query: web::Query<Filters>,
) -> actix_web::Result<HttpResponse> {
    require(&app, &req, Denied::Login).await?;
    let set = app.intents();
    let tried = given(&query.q).map(|text| {
        let message = intents::text::Message::new(&text);
        let locale = message.locale.unwrap_or("en");
        let route = set.route(&message, &|_| false);
        let normalized = message.normalized;
        let intent = &set.intents[route.intent];
        let reply = intent.reply(locale).variants.first().map(|t| t.render(|_| None)).unwrap_or_default();
        views::Tried { text, normalized, intent: intent.id.clone(), route, reply }
    });
    Ok(html(StatusCode::OK, views::try_it(tried.as_ref())))
}

async fn export_leads(
    app: web::Data<App>,
    req: HttpRequest,
    query: web::Query<Filters>,
) -> actix_web::Result<HttpResponse> {
    require(&app, &req, Denied::Api).await?;
    let filter = query.leads()?;
    csv_export(&app, "leads.csv", move |store, out| {
        export::leads(store, &filter, export::Format::Csv, false, out, |_, _| {})
    })
    .await
}

async fn export_audience(
    app: web::Data<App>,
    req: HttpRequest,
    query: web::Query<Filters>,
) -> actix_web::Result<HttpResponse> {
    require(&app, &req, Denied::Api).await?;
    let filter = query.leads()?;
    let platform = match given(&query.platform).as_deref() {
        Some("google") => Platform::Google,
        Some("meta") => Platform::Meta,
        other => {
            return Err(actix_web::error::ErrorBadRequest(format!(
                "platform {:?}: use platform=google or platform=meta",
                other.unwrap_or("")
            )));
        }
    };
    let name = format!("audience-{}-{}.csv", platform.name(), filter.slug());
    let (body, rows) = export_rows(&app, move |store, out| export::audience(store, &filter, platform, out)).await?;
    if rows == 0 {
        // An empty file would say nothing; this says why it is empty.
        let message = "Nobody in this selection has given consent to ads and an email address yet, \
                       so there is nothing to upload to the ad platform.";
        return Ok(html(StatusCode::OK, views::notice("Empty audience", message)));
    }
    Ok(csv(&name, body))
}

/// Runs an export into memory on the blocking pool and sends it as a CSV download.
async fn csv_export<F>(app: &App, name: &str, write: F) -> actix_web::Result<HttpResponse>
where
    F: FnOnce(&crate::store::Store, &mut Vec<u8>) -> Result<u64, export::ExportError> + Send + 'static,
{
    Ok(csv(name, export_rows(app, write).await?.0))
}

/// An export written into memory on the store's reader threads: the bytes and the rows.
async fn export_rows<F>(app: &App, write: F) -> actix_web::Result<(Vec<u8>, u64)>
where
    F: FnOnce(&crate::store::Store, &mut Vec<u8>) -> Result<u64, export::ExportError> + Send + 'static,
{
    app.store
        .read(move |store| {
            let mut out = Vec::new();
            // Writing into memory cannot fail; the store can.
            let rows = write(store, &mut out).map_err(|error| match error {
                export::ExportError::Store(e) => e,
                other => StoreError::Corrupt { tree: "export", reason: other.to_string() },
            })?;
            Ok((out, rows))
        })
        .await
        .map_err(store_error)
}
