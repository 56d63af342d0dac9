//! Content hashes, as the registry and the caches name things.

use sha2::{Digest, Sha256};

/// The lowercase hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
