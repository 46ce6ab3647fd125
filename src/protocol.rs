//! The `chat.v1` WebSocket protocol: JSON text frames tagged by `type`. Plain data, so the
//! dialogue engine, the server session and the clients (`nudge chat`, tests) share one definition.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::intents::{Choice, How};

mod json;

pub const SUBPROTOCOL: &str = "chat.v1";

/// A frame is decoded, handled and dropped one at a time, so the size of the `hello` variant
/// costs nothing that boxing it would save.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Hello(Hello),
    Say { text: String },
    Choose { value: String },
    Consent(Consent),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Hello {
    pub visitor: Option<String>,
    /// The resume key the server gave this widget with the visitor id: without it, the id
    /// alone resumes nothing.
    pub key: Option<String>,
    pub token: Option<String>,
    pub campaign: Option<String>,
    pub locale: Option<String>,
    pub page: Option<String>,
    pub referrer: Option<String>,
    pub utm: BTreeMap<String, String>,
    pub click_ids: BTreeMap<String, String>,
    pub consent: Option<Consent>,
    /// The shopper's time zone (`Intl.DateTimeFormat().resolvedOptions().timeZone`), for quiet
    /// hours.
    pub timezone: Option<String>,
    /// Open the chat in this intent (one with `start = true`) instead of the greeting: an ad's
    /// deep link into a flow.
    pub start: Option<String>,
    /// The proactive trigger that opened the chat (`/widget/triggers`), and which variant of
    /// its teaser the shopper saw: the trigger's funnel counts the shopper once they chat.
    pub trigger: Option<TriggerSeen>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TriggerSeen {
    pub id: String,
    #[serde(default)]
    pub variant: u32,
}

impl Hello {
    /// The bytes of what a `hello` asks the server to keep about where the visitor came from.
    pub fn attribution_bytes(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let pairs = |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        text(&self.page) + text(&self.referrer) + text(&self.campaign) + pairs(&self.utm) + pairs(&self.click_ids)
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Consent {
    pub marketing: bool,
    pub ads: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome {
        visitor: String,
        conversation: String,
        returning: bool,
        /// A new resume key for the widget to keep with the visitor id (absent when the one it
        /// sent still holds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// The last lines of a resumed conversation, oldest first, for a widget that has none
        /// on screen (a reload, a new tab, an email link).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        history: Vec<Line>,
        /// The conversation's language (`en`, `de`): the widget's own labels follow it.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        locale: String,
    },
    Reply(Reply),
    /// A checkout link for exactly what the qualified lead asked for.
    Checkout {
        url: String,
        label: String,
    },
    /// Retargeting tags of the visitor and the pixel events the page may fire (ads consent only).
    Tags {
        tags: Vec<String>,
        pixel: Vec<Pixel>,
    },
    /// The chat is handed to a person (`agent`: the name shoppers see) or back to the bot (null).
    Handoff {
        agent: Option<String>,
    },
    /// A message while a person has the chat: it reached them (`agent`), and the bot stays quiet.
    Received {
        agent: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// One line of a conversation as the widget shows it again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Line {
    /// `shopper`, `bot` or `agent`.
    pub from: String,
    pub text: String,
    /// When, in ms since the epoch.
    pub at: u64,
}

/// Lines of history a `welcome` carries at most.
pub const HISTORY_LINES: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pixel {
    pub event: String,
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub text: String,
    pub intent: String,
    pub choices: Vec<Choice>,
    /// How the message was routed and how sure the router was (for `nudge chat` and "try it").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<How>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Preferences this message set (on the first reply of a step), for `nudge chat`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub captured: BTreeMap<String, String>,
    /// The name of the person who wrote it (intent `agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The language the conversation goes on in, on the first reply after it changed (the
    /// widget's own labels follow it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    TooLong,
    RateLimited,
    Unauthorized,
    Internal,
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error { code, message: message.into() }
    }

    pub fn to_json(&self) -> String {
        // Room for a usual reply at once (grown from nothing, a frame was copied four times).
        let mut json = Vec::with_capacity(256);
        match self {
            ServerFrame::Reply(reply) => json::reply(&mut json, reply),
            frame => serde_json::to_writer(&mut json, frame).expect("server frames serialize"),
        }
        // serde_json writes nothing but UTF-8.
        String::from_utf8(json).expect("JSON is UTF-8")
    }
}

/// Decodes a client frame, with a message a developer can act on when it is wrong.
pub fn decode(text: &str) -> Result<ClientFrame, String> {
    // Nearly every frame is a `say` or a `choose`: read those in one pass, without the JSON tree
    // that the tagged enum needs; anything else, or anything wrong, takes the explaining path.
    #[derive(Deserialize)]
    struct Plain<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        text: Option<String>,
        value: Option<String>,
    }
    match serde_json::from_str::<Plain>(text) {
        Ok(Plain { kind, text: Some(text), .. }) if kind == "say" => return Ok(ClientFrame::Say { text }),
        Ok(Plain { kind, value: Some(value), .. }) if kind == "choose" => return Ok(ClientFrame::Choose { value }),
        _ => {}
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let kind = value.get("type").and_then(|t| t.as_str()).ok_or("a frame needs a string field `type`")?.to_string();
    if !matches!(kind.as_str(), "hello" | "say" | "choose" | "consent") {
        return Err(format!("unknown frame type `{kind}` (expected hello, say, choose or consent)"));
    }
    serde_json::from_value(value).map_err(|e| format!("bad `{kind}` frame: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_explains() {
        assert_eq!(decode(r#"{"type":"say","text":"hi"}"#), Ok(ClientFrame::Say { text: "hi".into() }));
        assert_eq!(decode(r#"{"text":"h\u00e9","type":"say"}"#), Ok(ClientFrame::Say { text: "hé".into() }));
        assert_eq!(decode(r#"{"type":"choose","value":"42"}"#), Ok(ClientFrame::Choose { value: "42".into() }));
        assert!(matches!(decode(r#"{"type":"hello","text":"x"}"#), Ok(ClientFrame::Hello(_))));
        for (input, expected) in [
            ("{", "invalid JSON"),
            ("[]", "needs a string field `type`"),
            (r#"{"type":"shout"}"#, "unknown frame type `shout`"),
            (r#"{"type":"say"}"#, "bad `say` frame: missing field `text`"),
            (r#"{"type":"say","text":5}"#, "bad `say` frame: invalid type"),
        ] {
            let got = decode(input).unwrap_err();
            assert!(got.contains(expected), "{input}: {got}");
        }
    }
}
