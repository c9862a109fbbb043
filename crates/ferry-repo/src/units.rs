//! Byte sizes as people write them (`32MiB`, `512KiB`, `2G`, `4096`): one parser for the
//! CLI's options and the config file.

/// Why a byte size was refused; every variant names the input as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No leading digits.
    #[error("{input:?} is not a size (e.g. \"32MiB\")")]
    NotASize {
        /// The text as given (untrimmed).
        input: String,
    },
    /// A unit that is none of `B`, `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB`.
    #[error("unknown size unit {unit:?} in {input:?} (use KiB, MiB, GiB or TiB)")]
    UnknownUnit {
        /// The text as given (untrimmed).
        input: String,
        /// The unit part as written, lowercased.
        unit: String,
    },
    /// Zero, or more than 64 bits of bytes.
    #[error("size {input:?} is out of range")]
    OutOfRange {
        /// The text as given (untrimmed).
        input: String,
    },
}

/// Parse a positive byte size: digits, then an optional unit (`B`, `K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB`, `T`/`TiB`; case-insensitive, binary multiples). The error names the input.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| SizeError::NotASize {
        input: s.to_string(),
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(SizeError::UnknownUnit {
                input: s.to_string(),
                unit: other.to_string(),
            });
        }
    };
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .ok_or_else(|| SizeError::OutOfRange {
            input: s.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size(" 2 T "), Ok(2 << 40));
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999T").is_err());
        assert_eq!(
            parse_size("12 parsecs").map_err(|e| e.to_string()),
            Err(
                "unknown size unit \"parsecs\" in \"12 parsecs\" (use KiB, MiB, GiB or TiB)".into()
            )
        );
        assert_eq!(
            parse_size("x").map_err(|e| e.to_string()),
            Err("\"x\" is not a size (e.g. \"32MiB\")".into())
        );
    }
}
