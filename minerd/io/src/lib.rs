//! `spacetime-io`: the operating-system and network plumbing that both long-running
//! Spacetime processes (the `minerd` daemon and the devnet node) need, on top of the
//! synchronous domain core `spacetime`.
//!
//! `spacetime` stays synchronous (no tokio, by convention); what needs a runtime or owns an
//! OS resource lives here, once:
//!
//! | module | owns |
//! |---|---|
//! | [`conn`] | one TCP connection speaking `spacetime::wire`: read the next message (through `spacetime::wire::MessageDecoder`), send one, and close with an Error then linger (decisions D9) |
//! | [`lock`] | the exclusive data-directory lock (`minerd.lock`, `devnet.lock`) |
//!
//! Data flows one way: `spacetime` ← `spacetime-io` ← `spacetime-devnet`, `minerd`, `e2e`.

#![forbid(unsafe_code)]

pub mod conn;
pub mod lock;

pub use conn::{Connection, MessageReader, ReadError, SendError};
pub use lock::{DataDirLock, LockError};
