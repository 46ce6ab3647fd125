//! `/admin`: the marketer's pages, their JSON API and CSV exports, all behind one password.
//! A login sets a signed session cookie (HttpOnly, SameSite=Strict, Path=/admin, Secure when the
//! public URL is https, 12 hours); logins are rate-limited per address; POSTs from other origins
//! are refused; every page is sent with headers that forbid framing, scripts and caching.

mod auth;
pub mod report;
mod views;

pub use auth::Logins;
use auth::{Person, person, same_origin};

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::app::App;
use crate::chat::agents::FromPerson;
use crate::domain::{Agent, Change, Status};
use crate::export::{self, LeadFilter, Platform};
use crate::ids::VisitorId;
use crate::intents;
use crate::leads::learned::Model;
use crate::store::{Command, Seen, StoreError};

/// Rows shown on a page; the exports have everything.
pub const PAGE_ROWS: usize = 500;

/// No scripts at all; inline styles only; forms post only to us; never framed.
const ADMIN_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// A lead's page, which keeps its chat current: the same, plus our own `live.js` and its reads.
const LIVE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// Reads a lead page's live part again every two seconds; the HTML comes escaped from the server.
const LIVE_JS: &str = "(function(){var live=document.getElementById('live');if(!live)return;var last=null;\
setInterval(function(){fetch(live.dataset.src,{credentials:'same-origin',cache:'no-store'})\
.then(function(r){return r.ok?r.text():null}).then(function(html){if(html!==null&&html!==last){\
last=html;live.innerHTML=html}}).catch(function(){})},2000)})();";

/// The admin's routes, in one table: the router and the test that walks every route logged
/// out read the same list. All of them are behind `auth::guard`.
macro_rules! admin_routes {
    ($(($method:ident, $path:literal, $handler:expr)),* $(,)?) => {
        /// Every route under `/admin`: method and path.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), concat!("/admin", $path))),*];

        pub fn routes(cfg: &mut web::ServiceConfig) {
            cfg.service(
                web::scope("/admin")
                    .wrap(actix_web::middleware::from_fn(auth::guard))
                    $(.route($path, web::$method().to($handler)))*,
            );
        }
    };
}

admin_routes![
    (get, "/login", auth::login_page),
    (post, "/login", auth::login),
    (post, "/logout", auth::logout),
    (get, "", leads_page),
    (get, "/leads/{visitor}", lead_page),
    (post, "/leads/{visitor}/erase", erase_lead),
    (post, "/leads/{visitor}/reply", reply_to_lead),
    (post, "/leads/{visitor}/take", take_chat),
    (post, "/leads/{visitor}/hand-back", hand_back_chat),
    (get, "/leads/{visitor}/live", lead_live),
    (get, "/live.js", live_script),
    (get, "/handoffs", handoffs_page),
    (get, "/funnel", funnel_page),
    (get, "/journeys", journeys_page),
    (get, "/segments", segments_page),
    (get, "/api/journeys", journeys_api),
    (get, "/api/segments", segments_api),
    (get, "/emails", emails_page),
    (get, "/try", try_page),
    (get, "/api/leads", leads_api),
    (get, "/api/funnel", funnel_api),
    (get, "/export/leads.csv", export_leads),
    (get, "/export/audience.csv", export_audience),
];

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
    source: Option<String>,
    medium: Option<String>,
    /// A segment's id (`intents/journeys/`).
    segment: Option<String>,
    /// `all`: every visitor; `known`: only those who told us something (the leads page's
    /// default; the API lists all).
    visitors: Option<String>,
    /// `last_seen` (default), `score` or `status`.
    sort: Option<String>,
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

/// The order of the leads list.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Seen last first, page by page through the last-seen index.
    LastSeen,
    /// Highest first: reads every lead that passes the filter, shows the first page.
    Score,
    Status,
}

