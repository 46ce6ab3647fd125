//! What `hello` would store, held by the connection until the first message (a visitor who
//! only says hello is not stored): the commands, as deflated JSON.

use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params,
};

use crate::store::{Command, StoreError};

/// Commands held by a connection until its first message, as deflated JSON: every idle
/// connection holds them. A new visitor's greeting is 955 bytes of JSON (their id four times, the
/// conversation's twice, the welcome text) and 454 deflated; the commands themselves take more
/// than the JSON, in a dozen allocations. (10,000 idle connections, KiB each: the commands 16.2,
/// JSON 16.0, deflated 15.7, nothing held 15.2; BENCHMARKS.md.) A `hello` pays 5.7 µs for the
/// deflate (2 µs of it the compressor's reset), the first message 3.5 µs to inflate it.
#[derive(Default)]
pub(super) struct Unsaved(Box<[u8]>);

thread_local! {
    /// A compressor per thread, reset for each greeting: a new one is about 300 KB of tables.
    /// Boxed: unboxed its 64 KB buffer would be in every thread's static TLS block.
    static COMPRESSOR: std::cell::RefCell<Option<Box<CompressorOxide>>> = const { std::cell::RefCell::new(None) };
}

/// The most a held greeting inflates to: far more than any `hello` holds.
const MOST_HELD: usize = 1 << 20;

impl Unsaved {
    pub(super) fn hold(commands: &[Command]) -> Result<Unsaved, StoreError> {
        if commands.is_empty() {
            return Ok(Unsaved::default());
        }
        let json = serde_json::to_vec(commands).map_err(|e| Unsaved::unreadable(e.to_string()))?;
        COMPRESSOR.with_borrow_mut(|compressor| {
            // Deflate's fastest level: a greeting is small, and made once per connection.
            let compressor = compressor
                .get_or_insert_with(|| Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(1, 0, 0))));
            compressor.reset();
            let mut deflated = vec![0; json.len() + 64];
            let (mut input, mut written) = (&json[..], 0);
            loop {
                match compress(compressor, input, &mut deflated[written..], TDEFLFlush::Finish) {
                    (TDEFLStatus::Done, _, out) => {
                        written += out;
                        break;
                    }
                    (TDEFLStatus::Okay, read, out) => {
                        (input, written) = (&input[read..], written + out);
                        deflated.resize(deflated.len() * 2, 0);
                    }
                    (status, _, _) => return Err(Unsaved::unreadable(format!("deflate: {status:?}"))),
                }
            }
            // Copied into a block of its own size: an allocator keeps a block that shrinks by
            // less than half where it is.
            Ok(Unsaved(deflated[..written].into()))
        })
    }

    /// The held commands followed by `commands` (moved as they are when nothing is held: every
    /// message after the first).
    pub(super) fn before(&self, commands: Vec<Command>) -> Result<Vec<Command>, StoreError> {
        if self.0.is_empty() {
            return Ok(commands);
        }
        let json = miniz_oxide::inflate::decompress_to_vec_with_limit(&self.0, MOST_HELD)
            .map_err(|e| Unsaved::unreadable(format!("inflate: {e}")))?;
        let mut held: Vec<Command> = serde_json::from_slice(&json).map_err(|e| Unsaved::unreadable(e.to_string()))?;
        held.extend(commands);
        Ok(held)
    }

    /// The held commands.
    pub(super) fn commands(&self) -> Result<Vec<Command>, StoreError> {
        self.before(Vec::new())
    }

    fn unreadable(reason: String) -> StoreError {
        StoreError::Corrupt { tree: "the greeting held in memory", reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Change, Conversation, Entry, Source, Speaker};
    use crate::ids::{ConversationId, TurnId, VisitorId};

    #[test]
    fn a_held_greeting_comes_back_as_it_was_held() {
        let visitor = VisitorId::mint(1);
        let source = Source {
            campaign: Some("spring".into()),
            page: Some("https://shop.example/shoes?utm_source=news".into()),
            utm: [("source".to_string(), "news".to_string())].into(),
            ..Source::default()
        };
        // `last_at` is not part of a stored conversation (read from its last turn).
        let conversation = Conversation {
            id: ConversationId::mint(1),
            visitor,
            started_at: 1,
            last_at: 0,
            locale: "de".into(),
            source,
            pending: None,
        };
        let greeting = Entry {
            at: 1,
            from: Speaker::Bot,
            text: "Hallo! Wobei kann ich helfen?".into(),
            intent: Some("welcome".into()),
            how: None,
            confidence: Some(0.42),
            variant: Some(1),
        };
        let commands = vec![
            Command::Visitor { visitor, change: Change::Create { at: 1, locale: "de".into() } },
            Command::Visitor {
                visitor,
                change: Change::Visit { at: 1, locale: None, campaign: Some("spring".into()), utm: Default::default() },
            },
            Command::OpenConversation(Box::new(conversation.clone())),
            Command::AppendTurn {
                conversation: conversation.id,
                turn: TurnId::after(None, 1),
                entries: vec![greeting],
            },
        ];
        let held = Unsaved::hold(&commands).expect("encodes");
        let json = serde_json::to_vec(&commands).expect("json").len();
        assert!(held.0.len() * 3 < json * 2, "{} bytes deflated, {json} as JSON", held.0.len());
        assert_eq!(held.commands().expect("decodes"), commands);
        assert_eq!(Unsaved::hold(&[]).expect("nothing").commands().expect("nothing"), Vec::new());
        assert!(Unsaved(vec![0xff; 8].into()).commands().is_err(), "garbage is an error, not a panic");
    }
}
