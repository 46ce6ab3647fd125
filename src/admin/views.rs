//! The admin's HTML: plain server-rendered pages; the one script (`live.js`) only reloads a lead
//! page's chat part. Every value from the store or the request goes through `escape_html`.

use std::fmt::Write;

use crate::domain::{Conversation, Entry, Handoff, OutboxItem, OutboxState, Profile, Speaker, Status};
use crate::export::rfc3339;
use crate::intents::{How, Route};
use crate::pages::{document, escape_html as e};

use super::PAGE_ROWS;
use super::report::{CampaignRow, Funnel, JourneyRow, SegmentRow};

const STYLE: &str = "<style>body{font:14px system-ui,sans-serif;margin:0 1.5rem 2rem;color:#222}\
nav{display:flex;gap:1rem;align-items:center;padding:.8rem 0;border-bottom:1px solid #ddd;margin-bottom:1rem}\
nav a{color:#0b57d0;text-decoration:none}nav form{margin-left:auto}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #eee;vertical-align:top}th{background:#f6f6f6}\
.bot{color:#555}.muted{color:#5f5f5f}.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:.5rem;background:#fff}form.filters{display:flex;gap:.5rem;flex-wrap:wrap;margin-bottom:1rem}\
.tag{background:#eef;border-radius:3px;padding:0 .3rem;margin-right:.2rem}\
svg{max-width:100%;height:auto}input,select,textarea{max-width:100%}\
@media (max-width:40rem){body{margin:0 .75rem 2rem}nav{flex-wrap:wrap;gap:.6rem}\
table,tbody,thead,tr,th,td{display:block;width:auto}tr{border-bottom:1px solid #ddd;padding:.4rem 0}\
th,td{border:0;padding:.1rem 0}td,th,p,li{overflow-wrap:anywhere}}</style>";

fn layout(title: &str, body: &str) -> String {
    let nav = "<nav><strong>Nudge</strong><a href=\"/admin\">Leads</a><a href=\"/admin/funnel\">Funnel</a>\
        <a href=\"/admin/handoffs\">Handoffs</a><a href=\"/admin/journeys\">Journeys</a><a href=\"/admin/segments\">Segments</a>\
        <a href=\"/admin/emails\">Emails</a><a href=\"/admin/try\">Try it</a>\
        <form method=post action=\"/admin/logout\"><button type=submit>Log out</button></form></nav>";
    document(
        &format!("{title} · Nudge admin"),
        &format!(
            "{STYLE}<a class=skip href=\"#main\">Skip to content</a>{nav}<main id=main><h1>{}</h1>{body}</main>",
            e(title)
        ),
    )
}

pub fn login(problem: Option<&str>) -> String {
    let problem = problem.map(|p| format!("<p role=alert><strong>{}</strong></p>", e(p))).unwrap_or_default();
    document(
        "Log in · Nudge admin",
        &format!(
            "{STYLE}<main><h1>Nudge admin</h1>{problem}<form method=post action=\"/admin/login\">\
             <p><label>Password <input type=password name=password autocomplete=current-password required autofocus></label></p>\
             <p><label>Your name, as shoppers see it when you answer <input name=name autocomplete=name maxlength=40></label></p>\
             <button type=submit>Log in</button></form></main>"
        ),
    )
}

/// A page that only says something: a missing lead, a refused form, a shopper who left.
pub fn notice(title: &str, text: &str) -> String {
    layout(title, &format!("<p>{}</p>", e(text)))
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
    fn time(&self, ms: u64) -> String {
        let shown = i64::try_from(ms)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map(|t| t.to_zoned(self.zone.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_else(|| rfc3339(ms));
        format!("<time datetime=\"{}\">{}</time>", e(&rfc3339(ms)), e(&shown))
    }

    /// `running_shoes` as "running shoes": the English quick reply of the slot it answers.
    fn preference<'a>(&'a self, name: &str, value: &'a str) -> &'a str {
        self.intents.slot(name).map_or(value, |slot| slot.display("en", value))
    }

    /// The rule score, and the learned probability to buy beside it when there is a model.
    fn score(&self, p: &Profile) -> String {
        match &self.learned {
            Some(model) => {
                format!("{} <span class=muted>· {:.0}% to buy</span>", p.score, 100.0 * model.probability(p))
            }
            None => p.score.to_string(),
        }
    }

    fn preferences(&self, p: &Profile) -> Vec<String> {
        p.preferences
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "email" | "name"))
            .map(|(name, pref)| format!("{}: <strong>{}</strong>", e(name), e(self.preference(name, &pref.value))))
            .collect()
    }
}

