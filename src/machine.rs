//! Machines as the scheduler sees them: validated machine IDs and metadata.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A machine ID in `/etc/machine-id` form: 32 lowercase hexadecimal characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MachineId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MachineError {
    #[error("machine ID `{0}` is not 32 lowercase hexadecimal characters")]
    InvalidId(String),
    #[error("metadata key `{0}` is invalid: use letters, digits, `_`, `.` and `-`")]
    InvalidKey(String),
    #[error(
        "metadata key `{0}` is invalid: a key of dots only reads as a path segment (`.`, `..`); \
         include a letter, digit, `_` or `-`"
    )]
    DotsKey(String),
    #[error("metadata value `{value}` of key `{key}` is invalid: {why}")]
    InvalidValue {
        key: String,
        value: String,
        why: &'static str,
    },
    #[error("metadata item `{0}` is not of the form key=value")]
    InvalidItem(String),
}

impl MachineId {
    pub const LEN: usize = 32;

    pub fn new(id: &str) -> Result<Self, MachineError> {
        if id.len() == Self::LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(id.to_owned()))
        } else {
            Err(MachineError::InvalidId(id.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 8-character prefix fleet shows in listings and accepts in `MachineID=`.
    pub fn short(&self) -> &str {
        &self.0[..8]
    }
}

impl TryFrom<String> for MachineId {
    type Error = MachineError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<MachineId> for String {
    fn from(id: MachineId) -> String {
        id.0
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MachineId({})", self.0)
    }
}

/// A machine's metadata (`region=eu`, `disk=ssd`), keys sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Parses the configuration form `region=eu,disk=ssd` (empty string: no metadata).
    pub fn parse_list(list: &str) -> Result<Self, MachineError> {
        let mut map = BTreeMap::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| MachineError::InvalidItem(item.to_owned()))?;
            let (key, value) = (key.trim(), value.trim());
            validate_key(key)?;
            validate_value(key, value)?;
            map.insert(key.to_owned(), value.to_owned());
        }
        Ok(Self(map))
    }

    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), MachineError> {
        validate_key(key)?;
        validate_value(key, value)?;
        self.0.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl fmt::Display for Metadata {
    /// The configuration form, `disk=ssd,region=eu`, as fleetctl's list-machines shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl TryFrom<BTreeMap<String, String>> for Metadata {
    type Error = MachineError;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        for (k, v) in &map {
            validate_key(k)?;
            validate_value(k, v)?;
        }
        Ok(Self(map))
    }
}

impl From<Metadata> for BTreeMap<String, String> {
    fn from(m: Metadata) -> Self {
        m.0
    }
}

/// Keys become etcd key segments (`metadata/<machine>/<key>`), so they are kept to a safe
/// alphabet, and a key of dots only (`.`, `..`), which a path would resolve, is refused.
pub fn validate_key(key: &str) -> Result<(), MachineError> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        Err(MachineError::InvalidKey(key.to_owned()))
    } else if key.bytes().all(|b| b == b'.') {
        Err(MachineError::DotsKey(key.to_owned()))
    } else {
        Ok(())
    }
}

fn validate_value(key: &str, value: &str) -> Result<(), MachineError> {
    let why = if value.len() > 1024 {
        Some("longer than 1024 bytes")
    } else if value.contains(',') {
        Some("contains `,`")
    } else if value.chars().any(char::is_control) {
        Some("contains a control character")
    } else if value.trim() != value {
        Some("has leading or trailing whitespace")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(MachineError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            why,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_must_be_32_lowercase_hex() {
        let cases = [
            ("0123456789abcdef0123456789abcdef", true),
            ("0123456789ABCDEF0123456789abcdef", false),
            ("0123456789abcdef0123456789abcde", false),
            ("0123456789abcdef0123456789abcdef0", false),
            ("0123456789abcdeg0123456789abcdef", false),
            ("../../etc/passwd", false),
            ("", false),
        ];
        for (id, ok) in cases {
            assert_eq!(MachineId::new(id).is_ok(), ok, "{id}");
        }
        let id = MachineId::new("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(id.short(), "01234567");
    }

    #[test]
    fn metadata_keys_are_safe_etcd_key_segments() {
        let cases = [
            ("disk", None),
            ("rack.no", None),
            (".hidden", None),
            ("a..b", None),
            ("_", None),
            ("-", None),
            (".", Some("dots")),
            ("..", Some("dots")),
            ("...", Some("dots")),
            ("", Some("alphabet")),
            ("a/b", Some("alphabet")),
            ("a b", Some("alphabet")),
            ("ключ", Some("alphabet")),
        ];
        for (key, refused) in cases {
            let got = match validate_key(key) {
                Ok(()) => None,
                Err(MachineError::DotsKey(k)) if k == key => Some("dots"),
                Err(MachineError::InvalidKey(k)) if k == key => Some("alphabet"),
                Err(other) => panic!("{key}: {other}"),
            };
            assert_eq!(got, refused, "{key:?}");
        }
        assert!(validate_key(&"a".repeat(253)).is_ok());
        assert!(validate_key(&"a".repeat(254)).is_err());
        assert_eq!(
            validate_key("..").unwrap_err().to_string(),
            "metadata key `..` is invalid: a key of dots only reads as a path segment \
             (`.`, `..`); include a letter, digit, `_` or `-`"
        );
    }

    #[test]
    fn metadata_lists_parse_and_reject_bad_items() {
        let md = Metadata::parse_list(" region=eu , disk=ssd,").unwrap();
        assert_eq!(md.get("region"), Some("eu"));
        assert_eq!(md.get("disk"), Some("ssd"));
        assert_eq!(md.to_string(), "disk=ssd,region=eu");
        assert!(Metadata::parse_list("").unwrap().is_empty());
        let bad = [
            (
                "region",
                "metadata item `region` is not of the form key=value",
            ),
            (
                "re/gion=eu",
                "metadata key `re/gion` is invalid: use letters, digits, `_`, `.` and `-`",
            ),
            (
                "=eu",
                "metadata key `` is invalid: use letters, digits, `_`, `.` and `-`",
            ),
        ];
        for (input, message) in bad {
            assert_eq!(
                Metadata::parse_list(input).unwrap_err().to_string(),
                message
            );
        }
        let mut md = Metadata::default();
        assert!(md.insert("k", "a\nb").is_err());
        assert!(md.insert("k", "a,b").is_err());
        assert!(md.insert("k", "").is_ok());
    }
}