impl Sort {
    pub const ALL: [(Sort, &'static str); 3] =
        [(Sort::LastSeen, "last_seen"), (Sort::Score, "score"), (Sort::Status, "status")];

    pub fn name(self) -> &'static str {
        Sort::ALL.iter().find(|(s, _)| *s == self).map_or("last_seen", |(_, n)| n)
    }
}

/// What a leads page asks for.
pub struct Query {
    pub filter: LeadFilter,
    /// Visitors who only opened the chat are listed too.
    pub everyone: bool,
    pub sort: Sort,
}

impl Filters {
    fn leads(&self, app: &App) -> Result<LeadFilter, actix_web::Error> {
        let intents = app.intents();
        let journeys = &intents.journeys;
        let segment = match given(&self.segment) {
            Some(id) => Some(journeys.segment(&id).cloned().ok_or_else(|| {
                let known: Vec<&str> = journeys.segments.iter().map(|s| s.id.as_str()).collect();
                actix_web::error::ErrorBadRequest(format!("unknown segment {id:?} (known: {})", known.join(", ")))
            })?),
            None => None,
        };
        let status = match given(&self.status) {
            Some(s) => Some(Status::parse(&s).ok_or_else(|| {
                actix_web::error::ErrorBadRequest(format!(
                    "unknown status {s:?} (chatting, qualified, checkout_clicked, converted)"
                ))
            })?),
            None => None,
        };
        Ok(LeadFilter {
            status,
            campaign: given(&self.campaign),
            tag: given(&self.tag),
            source: given(&self.source),
            medium: given(&self.medium),
            segment,
            model: app.learned(),
            now: app.now_ms(),
        })
    }

    /// The page's query; `everyone` unless `visitors` says otherwise.
    fn query(&self, app: &App, everyone: bool) -> Result<Query, actix_web::Error> {
        let everyone = match given(&self.visitors).as_deref() {
            None => everyone,
            Some("all") => true,
            Some("known") => false,
            Some(other) => {
                return Err(actix_web::error::ErrorBadRequest(format!("visitors {other:?}: use all or known")));
            }
        };
        let sort = match given(&self.sort) {
            None => Sort::LastSeen,
            Some(name) => Sort::ALL.iter().find(|(_, n)| *n == name).map(|(s, _)| *s).ok_or_else(|| {
                actix_web::error::ErrorBadRequest(format!("sort {name:?}: use last_seen, score or status"))
            })?,
        };
        Ok(Query { filter: self.leads(app)?, everyone, sort })
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
    /// The learned probability to buy, once a model is fitted.
    buy_probability: Option<f64>,
    tags: &'a std::collections::BTreeSet<String>,
    campaign: Option<&'a str>,
    /// `source`, `medium` and `campaign` of the last visit with UTM parameters.
    utm: &'a std::collections::BTreeMap<String, String>,
    preferences: std::collections::BTreeMap<&'a str, PreferenceBody<'a>>,
    consent: Option<ConsentBody<'a>>,
    /// The address the visitor confirmed (double opt-in), if any.
    confirmed_email: Option<&'a str>,
    handoff_at: Option<u64>,
    /// The name of the person who has the chat, while one has it.
    agent: Option<&'a str>,
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
            buy_probability: None,
            tags: &p.tags,
            campaign: p.campaign.as_deref(),
            utm: &p.utm,
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
            agent: p.agent.as_ref().map(|a| a.name.as_str()),
            orders: &p.orders,
        }
    }
}

/// A page of leads passing the filter.
pub struct Page {
    pub leads: Vec<crate::domain::Profile>,
    /// Where the next page starts, when there is one.
    pub next: Option<Seen>,
    /// How many pass in all, when the indexes can say without reading every lead (only for
    /// every visitor, filtered by status or campaign at most).
    pub total: Option<usize>,
    /// Visitors who only opened the chat, passed over while reading this page.
    pub hidden: usize,
}

