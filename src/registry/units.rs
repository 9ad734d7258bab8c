//! Units (name, desired state and content hash) and their contents, stored by hash and
//! collected by the engine when nothing refers to them.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

use super::kv::{MAX_TXN_OPS, json, timed};
use super::{ContentRecord, Fence, Keys, Registry, RegistryError, TypedWatch, UnitRecord};
use crate::unit::{DesiredState, UnitFile, UnitHash, UnitName};

/// Batches of contents read at once by `Registry::contents`.
const CONTENT_BATCHES_IN_FLIGHT: usize = 4;

impl Registry {
    /// Stores a unit with its content in one transaction. The content is written even when
    /// that hash is already stored: the new modification revision makes a concurrent garbage
    /// collection of it fail (see `delete_contents_if_unchanged`).
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

    /// Creates the unit with its content if there is no unit of that name, in one request;
    /// when there is one, changes nothing and returns it (read in the same transaction) with
    /// the revision it was last changed at.
    pub async fn create_unit(
        &self,
        name: &UnitName,
        file: &UnitFile,
        desired: DesiredState,
    ) -> Result<Option<(UnitRecord, i64)>, RegistryError> {
        let (_, ops) = self.unit_ops(name, file, desired);
        let key = self.keys.unit(name);
        let what = format!("creating unit {name}");
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then(ops)
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = timed("txn", what.clone(), self.client().txn(txn))
            .await?
            .map_err(|e| RegistryError::etcd(what, e))?;
        if resp.succeeded() {
            return Ok(None);
        }
        let existing = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        });
        let Some(kv) = existing else {
            // Cannot happen: the compare failed because the key exists, and the read ran in
            // the same transaction.
            return Err(RegistryError::Conflict(format!("unit {name}")));
        };
        let record = serde_json::from_slice(kv.value())
            .map_err(|source| RegistryError::Corrupt { key, source })?;
        Ok(Some((record, kv.mod_revision())))
    }

    fn unit_ops(
        &self,
        name: &UnitName,
        file: &UnitFile,
        desired: DesiredState,
    ) -> (UnitHash, [TxnOp; 2]) {
        let hash = file.hash();
        let record = UnitRecord {
            hash,
            desired,
            start: 0,
        };
        let ops = [
            TxnOp::put(self.keys.content(&hash), content_value(file), None),
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
        self.content_from(hash, record).map(Some)
    }

    fn content_from(
        &self,
        hash: &UnitHash,
        record: ContentRecord,
    ) -> Result<UnitFile, RegistryError> {
        let invalid = |why: String| RegistryError::InvalidContent {
            key: self.keys.content(hash),
            why,
        };
        match record {
            ContentRecord::Options { options } => {
                UnitFile::from_options(options).map_err(|e| invalid(e.to_string()))
            }
            ContentRecord::Text { text } => UnitFile::parse(text.as_bytes())
                .map(|parsed| parsed.file)
                .map_err(|e| invalid(e.to_string())),
        }
    }

    /// The contents of many hashes, each `content` would give, read in transactions of
    /// `MAX_TXN_OPS` reads: one request per batch, not one per content. A batch etcd refuses
    /// (an answer over the message size limit) is read one content at a time.
    pub async fn contents(
        &self,
        hashes: &[UnitHash],
    ) -> Vec<(UnitHash, Result<Option<UnitFile>, RegistryError>)> {
        let mut out = Vec::with_capacity(hashes.len());
        for group in hashes.chunks(MAX_TXN_OPS * CONTENT_BATCHES_IN_FLIGHT) {
            let batches = group
                .chunks(MAX_TXN_OPS)
                .map(|b| self.content_batch_or_each(b));
            out.extend(
                futures_util::future::join_all(batches)
                    .await
                    .into_iter()
                    .flatten(),
            );
        }
        out
    }

    async fn content_batch_or_each(
        &self,
        batch: &[UnitHash],
    ) -> Vec<(UnitHash, Result<Option<UnitFile>, RegistryError>)> {
        match self.content_batch(batch).await {
            Ok(read) => read,
            Err(e) => {
                tracing::debug!(error = %e, "reading contents one by one");
                let each = futures_util::future::join_all(batch.iter().map(|h| self.content(h)));
                batch.iter().copied().zip(each.await).collect()
            }
        }
    }

    async fn content_batch(
        &self,
        batch: &[UnitHash],
    ) -> Result<Vec<(UnitHash, Result<Option<UnitFile>, RegistryError>)>, RegistryError> {
        let what = format!("reading {} unit contents", batch.len());
        let ops: Vec<TxnOp> = batch
            .iter()
            .map(|h| TxnOp::get(self.keys.content(h), None))
            .collect();
        let resp = timed(
            "txn",
            what.clone(),
            self.client().txn(Txn::new().and_then(ops)),
        )
        .await?
        .map_err(|e| RegistryError::etcd(what, e))?;
        let mut out = Vec::with_capacity(batch.len());
        for (hash, op) in batch.iter().zip(resp.op_responses()) {
            let TxnOpResponse::Get(get) = op else {
                continue;
            };
            let read = match get.kvs().first() {
                None => Ok(None),
                Some(kv) => serde_json::from_slice::<ContentRecord>(kv.value())
                    .map_err(|source| RegistryError::Corrupt {
                        key: self.keys.content(hash),
                        source,
                    })
                    .and_then(|record| self.content_from(hash, record))
                    .map(Some),
            };
            out.push((*hash, read));
        }
        Ok(out)
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

    /// Garbage-collects contents, each only if nobody wrote it since its revision, in as
    /// few transactions fenced on leadership as it takes: each deletion is a transaction
    /// nested in the fenced one, comparing its content's revision, so a content written again
    /// meanwhile stays without keeping the others. Returns how many were deleted.
    pub async fn delete_contents_if_unchanged(
        &self,
        fence: &Fence,
        contents: &[(UnitHash, i64)],
    ) -> Result<usize, RegistryError> {
        let mut deleted = 0;
        // Each deletion is two operations against etcd's limit: its nested transaction and
        // the delete in it (see `schedule::pack`).
        for chunk in contents.chunks(MAX_TXN_OPS / 2) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|(hash, revision)| {
                    let key = self.keys.content(hash);
                    TxnOp::txn(
                        Txn::new()
                            .when([Compare::mod_revision(
                                key.as_str(),
                                CompareOp::Equal,
                                *revision,
                            )])
                            .and_then([TxnOp::delete(key.as_str(), None)]),
                    )
                })
                .collect();
            let txn = Txn::new().when([fence.compare()]).and_then(ops);
            let resp = self.txn_response("collecting unused contents", txn).await?;
            if !resp.succeeded() {
                return Err(RegistryError::Fenced);
            }
            deleted += resp
                .op_responses()
                .iter()
                .filter(|r| matches!(r, TxnOpResponse::Txn(t) if t.succeeded()))
                .count();
        }
        Ok(deleted)
    }
}