fn tags(profile: &Profile) -> String {
    profile.tags.iter().map(|t| format!("<span class=tag>{}</span>", e(t))).collect()
}

fn consent(cx: &Context, profile: &Profile) -> String {
    match &profile.consent {
        Some(c) => format!(
            "email {} · ads {} <span class=muted>({}, {})</span>",
            if c.marketing { "yes" } else { "no" },
            if c.ads { "yes" } else { "no" },
            e(&c.source),
            cx.time(c.at)
        ),
        None => "<span class=muted>not asked</span>".into(),
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
    let value = |v: &Option<String>| e(v.as_deref().unwrap_or(""));
    let mut statuses = String::from("<option value=\"\">any status</option>");
    for status in Status::ALL {
        let selected = if filter.status == Some(status) { " selected" } else { "" };
        let _ = write!(statuses, "<option{selected}>{}</option>", status.as_str());
    }
    let mut sorts = String::new();
    for (sort, name) in super::Sort::ALL {
        let selected = if query.sort == sort { " selected" } else { "" };
        let _ = write!(sorts, "<option value={name}{selected}>{}</option>", name.replace('_', " "));
    }
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
    let everyone = if query.everyone { " checked" } else { "" };
    let mut body = format!(
        "<form class=filters method=get action=\"/admin\"><select name=status aria-label=Status>{statuses}</select>\
         <input name=campaign placeholder=campaign aria-label=Campaign value=\"{}\">\
         <input name=source placeholder=\"utm source\" aria-label=\"UTM source\" value=\"{}\">\
         <input name=medium placeholder=\"utm medium\" aria-label=\"UTM medium\" value=\"{}\">\
         <input name=tag placeholder=tag aria-label=Tag value=\"{}\">\
         {in_segment}<label>Sort by <select name=sort>{sorts}</select></label>\
         <label><input type=checkbox name=visitors value=all{everyone}> also visitors who told us nothing</label>\
         <button type=submit>Filter</button></form>\
         <p>{count}{hidden}. Export: <a href=\"/admin/export/leads.csv?{q}\">leads CSV</a> · \
         <a href=\"/admin/export/audience.csv?platform=google&amp;{q}\">Google audience</a> · \
         <a href=\"/admin/export/audience.csv?platform=meta&amp;{q}\">Meta audience</a> (hashed emails, ads consent only)</p>",
        value(&filter.campaign),
        value(&filter.source),
        value(&filter.medium),
        value(&filter.tag),
        in_segment = match &filter.segment {
            Some(s) => format!(
                "<input type=hidden name=segment value=\"{}\"> in segment <strong>{}</strong> ",
                e(&s.id),
                e(&s.id)
            ),
            None => String::new(),
        },
        count = match page.total {
            Some(total) if total > leads.len() => format!("{total} leads, {} shown", leads.len()),
            Some(total) => format!("{total} leads"),
            None => format!("{} leads shown", leads.len()),
        },
        hidden = match page.hidden {
            0 => String::new(),
            n => format!(
                "; {n} visitor{s} who only opened the chat {are} not listed (<a href=\"/admin?{}\">show them</a>)",
                e(&format!("{filters}&visitors=all&sort={}", query.sort.name())),
                s = if n == 1 { "" } else { "s" },
                are = if n == 1 { "is" } else { "are" },
            ),
        },
        q = e(&filters),
    );
    body.push_str(
        "<table><thead><tr><th>Lead</th><th>Status</th><th>Score</th><th>Preferences</th><th>Tags</th>\
         <th>Campaign</th><th>Source / medium</th><th>Consent</th><th>Last seen</th></tr></thead><tbody>",
    );
    for p in leads {
        let utm = |k: &str| p.utm.get(k).map_or("-", String::as_str);
        let _ = write!(
            body,
            "<tr><td><a href=\"/admin/leads/{id}\">{name}</a></td><td>{status}</td><td>{score}</td><td>{prefs}</td>\
             <td>{tags}</td><td>{campaign}</td><td>{source} / {medium}</td><td>{consent}</td><td>{seen}</td></tr>",
            id = p.id,
            name = e(&lead_name(p)),
            status = p.status.as_str(),
            score = cx.score(p),
            prefs = cx.preferences(p).join("<br>"),
            tags = tags(p),
            campaign = e(p.campaign.as_deref().unwrap_or("")),
            source = e(utm("source")),
            medium = e(utm("medium")),
            consent = consent(cx, p),
            seen = cx.time(p.last_seen_at),
        );
    }
    body.push_str("</tbody></table>");
    if let Some(next) = &page.next {
        let _ = write!(
            body,
            "<p><a href=\"/admin?{}&amp;after={}\">Older leads</a></p>",
            e(&here),
            e(&url_encode(&next.to_string()))
        );
    }
    layout("Leads", &body)
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
    let mut body = format!(
        "<p>Visitor <code>{}</code> · status <strong>{}</strong> · score {} · campaign {} · {} visits</p>\
         <p>Consent: {}</p><p>Tags: {}</p>",
        p.id,
        p.status.as_str(),
        cx.score(p),
        e(p.campaign.as_deref().unwrap_or("none")),
        p.visits,
        consent(cx, p),
        tags(p),
    );
    let sent = if sent { "<p role=status><strong>Sent.</strong> The shopper has your answer.</p>" } else { "" };
    let _ = write!(
        body,
        "<div id=live data-src=\"/admin/leads/{id}/live\">{live}</div>{sent}\
         <form method=post action=\"/admin/leads/{id}/reply\"><p><label>Answer in the chat as a person \
         <input name=text size=60 maxlength=1000 required></label> <button type=submit>Send</button></p></form>",
        id = p.id,
        live = live(cx, lead),
    );
    body.push_str("<h2>Funnel</h2><ul>");
    for (status, at) in &p.status_at {
        let _ = write!(body, "<li>{} at {}</li>", status.as_str(), cx.time(*at));
    }
    body.push_str(
        "</ul><h2>Preferences</h2><table><tr><th>Name</th><th>Value</th><th>When</th><th>From the message</th></tr>",
    );
    for (name, pref) in &p.preferences {
        let _ = write!(
            body,
            "<tr><td>{}</td><td><strong>{}</strong> <span class=muted>{}</span></td><td>{}</td><td class=muted>{}</td></tr>",
            e(name),
            e(cx.preference(name, &pref.value)),
            e(&pref.value),
            cx.time(pref.at),
            e(&pref.message)
        );
    }
    body.push_str("</table><h2>Follow-up emails</h2>");
    body.push_str(&outbox_table(cx, lead.follow_ups.iter().map(|i| (i, None))));
    let _ = write!(
        body,
        "<h2>Erase</h2><form method=post action=\"/admin/leads/{}/erase\"><p>Removes this lead's profile, \
         conversations, email address and follow-ups for good (orders stay, without a link to them). \
         It cannot be undone.</p><p><label for=confirm>To confirm, type this lead's email address \
         (or its id, {})</label><br><input id=confirm name=confirm required autocomplete=off></p>\
         <button type=submit>Erase this lead</button></form><script src=\"/admin/live.js\" defer></script>",
        p.id, p.id
    );
    layout(&lead_name(p), &body)
}

/// What changes on a lead's page while the shopper chats: whether they are in the chat, who has
/// it, and the conversations.
pub fn live(cx: &Context, lead: &Lead) -> String {
    let p = &lead.profile;
    let here = if lead.connected { "In the chat now." } else { "Not in the chat right now." };
    let asked = p.handoff_at.map(|at| format!(" Asked for a person at {}.", cx.time(at))).unwrap_or_default();
    let take = |label: &str| {
        format!("<form method=post action=\"/admin/leads/{}/take\"><button type=submit>{label}</button></form>", p.id)
    };
    let holder = match p.handoff(cx.now, cx.idle) {
        Handoff::Taken(agent) => format!(
            "<p><strong>{} has this chat</strong> (since {}): the bot is quiet.</p>\
             <form method=post action=\"/admin/leads/{}/hand-back\"><button type=submit>Hand back to the bot</button></form>",
            e(&agent.name),
            cx.time(agent.at),
            p.id
        ),
        Handoff::Waiting => format!("<p><strong>Waiting for a person.</strong></p>{}", take("Take this chat")),
        Handoff::None => take("Take over from the bot"),
    };
    let mut out = format!("<p>{here}{asked}</p>{holder}");
    for (conversation, transcript) in &lead.conversations {
        let source = &conversation.source;
        let _ = write!(
            out,
            "<h2>Conversation of {}</h2><p class=muted>campaign {} · page {} · referrer {}</p><table>",
            cx.time(conversation.started_at),
            e(source.campaign.as_deref().unwrap_or("-")),
            e(source.page.as_deref().unwrap_or("-")),
            e(source.referrer.as_deref().unwrap_or("-")),
        );
        for entry in transcript {
            let route = match (&entry.intent, entry.how, entry.confidence) {
                (Some(intent), how, confidence) => format!(
                    "{}{}{}{}",
                    e(intent),
                    how.map(|h| format!(" · {}", how_name(h))).unwrap_or_default(),
                    confidence.map(|c| format!(" · {c:.2}")).unwrap_or_default(),
                    entry.variant.map(|v| format!(" · variant {v}")).unwrap_or_default(),
                ),
                (None, ..) => String::new(),
            };
            let (who, class) = match entry.from {
                Speaker::Shopper => ("shopper", ""),
                Speaker::Bot => ("bot", " class=bot"),
                Speaker::Agent => ("agent", ""),
            };
            let _ = write!(
                out,
                "<tr{class}><td class=muted>{}</td><td>{who}</td><td>{}</td><td class=muted>{route}</td></tr>",
                cx.time(entry.at),
                e(&entry.text)
            );
        }
        out.push_str("</table>");
    }
    out
}

fn how_name(how: How) -> &'static str {
    match how {
        How::Slot => "answer",
        How::Pattern => "pattern",
        How::Examples => "examples",
        How::Fallback => "fallback",
    }
}

