//! The miner's Ed25519 key (decisions D1).
//!
//! The 32-byte public key is the plot key of every plot the miner creates, and every
//! 33-byte key slot (`miner_id`, tx sender/recipient) holds `0xED ‖ pk`. Signatures are
//! Ed25519 (RFC 8032) over the 32-byte block or tx hash, verified with the strict rules of
//! `ed25519-dalek` (no small-order keys, canonical `s`), so a signature has one encoding.
//!
//! # Key file format
//!
//! A two-line ASCII text file, created with mode 0600:
//!
//! ```text
//! spacetime-ed25519-secret-key v1
//! <64 lower-case hex digits: the 32-byte Ed25519 secret seed>
//! ```
//!
//! A text format with a header line rather than 32 raw bytes because the header names the
//! scheme and version (a future format change is detected instead of misread), any other
//! 32-byte file dropped at the path is refused instead of silently becoming a key, and an
//! operator can back it up or compare it with ordinary tools. Loading accepts exactly this
//! (a final newline is optional) and refuses a file group or others can read.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use thiserror::Error;

use crate::hash::Hash32;
use crate::regular_file::{self, ReadFileError};

/// First byte of every Ed25519 key slot.
pub const ED25519_TAG: u8 = 0xED;
/// First line of the key file.
pub const KEY_FILE_HEADER: &str = "spacetime-ed25519-secret-key v1";

/// Why a key file could not be loaded or created.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("cannot read or write key file {path}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The key file can be read by group or others.
    #[error(
        "key file {path} has mode {mode:04o}: group or others have access; run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not in the documented format.
    #[error("key file {path} is malformed: {reason}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// Creating a key would replace an existing file.
    #[error("key file {path} already exists; refusing to overwrite it")]
    AlreadyExists {
        /// The key file.
        path: PathBuf,
    },
}

/// The miner's signing key.
pub struct MinerKey {
    signing: SigningKey,
}

impl std::fmt::Debug for MinerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("MinerKey")
            .field("public_key", &hex::encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

impl MinerKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::generate(&mut OsRng),
        }
    }

    /// A key from its 32-byte secret seed (tests, tools).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// Loads a key file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Opened first and checked through the descriptor: a FIFO never blocks us.
        let (file, len) = regular_file::open_regular(path).map_err(|e| match e {
            ReadFileError::NotRegular { .. } => KeyError::Malformed {
                path: path.to_path_buf(),
                reason: "not a regular file",
            },
            other => io_err(other.into_io()),
        })?;
        let meta = file.metadata().map_err(io_err)?;
        check_permissions(path, &meta)?;
        // The file is two short lines; anything large is not a key file.
        if len > 256 {
            return Err(KeyError::Malformed {
                path: path.to_path_buf(),
                reason: "file is larger than a key file can be",
            });
        }
        let mut text = Vec::new();
        file.take(257).read_to_end(&mut text).map_err(io_err)?;
        parse_key_file(&text).map_err(|reason| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Generates a key and writes it to `path` atomically (temporary file with mode 0600,
    /// fsync, rename without replacing, fsync of the directory). Fails with
    /// [`KeyError::AlreadyExists`] when `path` exists.
    pub fn create(path: &Path) -> Result<Self, KeyError> {
        let key = Self::generate();
        key.save_new(path)?;
        Ok(key)
    }

    /// Loads the key at `path`, or creates one there if no file exists. Never overwrites.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        match fs::symlink_metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match Self::create(path) {
                // Someone else created it between our check and our rename: use theirs.
                Err(KeyError::AlreadyExists { .. }) => Self::load(path),
                other => other,
            },
            Err(source) => Err(KeyError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes this key to a new file at `path` (see [`MinerKey::create`]).
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        let io_err = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        let contents = format!(
            "{KEY_FILE_HEADER}\n{}\n",
            hex::encode(self.signing.to_bytes())
        );
        // Created 0600 (the temporary file's mode), never replacing an existing key.
        crate::atomic_file::write_atomic_new(path, contents.as_bytes()).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                KeyError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(e)
            }
        })?;
        Ok(())
    }

    /// The 32-byte Ed25519 public key (the plot key).
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// `0xED ‖ pk`: the 33-byte id used in blocks and transactions.
    pub fn miner_id(&self) -> [u8; 33] {
        miner_id_of(&self.public_key())
    }

    /// Ed25519 signature of a 32-byte block or tx hash.
    pub fn sign(&self, msg_hash: &Hash32) -> [u8; 64] {
        self.signing.sign(msg_hash).to_bytes()
    }
}

/// `0xED ‖ pk`.
pub fn miner_id_of(public_key: &[u8; 32]) -> [u8; 33] {
    let mut id = [0u8; 33];
    id[0] = ED25519_TAG;
    id[1..].copy_from_slice(public_key);
    id
}

