//! Kubernetes resource quantities (`500m`, `1Gi`, `1e3`), compared by value: the API server
//! rewrites them into canonical form, so `1000m` in Git comes back as `1` from the cluster.

use serde_json::Value;

/// A quantity's exact value as `mantissa * 10^exponent`, with trailing zeros moved into the
/// exponent so that equal values have equal representations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
}

impl Quantity {
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let (sign, rest) = match text.as_bytes().first()? {
            b'-' => (-1i128, &text[1..]),
            b'+' => (1, &text[1..]),
            _ => (1, text),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let mut mantissa: i128 = 0;
        for c in int_part.chars().chain(frac_part.chars()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(c as u8 - b'0'))?;
        }
        let mut exponent = -i32::try_from(frac_part.len()).ok()?;
        let (binary_shift, decimal_exp) = match suffix {
            "" => (0, 0),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            s if s.starts_with(['e', 'E']) => (0, s[1..].parse::<i32>().ok()?),
            _ => return None,
        };
        mantissa = mantissa.checked_mul(1i128.checked_shl(binary_shift)?)?;
        exponent = exponent.checked_add(decimal_exp)?;
        Some(Quantity::normalised(sign * mantissa, exponent))
    }

    fn normalised(mut mantissa: i128, mut exponent: i32) -> Quantity {
        if mantissa == 0 {
            return Quantity {
                mantissa: 0,
                exponent: 0,
            };
        }
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        Quantity { mantissa, exponent }
    }

    pub fn from_value(value: &Value) -> Option<Quantity> {
        match value {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => None,
        }
    }
}

/// Fields whose values are quantities: everything under these maps, plus a few named leaves.
const QUANTITY_PARENTS: &[&str] = &[
    "limits",
    "requests",
    "hard",
    "capacity",
    "allocatable",
    "podFixed",
    "max",
    "min",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
];
const QUANTITY_LEAVES: &[&str] = &["sizeLimit", "storage"];

/// Whether a leaf at `field` inside a map at `parent` holds a quantity.
pub fn is_quantity_field(parent: Option<&str>, field: &str) -> bool {
    QUANTITY_LEAVES.contains(&field) || parent.is_some_and(|p| QUANTITY_PARENTS.contains(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_in_any_notation_are_equal() {
        let eq = |a: &str, b: &str| Quantity::parse(a) == Quantity::parse(b);
        assert!(eq("1000m", "1"));
        assert!(eq("1Gi", "1024Mi"));
        assert!(eq("0.5", "500m"));
        assert!(eq("1e3", "1k"));
        assert!(eq("1.5Gi", "1536Mi"));
        assert!(eq("0", "0m"));
        assert!(!eq("1G", "1Gi"));
        assert!(!eq("100m", "1"));
        assert!(Quantity::parse("abc").is_none());
        assert!(Quantity::parse("1Xi").is_none());
        assert!(Quantity::parse("").is_none());
    }
}
