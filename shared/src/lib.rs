//! `spacetime`: the domain core of the Spacetime miner.
//!
//! Synchronous and free of any async runtime or RPC types: plot files, the Merkle tree and
//! its cache, scanning and proofs, consensus rules, blocks and transactions, the wire codec,
//! keys, and the plot metadata file. Byte layouts follow the C# reference implementation
//! (`runcodedad/spacetime`); where this crate departs from it, `docs/decisions.md` says why.
//!
//! Each concept has one module, and modules depend one way (no cycle between top-level
//! modules; `tests/tests/layout.rs` checks):
//!
//! | module | owns |
//! |---|---|
//! | [`hash`], `compress` | SHA-256 helpers; the fixed-shape compression paths and the Merkle node hashes |
//! | [`kernel`] | the multi-message SHA-256 backends (portable, AVX2, AVX-512, SHA-NI) and their choice |
//! | [`merkle`] | the tree: heights, level sizes, streaming folds, paths |
//! | [`plot`] | the plot storage engine: the file format, creation and checks, its Merkle cache file ([`cache`]) and the proofs read from both ([`prove`]) |
//! | [`scan`], [`bench`] | scanning plots for the best score of a challenge; the engine benchmark |
//! | [`block`], [`keys`] | blocks and transactions in the reference layouts; Ed25519 miner keys |
//! | [`consensus`], [`validate`] | the rules: challenges, targets, difficulty, block templates, transaction order; the checks of blocks and proofs |
//! | [`wire`] | frames, messages and the refusals inside Error text |
//! | [`metadata`], [`atomic_file`], [`regular_file`], [`clock`] | the plot metadata file; atomic writes; bounded reads of files we do not control; the wall clock |
//!
//! Dependencies run one way: `hash`/`compress` ← `kernel` ← `merkle` ← `plot` ← `scan`,
//! `bench`; `plot` ← `block` ← `wire` ← `consensus` (which also uses `scan`) ← `validate`.

pub mod atomic_file;
pub mod bench;
pub mod block;
pub mod clock;
mod codec;
mod compress;
pub mod consensus;
mod error_chain;
pub mod hash;
pub mod kernel;
pub mod keys;
pub mod merkle;
pub mod metadata;
pub mod plot;
pub mod regular_file;
pub mod scan;
#[cfg(test)]
mod test_support;
pub mod validate;
pub mod wire;

// The plot's cache file and its proofs live in `plot` (one storage engine); their paths
// stay `spacetime::cache` and `spacetime::prove`.
pub use plot::{cache, prove};

pub use codec::DecodeError;
pub use error_chain::error_chain;
