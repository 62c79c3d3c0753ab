//! restic stores node names as Go's `strconv.Quote` of the raw name bytes without the
//! surrounding quotes, so names that are not UTF-8 survive JSON. These two functions are that
//! quoting and its inverse.

/// Quotes raw bytes the way Go's `strconv.Quote` does (minus the outer quotes): printable
/// UTF-8 stays as is, control characters become escapes, invalid bytes become `\xHH`.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                quote_str(s, &mut out);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                quote_str(std::str::from_utf8(good).expect("valid prefix"), &mut out);
                let n = e.error_len().unwrap_or(bad.len());
                for b in &bad[..n] {
                    out.push_str(&format!("\\x{b:02x}"));
                }
                rest = &bad[n..];
            }
        }
    }
    out
}

fn is_printable(c: char) -> bool {
    // Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space.
    // Approximated: everything but control characters, non-ASCII spaces and format chars.
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
        || ('\u{e000}'..='\u{f8ff}').contains(&c))
}

fn quote_str(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
}

/// Inverts [`quote`] (Go's `strconv.Unquote` of `"` + s + `"`), returning raw bytes.
pub fn unquote(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |s: &[u8]| -> Result<u32, String> {
        let t = std::str::from_utf8(s).map_err(|_| "bad escape".to_string())?;
        u32::from_str_radix(t, 16).map_err(|_| format!("bad hex escape {t:?}"))
    };
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let e = *b.get(i + 1).ok_or("trailing backslash")?;
        i += 2;
        match e {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            b'"' => out.push(b'"'),
            b'\'' => out.push(b'\''),
            b'x' => {
                let v = hex(b.get(i..i + 2).ok_or("short \\x")?)?;
                out.push(v as u8);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let v = hex(b.get(i..i + n).ok_or("short \\u")?)?;
                let c = char::from_u32(v).ok_or("invalid code point")?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            b'0'..=b'7' => {
                let d = b.get(i - 1..i + 2).ok_or("short octal")?;
                let t = std::str::from_utf8(d).map_err(|_| "bad octal")?;
                let v = u32::from_str_radix(t, 8).map_err(|_| "bad octal")?;
                out.push(v as u8);
                i += 2;
            }
            _ => return Err(format!("unknown escape \\{}", e as char)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_arbitrary_names() {
        for name in [
            b"plain.txt".to_vec(),
            "üñíçødé 名前".as_bytes().to_vec(),
            b"quote\"back\\slash\nnl\ttab".to_vec(),
            vec![b'a', 0xff, 0xfe, b'b', 0x80],
        ] {
            let q = quote(&name);
            assert_eq!(unquote(&q).unwrap(), name, "{q}");
        }
        assert_eq!(quote(&[b'a', 0xff]), "a\\xff");
        assert_eq!(quote(b"a\"b"), "a\\\"b");
    }
}
