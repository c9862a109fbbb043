//! Sizes and counts as people read them, for the run's messages and the binary's output
//! (one copy: the binary's output module re-exports these).

/// `1 pack`, `2 packs`: `noun` takes an `s` in the plural.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `512 B`, `1.5 KiB`, `3.0 GiB` (binary multiples, one decimal).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
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
    #[test]
    fn counts_take_the_plural_except_for_one() {
        assert_eq!(super::count(1, "pack"), "1 pack");
        assert_eq!(super::count(0, "pack"), "0 packs");
        assert_eq!(super::count(3, "index object"), "3 index objects");
    }
}
