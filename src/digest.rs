//! Content hashes, as the registry and the caches name things, and checksums of what the
//! caches store.

use sha2::{Digest, Sha256};

/// The lowercase hex sha256 of some bytes: names (cache keys, registry hashes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A checksum that catches a damaged or truncated cache entry, `xxh3-128:HEX`. Not for
/// tampering: an entry lives in the user's own cache directory (or the package that runs
/// anyway). XXH3 checks a 100 MB snapshot in milliseconds; sha256 took a quarter of a cached
/// start-up.
pub fn checksum(bytes: &[u8]) -> String {
    format!("xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}
