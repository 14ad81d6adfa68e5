//! A start delay per fire, the same on every server and after every restart.

/// A delay in `[0, max_ms)` for the fire of `schedule_id` at `fire_ms`, from a fixed hash
/// (64-bit FNV-1a) of both: a restarted server waits the same, different schedules and fire
/// times spread out. 0 when `max_ms` ≤ 0.
pub fn jitter_ms(schedule_id: &str, fire_ms: i64, max_ms: i64) -> i64 {
    if max_ms <= 0 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    // The fire time has a fixed length at the end, so no two (id, time) pairs share input.
    for b in schedule_id.bytes().chain(fire_ms.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly on short inputs: fold the high half in before the modulo.
    h ^= h >> 32;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 29;
    // max_ms > 0, so the remainder is below it and fits.
    i64::try_from(h % max_ms.unsigned_abs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::jitter_ms;

    #[test]
    fn jitter_is_deterministic_in_range_and_spread() {
        assert_eq!(jitter_ms("nightly", 1_800_000_000_000, 0), 0);
        assert_eq!(jitter_ms("nightly", 1_800_000_000_000, -5), 0);
        let a = jitter_ms("nightly", 1_800_000_000_000, 60_000);
        assert_eq!(a, jitter_ms("nightly", 1_800_000_000_000, 60_000));
        // A fixed hash (not std's seeded one): the same value on every build and after every
        // restart (worked out by hand from FNV-1a and the fold).
        assert_eq!(a, 24_930);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1_000i64 {
            let j = jitter_ms(
                &format!("s{}", i % 10),
                1_800_000_000_000 + i * 60_000,
                60_000,
            );
            assert!((0..60_000).contains(&j), "{j}");
            seen.insert(j / 6_000); // ten buckets of 6 s
        }
        assert_eq!(
            seen.len(),
            10,
            "jitter should spread over the range: {seen:?}"
        );
        assert_ne!(jitter_ms("a", 0, 1 << 40), jitter_ms("b", 0, 1 << 40));
        assert_ne!(jitter_ms("a", 0, 1 << 40), jitter_ms("a", 1, 1 << 40));
        assert_eq!(jitter_ms("a", 0, 1), 0);
    }
}
