//! The admin's HTML: plain server-rendered pages from maud templates, which escape every value
//! they are given (a shopper's name, a message, a campaign) by construction; the one script
//! (`live.js`) only reloads a lead page's chat part.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::domain::{Conversation, Entry, Handoff, OutboxItem, OutboxState, Profile, Speaker, Status};
use crate::export::rfc3339;
use crate::intents::{How, Route};

use super::PAGE_ROWS;
use super::report::{CampaignRow, Funnel, JourneyRow, SegmentRow};

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0 1.5rem 2rem;color:#222}\
nav{display:flex;gap:1rem;align-items:center;padding:.8rem 0;border-bottom:1px solid #ddd;margin-bottom:1rem}\
nav a{color:#0b57d0;text-decoration:none}nav form{margin-left:auto}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #eee;vertical-align:top}th{background:#f6f6f6}\
.bot{color:#555}.muted{color:#5f5f5f}.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:.5rem;background:#fff}form.filters{display:flex;gap:.5rem;flex-wrap:wrap;margin-bottom:1rem}\
.tag{background:#eef;border-radius:3px;padding:0 .3rem;margin-right:.2rem}\
svg{max-width:100%;height:auto}input,select,textarea{max-width:100%}\
@media (max-width:40rem){body{margin:0 .75rem 2rem}nav{flex-wrap:wrap;gap:.6rem}\
table,tbody,thead,tr,th,td{display:block;width:auto}tr{border-bottom:1px solid #ddd;padding:.4rem 0}\
th,td{border:0;padding:.1rem 0}td,th,p,li{overflow-wrap:anywhere}}";

/// A whole page: the style (our own constant, not data) and `main`.
fn document(title: &str, main: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { (title) " · Nudge admin" }
                style { (PreEscaped(STYLE)) }
            }
            body { (main) }
        }
    }
    .into_string()
}

fn layout(title: &str, body: Markup) -> String {
    document(
        title,
        html! {
            a.skip href="#main" { "Skip to content" }
            nav {
                strong { "Nudge" }
                a href="/admin" { "Leads" }
                a href="/admin/funnel" { "Funnel" }
                a href="/admin/handoffs" { "Handoffs" }
                a href="/admin/journeys" { "Journeys" }
                a href="/admin/segments" { "Segments" }
                a href="/admin/emails" { "Emails" }
                a href="/admin/try" { "Try it" }
                form method="post" action="/admin/logout" { button type="submit" { "Log out" } }
            }
            main #main { h1 { (title) } (body) }
        },
    )
}

pub fn login(problem: Option<&str>) -> String {
    document(
        "Log in",
        html! {
            main {
                h1 { "Nudge admin" }
                @if let Some(problem) = problem { p role="alert" { strong { (problem) } } }
                form method="post" action="/admin/login" {
                    p { label { "Password " input type="password" name="password" autocomplete="current-password" required autofocus; } }
                    p { label { "Your name, as shoppers see it when you answer " input name="name" autocomplete="name" maxlength="40"; } }
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

/// A page that only says something: a missing lead, a refused form, a shopper who left.
pub fn notice(title: &str, text: &str) -> String {
    layout(title, html! { p { (text) } })
}

/// What pages need to show values as the people reading them say them.
pub struct Context {
    /// The shop's `timezone`: every time is shown in it.
    pub zone: jiff::tz::TimeZone,
    /// Preferences read as the words of the quick reply that means them.
    pub intents: std::sync::Arc<crate::intents::IntentSet>,
    /// When the page is read, and how long a silent person still holds a chat.
    pub now: u64,
    pub idle: u64,
    /// The learned lead score, once fitted.
    pub learned: Option<std::sync::Arc<crate::leads::learned::Model>>,
}

impl Context {
    /// `2026-12-01 18:03 CET`, with the exact instant for machines.
    fn time(&self, ms: u64) -> Markup {
        let shown = i64::try_from(ms)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map(|t| t.to_zoned(self.zone.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_else(|| rfc3339(ms));
        html! { time datetime=(rfc3339(ms)) { (shown) } }
    }

    /// `running_shoes` as "running shoes": the English quick reply of the slot it answers.
    fn preference<'a>(&'a self, name: &str, value: &'a str) -> &'a str {
        self.intents.slot(name).map_or(value, |slot| slot.display("en", value))
    }

    /// The rule score, and the learned probability to buy beside it when there is a model.
    fn score(&self, p: &Profile) -> Markup {
        html! {
            (p.score)
            @if let Some(model) = &self.learned {
                " " span.muted { "· " (format!("{:.0}", 100.0 * model.probability(p))) "% to buy" }
            }
        }
    }

    /// `name: value` for each preference but the address and name, apart by `separator`.
    fn preferences(&self, p: &Profile, separator: Markup) -> Markup {
        let shown = p.preferences.iter().filter(|(name, _)| !matches!(name.as_str(), "email" | "name"));
        html! {
            @for (i, (name, pref)) in shown.enumerate() {
                @if i > 0 { (separator) }
                (name) ": " strong { (self.preference(name, &pref.value)) }
            }
        }
    }
}

fn tags(profile: &Profile) -> Markup {
    html! { @for tag in &profile.tags { span.tag { (tag) } } }
}

fn consent(cx: &Context, profile: &Profile) -> Markup {
    let yes = |given: bool| if given { "yes" } else { "no" };
    html! {
        @match &profile.consent {
            Some(c) => {
                "email " (yes(c.marketing)) " · ads " (yes(c.ads)) " "
                span.muted { "(" (c.source) ", " (cx.time(c.at)) ")" }
            }
            None => span.muted { "not asked" }
        }
    }
}

/// A lead by email or name; one who gave neither by the end of its id (the start is its time,
/// alike for visitors of the same hour).
fn lead_name(profile: &Profile) -> String {
    let id = profile.id.to_string();
    let short = id.get(id.len().saturating_sub(8)..).unwrap_or(&id).to_string();
    profile
        .preference("email")
        .or(profile.preference("name"))
        .map_or_else(|| format!("visitor …{short}"), str::to_string)
}

/// The leads page: `total` when the indexes know it, `next` the cursor of the following page.
pub fn leads(cx: &Context, query: &super::Query, page: &super::Page) -> String {
    let (filter, leads) = (&query.filter, &page.leads);
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let segment = filter.segment.as_ref().map_or("", |s| s.id.as_str());
    let filters = format!(
        "status={}&campaign={}&source={}&medium={}&tag={}&segment={}",
        filter.status.map_or("", Status::as_str),
        url_encode(filter.campaign.as_deref().unwrap_or("")),
        url_encode(filter.source.as_deref().unwrap_or("")),
        url_encode(filter.medium.as_deref().unwrap_or("")),
        url_encode(filter.tag.as_deref().unwrap_or("")),
        url_encode(segment),
    );
    let visitors = if query.everyone { "all" } else { "known" };
    let here = format!("{filters}&visitors={visitors}&sort={}", query.sort.name());
    let count = match page.total {
        Some(total) if total > leads.len() => format!("{total} leads, {} shown", leads.len()),
        Some(total) => format!("{total} leads"),
        None => format!("{} leads shown", leads.len()),
    };
    let body = html! {
        form.filters method="get" action="/admin" {
            select name="status" aria-label="Status" {
                option value="" { "any status" }
                @for status in Status::ALL { option selected[filter.status == Some(status)] { (status.as_str()) } }
            }
            input name="campaign" placeholder="campaign" aria-label="Campaign" value=(value(&filter.campaign));
            input name="source" placeholder="utm source" aria-label="UTM source" value=(value(&filter.source));
            input name="medium" placeholder="utm medium" aria-label="UTM medium" value=(value(&filter.medium));
            input name="tag" placeholder="tag" aria-label="Tag" value=(value(&filter.tag));
            @if let Some(s) = &filter.segment {
                input type="hidden" name="segment" value=(s.id);
                " in segment " strong { (s.id) } " "
            }
            label {
                "Sort by "
                select name="sort" {
                    @for (sort, name) in super::Sort::ALL {
                        option value=(name) selected[query.sort == sort] { (name.replace('_', " ")) }
                    }
                }
            }
            label { input type="checkbox" name="visitors" value="all" checked[query.everyone]; " also visitors who told us nothing" }
            button type="submit" { "Filter" }
        }
        p {
            (count)
            @if page.hidden > 0 {
                @let one = page.hidden == 1;
                "; " (page.hidden) " visitor" @if !one { "s" } " who only opened the chat " (if one { "is" } else { "are" })
                " not listed (" a href={ "/admin?" (filters) "&visitors=all&sort=" (query.sort.name()) } { "show them" } ")"
            }
            ". Export: " a href={ "/admin/export/leads.csv?" (filters) } { "leads CSV" } " · "
            a href={ "/admin/export/audience.csv?platform=google&" (filters) } { "Google audience" } " · "
            a href={ "/admin/export/audience.csv?platform=meta&" (filters) } { "Meta audience" }
            " (hashed emails, ads consent only)"
        }
        table {
            thead { tr {
                th { "Lead" } th { "Status" } th { "Score" } th { "Preferences" } th { "Tags" }
                th { "Campaign" } th { "Source / medium" } th { "Consent" } th { "Last seen" }
            } }
            tbody {
                @for p in leads {
                    @let utm = |k: &str| p.utm.get(k).map_or("-", String::as_str);
                    tr {
                        td { a href={ "/admin/leads/" (p.id) } { (lead_name(p)) } }
                        td { (p.status.as_str()) }
                        td { (cx.score(p)) }
                        td { (cx.preferences(p, html! { br; })) }
                        td { (tags(p)) }
                        td { (p.campaign.as_deref().unwrap_or("")) }
                        td { (utm("source")) " / " (utm("medium")) }
                        td { (consent(cx, p)) }
                        td { (cx.time(p.last_seen_at)) }
                    }
                }
            }
        }
        @if let Some(next) = &page.next {
            p { a href={ "/admin?" (here) "&after=" (url_encode(&next.to_string())) } { "Older leads" } }
        }
    };
    layout("Leads", body)
}

/// A lead with everything the detail page shows.
pub struct Lead {
    pub profile: Profile,
    pub conversations: Vec<(Conversation, Vec<Entry>)>,
    pub follow_ups: Vec<OutboxItem>,
    /// Whether the shopper has a chat open (on any node).
    pub connected: bool,
}

/// A lead's page. `sent`: a person's answer just went out. The chat part stays current through
/// `live.js` (the only script of the admin), which reads `live` again.
pub fn lead(cx: &Context, lead: &Lead, sent: bool) -> String {
    let p = &lead.profile;
    let body = html! {
        p {
            "Visitor " code { (p.id) } " · status " strong { (p.status.as_str()) } " · score " (cx.score(p))
            " · campaign " (p.campaign.as_deref().unwrap_or("none")) " · " (p.visits) " visits"
        }
        p { "Consent: " (consent(cx, p)) }
        p { "Tags: " (tags(p)) }
        div #live data-src={ "/admin/leads/" (p.id) "/live" } { (live_part(cx, lead)) }
        @if sent { p role="status" { strong { "Sent." } " The shopper has your answer." } }
        form method="post" action={ "/admin/leads/" (p.id) "/reply" } {
            p {
                label { "Answer in the chat as a person " input name="text" size="60" maxlength="1000" required; }
                " " button type="submit" { "Send" }
            }
        }
        h2 { "Funnel" }
        ul { @for (status, at) in &p.status_at { li { (status.as_str()) " at " (cx.time(*at)) } } }
        h2 { "Preferences" }
        table {
            tr { th { "Name" } th { "Value" } th { "When" } th { "From the message" } }
            @for (name, pref) in &p.preferences {
                tr {
                    td { (name) }
                    td { strong { (cx.preference(name, &pref.value)) } " " span.muted { (pref.value) } }
                    td { (cx.time(pref.at)) }
                    td.muted { (pref.message) }
                }
            }
        }
        h2 { "Follow-up emails" }
        (outbox_table(cx, lead.follow_ups.iter().map(|i| (i, None))))
        h2 { "Erase" }
        form method="post" action={ "/admin/leads/" (p.id) "/erase" } {
            p {
                "Removes this lead's profile, conversations, email address and follow-ups for good (orders \
                 stay, without a link to them). It cannot be undone."
            }
            p {
                label for="confirm" { "To confirm, type this lead's email address (or its id, " (p.id) ")" }
                br;
                input #confirm name="confirm" required autocomplete="off";
            }
            button type="submit" { "Erase this lead" }
        }
        script src="/admin/live.js" defer {}
    };
    layout(&lead_name(p), body)
}

/// What changes on a lead's page while the shopper chats (`/admin/leads/{id}/live`).
pub fn live(cx: &Context, lead: &Lead) -> String {
    live_part(cx, lead).into_string()
}

/// Whether the shopper is in the chat, who has it, and the conversations.
fn live_part(cx: &Context, lead: &Lead) -> Markup {
    let p = &lead.profile;
    let take = |label: &str| {
        html! { form method="post" action={ "/admin/leads/" (p.id) "/take" } { button type="submit" { (label) } } }
    };
    html! {
        p {
            @if lead.connected { "In the chat now." } @else { "Not in the chat right now." }
            @if let Some(at) = p.handoff_at { " Asked for a person at " (cx.time(at)) "." }
        }
        @match p.handoff(cx.now, cx.idle) {
            Handoff::Taken(agent) => {
                p { strong { (agent.name) " has this chat" } " (since " (cx.time(agent.at)) "): the bot is quiet." }
                form method="post" action={ "/admin/leads/" (p.id) "/hand-back" } {
                    button type="submit" { "Hand back to the bot" }
                }
            }
            Handoff::Waiting => { p { strong { "Waiting for a person." } } (take("Take this chat")) }
            Handoff::None => { (take("Take over from the bot")) }
        }
        @for (conversation, transcript) in &lead.conversations {
            @let source = &conversation.source;
            h2 { "Conversation of " (cx.time(conversation.started_at)) }
            p.muted {
                "campaign " (source.campaign.as_deref().unwrap_or("-")) " · page " (source.page.as_deref().unwrap_or("-"))
                " · referrer " (source.referrer.as_deref().unwrap_or("-"))
            }
            table {
                @for entry in transcript {
                    @let (who, class) = match entry.from {
                        Speaker::Shopper => ("shopper", None),
                        Speaker::Bot => ("bot", Some("bot")),
                        Speaker::Agent => ("agent", None),
                    };
                    tr class=[class] {
                        td.muted { (cx.time(entry.at)) }
                        td { (who) }
                        td { (entry.text) }
                        td.muted { (route(entry)) }
                    }
                }
            }
        }
    }
}

/// How a bot's line was chosen: `intent · how · confidence · variant`.
fn route(entry: &Entry) -> String {
    let Some(intent) = &entry.intent else { return String::new() };
    let mut parts = vec![intent.clone()];
    parts.extend(entry.how.map(|h| how_name(h).to_string()));
    parts.extend(entry.confidence.map(|c| format!("{c:.2}")));
    parts.extend(entry.variant.map(|v| format!("variant {v}")));
    parts.join(" · ")
}

fn how_name(how: How) -> &'static str {
    match how {
        How::Slot => "answer",
        How::Pattern => "pattern",
        How::Examples => "examples",
        How::Fallback => "fallback",
    }
}

fn outbox_table<'a>(cx: &Context, rows: impl Iterator<Item = (&'a OutboxItem, Option<&'a str>)>) -> Markup {
    html! {
        table {
            tr { th { "Scheduled" } th { "Job" } th { "To" } th { "Due" } th { "State" } th { "Attempts" } th { "Last error" } }
            @for (item, to) in rows {
                tr {
                    td { (cx.time(item.created_at)) }
                    td { (item.job.describe()) }
                    td { (to.unwrap_or("")) }
                    td { (cx.time(item.due_at)) }
                    td {
                        @match &item.state {
                            OutboxState::Pending => "pending",
                            OutboxState::Sent { at } => { "sent " (cx.time(*at)) }
                            OutboxState::Skipped { reason, .. } => { "skipped: " (reason) }
                            OutboxState::Cancelled { reason, .. } => { "cancelled: " (reason) }
                            OutboxState::Dead { error, .. } => { "dead: " (error) }
                        }
                    }
                    td { (item.attempts) }
                    td.muted { (item.last_error.as_deref().unwrap_or("")) }
                }
            }
        }
    }
}

/// The inbox: chats waiting for a person first, then the ones people have.
pub fn handoffs(cx: &Context, rows: &[(bool, Profile)]) -> String {
    let body = html! {
        p {
            "Shoppers who asked for a person: waiting first (longest first), then the chats people have. Take \
             one to answer; while you have it, the bot is quiet."
        }
        table {
            tr { th { "Lead" } th { "Asked at" } th { "In the chat" } th { "Who has it" } th { "Status" } th { "Preferences" } }
            @for (connected, p) in rows {
                tr {
                    td { a href={ "/admin/leads/" (p.id) } { (lead_name(p)) } }
                    td { @if let Some(at) = p.handoff_at { (cx.time(at)) } }
                    td { (if *connected { "yes" } else { "no" }) }
                    @match p.handoff(cx.now, cx.idle) {
                        Handoff::Taken(agent) => td { (agent.name) }
                        _ => td {
                            form method="post" action={ "/admin/leads/" (p.id) "/take" } { button type="submit" { "Take" } }
                        }
                    }
                    td { (p.status.as_str()) }
                    td { (cx.preferences(p, html! { ", " })) }
                }
            }
        }
    };
    layout("Handoffs", body)
}

pub fn emails(cx: &Context, rows: &[(OutboxItem, Option<String>)]) -> String {
    let body = html! {
        p { "Follow-up emails, newest first (at most " (PAGE_ROWS) ")." }
        (outbox_table(cx, rows.iter().map(|(item, to)| (item, to.as_deref()))))
    };
    layout("Email queue", body)
}

/// Bars drawn on the server (no scripts; the admin's CSP stays): one group per row, one bar per
/// series, with a title and a description for screen readers; the page has the table beside it.
/// (SVG elements are closed explicitly: in HTML only the SVG parser's `/>` would close them.)
fn bar_chart(id: &str, title: &str, desc: &str, series: &[(&str, &str)], groups: &[(String, Vec<u64>)]) -> Markup {
    let (bar, gap, label, width) = (14.0, 10.0, 140.0, 460.0);
    let most = groups.iter().flat_map(|(_, values)| values.iter().copied()).max().unwrap_or(0).max(1) as f64;
    let group = series.len() as f64 * bar + gap;
    let height = group * groups.len() as f64 + 30.0;
    let w = label + width + 60.0;
    html! {
        svg role="img" aria-labelledby={ (id) "-title " (id) "-desc" } width=(w) height=(height) viewBox={ "0 0 " (w) " " (height) } {
            title id={ (id) "-title" } { (title) }
            desc id={ (id) "-desc" } { (desc) }
            @for (i, (name, colour)) in series.iter().enumerate() {
                @let x = label + i as f64 * 115.0;
                rect x=(x) y="4" width="10" height="10" fill=(colour) {}
                text x=(x + 14.0) y="13" font-size="11" { (name) }
            }
            @for (i, (name, values)) in groups.iter().enumerate() {
                @let top = 24.0 + i as f64 * group;
                text x="0" y=(top + series.len() as f64 * bar / 2.0 + 4.0) font-size="12" { (name) }
                @for (j, (value, (_, colour))) in values.iter().zip(series).enumerate() {
                    @let y = top + j as f64 * bar;
                    @let w = (*value as f64 / most * width).max(1.0);
                    rect x=(label) y=(y) width=(format!("{w:.1}")) height=(bar - 2.0) fill=(colour) {}
                    text x=(format!("{:.1}", label + w + 4.0)) y=(y + bar - 4.0) font-size="11" { (value) }
                }
            }
        }
    }
}

/// Each variant's conversion rate as a dot on its 95 % interval, on one axis from 0 to the
/// highest upper end, so overlapping intervals show an undecided test at a glance.
fn interval_chart(id: &str, title: &str, rows: &[(String, f64, (f64, f64))]) -> Markup {
    let (label, width, row) = (180.0, 400.0, 22.0);
    let top = rows.iter().map(|(_, _, (_, high))| *high).fold(0.0, f64::max).max(0.01);
    let height = row * rows.len() as f64 + 30.0;
    let x = |v: f64| format!("{:.1}", label + v / top * width);
    let w = label + width + 70.0;
    html! {
        svg role="img" aria-labelledby={ (id) "-title " (id) "-desc" } width=(w) height=(height) viewBox={ "0 0 " (w) " " (height) } {
            title id={ (id) "-title" } { (title) }
            desc id={ (id) "-desc" } {
                "For each variant, its conversion rate as a dot on a line from the low to the high end of its 95 % \
                 credible interval; the table has the numbers."
            }
            @for (i, (name, rate, (low, high))) in rows.iter().enumerate() {
                @let y = 14.0 + i as f64 * row;
                text x="0" y=(y + 4.0) font-size="12" { (name) }
                line x1=(x(*low)) x2=(x(*high)) y1=(y) y2=(y) stroke="#5c86c4" stroke-width="3" {}
                circle cx=(x(*rate)) cy=(y) r="5" fill="#163a6b" {}
                text x=(format!("{:.1}", label + high / top * width + 6.0)) y=(y + 4.0) font-size="11" {
                    (format!("{:.1}%", 100.0 * rate))
                }
            }
            text x=(label) y=(height - 4.0) font-size="11" { "0%" }
            text x=(format!("{:.1}", label + width - 30.0)) y=(height - 4.0) font-size="11" { (format!("{:.1}%", 100.0 * top)) }
        }
    }
}

fn percent_interval((low, high): (f64, f64)) -> String {
    format!("{:.1}–{:.1}%", 100.0 * low, 100.0 * high)
}

fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

const BLUES: [&str; 4] = ["#9db4d6", "#5c86c4", "#2f5d9e", "#163a6b"];

fn funnel_chart(campaigns: &[CampaignRow]) -> Markup {
    let series: Vec<(&str, &str)> =
        ["visitors", "qualified", "checkout clicked", "converted"].into_iter().zip(BLUES).collect();
    let groups: Vec<(String, Vec<u64>)> = campaigns
        .iter()
        .map(|c| (c.campaign.clone(), vec![c.visitors, c.qualified, c.checkout_clicked, c.converted]))
        .collect();
    bar_chart(
        "funnel",
        "Funnel by campaign",
        "For each campaign, bars for visitors, qualified leads, checkout clicks and conversions, longest for the \
         most visitors; the table below has the numbers.",
        &series,
        &groups,
    )
}

/// A header row of plain column names.
fn header(names: &[&str]) -> Markup {
    html! { tr { @for name in names { th { (name) } } } }
}

/// Each journey: who entered, then per step the emails sent, opened, clicked and followed by an
/// order, drawn and tabled, with each variant's probability of being best.
pub fn journeys(rows: &[JourneyRow]) -> String {
    let series: Vec<(&str, &str)> = ["sent", "opened", "clicked", "converted"].into_iter().zip(BLUES).collect();
    let body = html! {
        p {
            "Journeys from " code { "intents/journeys/" } ". Opens count image loading, which some mail clients \
             do ahead of the reader: clicks are the surer signal. Converted: the visitor ordered after the email."
        }
        @if rows.is_empty() {
            p { "No journeys yet: add " code { "[[journey]]" } " to a file in " code { "intents/journeys/" } "." }
        }
        @for (i, journey) in rows.iter().enumerate() {
            h2 { (journey.journey) }
            p { (journey.description) " · " (journey.entered) " entered · " (journey.active) " on it now" }
            @let groups: Vec<(String, Vec<u64>)> = journey
                .steps
                .iter()
                .map(|s| (format!("step {}", s.step + 1), vec![s.sent, s.opened, s.clicked, s.converted]))
                .collect();
            (bar_chart(
                &format!("journey{i}"),
                &format!("Steps of {}", journey.journey),
                "For each step, bars for emails sent, opened, clicked and followed by an order; the table below \
                 has the numbers.",
                &series,
                &groups,
            ))
            table {
                (header(&["Step", "After", "Does", "Reached", "Ended here", "Variant", "Sent", "Opened", "Clicked",
                    "Converted", "95 % interval", "Revenue", "Probability best"]))
                @for step in &journey.steps {
                    @let head = html! {
                        td { (step.step + 1) } td { (step.after) } td { (step.action) } td { (step.reached) } td { (step.ended) }
                    };
                    @if step.variants.is_empty() {
                        tr { (head) td { "-" } td { "0" } td { "0" } td { "0" } td { "0" } td { "0.00" } td { "-" } }
                    }
                    @for v in &step.variants {
                        tr {
                            (head) td { (v.variant) } td { (v.sent) } td { (v.opened) } td { (v.clicked) } td { (v.converted) }
                            td { (percent_interval(v.interval)) } td { (format!("{:.2}", v.revenue)) }
                            td { (percent(v.probability_best)) @if v.winner { " (winner)" } }
                        }
                    }
                }
            }
            @let arms: Vec<(String, f64, (f64, f64))> = journey
                .steps
                .iter()
                .flat_map(|s| s.variants.iter().map(move |v| (s.step, v)))
                .map(|(step, v)| {
                    (format!("step {} · {}", step + 1, v.variant), v.converted as f64 / v.sent.max(1) as f64, v.interval)
                })
                .collect();
            @if !arms.is_empty() {
                (interval_chart(&format!("journey{i}-variants"), &format!("Conversion after each email of {}", journey.journey), &arms))
            }
        }
    };
    layout("Journeys", body)
}

pub fn segments(rows: &[SegmentRow], learned: Option<&crate::leads::learned::Model>) -> String {
    let body = html! {
        p { "Segments from " code { "intents/journeys/" } ", with how many visitors are in each now." }
        table {
            (header(&["Segment", "Description", "Visitors", "Export"]))
            @for row in rows {
                @let id = url_encode(&row.segment);
                tr {
                    td { a href={ "/admin?segment=" (id) "&visitors=all" } { (row.segment) } }
                    td { (row.description) }
                    td { (row.size) }
                    td {
                        a href={ "/admin/export/leads.csv?segment=" (id) } { "CSV" } " · "
                        a href={ "/admin/export/audience.csv?platform=google&segment=" (id) } { "Google" } " · "
                        a href={ "/admin/export/audience.csv?platform=meta&segment=" (id) } { "Meta" }
                    }
                }
            }
        }
        h2 { "Learned lead score" }
        @match learned {
            None => p {
                "Not fitted yet: it needs at least " (crate::leads::learned::MIN_EACH) " visitors who bought and "
                (crate::leads::learned::MIN_EACH) " who did not. Until then segments with "
                code { "min_buy_probability" } " hold for nobody."
            }
            Some(model) => {
                p {
                    "The probability to buy, fitted (logistic regression) to the outcomes of " (model.visitors)
                    " visitors, " (model.buyers) " of whom bought; refitted every journey sweep. Weights (log-odds; \
                     positive means likelier to buy):"
                }
                table {
                    (header(&["What is known", "Weight"]))
                    @for (name, weight) in model.explained() { tr { td { (name) } td { (format!("{weight:+.2}")) } } }
                }
            }
        }
    };
    layout("Segments", body)
}

pub fn funnel(funnel: &Funnel) -> String {
    let rate = |part: u64, whole: u64| {
        if whole == 0 { "-".to_string() } else { percent(part as f64 / whole as f64) }
    };
    let money = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let winner = |w: bool| if w { "winner" } else { "" };
    let one = |name: &'static str| [(name, BLUES[2])];
    let orders: Vec<(String, Vec<u64>)> = funnel.daily.iter().map(|d| (d.date.clone(), vec![d.orders])).collect();
    let revenue: Vec<(String, Vec<u64>)> =
        funnel.daily.iter().map(|d| (d.date.clone(), vec![d.revenue.round().max(0.0) as u64])).collect();
    let email_arms: Vec<(String, f64, (f64, f64))> = funnel
        .emails
        .iter()
        .map(|r| (format!("{} · {}", r.email, r.variant), r.converted as f64 / r.sent.max(1) as f64, r.interval))
        .collect();
    let reply_arms: Vec<(String, f64, (f64, f64))> = funnel
        .variants
        .iter()
        .map(|r| (format!("{} · {}", r.intent, r.variant), r.converted as f64 / r.visitors.max(1) as f64, r.interval))
        .collect();
    let body = html! {
        h2 { "By campaign" }
        (funnel_chart(&funnel.campaigns))
        table {
            (header(&["Campaign", "Visitors", "Qualified", "Checkout clicked", "Converted", "Conversion", "Orders",
                "Revenue", "Spend", "ROAS", "Cost per lead", "Cost per conversion"]))
            @for row in &funnel.campaigns {
                @let currency = row.currency.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
                tr {
                    td { (row.campaign) } td { (row.visitors) } td { (row.qualified) } td { (row.checkout_clicked) }
                    td { (row.converted) } td { (rate(row.converted, row.visitors)) } td { (row.orders) }
                    td { (format!("{:.2}", row.revenue)) (currency) } td { (format!("{:.2}", row.spend)) (currency) }
                    td { (money(row.roas)) } td { (money(row.cost_per_lead)) } td { (money(row.cost_per_conversion)) }
                }
            }
        }
        h2 { "Conversions by day" }
        (bar_chart("daily-orders", "Orders by day", "One bar per day with orders; the table below has the numbers.",
            &one("orders"), &orders))
        (bar_chart("daily-revenue", "Revenue by day",
            "One bar per day with orders, its revenue rounded; the table below has the numbers.", &one("revenue"), &revenue))
        table {
            (header(&["Day (UTC)", "Orders", "Revenue"]))
            @for day in &funnel.daily { tr { td { (day.date) } td { (day.orders) } td { (format!("{:.2}", day.revenue)) } } }
        }
        h2 { "Follow-up emails" }
        p {
            "Opens count an email's image loading, which some mail clients do ahead of the reader: clicks are the \
             surer signal. Probability best is by conversion."
        }
        @if !email_arms.is_empty() { (interval_chart("email-variants", "Conversion after each email variant", &email_arms)) }
        table {
            (header(&["Email", "Variant", "Sent", "Opened", "Clicked", "Click rate", "Converted after", "95 % interval",
                "Revenue", "Probability best", "Winner"]))
            @for row in &funnel.emails {
                tr {
                    td { (row.email) } td { (row.variant) } td { (row.sent) } td { (row.opened) } td { (row.clicked) }
                    td { (rate(row.clicked, row.sent)) } td { (row.converted) } td { (percent_interval(row.interval)) }
                    td { (format!("{:.2}", row.revenue)) } td { (percent(row.probability_best)) } td { (winner(row.winner)) }
                }
            }
        }
        h2 { "By reply variant (A/B)" }
        p {
            "Probability best: the chance a variant converts better than every other of its intent. A winner is \
             named once each variant was shown to 100 visitors and one is best at 95 %."
        }
        @if !reply_arms.is_empty() { (interval_chart("reply-variants", "Conversion after each reply variant", &reply_arms)) }
        table {
            (header(&["Intent", "Variant", "Visitors shown", "Converted", "Conversion", "95 % interval",
                "Probability best", "Winner"]))
            @for row in &funnel.variants {
                tr {
                    td { (row.intent) } td { (row.variant) } td { (row.visitors) } td { (row.converted) }
                    td { (rate(row.converted, row.visitors)) } td { (percent_interval(row.interval)) }
                    td { (percent(row.probability_best)) } td { (winner(row.winner)) }
                }
            }
        }
        h2 { "Proactive triggers" }
        p {
            "Shown: the widget showed the teaser or opened the chat; engaged: the shopper chatted through it; \
             qualified and converted: afterwards. Teasers of one trigger are judged by engagement."
        }
        table {
            (header(&["Trigger", "Variant", "Teaser", "Shown", "Engaged", "Engagement", "95 % interval", "Qualified",
                "Converted", "Probability best", "Winner"]))
            @for row in &funnel.triggers {
                tr {
                    td { (row.trigger) } td { (row.variant) } td { (row.teaser.as_deref().unwrap_or("-")) }
                    td { (row.shown) } td { (row.engaged) } td { (rate(row.engaged, row.shown)) }
                    td { (percent_interval(row.interval)) } td { (row.qualified) } td { (row.converted) }
                    td { (percent(row.probability_best)) } td { (winner(row.winner)) }
                }
            }
        }
    };
    layout("Funnel", body)
}

/// A message tried in the "try it" box and where it routed.
pub struct Tried {
    pub text: String,
    pub normalized: String,
    pub intent: String,
    pub route: Route,
    pub reply: String,
}

pub fn try_it(tried: Option<&Tried>) -> String {
    let body = html! {
        form method="get" action="/admin/try" {
            input name="q" size="60" placeholder="a shopper's message" value=(tried.map_or("", |t| t.text.as_str())) autofocus;
            " " button type="submit" { "Route" }
        }
        @if let Some(t) = tried {
            table {
                tr { th { "Intent" } td { strong { (t.intent) } } }
                tr { th { "How" } td { (how_name(t.route.how)) } }
                tr { th { "Confidence" } td { (format!("{:.2}", t.route.confidence)) } }
                tr { th { "Normalized" } td { code { (t.normalized) } } }
                tr { th { "Reply" } td { (t.reply) } }
            }
            p.muted { "Routed as a new visitor with no preferences; flows and slot answers depend on the conversation." }
        }
    };
    layout("Try it", body)
}

fn url_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
