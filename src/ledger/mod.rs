//! The consent ledger: append-only events chained per subscriber, the
//! evidence they point to.

pub mod chain;
pub mod event;
pub mod evidence;
pub mod verify;

pub use chain::{ChainHead, GENESIS_HASH, event_hash};
pub use event::{EventKind, EventMethod};
pub use evidence::Evidence;
