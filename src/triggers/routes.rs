//! The widget's trigger routes: which triggers hold for this visitor, and which one it showed.
//! Both are public (the widget runs on the shop's pages, across origins). What only the server
//! knows of a visitor (segments, tags) is answered only to the widget holding its resume key.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::api::Failure;
use crate::app::App;
use crate::domain::Profile;
use crate::ids::VisitorId;
use crate::store::Command;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/widget/triggers", web::get().to(anyone))
        .route("/widget/triggers", web::post().to(for_visitor))
        .route("/widget/triggers/shown", web::post().to(shown));
}

/// The triggers whose conditions the widget can check alone (none on segments or tags).
async fn anyone(app: web::Data<App>) -> HttpResponse {
    let set = app.intents();
    let triggers: Vec<_> = set.triggers.iter().filter(|t| t.holds_for(None, |_, _| false)).collect();
    answer(StatusCode::OK, "public, max-age=60").json(serde_json::json!({ "triggers": triggers }))
}

/// A widget's visitor, proven by its resume key. Sent as a CORS-simple request (the body is
/// JSON whatever its content type says), so no preflight.
#[derive(Deserialize)]
struct Visitor {
    visitor: String,
    key: String,
}

/// The triggers that hold for this visitor: those for anyone, and those whose segment and tags
/// the visitor has now.
async fn for_visitor(app: web::Data<App>, body: web::Bytes) -> Result<HttpResponse, Failure> {
    let asked: Visitor = serde_json::from_slice(&body)
        .map_err(|e| Failure::json(StatusCode::BAD_REQUEST, format!("expected {{\"visitor\", \"key\"}}: {e}")))?;
    let id = VisitorId::parse(&asked.visitor)
        .map_err(|_| Failure::json(StatusCode::BAD_REQUEST, "`visitor` is not a visitor id"))?;
    let profile = app.store.read(move |store| store.visitor(&id)).await?;
    let profile = match profile {
        Some(p) if p.resumes_with(&asked.key) => Some(p),
        Some(_) => return Err(Failure::json(StatusCode::FORBIDDEN, "the key is not this visitor's")),
        None => None,
    };
    let (set, model, now) = (app.intents(), app.learned(), app.now_ms());
    let moment = crate::journeys::Moment { now, model: model.as_deref() };
    let in_segment = |id: &str, p: &Profile| set.journeys.segment(id).is_some_and(|s| s.contains(p, moment));
    let triggers: Vec<_> = set.triggers.iter().filter(|t| t.holds_for(profile.as_ref(), in_segment)).collect();
    Ok(answer(StatusCode::OK, "no-store").json(serde_json::json!({ "triggers": triggers })))
}

#[derive(Deserialize)]
struct Shown {
    trigger: String,
    #[serde(default)]
    variant: u32,
}

/// The widget showed a trigger: counted for the trigger's funnel. Anyone can post this, so the
/// count, like an email's opens, is only as honest as the pages that load the widget.
async fn shown(app: web::Data<App>, body: web::Bytes) -> Result<HttpResponse, Failure> {
    let shown: Shown = serde_json::from_slice(&body)
        .map_err(|e| Failure::json(StatusCode::BAD_REQUEST, format!("expected {{\"trigger\", \"variant\"}}: {e}")))?;
    let set = app.intents();
    let Some(trigger) = set.triggers.iter().find(|t| t.id == shown.trigger) else {
        return Err(Failure::json(StatusCode::BAD_REQUEST, format!("no trigger `{}`", shown.trigger)));
    };
    if shown.variant as usize >= trigger.variants() {
        let reason = format!("trigger `{}` has {} variant(s), from 0", trigger.id, trigger.variants());
        return Err(Failure::json(StatusCode::BAD_REQUEST, reason));
    }
    app.store.commit(vec![Command::TriggerShown { trigger: shown.trigger, variant: shown.variant }]).await?;
    Ok(answer(StatusCode::NO_CONTENT, "no-store").finish())
}

/// An answer any shop page may read.
fn answer(status: StatusCode, cache: &'static str) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).insert_header((header::CACHE_CONTROL, cache));
    response
}
