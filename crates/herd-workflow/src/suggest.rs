//! "Did you mean": the closest known name to a mistyped one.

/// ` — did you mean "x"?` when a known name is close to `given` (an edit distance of at
/// most a third of its length, at least 1), else empty.
pub fn did_you_mean<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let limit = (given.chars().count() / 3).max(1);
    known
        .into_iter()
        .map(|k| (distance(given, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!(" — did you mean {k:?}?"))
        .unwrap_or_default()
}

/// Edit distance over chars, a swap of two neighbours counting as one edit (optimal string
/// alignment), so "biuld" is one edit from "build".
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("biuld", ["build", "test"]),
            " — did you mean \"build\"?"
        );
        assert_eq!(
            did_you_mean("neds", ["needs", "name"]),
            " — did you mean \"needs\"?"
        );
        assert_eq!(did_you_mean("zzzzzz", ["build", "test"]), "");
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
