//! What Nudge reasons about: visitors' profiles, conversations and their turns, orders, outbox
//! jobs, and the changes that can happen to a profile. The engine, the session, the admin and
//! the store all speak these types; the store's encodings and the admin's JSON bodies are their
//! own types, so a change of either never changes the other.
//!
//! Nothing here does IO. `Profile::apply` is the one place where the rules of a profile live (a
//! status only moves forward, a page cannot undo an unsubscribe): the store applies each change
//! to the stored profile, and a session applies the same change to its own copy.

mod conversation;
mod order;
mod outbox;
mod profile;
mod spend;

pub use conversation::{Conversation, Entry, Pending, Source, Speaker};
pub use order::Order;
pub use outbox::{Job, OutboxItem, OutboxState};
pub use profile::{
    Agent, Change, Confirmation, ConsentChange, ConsentRecord, Engaged, Handoff, Preference, Profile, Status,
    UNSUBSCRIBE_SOURCE, Undo,
};
pub use spend::{Spend, is_currency};
