//! Go `time.Duration` text, as Velero writes `operationTimeout`, `backupSyncPeriod` and
//! `validationFrequency` (`metav1.Duration` marshals through Go's `Duration.String()`).
//!
//! The CRD fields stay strings so an object round-trips byte for byte; these functions turn
//! them into [`std::time::Duration`] where ferry needs a number.

use std::time::Duration;

/// Why a Go duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoDurationError {
    #[error("empty duration: expected Go duration syntax such as \"10m0s\", \"1h\" or \"90s\"")]
    Empty,
    #[error(
        "duration {text:?} is negative; a timeout or period must be zero or positive (for example \"10m0s\")"
    )]
    Negative { text: String },
    #[error(
        "duration {text:?} has a number without a unit; add one of ns, us, ms, s, m, h (for example \"30s\")"
    )]
    MissingUnit { text: String },
    #[error("duration {text:?} has unknown unit {unit:?}; use one of ns, us, µs, ms, s, m, h")]
    UnknownUnit { text: String, unit: String },
    #[error(
        "duration {text:?} is not Go duration syntax; expected a sequence like \"1h30m\" or \"2.5s\""
    )]
    Syntax { text: String },
    #[error("duration {text:?} is too large")]
    Overflow { text: String },
}

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),        // U+00B5 micro sign
    ("\u{03bc}s", 1_000), // U+03BC Greek small letter mu
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
];

/// Parses Go duration syntax (`time.ParseDuration`): an optional `+`, then one or more
/// `<decimal><unit>` terms such as `1h30m`, `2.5s`, `300ms`; a bare `0` is zero.
/// Negative durations are rejected because every duration ferry reads is a timeout or period.
pub fn parse_go_duration(text: &str) -> Result<Duration, GoDurationError> {
    let mut rest = text;
    if rest.is_empty() {
        return Err(GoDurationError::Empty);
    }
    if let Some(stripped) = rest.strip_prefix('-') {
        // "-0" is zero in Go; anything else negative cannot be a timeout.
        if parse_go_duration(stripped)? == Duration::ZERO {
            return Ok(Duration::ZERO);
        }
        return Err(GoDurationError::Negative {
            text: text.to_string(),
        });
    }
    if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(GoDurationError::Syntax {
            text: text.to_string(),
        });
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let (whole, fraction) = match number.split_once('.') {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(GoDurationError::Syntax {
                text: text.to_string(),
            });
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(GoDurationError::MissingUnit {
                text: text.to_string(),
            });
        }
        let Some(&(_, scale)) = NANOS_PER_UNIT.iter().find(|(name, _)| *name == unit) else {
            return Err(GoDurationError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        };
        let overflow = || GoDurationError::Overflow {
            text: text.to_string(),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        let mut term = whole.checked_mul(scale).ok_or_else(overflow)?;
        // Fractional part: digits beyond nanosecond precision are dropped, as Go does.
        let mut place = scale;
        for digit in fraction.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            term += u128::from(digit - b'0') * place;
        }
        total_nanos = total_nanos.checked_add(term).ok_or_else(overflow)?;
    }
    // Go durations are int64 nanoseconds; stay within that range.
    if total_nanos > i64::MAX as u128 {
        return Err(GoDurationError::Overflow {
            text: text.to_string(),
        });
    }
    Ok(Duration::from_nanos(total_nanos as u64))
}

/// Formats a duration the way Go's `Duration.String()` does (`10m0s`, `1h0m0s`, `1.5s`,
/// `250ms`, `0s`), so values ferry writes look like the ones Velero writes.
pub fn format_go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (scale, unit) = if nanos < 1_000 {
            (1, "ns")
        } else if nanos < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{unit}", decimal(nanos, scale));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let second_nanos = nanos % 60_000_000_000;
    let seconds = decimal(second_nanos, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `value / scale` as a decimal without trailing zeros (`1500, 1000` → `1.5`).
fn decimal(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_velero_style_durations() {
        assert_eq!(parse_go_duration("10m0s"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            parse_go_duration("4h0m0s"),
            Ok(Duration::from_secs(4 * 3600))
        );
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_go_duration("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_go_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("+5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("-0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed_durations_with_the_reason() {
        assert_eq!(parse_go_duration(""), Err(GoDurationError::Empty));
        assert!(matches!(
            parse_go_duration("10"),
            Err(GoDurationError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("10 m"),
            Err(GoDurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("3d"),
            Err(GoDurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("-5m"),
            Err(GoDurationError::Negative { .. })
        ));
        assert!(matches!(
            parse_go_duration("1..2s"),
            Err(GoDurationError::Syntax { .. })
        ));
        assert!(matches!(
            parse_go_duration("h"),
            Err(GoDurationError::Syntax { .. })
        ));
        assert!(matches!(
            parse_go_duration("3000000h"),
            Err(GoDurationError::Overflow { .. })
        ));
        let message = parse_go_duration("3d").unwrap_err().to_string();
        assert!(
            message.contains("\"3d\"") && message.contains("\"d\""),
            "{message}"
        );
    }

    #[test]
    fn formats_like_go_and_round_trips() {
        assert_eq!(format_go_duration(Duration::from_secs(600)), "10m0s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_go_duration(Duration::from_micros(3)), "3µs");
        assert_eq!(format_go_duration(Duration::from_nanos(42)), "42ns");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_secs(3661)), "1h1m1s");
        for text in ["10m0s", "1h0m0s", "2.25s", "1h2m3.004s", "999ms"] {
            assert_eq!(format_go_duration(parse_go_duration(text).unwrap()), text);
        }
    }
}