fn outbox_table<'a>(cx: &Context, rows: impl Iterator<Item = (&'a OutboxItem, Option<&'a str>)>) -> String {
    let mut out = String::from(
        "<table><tr><th>Scheduled</th><th>Job</th><th>To</th><th>Due</th><th>State</th><th>Attempts</th><th>Last error</th></tr>",
    );
    for (item, to) in rows {
        let state = match &item.state {
            OutboxState::Pending => "pending".to_string(),
            OutboxState::Sent { at } => format!("sent {}", cx.time(*at)),
            OutboxState::Skipped { reason, .. } => format!("skipped: {}", e(reason)),
            OutboxState::Cancelled { reason, .. } => format!("cancelled: {}", e(reason)),
            OutboxState::Dead { error, .. } => format!("dead: {}", e(error)),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td><td>{}</td><td class=muted>{}</td></tr>",
            cx.time(item.created_at),
            e(&item.job.describe()),
            e(to.unwrap_or("")),
            cx.time(item.due_at),
            item.attempts,
            e(item.last_error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table>");
    out
}

/// The inbox: chats waiting for a person first, then the ones people have.
pub fn handoffs(cx: &Context, rows: &[(bool, Profile)]) -> String {
    let mut body = String::from(
        "<p>Shoppers who asked for a person: waiting first (longest first), then the chats people have. \
         Take one to answer; while you have it, the bot is quiet.</p>\
         <table><tr><th>Lead</th><th>Asked at</th><th>In the chat</th><th>Who has it</th><th>Status</th><th>Preferences</th></tr>",
    );
    for (connected, p) in rows {
        let holder = match p.handoff(cx.now, cx.idle) {
            Handoff::Taken(agent) => e(&agent.name),
            _ => format!(
                "<form method=post action=\"/admin/leads/{}/take\"><button type=submit>Take</button></form>",
                p.id
            ),
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"/admin/leads/{id}\">{name}</a></td><td>{at}</td><td>{connected}</td><td>{holder}</td><td>{status}</td><td>{prefs}</td></tr>",
            id = p.id,
            name = e(&lead_name(p)),
            at = p.handoff_at.map(|at| cx.time(at)).unwrap_or_default(),
            connected = if *connected { "yes" } else { "no" },
            status = p.status.as_str(),
            prefs = cx.preferences(p).join(", "),
        );
    }
    body.push_str("</table>");
    layout("Handoffs", &body)
}

pub fn emails(cx: &Context, rows: &[(OutboxItem, Option<String>)]) -> String {
    let body = format!(
        "<p>Follow-up emails, newest first (at most {PAGE_ROWS}).</p>{}",
        outbox_table(cx, rows.iter().map(|(item, to)| (item, to.as_deref())))
    );
    layout("Email queue", &body)
}

/// The funnel per campaign as bars, drawn on the server (no scripts; the admin's CSP stays):
/// one group per campaign, one bar per stage, with a title and a description for screen
/// readers; the table beside it has the numbers.
/// Bars drawn on the server (no scripts; the admin's CSP stays): one group per row, one bar per
/// series, with a title and a description for screen readers; the page has the table beside it.
fn bar_chart(id: &str, title: &str, desc: &str, series: &[(&str, &str)], groups: &[(String, Vec<u64>)]) -> String {
    let (bar, gap, label, width) = (14.0, 10.0, 140.0, 460.0);
    let most = groups.iter().flat_map(|(_, values)| values.iter().copied()).max().unwrap_or(0).max(1) as f64;
    let group = series.len() as f64 * bar + gap;
    let height = group * groups.len() as f64 + 30.0;
    let mut svg = format!(
        "<svg role=img aria-labelledby=\"{id}-title {id}-desc\" width=\"{w}\" height=\"{height}\" \
         viewBox=\"0 0 {w} {height}\"><title id={id}-title>{}</title><desc id={id}-desc>{}</desc>",
        e(title),
        e(desc),
        w = label + width + 60.0,
    );
    for (i, (name, colour)) in series.iter().enumerate() {
        let x = label + i as f64 * 115.0;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"13\" \
             font-size=\"11\">{name}</text>",
            x + 14.0
        );
    }
    for (i, (name, values)) in groups.iter().enumerate() {
        let top = 24.0 + i as f64 * group;
        let middle = top + series.len() as f64 * bar / 2.0 + 4.0;
        let _ = write!(svg, "<text x=\"0\" y=\"{middle}\" font-size=\"12\">{}</text>", e(name));
        for (j, (value, (_, colour))) in values.iter().zip(series).enumerate() {
            let y = top + j as f64 * bar;
            let w = (*value as f64 / most * width).max(1.0);
            let _ = write!(
                svg,
                "<rect x=\"{label}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{value}</text>",
                bar - 2.0,
                label + w + 4.0,
                y + bar - 4.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Each variant's conversion rate as a dot on its 95 % interval, on one axis from 0 to the
/// highest upper end, so overlapping intervals show an undecided test at a glance.
fn interval_chart(id: &str, title: &str, rows: &[(String, f64, (f64, f64))]) -> String {
    let (label, width, row) = (180.0, 400.0, 22.0);
    let top = rows.iter().map(|(_, _, (_, high))| *high).fold(0.0, f64::max).max(0.01);
    let height = row * rows.len() as f64 + 30.0;
    let x = |v: f64| label + v / top * width;
    let mut svg = format!(
        "<svg role=img aria-labelledby=\"{id}-title {id}-desc\" width=\"{w}\" height=\"{height}\" \
         viewBox=\"0 0 {w} {height}\"><title id={id}-title>{}</title><desc id={id}-desc>For each variant, its \
         conversion rate as a dot on a line from the low to the high end of its 95 % credible interval; the \
         table has the numbers.</desc>",
        e(title),
        w = label + width + 70.0,
    );
    for (i, (name, rate, (low, high))) in rows.iter().enumerate() {
        let y = 14.0 + i as f64 * row;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text><line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y}\" y2=\"{y}\" \
             stroke=\"#5c86c4\" stroke-width=\"3\"/><circle cx=\"{:.1}\" cy=\"{y}\" r=\"5\" fill=\"#163a6b\"/>\
             <text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{:.1}%</text>",
            y + 4.0,
            e(name),
            x(*low),
            x(*high),
            x(*rate),
            x(*high) + 6.0,
            y + 4.0,
            100.0 * rate
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{label}\" y=\"{}\" font-size=\"11\">0%</text><text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{:.1}%</text></svg>",
        height - 4.0,
        label + width - 30.0,
        height - 4.0,
        100.0 * top
    );
    svg
}

fn percent_interval((low, high): (f64, f64)) -> String {
    format!("{:.1}–{:.1}%", 100.0 * low, 100.0 * high)
}

const BLUES: [&str; 4] = ["#9db4d6", "#5c86c4", "#2f5d9e", "#163a6b"];

fn funnel_chart(campaigns: &[CampaignRow]) -> String {
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

/// Each journey: who entered, then per step the emails sent, opened, clicked and followed by an
/// order, drawn and tabled, with each variant's probability of being best.
pub fn journeys(rows: &[JourneyRow]) -> String {
    let mut body = String::from(
        "<p>Journeys from <code>intents/journeys/</code>. Opens count image loading, which some mail clients do \
         ahead of the reader: clicks are the surer signal. Converted: the visitor ordered after the email.</p>",
    );
    if rows.is_empty() {
        body.push_str(
            "<p>No journeys yet: add <code>[[journey]]</code> to a file in <code>intents/journeys/</code>.</p>",
        );
    }
    let series: Vec<(&str, &str)> = ["sent", "opened", "clicked", "converted"].into_iter().zip(BLUES).collect();
    for (i, journey) in rows.iter().enumerate() {
        let _ = write!(
            body,
            "<h2>{}</h2><p>{} · {} entered · {} on it now</p>",
            e(&journey.journey),
            e(&journey.description),
            journey.entered,
            journey.active
        );
        let groups: Vec<(String, Vec<u64>)> = journey
            .steps
            .iter()
            .map(|s| (format!("step {}", s.step + 1), vec![s.sent, s.opened, s.clicked, s.converted]))
            .collect();
        body.push_str(&bar_chart(
            &format!("journey{i}"),
            &format!("Steps of {}", journey.journey),
            "For each step, bars for emails sent, opened, clicked and followed by an order; the table below has the \
             numbers.",
            &series,
            &groups,
        ));
        body.push_str(
            "<table><tr><th>Step</th><th>After</th><th>Does</th><th>Reached</th><th>Ended here</th><th>Variant</th>\
             <th>Sent</th><th>Opened</th><th>Clicked</th><th>Converted</th><th>95 % interval</th><th>Revenue</th>\
             <th>Probability best</th></tr>",
        );
        for step in &journey.steps {
            let head = format!(
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                step.step + 1,
                e(&step.after),
                e(&step.action),
                step.reached,
                step.ended
            );
            if step.variants.is_empty() {
                let _ = write!(
                    body,
                    "<tr>{head}<td>-</td><td>0</td><td>0</td><td>0</td><td>0</td><td>0.00</td><td>-</td></tr>"
                );
            }
            for v in &step.variants {
                let _ = write!(
                    body,
                    "<tr>{head}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}%{}</td></tr>",
                    v.variant,
                    v.sent,
                    v.opened,
                    v.clicked,
                    v.converted,
                    percent_interval(v.interval),
                    v.revenue,
                    100.0 * v.probability_best,
                    if v.winner { " (winner)" } else { "" }
                );
            }
        }
        body.push_str("</table>");
        let arms: Vec<(String, f64, (f64, f64))> = journey
            .steps
            .iter()
            .flat_map(|s| s.variants.iter().map(move |v| (s.step, v)))
            .map(|(step, v)| {
                (format!("step {} · {}", step + 1, v.variant), v.converted as f64 / v.sent.max(1) as f64, v.interval)
            })
            .collect();
        if !arms.is_empty() {
            let title = format!("Conversion after each email of {}", journey.journey);
            body.push_str(&interval_chart(&format!("journey{i}-variants"), &title, &arms));
        }
    }
    layout("Journeys", &body)
}

pub fn segments(rows: &[SegmentRow], learned: Option<&crate::leads::learned::Model>) -> String {
    let mut body = String::from(
        "<p>Segments from <code>intents/journeys/</code>, with how many visitors are in each now.</p>\
         <table><tr><th>Segment</th><th>Description</th><th>Visitors</th><th>Export</th></tr>",
    );
    for row in rows {
        let id = url_encode(&row.segment);
        let _ = write!(
            body,
            "<tr><td><a href=\"/admin?segment={id}&amp;visitors=all\">{}</a></td><td>{}</td><td>{}</td>\
             <td><a href=\"/admin/export/leads.csv?segment={id}\">CSV</a> · \
             <a href=\"/admin/export/audience.csv?platform=google&amp;segment={id}\">Google</a> · \
             <a href=\"/admin/export/audience.csv?platform=meta&amp;segment={id}\">Meta</a></td></tr>",
            e(&row.segment),
            e(&row.description),
            row.size
        );
    }
    body.push_str("</table><h2>Learned lead score</h2>");
    match learned {
        None => {
            let _ = write!(
                body,
                "<p>Not fitted yet: it needs at least {min} visitors who bought and {min} who did not. Until then \
                 segments with <code>min_buy_probability</code> hold for nobody.</p>",
                min = crate::leads::learned::MIN_EACH
            );
        }
        Some(model) => {
            let _ = write!(
                body,
                "<p>The probability to buy, fitted (logistic regression) to the outcomes of {} visitors, {} of whom \
                 bought; refitted every journey sweep. Weights (log-odds; positive means likelier to buy):</p>\
                 <table><tr><th>What is known</th><th>Weight</th></tr>",
                model.visitors, model.buyers
            );
            for (name, weight) in model.explained() {
                let _ = write!(body, "<tr><td>{}</td><td>{weight:+.2}</td></tr>", e(name));
            }
            body.push_str("</table>");
        }
    }
    layout("Segments", &body)
}

pub fn funnel(funnel: &Funnel) -> String {
    let rate = |part: u64, whole: u64| {
        if whole == 0 { "-".to_string() } else { format!("{:.1}%", 100.0 * part as f64 / whole as f64) }
    };
    let mut body = String::from("<h2>By campaign</h2>");
    body.push_str(&funnel_chart(&funnel.campaigns));
    body.push_str(
        "<table><tr><th>Campaign</th><th>Visitors</th><th>Qualified</th><th>Checkout clicked</th>\
         <th>Converted</th><th>Conversion</th><th>Orders</th><th>Revenue</th><th>Spend</th><th>ROAS</th>\
         <th>Cost per lead</th><th>Cost per conversion</th></tr>",
    );
    let money = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    for row in &funnel.campaigns {
        let currency = row.currency.as_deref().map_or(String::new(), |c| format!(" {}", e(c)));
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}{currency}</td>\
             <td>{:.2}{currency}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(&row.campaign),
            row.visitors,
            row.qualified,
            row.checkout_clicked,
            row.converted,
            rate(row.converted, row.visitors),
            row.orders,
            row.revenue,
            row.spend,
            row.roas.map_or("-".to_string(), |r| format!("{r:.2}")),
            money(row.cost_per_lead),
            money(row.cost_per_conversion),
        );
    }
    body.push_str("</table><h2>Conversions by day</h2>");
    let one = |name: &'static str| [(name, BLUES[2])];
    let orders: Vec<(String, Vec<u64>)> = funnel.daily.iter().map(|d| (d.date.clone(), vec![d.orders])).collect();
    body.push_str(&bar_chart(
        "daily-orders",
        "Orders by day",
        "One bar per day with orders; the table below has the numbers.",
        &one("orders"),
        &orders,
    ));
    let revenue: Vec<(String, Vec<u64>)> =
        funnel.daily.iter().map(|d| (d.date.clone(), vec![d.revenue.round().max(0.0) as u64])).collect();
    body.push_str(&bar_chart(
        "daily-revenue",
        "Revenue by day",
        "One bar per day with orders, its revenue rounded; the table below has the numbers.",
        &one("revenue"),
        &revenue,
    ));
    body.push_str("<table><tr><th>Day (UTC)</th><th>Orders</th><th>Revenue</th></tr>");
    for day in &funnel.daily {
        let _ = write!(body, "<tr><td>{}</td><td>{}</td><td>{:.2}</td></tr>", e(&day.date), day.orders, day.revenue);
    }
    body.push_str(
        "</table><h2>Follow-up emails</h2><p>Opens count an email's image loading, which some mail clients do \
         ahead of the reader: clicks are the surer signal. Probability best is by conversion.</p>",
    );
    let arms: Vec<(String, f64, (f64, f64))> = funnel
        .emails
        .iter()
        .map(|r| (format!("{} · {}", r.email, r.variant), r.converted as f64 / r.sent.max(1) as f64, r.interval))
        .collect();
    if !arms.is_empty() {
        body.push_str(&interval_chart("email-variants", "Conversion after each email variant", &arms));
    }
    body.push_str(
        "<table><tr><th>Email</th><th>Variant</th><th>Sent</th><th>Opened</th><th>Clicked</th><th>Click rate</th>\
         <th>Converted after</th><th>95 % interval</th><th>Revenue</th><th>Probability best</th><th>Winner</th></tr>",
    );
    for row in &funnel.emails {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td>\
             <td>{:.1}%</td><td>{}</td></tr>",
            e(&row.email),
            row.variant,
            row.sent,
            row.opened,
            row.clicked,
            rate(row.clicked, row.sent),
            row.converted,
            percent_interval(row.interval),
            row.revenue,
            100.0 * row.probability_best,
            if row.winner { "winner" } else { "" },
        );
    }
    body.push_str(
        "</table><h2>By reply variant (A/B)</h2><p>Probability best: the chance a variant converts better than \
         every other of its intent. A winner is named once each variant was shown to 100 visitors and one is best \
         at 95 %.</p>",
    );
    let arms: Vec<(String, f64, (f64, f64))> = funnel
        .variants
        .iter()
        .map(|r| (format!("{} · {}", r.intent, r.variant), r.converted as f64 / r.visitors.max(1) as f64, r.interval))
        .collect();
    if !arms.is_empty() {
        body.push_str(&interval_chart("reply-variants", "Conversion after each reply variant", &arms));
    }
    body.push_str(
        "<table><tr><th>Intent</th><th>Variant</th><th>Visitors shown</th>\
         <th>Converted</th><th>Conversion</th><th>95 % interval</th><th>Probability best</th><th>Winner</th></tr>",
    );
    for row in &funnel.variants {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td></tr>",
            e(&row.intent),
            row.variant,
            row.visitors,
            row.converted,
            rate(row.converted, row.visitors),
            percent_interval(row.interval),
            100.0 * row.probability_best,
            if row.winner { "winner" } else { "" },
        );
    }
    body.push_str(
        "</table><h2>Proactive triggers</h2><p>Shown: the widget showed the teaser or opened the chat; engaged: the \
         shopper chatted through it; qualified and converted: afterwards. Teasers of one trigger are judged by \
         engagement.</p><table><tr><th>Trigger</th><th>Variant</th><th>Teaser</th><th>Shown</th><th>Engaged</th>\
         <th>Engagement</th><th>95 % interval</th><th>Qualified</th><th>Converted</th><th>Probability best</th>\
         <th>Winner</th></tr>",
    );
    for row in &funnel.triggers {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.1}%</td><td>{}</td></tr>",
            e(&row.trigger),
            row.variant,
            e(row.teaser.as_deref().unwrap_or("-")),
            row.shown,
            row.engaged,
            rate(row.engaged, row.shown),
            percent_interval(row.interval),
            row.qualified,
            row.converted,
            100.0 * row.probability_best,
            if row.winner { "winner" } else { "" },
        );
    }
    body.push_str("</table>");
    layout("Funnel", &body)
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
    let mut body = format!(
        "<form method=get action=\"/admin/try\"><input name=q size=60 placeholder=\"a shopper's message\" value=\"{}\" autofocus> \
         <button type=submit>Route</button></form>",
        e(tried.map_or("", |t| t.text.as_str()))
    );
    if let Some(t) = tried {
        let _ = write!(
            body,
            "<table><tr><th>Intent</th><td><strong>{}</strong></td></tr><tr><th>How</th><td>{}</td></tr>\
             <tr><th>Confidence</th><td>{:.2}</td></tr><tr><th>Normalized</th><td><code>{}</code></td></tr>\
             <tr><th>Reply</th><td>{}</td></tr></table>\
             <p class=muted>Routed as a new visitor with no preferences; flows and slot answers depend on the conversation.</p>",
            e(&t.intent),
            how_name(t.route.how),
            t.route.confidence,
            e(&t.normalized),
            e(&t.reply),
        );
    }
    layout("Try it", &body)
}

fn url_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
