//! Parsing Kubernetes resource quantities (`10Gi`, `500m`, `1.5e3`) into numbers, enough for
//! comparing sizes and summing requests. Kubernetes keeps exact decimals; kubesim uses f64,
//! which is exact for every size a test uses (powers of two and small decimals).
//! kubesim stands in for the API server, so it keeps this copy rather than use ferry-config's
//! exact `parse_quantity` (ferry's one home for the rule), which kubesim does not depend on.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of a quantity in base units (bytes, cores); `None` if it does not parse.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Pi", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Ei", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    for (suffix, factor) in [("P", 1e15), ("E", 1e18)] {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    // Plain numbers and decimal exponents (`1e3`, `12E6`).
    text.parse::<f64>().ok()
}

/// The value of an optional quantity, 0 when absent or malformed.
pub fn quantity_value(quantity: Option<&Quantity>) -> f64 {
    quantity.and_then(|q| parse_quantity(&q.0)).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_decimal_and_milli_suffixes() {
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("10Mi"), Some(10.0 * 1048576.0));
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1k"), Some(1000.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("3G"), Some(3e9));
        assert_eq!(parse_quantity("bogus"), None);
        assert_eq!(parse_quantity(""), None);
    }
}
