//! Numbers for people: `54.6k`, `1.2M`, `3.4 GiB`.

/// A count or rate with an SI suffix and three significant digits.
pub fn count(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let (v, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => return format!("{v:.0}"),
    };
    if v.abs() >= 100.0 {
        format!("{v:.0}{suffix}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}{suffix}")
    } else {
        format!("{v:.2}{suffix}")
    }
}

/// Bytes in binary units.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_people_write_them() {
        assert_eq!(count(950.0), "950");
        assert_eq!(count(54_600.0), "54.6k");
        assert_eq!(count(1_234_000.0), "1.23M");
        assert_eq!(count(250_000.0), "250k");
        assert_eq!(count(f64::NAN), "-");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10), "10.0 B");
    }
}