/// One page of leads. Seen last first, it goes through the last-seen index: as many leads as the
/// page shows, plus the ones the filter skips on the way, never every lead. By score or status
/// it reads every lead that passes the filter and shows the first `limit`.
fn page(store: &crate::store::Store, query: &Query, after: Option<Seen>, limit: usize) -> Result<Page, StoreError> {
    let (filter, mut hidden) = (&query.filter, 0);
    let mut shown = |profile: &crate::domain::Profile| {
        if !filter.matches(profile) {
            return false;
        }
        let known = query.everyone || profile.told_us_something();
        hidden += usize::from(!known);
        known
    };
    let mut leads = Vec::new();
    let mut next = None;
    if query.sort == Sort::LastSeen {
        for found in store.visitors_by_last_seen(after) {
            let (seen, profile) = found?;
            if !shown(&profile) {
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
    } else {
        for profile in filter.profiles(store) {
            let profile = profile?;
            if shown(&profile) {
                leads.push(profile);
            }
        }
        leads.sort_by_key(|p| {
            let key = if query.sort == Sort::Score { p.score } else { p.status as i64 };
            (std::cmp::Reverse(key), std::cmp::Reverse(p.last_seen_at))
        });
        leads.truncate(limit);
    }
    let total = match (&filter.status, &filter.campaign) {
        _ if !query.everyone || !filter.indexed() => None,
        (Some(_), Some(_)) => None,
        (Some(status), None) => Some(store.count_with_status(*status)),
        (None, Some(campaign)) => Some(store.count_in_campaign(campaign)),
        (None, None) => Some(store.visitor_count()),
    };
    Ok(Page { leads, next, total, hidden })
}

/// The page the query asks for; a bad `after` is a 400 with the reason.
async fn read_page(app: &App, filters: &Filters, everyone: bool) -> actix_web::Result<(Query, Page)> {
    let query = filters.query(app, everyone)?;
    let after = match given(&filters.after) {
        Some(after) => Some(Seen::parse(&after).ok_or_else(|| {
            actix_web::error::ErrorBadRequest("`after` is the `next` of an earlier page (`<ms>-<visitor>`)")
        })?),
        None => None,
    };
    let limit = filters.limit.unwrap_or(PAGE_ROWS).clamp(1, PAGE_ROWS);
    let (page, query) = app
        .store
        .read(move |store| page(store, &query, after, limit).map(|page| (page, query)))
        .await
        .map_err(store_error)?;
    Ok((query, page))
}

async fn leads_page(app: web::Data<App>, filters: web::Query<Filters>) -> actix_web::Result<HttpResponse> {
    let (query, page) = read_page(&app, &filters, false).await?;
    Ok(html(StatusCode::OK, views::leads(&views_context(&app), &query, &page)))
}

async fn leads_api(app: web::Data<App>, query: web::Query<Filters>) -> actix_web::Result<HttpResponse> {
    let (_, page) = read_page(&app, &query, true).await?;
    let next = page.next.map(|n| n.to_string());
    let model = app.learned();
    let leads: Vec<LeadBody> = page
        .leads
        .iter()
        .map(|p| LeadBody { buy_probability: model.as_ref().map(|m| m.probability(p)), ..LeadBody::from(p) })
        .collect();
    Ok(json(serde_json::json!({ "total": page.total, "leads": leads, "next": next })))
}

#[derive(Deserialize, Default)]
struct LeadQuery {
    /// Set by the redirect after a person's answer went out.
    sent: Option<String>,
}

async fn lead_page(
    app: web::Data<App>,
    visitor: web::Path<String>,
    query: web::Query<LeadQuery>,
) -> actix_web::Result<HttpResponse> {
    match read_lead(&app, &visitor, Part::Page).await? {
        Some(lead) => {
            let page = views::lead(&views_context(&app), &lead, query.sent.is_some());
            let response = html(StatusCode::OK, page);
            Ok(with_csp(response, LIVE_CSP))
        }
        None => Ok(html(StatusCode::NOT_FOUND, views::notice("Not found", "No such lead."))),
    }
}

/// The part of a lead's page that changes while the shopper chats, for `live.js`.
async fn lead_live(app: web::Data<App>, visitor: web::Path<String>) -> actix_web::Result<HttpResponse> {
    match read_lead(&app, &visitor, Part::Chat).await? {
        Some(lead) => Ok(secured(HttpResponse::Ok())
            .content_type("text/html; charset=utf-8")
            .body(views::live(&views_context(&app), &lead))),
        None => Err(actix_web::error::ErrorNotFound("no such lead")),
    }
}

async fn live_script() -> HttpResponse {
    secured(HttpResponse::Ok()).content_type("text/javascript; charset=utf-8").body(LIVE_JS)
}

fn with_csp(mut response: HttpResponse, csp: &'static str) -> HttpResponse {
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(csp));
    response
}

/// How much of a lead a request shows.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    /// The whole page: also the follow-ups (a read of the whole outbox).
    Page,
    /// The chat part `live.js` reads every 2 s.
    Chat,
}

