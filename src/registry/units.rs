//! Units (name, desired state and content hash) and their contents, stored by hash and
//! collected by the engine when nothing refers to them.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};

use super::kv::{json, timed};
use super::{ContentRecord, Fence, Keys, Registry, RegistryError, TypedWatch, UnitRecord};
use crate::unit::{DesiredState, UnitFile, UnitHash, UnitName};

impl Registry {
    /// Stores a unit with its content in one transaction. The content is written even when
    /// that hash is already stored: the new modification revision makes a concurrent garbage
    /// collection of it fail (see `delete_content_if_unchanged`).
    pub async fn put_unit(
        &self,
        name: &UnitName,
        file: &UnitFile,
        desired: DesiredState,
    ) -> Result<UnitHash, RegistryError> {
        let (hash, ops) = self.unit_ops(name, file, desired);
        let txn = Txn::new().and_then(ops);
        self.txn(&format!("storing unit {name}"), txn).await?;
        Ok(hash)
    }

    /// Like `put_unit`, but only if the unit is still at `revision` (`None`: only if there is
    /// no such unit), so that a create or a replace never overwrites a concurrent change.
    pub async fn put_unit_at(
        &self,
        name: &UnitName,
        file: &UnitFile,
        desired: DesiredState,
        revision: Option<i64>,
    ) -> Result<UnitHash, RegistryError> {
        let (hash, ops) = self.unit_ops(name, file, desired);
        // etcd compares a missing key as if its revisions were 0.
        let expected = revision.unwrap_or(0);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                self.keys.unit(name),
                CompareOp::Equal,
                expected,
            )])
            .and_then(ops);
        if self.txn(&format!("storing unit {name}"), txn).await? {
            Ok(hash)
        } else {
            Err(RegistryError::Conflict(format!("unit {name}")))
        }
    }

    fn unit_ops(
        &self,
        name: &UnitName,
        file: &UnitFile,
        desired: DesiredState,
    ) -> (UnitHash, [TxnOp; 2]) {
        let hash = file.hash();
        let content = ContentRecord {
            options: file.options().to_vec(),
        };
        let record = UnitRecord { hash, desired };
        let ops = [
            TxnOp::put(self.keys.content(&hash), json(&content), None),
            TxnOp::put(self.keys.unit(name), json(&record), None),
        ];
        (hash, ops)
    }

    /// A unit and the revision it was last changed at.
    pub async fn unit(&self, name: &UnitName) -> Result<Option<(UnitRecord, i64)>, RegistryError> {
        self.get_json(self.keys.unit(name)).await
    }

    pub async fn units(&self) -> Result<(Vec<(UnitName, UnitRecord)>, i64), RegistryError> {
        self.list(self.keys.units(), Keys::parse_unit).await
    }

    pub fn watch_units(&self) -> TypedWatch<UnitName, UnitRecord> {
        self.watch(self.keys.units(), Keys::parse_unit)
    }

    /// Changes a unit's desired state if the unit is still at `revision`.
    pub async fn set_desired(
        &self,
        name: &UnitName,
        record: &UnitRecord,
        revision: i64,
    ) -> Result<(), RegistryError> {
        let key = self.keys.unit(name);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(key.as_str(), json(record), None)]);
        if self.txn(&format!("updating unit {name}"), txn).await? {
            Ok(())
        } else {
            Err(RegistryError::Conflict(format!("unit {name}")))
        }
    }

    /// Deletes a unit; false when there was none.
    pub async fn delete_unit(&self, name: &UnitName) -> Result<bool, RegistryError> {
        self.delete(self.keys.unit(name)).await
    }

    pub async fn content(&self, hash: &UnitHash) -> Result<Option<UnitFile>, RegistryError> {
        let Some((record, _)) = self
            .get_json::<ContentRecord>(self.keys.content(hash))
            .await?
        else {
            return Ok(None);
        };
        UnitFile::from_options(record.options)
            .map(Some)
            .map_err(|source| RegistryError::InvalidContent {
                key: self.keys.content(hash),
                source,
            })
    }

    /// Hashes of every stored content and the revision each was last written at.
    pub async fn content_revisions(&self) -> Result<Vec<(UnitHash, i64)>, RegistryError> {
        let prefix = self.keys.contents();
        let resp = timed(
            "range",
            format!("listing {prefix}"),
            self.client().get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("listing {prefix}"), e))?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| Some((self.keys.parse_content(kv.key())?, kv.mod_revision())))
            .collect())
    }

    /// Garbage-collects one content if nobody wrote it since `revision`.
    pub async fn delete_content_if_unchanged(
        &self,
        fence: &Fence,
        hash: &UnitHash,
        revision: i64,
    ) -> Result<bool, RegistryError> {
        let key = self.keys.content(hash);
        let txn = Txn::new()
            .when([
                fence.compare(),
                Compare::mod_revision(key.as_str(), CompareOp::Equal, revision),
            ])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        self.txn(&format!("collecting {key}"), txn).await
    }
}
