//! Resource quantities (`10Gi`, `500m`, `1.5e3`) as numbers, enough for comparing sizes and
//! summing requests. The grammar is ferry-config's `parse_quantity`, the API server's own, so
//! kubesim accepts and refuses exactly what ferry and a real cluster do; kubesim then works in
//! f64, which is exact for every size a test uses (powers of two and small decimals).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of a quantity in base units (bytes, cores); `None` if it does not parse.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let quantity = ferry_config::parse_quantity(text.trim()).ok()?;
    Some(quantity.nanos() as f64 / 1e9)
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
