//! Service announcements: a user's key (`/services/website/apache`) holding a value under the
//! announcing process's lease, and a record of who announced it, under the same lease.

use std::time::Duration;

use etcd_client::{GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::kv::{json, timed};
use super::watch::{PrefixWatch, TypedWatch};
use super::{Keys, Lease, Registry, RegistryError};
use crate::machine::MachineId;
use crate::unit::UnitName;

/// The longest service key accepted.
pub const MAX_KEY_LEN: usize = 1024;

/// A key a service may be announced under: absolute, `/`-separated non-empty segments of
/// printable ASCII without spaces, and outside flotte's own prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service key `{key}` is invalid: {why}")]
pub struct ServiceKeyError {
    pub key: String,
    pub why: String,
}

impl ServiceKey {
    pub fn new(key: &str, keys: &Keys) -> Result<ServiceKey, ServiceKeyError> {
        let why = if !key.starts_with('/') {
            Some("it must start with `/`".to_owned())
        } else if key.len() > MAX_KEY_LEN {
            Some(format!("it is longer than {MAX_KEY_LEN} bytes"))
        } else if key.ends_with('/') || key.contains("//") {
            Some("it has an empty segment (`//` or a trailing `/`)".to_owned())
        } else if let Some(c) = key.chars().find(|c| !c.is_ascii_graphic()) {
            Some(format!(
                "it contains {c:?}; use printable ASCII without spaces"
            ))
        } else if key.split('/').any(|s| s == "." || s == "..") {
            Some("it has a `.` or `..` segment".to_owned())
        } else if key.starts_with(keys.prefix()) {
            Some(format!(
                "it is under flotte's own prefix `{}`",
                keys.prefix()
            ))
        } else {
            None
        };
        match why {
            None => Ok(ServiceKey(key.to_owned())),
            Some(why) => Err(ServiceKeyError {
                key: key.to_owned(),
                why,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who announced a service key, kept under the same lease as the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncerRecord {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<UnitName>,
    pub hostname: String,
}

/// An announced key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub key: String,
    pub value: String,
    /// The lease the key lives under (0: none, it was written by something else).
    pub lease: i64,
}

impl Registry {
    pub fn service_key(&self, key: &str) -> Result<ServiceKey, ServiceKeyError> {
        ServiceKey::new(key, &self.keys)
    }

    /// Puts the key and its announcer record under `lease`, in one transaction.
    pub async fn announce(
        &self,
        key: &ServiceKey,
        value: &str,
        announcer: &AnnouncerRecord,
        lease: &Lease,
    ) -> Result<(), RegistryError> {
        let under = || Some(PutOptions::new().with_lease(lease.id()));
        let txn = Txn::new().and_then([
            TxnOp::put(key.as_str(), value, under()),
            TxnOp::put(self.keys.announcer(lease.id()), json(announcer), under()),
        ]);
        self.txn(&format!("announcing {}", key.as_str()), txn)
            .await
            .map(drop)
    }

    /// Every key under `prefix` (a user prefix such as `/services/`), sorted.
    pub async fn services(&self, prefix: &str) -> Result<Vec<ServiceEntry>, RegistryError> {
        let resp = timed(
            "range",
            format!("listing {prefix}"),
            self.client()
                .get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("listing {prefix}"), e))?;
        Ok(resp
            .kvs()
            .iter()
            .filter(|kv| !kv.key().starts_with(self.keys.prefix().as_bytes()))
            .map(|kv| ServiceEntry {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: String::from_utf8_lossy(kv.value()).into_owned(),
                lease: kv.lease(),
            })
            .collect())
    }

    /// Who announced the keys under `lease`, if flotte did.
    pub async fn announcer(&self, lease: i64) -> Result<Option<AnnouncerRecord>, RegistryError> {
        Ok(self
            .get_json(self.keys.announcer(lease))
            .await?
            .map(|(v, _)| v))
    }

    /// What is left of a lease's TTL; `None` once it is gone.
    pub async fn lease_remaining(&self, lease: i64) -> Result<Option<Duration>, RegistryError> {
        let resp = timed(
            "lease_time_to_live",
            "reading a lease".into(),
            self.client().lease_time_to_live(lease, None),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("reading lease {lease:x}"), e))?;
        Ok((resp.ttl() > 0).then(|| Duration::from_secs(resp.ttl() as u64)))
    }

    /// Changes under a user prefix, values as text. As in `services`, flotte's own keys are
    /// not services, even under a prefix such as `/`.
    pub fn watch_services(&self, prefix: &str) -> TypedWatch<String, String> {
        TypedWatch::decoded_by(
            PrefixWatch::new(self.client(), prefix.to_owned()),
            self.keys.clone(),
            |keys, raw| {
                (!raw.starts_with(keys.prefix().as_bytes()))
                    .then(|| String::from_utf8_lossy(raw).into_owned())
            },
            |_, raw| Some(String::from_utf8_lossy(raw).into_owned()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_keys_are_absolute_printable_and_outside_flottes_prefix() {
        let keys = Keys::new("/flotte/").unwrap();
        let long = format!("/{}", "a".repeat(MAX_KEY_LEN));
        let cases: &[(&str, Option<&str>)] = &[
            ("/services/website/apache", None),
            ("/services/web@1", None),
            ("/a", None),
            ("services/x", Some("it must start with `/`")),
            ("", Some("it must start with `/`")),
            (
                "/services/",
                Some("it has an empty segment (`//` or a trailing `/`)"),
            ),
            (
                "/services//x",
                Some("it has an empty segment (`//` or a trailing `/`)"),
            ),
            (
                "/services/my key",
                Some("it contains ' '; use printable ASCII without spaces"),
            ),
            (
                "/services/caf\u{e9}",
                Some("it contains '\u{e9}'; use printable ASCII without spaces"),
            ),
            (
                "/services/../flotte/units/x",
                Some("it has a `.` or `..` segment"),
            ),
            (
                "/flotte/units/x.service",
                Some("it is under flotte's own prefix `/flotte/`"),
            ),
            (&long, Some("it is longer than 1024 bytes")),
        ];
        for (key, why) in cases {
            let got = ServiceKey::new(key, &keys).err().map(|e| e.why);
            assert_eq!(got.as_deref(), *why, "{key}");
        }
        let e = ServiceKey::new("x", &keys).unwrap_err();
        assert_eq!(
            e.to_string(),
            "service key `x` is invalid: it must start with `/`"
        );
    }
}