/// The public key inside a miner id, or `None` when the tag is not 0xED.
pub fn public_key_of(miner_id: &[u8; 33]) -> Option<[u8; 32]> {
    if miner_id[0] != ED25519_TAG {
        return None;
    }
    let mut pk = [0u8; 32];
    pk.copy_from_slice(&miner_id[1..]);
    Some(pk)
}

/// Whether `sig` is a valid (strict) Ed25519 signature of `msg_hash` by the key in
/// `miner_id`. False for a tag other than 0xED or a key that is not a valid point.
pub fn verify_signature(miner_id: &[u8; 33], msg_hash: &Hash32, sig: &[u8; 64]) -> bool {
    let Some(pk) = public_key_of(miner_id) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    key.verify_strict(msg_hash, &Signature::from_bytes(sig))
        .is_ok()
}

fn parse_key_file(text: &[u8]) -> Result<MinerKey, &'static str> {
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8 text")?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let (header, secret_hex) = text
        .split_once('\n')
        .ok_or("expected two lines: a header and the hex secret")?;
    if header != KEY_FILE_HEADER {
        return Err("first line is not `spacetime-ed25519-secret-key v1`");
    }
    if secret_hex.len() != 64 {
        return Err("second line must be exactly 64 hex digits");
    }
    let mut secret = [0u8; 32];
    hex::decode_to_slice(secret_hex, &mut secret).map_err(|_| "second line is not hex")?;
    Ok(MinerKey::from_secret_bytes(&secret))
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<(), KeyError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_while_creating_the_key_file_leaves_none_or_a_whole_one() {
        use crate::atomic_file::{crash_points::crashed, remove_stale_temporaries, Step};
        for step in Step::ALL {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("miner_key.dat");
            crashed(step, || MinerKey::load_or_create(&path)).unwrap_err();
            assert_eq!(path.exists(), step == Step::Renamed, "{step:?}");
            remove_stale_temporaries(&path);
            // Whatever is there loads: the whole key, or none and a new one is made.
            MinerKey::load_or_create(&path).unwrap();
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                1,
                "{step:?}"
            );
        }
    }

    #[test]
    fn sign_verify_round_trip_and_tampering_fails() {
        let key = MinerKey::generate();
        let msg = crate::hash::sha256(b"header");
        let sig = key.sign(&msg);
        let id = key.miner_id();
        assert_eq!(id[0], 0xED);
        assert_eq!(&id[1..], &key.public_key());
        assert!(verify_signature(&id, &msg, &sig));

        let mut other_msg = msg;
        other_msg[0] ^= 1;
        assert!(!verify_signature(&id, &other_msg, &sig));
        for i in [0, 31, 32, 63] {
            let mut bad = sig;
            bad[i] ^= 0x80;
            assert!(!verify_signature(&id, &msg, &bad), "byte {i}");
        }
        for tag in [0x02, 0x03, 0x00, 0xEC] {
            let mut bad_id = id;
            bad_id[0] = tag;
            assert!(!verify_signature(&bad_id, &msg, &sig), "tag {tag:#x}");
        }
        let other = MinerKey::generate();
        assert!(!verify_signature(&other.miner_id(), &msg, &sig));
        assert!(!verify_signature(&id, &msg, &[0; 64]));
    }

    #[test]
    fn rfc8032_test_vector_1() {
        let secret: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = MinerKey::from_secret_bytes(&secret);
        assert_eq!(
            hex::encode(key.public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[cfg(unix)]
    #[test]
    fn created_key_file_is_0600_reloads_and_is_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("miner_key.dat");
        let key = MinerKey::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(KEY_FILE_HEADER));

        let again = MinerKey::load_or_create(&path).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        assert!(matches!(
            MinerKey::create(&path),
            Err(KeyError::AlreadyExists { .. })
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn group_or_world_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        MinerKey::create(&path).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = MinerKey::load(&path).unwrap_err();
            assert!(
                matches!(err, KeyError::InsecurePermissions { mode: m, .. } if m == mode),
                "{err}"
            );
            assert!(err.to_string().contains(&path.display().to_string()));
            assert!(MinerKey::load_or_create(&path).is_err());
        }
    }

    #[cfg(unix)]
    #[test]
    fn malformed_key_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let cases: [&[u8]; 5] = [
            b"",
            &[7u8; 32],
            b"spacetime-ed25519-secret-key v2\n00\n",
            b"spacetime-ed25519-secret-key v1\nzz00000000000000000000000000000000000000000000000000000000000000\n",
            b"spacetime-ed25519-secret-key v1\n0000\n",
        ];
        for contents in cases {
            fs::write(&path, contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            assert!(matches!(
                MinerKey::load(&path),
                Err(KeyError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let key = MinerKey::from_secret_bytes(&[0xAB; 32]);
        assert!(!format!("{key:?}").contains("abababab"));
    }
}
