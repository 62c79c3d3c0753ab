//! Content ids: the SHA-256 of a blob's plaintext or of a stored file's bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

pub mod sha256_lanes;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// The id of some bytes: their SHA-256.
    pub fn hash(data: &[u8]) -> Id {
        Id(Sha256::digest(data).into())
    }

    /// The id of each of `msgs`, in order, into `out`: several messages hashed side by side
    /// where the CPU allows ([`sha256_lanes`]), faster than one [`Id::hash`] after another.
    pub fn hash_each(msgs: &[&[u8]], out: &mut Vec<Id>) {
        sha256_lanes::hash_each(msgs, out)
    }

    pub fn random() -> Id {
        Id(rand::random())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as restic shows ids.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a 64-digit hex id")]
pub struct ParseIdError(pub String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Id::from_hex(s.as_bytes()).ok_or_else(|| ParseIdError(s.to_string()))
    }
}

/// Each byte's value as a hex digit (either case), or [`NOT_HEX`].
const HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};
const NOT_HEX: u8 = 0xff;

impl Id {
    /// 64 hex digits, either case. Indexes and trees hold an id for every blob, so opening a
    /// repository parses tens of thousands of them: a table lookup per digit, no allocation.
    pub fn from_hex(digits: &[u8]) -> Option<Id> {
        if digits.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        let mut bad = 0u8;
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
            // NOT_HEX has its high bit set, no digit's value has: one test after the loop.
            bad |= hi | lo;
            *byte = (hi << 4) | (lo & 0x0f);
        }
        (bad & 0x80 == 0).then_some(Id(out))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(IdVisitor)
    }
}

/// Reads an id from the string as the deserializer has it (borrowed from the input where it
/// can), without a `String` per id.
struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a 64-digit hex id")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Id, E> {
        s.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_from_64_hex_digits_of_either_case_and_nothing_else() {
        let id = Id::hash(b"ferry");
        let hex = id.to_hex();
        assert_eq!(hex.parse::<Id>().unwrap(), id);
        assert_eq!(hex.to_uppercase().parse::<Id>().unwrap(), id);
        assert_eq!(
            "00ff10a0".repeat(8).parse::<Id>().unwrap().0[..4],
            [0x00, 0xff, 0x10, 0xa0]
        );
        for bad in [
            &hex[..63],
            &format!("{hex}0"),
            &format!("{}g", &hex[..63]),
            &format!("{} ", &hex[..63]),
            &format!("/{}", &hex[1..]),
            "",
        ] {
            let err = bad.parse::<Id>().expect_err(bad);
            assert_eq!(err.0, bad);
        }
        // Every byte that is not a digit is refused, in either place of a pair.
        for b in 0..=255u8 {
            let digit = b.is_ascii_hexdigit();
            for at in [0, 1] {
                let mut s = hex.clone().into_bytes();
                s[at] = b;
                assert_eq!(Id::from_hex(&s).is_some(), digit, "byte {b:#x} at {at}");
            }
        }
    }

    #[test]
    fn ids_round_trip_through_json() {
        let id = Id::hash(b"tree");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        // An escaped string is decoded first (serde_json hands over an owned copy).
        let escaped = format!("\"\\u0030{}\"", &id.to_hex()[1..]);
        let zeroed = serde_json::from_str::<Id>(&escaped).unwrap();
        assert_eq!(zeroed.0[1..], id.0[1..]);
        let err = serde_json::from_str::<Id>("\"abc\"").unwrap_err();
        assert!(
            err.to_string().contains("is not a 64-digit hex id"),
            "{err}"
        );
        assert!(serde_json::from_str::<Id>("42").is_err());
    }
}
