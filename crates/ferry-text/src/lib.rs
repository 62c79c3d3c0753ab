//! How ferry writes for people, in one place for the repository, the controller, the data
//! mover and the CLI (none of which should depend on another for it): byte sizes in binary
//! units, and text cut to a byte budget. Slicing a `str` at a byte index panics when the index
//! falls inside a multi-byte character, so every message that is shortened goes through here.

/// The longest prefix of `s` that is at most `max_bytes` long and ends on a character
/// boundary.
pub fn prefix(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    // A UTF-8 character is at most 4 bytes, so this steps back at most 3 times.
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Shortens `s` in place to at most `max_bytes`, on a character boundary.
pub fn truncate(s: &mut String, max_bytes: usize) {
    let keep = prefix(s, max_bytes).len();
    s.truncate(keep);
}

/// Bytes for people: binary units with one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_never_split_a_character() {
        let s = "aé€😀"; // 1 + 2 + 3 + 4 bytes
        let cuts: Vec<&str> = (0..=s.len() + 2).map(|n| prefix(s, n)).collect();
        assert_eq!(
            cuts,
            [
                "",
                "a",
                "a",
                "aé",
                "aé",
                "aé",
                "aé€",
                "aé€",
                "aé€",
                "aé€",
                "aé€😀",
                "aé€😀",
                "aé€😀"
            ]
        );
        let mut owned = "€€".to_string();
        truncate(&mut owned, 4);
        assert_eq!(owned, "€");
    }

    #[test]
    fn human_bytes_uses_binary_units_with_one_decimal() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(256 * 1024 * 1024), "256.0 MiB");
        assert_eq!(human_bytes(3 << 50), "3.0 PiB");
    }
}
