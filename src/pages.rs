//! The widget and the pages that carry it: `/widget.js`, `/chat` (hosted full-page chat, where
//! email links land) and `/demo` (a demo ad landing page). All are compiled into the binary.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const WIDGET_JS: &str = include_str!("../widget/widget.js");
const CHAT_HTML: &str = include_str!("../widget/chat.html");
const DEMO_HTML: &str = include_str!("../widget/demo.html");

/// Our own pages load only our script and talk only to our socket. Inline styles are allowed
/// because the widget styles its Shadow DOM with a `<style>` element.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/widget.js", web::get().to(widget))
        .route("/chat", web::get().to(|| page(CHAT_HTML)))
        .route("/demo", web::get().to(|| page(DEMO_HTML)))
        .route(
            "/",
            web::get().to(|| async { HttpResponse::SeeOther().insert_header((header::LOCATION, "/demo")).finish() }),
        );
}

async fn widget() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Landing pages on the shop's own domains load this script.
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(SERVED_WIDGET.as_str())
}

/// The widget as served: `widget/widget.js` without its comment lines and indentation (it is
/// written to be read, and served to stay small; there is no build step).
static SERVED_WIDGET: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| compact(WIDGET_JS));

/// Drops lines that are only a comment (`//`, or a `/* ... */` block that starts a line) and every
/// line's leading and trailing blanks. Nothing else changes, so the code runs the same.
fn compact(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut in_block = false;
    for line in source.lines().map(str::trim) {
        if in_block {
            in_block = !line.contains("*/");
            continue;
        }
        if line.starts_with("/*") {
            in_block = !line.contains("*/");
            continue;
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

async fn page(html: &'static str) -> HttpResponse {
    html_page(html)
}

/// An HTML page with the security headers every page of ours carries.
pub fn html_page(html: impl actix_web::body::MessageBody + 'static) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "strict-origin-when-cross-origin"))
        .body(html)
}

/// A small page of ours (link errors, unsubscribe), from a maud template.
pub fn document(title: &str, body: maud::Markup) -> String {
    maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; meta name="viewport" content="width=device-width"; title { (title) } }
            body { (body) }
        }
    }
    .into_string()
}

/// Text for HTML: element content or a quoted attribute value (of the emails' templates).
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_served_widget_keeps_its_code_and_drops_comments() {
        let source = "/* a\n * b */\n  var a = 'x // y'; // not a comment line\n  // gone\n\n  f();\n";
        assert_eq!(super::compact(source), "var a = 'x // y'; // not a comment line\nf();\n");
        assert!(super::SERVED_WIDGET.len() < 20_000, "the widget is {} bytes", super::SERVED_WIDGET.len());
    }
}