/// A lead with its conversations (and, for the page, follow-ups), where the chat is and who has
/// it.
async fn read_lead(app: &App, visitor: &str, part: Part) -> actix_web::Result<Option<views::Lead>> {
    let id = VisitorId::parse(visitor).map_err(|_| actix_web::error::ErrorBadRequest("not a visitor id"))?;
    let live = app.live.clone();
    app.store
        .read(move |store| {
            let Some(profile) = store.visitor(&id)? else { return Ok(None) };
            let mut conversations = Vec::new();
            for conversation in store.conversations_of(&id)? {
                let transcript = store.transcript(&conversation.id)?;
                conversations.push((conversation, transcript));
            }
            let follow_ups: Vec<_> = match part {
                Part::Page => store
                    .follow_ups()
                    .filter(|i| i.as_ref().map_or(true, |i| i.visitor == id))
                    .collect::<Result<_, _>>()?,
                Part::Chat => Vec::new(),
            };
            let connected = live.is_connected(&id) || store.connected_elsewhere(&id)?;
            Ok(Some(views::Lead { profile, conversations, follow_ups, connected }))
        })
        .await
        .map_err(store_error)
}

fn idle_ms(app: &App) -> u64 {
    app.config.handoff_idle_secs.saturating_mul(1000)
}

/// How pages show times and preferences, now.
fn views_context(app: &App) -> views::Context {
    let zone = jiff::tz::TimeZone::get(&app.config.timezone.0).unwrap_or(jiff::tz::TimeZone::UTC);
    views::Context { zone, intents: app.intents(), now: app.now_ms(), idle: idle_ms(app), learned: app.learned() }
}

#[derive(Deserialize)]
struct ReplyForm {
    text: String,
}

/// A person answers a shopper: they take the chat (unless someone else has it), and the message
/// goes to every chat the visitor has open.
async fn reply_to_lead(
    app: web::Data<App>,
    req: HttpRequest,
    visitor: web::Path<String>,
    form: web::Form<ReplyForm>,
) -> actix_web::Result<HttpResponse> {
    let (id, me) = posted_by(&app, &req, &visitor).await?;
    let text = form.into_inner().text.trim().to_string();
    if text.is_empty() || text.chars().count() > app.config.max_message_chars {
        let limit = app.config.max_message_chars;
        return Err(actix_web::error::ErrorBadRequest(format!("write between 1 and {limit} characters")));
    }
    let gone = || {
        let message = "The shopper is not in the chat any more; nothing was sent.";
        html(StatusCode::CONFLICT, views::notice("Not sent", message))
    };
    // Checked before taking: answering a shopper who left must not leave them held by a person.
    if !connected(&app, id).await? {
        return Ok(gone());
    }
    let agent = match take(&app, id, &me).await? {
        Ok(agent) => agent,
        Err(refused) => return Ok(refused),
    };
    if !tell(&app, id, FromPerson::Answered { agent, text }).await? {
        return Ok(gone());
    }
    Ok(to_lead(id, "?sent=1"))
}

/// A person takes a waiting chat: the bot is quiet while they have it.
async fn take_chat(
    app: web::Data<App>,
    req: HttpRequest,
    visitor: web::Path<String>,
) -> actix_web::Result<HttpResponse> {
    let (id, me) = posted_by(&app, &req, &visitor).await?;
    match take(&app, id, &me).await? {
        Ok(agent) => {
            // A shopper who left meanwhile learns it when they come back (`hello`).
            tell(&app, id, FromPerson::Took { agent }).await?;
            Ok(to_lead(id, ""))
        }
        Err(refused) => Ok(refused),
    }
}

