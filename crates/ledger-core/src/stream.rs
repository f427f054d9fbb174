//! Validated stream names (`category-id`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::StoreError;

/// The longest id part a stream name may have.
const MAX_ID_LEN: usize = 200;

/// A validated stream name: `^[a-z][a-z0-9_]*-[A-Za-z0-9_.:-]{1,200}$`, e.g. `tenant-0190c3`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StreamName(String);

impl StreamName {
    /// The regular expression every valid name matches (as [`parse`](Self::parse) checks it).
    pub const PATTERN: &'static str = "^[a-z][a-z0-9_]*-[A-Za-z0-9_.:-]{1,200}$";

    /// Parses and validates a stream name.
    pub fn parse(name: impl Into<String>) -> Result<Self, StoreError> {
        let name = name.into();
        match invalid_reason(&name) {
            None => Ok(Self(name)),
            Some(reason) => Err(StoreError::InvalidStreamName { name, reason }),
        }
    }

    /// Builds `category-id` from its parts, validating the result.
    pub fn from_parts(category: &str, id: &str) -> Result<Self, StoreError> {
        Self::parse(format!("{category}-{id}"))
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `-`, e.g. `tenant`.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map(|(c, _)| c).unwrap_or(&self.0)
    }

    /// The part after the first `-`.
    pub fn id(&self) -> &str {
        self.0.split_once('-').map(|(_, id)| id).unwrap_or("")
    }
}

/// Why `name` is not a valid stream name, or `None` when it is.
fn invalid_reason(name: &str) -> Option<&'static str> {
    let Some((category, id)) = name.split_once('-') else {
        return Some("a stream name is `category-id` and this one has no `-`");
    };
    let mut chars = category.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() => {}
        _ => return Some("the category must start with a lowercase letter a-z"),
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Some("the category may hold only a-z, 0-9 and _");
    }
    if id.is_empty() {
        return Some("the id after `-` must not be empty");
    }
    if id.len() > MAX_ID_LEN {
        return Some("the id after `-` must be at most 200 characters");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    {
        return Some("the id may hold only A-Z, a-z, 0-9, _, ., : and -");
    }
    None
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for StreamName {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in [
            "tenant-0190c3a1-7b2e",
            "slug-acme",
            "session-a.b:c_d",
            "a1_b-x",
            "bench-1-2-3",
        ] {
            let s = StreamName::parse(ok).unwrap();
            assert_eq!(s.as_str(), ok);
        }
        let s = StreamName::parse("tenant-abc-def").unwrap();
        assert_eq!((s.category(), s.id()), ("tenant", "abc-def"));
    }

    #[test]
    fn rejects_invalid_names() {
        let long = format!("tenant-{}", "x".repeat(201));
        for bad in [
            "",
            "tenant",
            "-abc",
            "Tenant-abc",
            "1tenant-abc",
            "ten ant-abc",
            "tenant-",
            "tenant-a b",
            "tenant-a/b",
            "tenant-é",
            long.as_str(),
        ] {
            let err = StreamName::parse(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_stream_name", "{bad:?}");
        }
        assert!(StreamName::parse(format!("tenant-{}", "x".repeat(200))).is_ok());
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<StreamName>("\"slug-acme\"").is_ok());
        assert!(serde_json::from_str::<StreamName>("\"nope\"").is_err());
    }
}
