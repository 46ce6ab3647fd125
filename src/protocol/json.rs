//! A `reply` frame's JSON written directly: it is the frame of nearly every message, and
//! serde_json writes an internally tagged enum through a map and escapes strings a byte at a
//! time (together a tenth of a chat worker's instructions per message). The output is serde's to
//! the byte; the tests hold it to that.

use super::Reply;

pub(super) fn reply(json: &mut Vec<u8>, reply: &Reply) {
    let Reply { text, intent, choices, how, confidence, captured, agent, locale } = reply;
    json.extend_from_slice(br#"{"type":"reply","text":"#);
    string(json, text);
    json.extend_from_slice(br#","intent":"#);
    string(json, intent);
    json.extend_from_slice(br#","choices":["#);
    for (i, choice) in choices.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(br#"{"label":"#);
        string(json, &choice.label);
        json.extend_from_slice(br#","value":"#);
        string(json, &choice.value);
        json.push(b'}');
    }
    json.push(b']');
    // `how`'s names and the float's formatting (`null` for what JSON cannot hold) are serde's own.
    if let Some(how) = how {
        json.extend_from_slice(br#","how":"#);
        serde_json::to_writer(&mut *json, how).expect("a unit variant serializes");
    }
    if let Some(confidence) = confidence {
        json.extend_from_slice(br#","confidence":"#);
        serde_json::to_writer(&mut *json, confidence).expect("a float serializes");
    }
    if !captured.is_empty() {
        json.extend_from_slice(br#","captured":{"#);
        for (i, (name, value)) in captured.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            string(json, name);
            json.push(b':');
            string(json, value);
        }
        json.push(b'}');
    }
    for (name, value) in [(&br#","agent":"#[..], agent), (br#","locale":"#, locale)] {
        if let Some(value) = value {
            json.extend_from_slice(name);
            string(json, value);
        }
    }
    json.push(b'}');
}

/// A JSON string as serde_json escapes it (the quote, the backslash and control characters;
/// everything else as it is), checked eight bytes at a time.
fn string(json: &mut Vec<u8>, text: &str) {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of a byte set where the byte is below 0x20 or, after `^ ONES * c`, where it
    // was `c` (exact for whether any byte is, which is all that is asked).
    let below_space = |word: u64| word.wrapping_sub(ONES * 0x20) & !word;
    let zero = |word: u64| word.wrapping_sub(ONES) & !word;
    let escapable = |word: u64| {
        (below_space(word) | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')))) & HIGH != 0
    };
    let bytes = text.as_bytes();
    json.reserve(bytes.len() + 2);
    json.push(b'"');
    let mut written = 0;
    for (chunk_at, chunk) in (0..).step_by(8).zip(bytes.chunks(8)) {
        // A short last chunk is padded with spaces, which need no escape.
        let mut word = [b' '; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        if !escapable(u64::from_ne_bytes(word)) {
            continue;
        }
        for (at, &byte) in (chunk_at..).zip(chunk) {
            if let Some(escaped) = escape(byte) {
                json.extend_from_slice(&bytes[written..at]);
                json.extend_from_slice(&escaped);
                if escaped[1] == b'u' {
                    json.extend_from_slice(&[b'0', b'0', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
                }
                written = at + 1;
            }
        }
    }
    json.extend_from_slice(&bytes[written..]);
    json.push(b'"');
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// The two bytes that start a byte's escape (`\u` is followed by four hex digits).
fn escape(byte: u8) -> Option<[u8; 2]> {
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        0x00..0x20 => b'u',
        _ => return None,
    };
    Some([b'\\', short])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::intents::{Choice, How};
    use crate::protocol::ServerFrame;

    fn by_hand(reply: &Reply) -> String {
        let mut json = Vec::new();
        super::reply(&mut json, reply);
        String::from_utf8(json).expect("UTF-8")
    }

    #[test]
    fn every_byte_is_escaped_as_serde_escapes_it() {
        let mut texts: Vec<String> = (0..=127u8).map(|b| char::from(b).to_string()).collect();
        // Each byte at every place of an eight-byte word, among plain text and among non-ASCII.
        for b in 0..=127u8 {
            for at in 0..17 {
                let mut text: Vec<char> = "Größe 42, «quote» and more".chars().collect();
                text.insert(at.min(text.len()), char::from(b));
                texts.push(text.into_iter().collect());
            }
        }
        texts.extend(["", "plain text longer than eight bytes", "ünïcødé 🙂 \u{7f}\u{80}\u{2028}"].map(String::from));
        for text in texts {
            let reply = Reply {
                text: text.clone(),
                intent: "greeting".into(),
                choices: vec![],
                how: None,
                confidence: None,
                captured: BTreeMap::new(),
                agent: None,
                locale: None,
            };
            let serde = serde_json::to_string(&ServerFrame::Reply(reply.clone())).expect("serializes");
            assert_eq!(by_hand(&reply), serde, "{text:?}");
        }
    }

    #[test]
    fn every_field_is_written_as_serde_writes_it() {
        let choice = |label: &str, value: &str| Choice { label: label.into(), value: value.into() };
        let full = Reply {
            text: "What size do you wear (EU 35–48)?\n\"Really\"".into(),
            intent: "product_interest".into(),
            choices: vec![choice("Black", "black"), choice("Up to 80 €", "80")],
            how: Some(How::Slot),
            confidence: Some(0.734_567_9),
            captured: BTreeMap::from([("size".into(), "42".into()), ("colour".into(), "bl\\ack".into())]),
            agent: Some("Anna".into()),
            locale: Some("de".into()),
        };
        let mut replies = vec![full.clone()];
        for how in How::ALL {
            replies.push(Reply { how: Some(how), confidence: Some(1.0), ..full.clone() });
        }
        for confidence in [0.0, 1.0, 0.1, f32::NAN, f32::INFINITY, 1e-8] {
            replies.push(Reply { confidence: Some(confidence), ..full.clone() });
        }
        replies.push(Reply { choices: vec![choice("only", "one")], captured: BTreeMap::new(), ..full.clone() });
        replies.push(Reply { how: None, confidence: None, agent: None, locale: None, ..full.clone() });
        replies.push(Reply { agent: None, ..full.clone() });
        replies.push(Reply { locale: None, choices: vec![], ..full });
        for reply in replies {
            let serde = serde_json::to_string(&ServerFrame::Reply(reply.clone())).expect("serializes");
            assert_eq!(by_hand(&reply), serde);
        }
    }
}