/// The person gives the chat back to the bot.
async fn hand_back_chat(
    app: web::Data<App>,
    req: HttpRequest,
    visitor: web::Path<String>,
) -> actix_web::Result<HttpResponse> {
    let (id, _) = posted_by(&app, &req, &visitor).await?;
    let at = app.now_ms();
    app.store
        .commit(vec![Command::Visitor { visitor: id, change: Change::HandBack { at } }])
        .await
        .map_err(store_error)?;
    tell(&app, id, FromPerson::HandedBack { at }).await?;
    Ok(to_lead(id, ""))
}

fn to_lead(id: VisitorId, query: &str) -> HttpResponse {
    secured(HttpResponse::SeeOther()).insert_header((header::LOCATION, format!("/admin/leads/{id}{query}"))).finish()
}

/// Takes the visitor's chat for `me` (or, holding it, says they are still there). The store
/// applies a take only when nobody else has the chat, so of two people racing one wins; the
/// other gets a 409 page naming who has it.
async fn take(app: &App, id: VisitorId, me: &Person) -> actix_web::Result<Result<Agent, HttpResponse>> {
    let now = app.now_ms();
    let agent = Agent { session: me.session.to_string(), name: me.name.clone(), at: now };
    let stale_before = now.saturating_sub(idle_ms(app));
    let change = Change::Take { agent: agent.clone(), stale_before };
    app.store.commit(vec![Command::Visitor { visitor: id, change }]).await.map_err(store_error)?;
    let profile = app.store.read(move |store| store.visitor(&id)).await.map_err(store_error)?;
    Ok(match profile.and_then(|p| p.agent) {
        Some(holder) if holder == agent => Ok(agent),
        Some(holder) => {
            let message = format!("{} has this chat; nothing was changed or sent.", holder.name);
            Err(html(StatusCode::CONFLICT, views::notice("Taken by someone else", &message)))
        }
        None => Err(html(StatusCode::NOT_FOUND, views::notice("Not found", "There is no such lead (any more)."))),
    })
}

/// Whether the visitor has a chat open, on this node or another.
async fn connected(app: &App, id: VisitorId) -> actix_web::Result<bool> {
    if app.live.is_connected(&id) {
        return Ok(true);
    }
    app.store.read(move |store| store.connected_elsewhere(&id)).await.map_err(store_error)
}

/// Tells the visitor's open chats what a person did: on this node, or through the store on the
/// node that has them. Whether any chat was there to tell.
async fn tell(app: &App, id: VisitorId, event: FromPerson) -> actix_web::Result<bool> {
    if app.live.send(&id, &event) > 0 {
        return Ok(true);
    }
    let json = serde_json::to_string(&event).map_err(actix_web::error::ErrorInternalServerError)?;
    app.store
        .read(move |store| match store.connected_elsewhere(&id)? {
            true => store.post_agent_message(&id, &json).map(|()| true),
            false => Ok(false),
        })
        .await
        .map_err(store_error)
}

/// The inbox: chats waiting for a person (oldest ask first), then the ones people have.
async fn handoffs_page(app: web::Data<App>) -> actix_web::Result<HttpResponse> {
    let (live, now, idle) = (app.live.clone(), app.now_ms(), idle_ms(&app));
    let rows = app
        .store
        .read(move |store| {
            let mut rows = Vec::new();
            for profile in store.visitors() {
                let profile = profile?;
                if profile.handoff(now, idle) == crate::domain::Handoff::None {
                    continue;
                }
                // Connected here, or on another node sharing the database.
                let connected = live.is_connected(&profile.id) || store.connected_elsewhere(&profile.id)?;
                rows.push((connected, profile));
            }
            rows.sort_by_key(|(_, p)| (p.handoff(now, idle) != crate::domain::Handoff::Waiting, p.handoff_at));
            rows.truncate(PAGE_ROWS);
            Ok(rows)
        })
        .await
        .map_err(store_error)?;
    Ok(html(StatusCode::OK, views::handoffs(&views_context(&app), &rows)))
}

