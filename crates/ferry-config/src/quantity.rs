//! Kubernetes resource quantities (`500m`, `1Gi`, `1.5`, `2e3`), parsed with the grammar the
//! API server uses:
//!
//! ```text
//! quantity  ::= sign? number suffix
//! number    ::= digits | digits "." digits? | "." digits
//! suffix    ::= binarySI | decimalSI | ("e" | "E") sign? digits
//! binarySI  ::= Ki | Mi | Gi | Ti | Pi | Ei
//! decimalSI ::= n | u | m | "" | k | M | G | T | P | E
//! ```
//!
//! Values are kept exactly, in units of 10^-9 (Kubernetes itself never keeps more precision than
//! that), so requests and limits compare exactly and `1Gi` is exactly 1073741824 bytes.

use std::cmp::Ordering;
use std::fmt;

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error(
        "{0:?} is not a Kubernetes quantity (expected a number with an optional suffix, e.g. 500m, 2, 1.5Gi, 512Mi, 10G)"
    )]
    Syntax(String),
    #[error(
        "{0:?} has an unknown suffix {1:?} (use one of n u m k M G T P E Ki Mi Gi Ti Pi Ei, or e<exponent>)"
    )]
    Suffix(String, String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// A parsed quantity. Keeps the text it came from, to hand on to Kubernetes unchanged.
#[derive(Debug, Clone)]
pub struct Quantity {
    text: String,
    /// The value times 10^9, rounded up (away from zero is not needed: Kubernetes rounds up).
    nanos: i128,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl Quantity {
    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value in base units (bytes for memory and storage, cores for CPU), rounded up to a
    /// whole number as Kubernetes' `Value()` does.
    pub fn value(&self) -> i128 {
        div_ceil(self.nanos, NANOS_PER_UNIT)
    }

    /// The value in thousandths of the base unit (millicores for CPU), rounded up as Kubernetes'
    /// `MilliValue()` does.
    pub fn millis(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    /// The exact value in units of 10^-9.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 { q + 1 } else { q }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_quantity(s)
    }
}

/// Parses a Kubernetes quantity such as `500m`, `1Gi` or `1e3`.
pub fn parse_quantity(text: &str) -> Result<Quantity, QuantityError> {
    if text.is_empty() {
        return Err(QuantityError::Empty);
    }
    let syntax = || QuantityError::Syntax(text.to_string());
    let too_large = || QuantityError::TooLarge(text.to_string());
    let bytes = text.as_bytes();
    let mut pos = 0;

    let negative = match bytes[0] {
        b'-' => {
            pos += 1;
            true
        }
        b'+' => {
            pos += 1;
            false
        }
        _ => false,
    };

    // Digits before and after the decimal point, as one integer plus a count of fraction digits.
    let mut mantissa: i128 = 0;
    let mut fraction_digits: i32 = 0;
    let mut int_digits = 0;
    let mut frac_seen = 0;
    let mut sticky = false;
    let push_digit = |mantissa: &mut i128, d: u8| -> Result<(), QuantityError> {
        *mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(d - b'0')))
            .ok_or_else(too_large)?;
        Ok(())
    };
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        push_digit(&mut mantissa, bytes[pos])?;
        int_digits += 1;
        pos += 1;
    }
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            // Digits this far down cannot change the value at 10^-9 precision except by
            // rounding up, which `sticky` remembers.
            if fraction_digits < 20 {
                push_digit(&mut mantissa, bytes[pos])?;
                fraction_digits += 1;
            } else if bytes[pos] != b'0' {
                sticky = true;
            }
            frac_seen += 1;
            pos += 1;
        }
    }
    if int_digits == 0 && frac_seen == 0 {
        return Err(syntax());
    }

    let suffix = &text[pos..];
    // (power of ten, power of two) the suffix multiplies by.
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ if suffix.starts_with(['e', 'E']) => {
            let exponent = &suffix[1..];
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Suffix(text.to_string(), suffix.to_string()));
            }
            let value: i32 = exponent.parse().map_err(|_| too_large())?;
            (value, 0)
        }
        _ if suffix.starts_with(|c: char| c.is_ascii_alphabetic()) => {
            return Err(QuantityError::Suffix(text.to_string(), suffix.to_string()));
        }
        _ => return Err(syntax()),
    };

    // value = mantissa * 10^(exp10 - fraction_digits) * 2^exp2; we want value * 10^9.
    let mut scaled = mantissa
        .checked_mul(1i128.checked_shl(exp2).ok_or_else(too_large)?)
        .ok_or_else(too_large)?;
    let shift = exp10 - fraction_digits + 9;
    if shift >= 0 {
        if mantissa != 0 {
            let factor = 10i128.checked_pow(shift as u32).ok_or_else(too_large)?;
            scaled = scaled.checked_mul(factor).ok_or_else(too_large)?;
        }
    } else {
        let divisor = 10i128.checked_pow((-shift) as u32);
        scaled = match divisor {
            Some(d) => div_ceil(scaled, d),
            // Smaller than any representable unit but not zero: Kubernetes rounds it up to 1n.
            None => i128::from(scaled > 0),
        };
    }
    if sticky {
        scaled = scaled.checked_add(1).ok_or_else(too_large)?;
    }
    Ok(Quantity {
        text: text.to_string(),
        nanos: if negative { -scaled } else { scaled },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        parse_quantity(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn binary_suffixes_are_powers_of_two() {
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("512Mi").value(), 512 << 20);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("10Gi").value(), 10 << 30);
        assert_eq!(q("1Ti").value(), 1 << 40);
        assert_eq!(q("1.5Gi").value(), 3 << 29);
        assert_eq!(q("2Ei").value(), 2i128 << 60);
    }

    #[test]
    fn decimal_suffixes_are_powers_of_ten() {
        assert_eq!(q("1k").value(), 1000);
        assert_eq!(q("5G").value(), 5_000_000_000);
        assert_eq!(q("1M").value(), 1_000_000);
        assert_eq!(q("3E").value(), 3_000_000_000_000_000_000);
        assert_eq!(q("128974848").value(), 128974848);
    }

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(q("500m").millis(), 500);
        assert_eq!(q("1000m").millis(), 1000);
        assert_eq!(q("1").millis(), 1000);
        assert_eq!(q("0.5").millis(), 500);
        assert_eq!(q(".25").millis(), 250);
        assert_eq!(q("2.").millis(), 2000);
        assert_eq!(q("100u").millis(), 1, "rounds up like Kubernetes");
        assert_eq!(q("1n").nanos(), 1);
        assert_eq!(q("500m").value(), 1, "value rounds up");
    }

    #[test]
    fn exponents() {
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1E3").value(), 1000);
        assert_eq!(q("12e-3").millis(), 12);
        assert_eq!(q("1e+2").value(), 100);
        // A bare E is the exa suffix, not an exponent.
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
    }

    #[test]
    fn signs() {
        assert!(q("-1").is_negative());
        assert_eq!(q("+2").value(), 2);
        assert!(q("0").is_zero());
        assert!(q("0Gi").is_zero());
    }

    #[test]
    fn ordering_is_exact() {
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1024Mi"), q("1Gi"));
        assert!(q("999m") < q("1"));
    }

    #[test]
    fn malformed() {
        for bad in [
            "", "abc", "1.2.3", "1 Gi", "Gi", ".", "-", "1gi", "1KB", "1e", "1e1.5", "--1", "1Mi1",
            " 1",
        ] {
            assert!(parse_quantity(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(matches!(parse_quantity("1gi"), Err(QuantityError::Suffix(_, s)) if s == "gi"));
        assert!(matches!(
            parse_quantity("1e999"),
            Err(QuantityError::TooLarge(_))
        ));
    }
}