/// etcd's default `--max-request-bytes`: a larger request is refused ("request is too large"),
/// and one larger than that plus 512 KiB of gRPC allowance is not even read.
pub const ETCD_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// The largest options-list record written as such: a larger one is written as the unit's
/// text, at most twice `MAX_FILE_SIZE` once JSON-escaped (only `"`, backslashes and tabs are escaped
/// in a valid unit, each to two bytes). Either way a unit's transaction stays under
/// `ETCD_MAX_REQUEST_BYTES` with room for its keys and record.
const MAX_OPTIONS_RECORD: usize = 1024 * 1024;

/// How a unit's content is stored: as its options list while that is small enough, else as
/// its canonical text, which every valid unit fits in.
fn content_value(file: &UnitFile) -> Vec<u8> {
    let options = json(&ContentRecord::Options {
        options: file.options().to_vec(),
    });
    if options.len() <= MAX_OPTIONS_RECORD {
        options
    } else {
        json(&ContentRecord::Text {
            text: file.serialize(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::{MAX_FILE_SIZE, UnitOption};

    fn file(options: impl IntoIterator<Item = (String, String)>) -> UnitFile {
        UnitFile::from_options(
            options
                .into_iter()
                .map(|(name, value)| UnitOption::new("Service", &name, &value))
                .collect(),
        )
        .unwrap()
    }

    /// Lines of `A=` up to the size limit: the options list is many times the text.
    fn tiny_options(count: usize) -> UnitFile {
        file((0..count).map(|_| ("A".to_owned(), String::new())))
    }

    #[test]
    fn every_valid_unit_is_stored_in_a_form_that_fits_one_etcd_request_and_reads_back() {
        // The unit's text (at most `MAX_FILE_SIZE`) with its header line.
        let room = MAX_FILE_SIZE - "[Service]\n".len();
        let cases = [
            (
                "one small option",
                file([("ExecStart".into(), "/bin/true".into())]),
                "options",
            ),
            ("42,000 tiny options", tiny_options(42_000), "text"),
            (
                "tiny options up to the size limit",
                tiny_options(room / 3),
                "text",
            ),
            (
                "one option of quotes up to the size limit",
                file([("X".into(), "\"".repeat(room - "X=\n".len()))]),
                "text",
            ),
            (
                "backslash-quote pairs and tabs",
                file([("X".into(), "a\\\"\tb".repeat((room - 4) / 5))]),
                "options",
            ),
        ];
        for (what, unit, form) in cases {
            let value = content_value(&unit);
            assert!(
                value.len() + 4096 < ETCD_MAX_REQUEST_BYTES,
                "{what}: {} bytes leave too little room under etcd's limit",
                value.len()
            );
            let record: ContentRecord = serde_json::from_slice(&value).unwrap();
            let (got, back) = match record {
                ContentRecord::Options { options } => {
                    ("options", UnitFile::from_options(options).unwrap())
                }
                ContentRecord::Text { text } => {
                    ("text", UnitFile::parse(text.as_bytes()).unwrap().file)
                }
            };
            assert_eq!(got, form, "{what}");
            assert_eq!(back, unit, "{what}: reads back unchanged");
        }
    }

    #[test]
    fn contents_in_either_form_decode() {
        let options: ContentRecord = serde_json::from_str(
            r#"{"options":[{"section":"Service","name":"ExecStart","value":"/bin/true"}]}"#,
        )
        .unwrap();
        assert!(matches!(options, ContentRecord::Options { options } if options.len() == 1));
        let text: ContentRecord =
            serde_json::from_str(r#"{"text":"[Service]\nExecStart=/bin/true\n"}"#).unwrap();
        assert!(matches!(text, ContentRecord::Text { .. }));
        assert!(serde_json::from_str::<ContentRecord>(r#"{"other":1}"#).is_err());
    }
}