/// A form a person posted about one lead: the lead and who posted it.
async fn posted_by(app: &App, req: &HttpRequest, visitor: &str) -> actix_web::Result<(VisitorId, Person)> {
    let id = posted_about(app, req, visitor).await?;
    Ok((id, person(app, req)?))
}

/// A form posted about one lead: it needs a session, our own origin and a valid visitor id.
async fn posted_about(app: &App, req: &HttpRequest, visitor: &str) -> actix_web::Result<VisitorId> {
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
    app.store.commit(vec![Command::Erase { visitor, at: app.now_ms() }]).await.map_err(store_error)?;
    crate::chat::forget_mail(&app.clone().into_inner(), visitor).await;
    log::info!("admin: erased visitor {visitor}");
    let message =
        format!("Lead {visitor} is erased: profile, conversations, email address and follow-ups are gone for good.");
    Ok(html(StatusCode::OK, views::notice("Erased", &message)))
}

async fn funnel_page(app: web::Data<App>) -> actix_web::Result<HttpResponse> {
    let funnel = funnel(&app).await?;
    Ok(html(StatusCode::OK, views::funnel(&funnel)))
}

/// Each journey with its steps' numbers.
async fn journey_rows(app: &App) -> actix_web::Result<Vec<report::JourneyRow>> {
    let intents = app.intents();
    app.store.read(move |store| report::journeys(store, &intents.journeys)).await.map_err(store_error)
}

async fn journeys_page(app: web::Data<App>) -> actix_web::Result<HttpResponse> {
    Ok(html(StatusCode::OK, views::journeys(&journey_rows(&app).await?)))
}

async fn journeys_api(app: web::Data<App>) -> actix_web::Result<HttpResponse> {
    Ok(json(serde_json::json!({ "journeys": journey_rows(&app).await? })))
}

/// The funnel, with a row for each of the pack's triggers.
async fn funnel(app: &App) -> actix_web::Result<report::Funnel> {
    let intents = app.intents();
    app.store.read(move |store| report::funnel(store, &intents.triggers)).await.map_err(store_error)
}

/// Each segment with its size now, and the learned model the sizes were judged with (read
/// once: the journey sweep refits it meanwhile).
async fn segment_rows(app: &App) -> actix_web::Result<(Vec<report::SegmentRow>, Option<Arc<Model>>)> {
    let (intents, model, now) = (app.intents(), app.learned(), app.now_ms());
    let judged = model.clone();
    let rows = app
        .store
        .read(move |store| {
            let at = crate::journeys::Moment { now, model: judged.as_deref() };
            report::segments(store, &intents.journeys, at)
        })
        .await
        .map_err(store_error)?;
    Ok((rows, model))
}

async fn segments_page(app: web::Data<App>) -> actix_web::Result<HttpResponse> {
    let (rows, model) = segment_rows(&app).await?;
    Ok(html(StatusCode::OK, views::segments(&rows, model.as_deref())))
}

async fn segments_api(app: web::Data<App>) -> actix_web::Result<HttpResponse> {
    let (rows, model) = segment_rows(&app).await?;
    Ok(json(serde_json::json!({ "segments": rows, "learned": model.as_deref() })))
}

async fn funnel_api(app: web::Data<App>) -> actix_web::Result<HttpResponse> {
    Ok(json(funnel(&app).await?))
}

async fn emails_page(app: web::Data<App>) -> actix_web::Result<HttpResponse> {
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
    Ok(html(StatusCode::OK, views::emails(&views_context(&app), &rows)))
}

async fn try_page(app: web::Data<App>, query: web::Query<Filters>) -> actix_web::Result<HttpResponse> {
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

async fn export_leads(app: web::Data<App>, query: web::Query<Filters>) -> actix_web::Result<HttpResponse> {
    let filter = query.leads(&app)?;
    csv_export(&app, "leads.csv", move |store, out| {
        export::leads(store, &filter, export::Format::Csv, false, out, |_, _| {})
    })
    .await
}

async fn export_audience(app: web::Data<App>, query: web::Query<Filters>) -> actix_web::Result<HttpResponse> {
    let filter = query.leads(&app)?;
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
