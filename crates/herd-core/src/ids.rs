//! Identifiers of runs, tasks and agents: generation (time-ordered UUIDv7 in
//! simple hex form), validation of ids received from outside, and the short form
//! shown to people.

/// A new time-ordered id: a UUIDv7 as 32 lowercase hex characters, no hyphens.
/// Ids created later sort after earlier ones (to the millisecond).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Whether `s` is acceptable as an id: 1 to 64 characters of `[A-Za-z0-9_-]`.
/// Validate every id that arrives from outside before using it as a key or path.
pub fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The first 8 characters of `id` (all of it if shorter), for display.
pub fn short(id: &str) -> &str {
    match id.char_indices().nth(8) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_valid_unique_and_ordered() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert!(is_valid_id(&a));
        assert_ne!(a, b);
        assert!(a < b, "{a} !< {b}");
        // Version nibble of a UUIDv7.
        assert_eq!(&a[12..13], "7");
    }

    #[test]
    fn validity_table() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        let cases: &[(&str, bool)] = &[
            ("", false),
            ("a", true),
            ("0190f3a2b4c57d8e9f00112233445566", true),
            ("run_1-A", true),
            (&long, true),
            (&too_long, false),
            ("a b", false),
            ("a/b", false),
            ("../x", false),
            ("a.b", false),
            ("é", false),
            ("a\n", false),
        ];
        for &(s, want) in cases {
            assert_eq!(is_valid_id(s), want, "{s:?}");
        }
    }

    #[test]
    fn short_table() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("abc", "abc"),
            ("abcdefgh", "abcdefgh"),
            ("0190f3a2b4c57d8e", "0190f3a2"),
            ("ééééééééé", "éééééééé"),
        ];
        for &(s, want) in cases {
            assert_eq!(short(s), want, "{s:?}");
        }
    }
}
