//! Rate-control limits of a fan-out: a count (`5`) or a share of the targets (`10%`), as
//! taken by `--concurrency` and `--max-errors`.

use std::fmt;
use std::str::FromStr;

/// A number of machines, absolute or as a percentage of the run's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Count(u64),
    /// 0..=100.
    Percent(u8),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad limit {input:?}: {reason}")]
pub struct LimitError {
    pub input: String,
    pub reason: &'static str,
}

impl Limit {
    /// Parses `N` or `N%` (surrounding whitespace ignored).
    pub fn parse(s: &str) -> Result<Limit, LimitError> {
        let t = s.trim();
        let err = |reason| LimitError {
            input: s.to_string(),
            reason,
        };
        if let Some(p) = t.strip_suffix('%') {
            let p: u64 = p
                .trim()
                .parse()
                .map_err(|_| err("expected a whole number of percent such as 10%"))?;
            if p > 100 {
                return Err(err("a percentage is at most 100%"));
            }
            return Ok(Limit::Percent(p as u8));
        }
        t.parse()
            .map(Limit::Count)
            .map_err(|_| err("expected a number such as 5 or a percentage such as 10%"))
    }

    /// The share of `total` this limit allows, rounded down (a percentage of errors
    /// tolerated: 10% of 15 machines is 1).
    pub fn floor_of(self, total: usize) -> usize {
        match self {
            Limit::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Limit::Percent(p) => total.saturating_mul(usize::from(p)) / 100,
        }
    }

    /// The share of `total` this limit allows, rounded up and at least 1 (machines at
    /// once: 10% of 15 is 2, and 1% of 5 is still 1).
    pub fn ceil_of(self, total: usize) -> usize {
        match self {
            Limit::Count(n) => usize::try_from(n).unwrap_or(usize::MAX).max(1),
            Limit::Percent(p) => total.saturating_mul(usize::from(p)).div_ceil(100).max(1),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for Limit {
    type Err = LimitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Limit::parse(s)
    }
}

impl serde::Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Count(n) => s.serialize_u64(*n),
            Limit::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Limit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Limit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of machines (5) or a percentage (\"10%\")")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Limit, E> {
                Ok(Limit::Count(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Limit, E> {
                u64::try_from(v)
                    .map(Limit::Count)
                    .map_err(|_| E::custom("a limit cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Limit, E> {
                Limit::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// In the OpenAPI document a limit is one of two forms, as it is on the wire: an integer count
/// or a `"N%"` string.
#[cfg(feature = "schema")]
impl utoipa::PartialSchema for Limit {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0))
                    .description(Some("A number of machines.")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+%$"))
                    .description(Some("A share of the run's targets, 0% to 100%.")),
            )
            .description(Some(
                "A number of machines, absolute (`5`) or as a percentage of the run's targets \
                 (`\"10%\"`).",
            ))
            .into()
    }
}

#[cfg(feature = "schema")]
impl utoipa::ToSchema for Limit {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_percentages() {
        assert_eq!(Limit::parse("5").unwrap(), Limit::Count(5));
        assert_eq!(Limit::parse(" 10% ").unwrap(), Limit::Percent(10));
        assert_eq!(Limit::parse("0").unwrap(), Limit::Count(0));
        for bad in ["", "%", "-1", "5.5", "101%", "ten", "10%%"] {
            assert!(Limit::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn shares_round_the_right_way() {
        assert_eq!(Limit::Percent(10).ceil_of(15), 2);
        assert_eq!(Limit::Percent(1).ceil_of(5), 1);
        assert_eq!(Limit::Count(0).ceil_of(5), 1);
        assert_eq!(Limit::Percent(10).floor_of(15), 1);
        assert_eq!(Limit::Percent(0).floor_of(15), 0);
        assert_eq!(Limit::Count(3).floor_of(1), 3);
    }

    #[test]
    fn serde_accepts_numbers_and_strings() {
        let l: Limit = serde_json::from_str("7").unwrap();
        assert_eq!(l, Limit::Count(7));
        let l: Limit = serde_json::from_str("\"25%\"").unwrap();
        assert_eq!(l, Limit::Percent(25));
        assert!(serde_json::from_str::<Limit>("-2").is_err());
        assert_eq!(
            serde_json::to_string(&Limit::Percent(25)).unwrap(),
            "\"25%\""
        );
        assert_eq!(serde_json::to_string(&Limit::Count(3)).unwrap(), "3");
    }
}
