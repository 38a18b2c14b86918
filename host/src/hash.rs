//! The one hashing helper: sha256, rendered as lowercase hex where shown.

use sha2::{Digest, Sha256};

pub type Sha256Hash = [u8; 32];

pub fn sha256(bytes: &[u8]) -> Sha256Hash {
    Sha256::digest(bytes).into()
}

/// sha256 over several parts, each prefixed by its length so that moving a
/// byte from one part to the next changes the hash.
pub fn sha256_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Sha256Hash {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

pub fn to_hex(hash: &Sha256Hash) -> String {
    hex::encode(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input_is_the_well_known_value() {
        assert_eq!(
            to_hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(
            sha256_parts([b"ab".as_slice(), b"c"]),
            sha256_parts([b"a".as_slice(), b"bc"])
        );
    }
}
