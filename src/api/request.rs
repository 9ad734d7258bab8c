//! Reading requests: query parameters, the item name in a path, and JSON bodies, each failing
//! with an `ApiError` so that every refusal is answered in fleet's error format.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::wire;

use super::ApiError;

/// The largest request body read. A unit file may be 512 KiB; its JSON options list a
/// little more.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// The query string's parameters, in order.
#[derive(Debug)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_uri(uri: &Uri) -> Result<Params, ApiError> {
        Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::BadQuery {
                query: uri.query().unwrap_or_default().to_owned(),
                why: e.body_text(),
            })
    }

    /// The first value of `name`, as fleet reads its filters.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, which may be given at most once.
    pub fn only(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        match values.next() {
            Some(_) => Err(ApiError::RepeatedParameter(name.to_owned())),
            None => Ok(first),
        }
    }
}

impl Params {
    /// An etcd revision (a whole number, 0 or more) given at most once as `name`.
    pub fn revision(&self, name: &'static str) -> Result<Option<i64>, ApiError> {
        self.only(name)?
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|r| *r >= 0)
                    .ok_or_else(|| ApiError::BadParameter {
                        name,
                        value: v.to_owned(),
                        why: "not an etcd revision (a whole number, 0 or more)".into(),
                    })
            })
            .transpose()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Params::from_uri(&parts.uri)
    }
}

/// The `{name}` segment of an item path, percent-decoded and not yet validated: a PUT
/// compares it with the body's name before saying whether it is a valid unit name.
#[derive(Debug)]
pub struct ItemName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ItemName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(name)| ItemName(name))
            .map_err(|e| ApiError::BadParameter {
                name: wire::param::UNIT_NAME,
                value: raw,
                why: e.body_text(),
            })
    }
}

/// fleet's rule: exactly one `Content-Type`, whose media type is `application/json`.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let types: Vec<String> = headers
        .get_all(header::CONTENT_TYPE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let accepted = match types.as_slice() {
        [one] => one.split(';').next().unwrap_or_default().trim() == "application/json",
        _ => false,
    };
    if accepted {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(types))
    }
}

/// Reads the body (at most `MAX_BODY` bytes) and decodes it as JSON.
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                ApiError::BodyTooLarge(MAX_BODY)
            } else {
                ApiError::BadBody(e.to_string())
            }
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadBody(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn parameters_keep_their_order_and_repeats_are_caught_where_they_matter() {
        let params = |query: &str| Params::from_uri(&query.parse().unwrap()).unwrap();
        let p = params("/?alt=json&unitName=a.service&unitName=b.service");
        assert_eq!(p.first("unitName"), Some("a.service"));
        assert_eq!(p.first("machineID"), None);
        assert_eq!(p.only("alt").unwrap(), Some("json"));
        assert_eq!(
            p.only("unitName").unwrap_err().to_string(),
            "query parameter `unitName` is given more than once"
        );
        let p = params("/?nextPageToken=ZAACAA%3D%3D");
        assert_eq!(p.only("nextPageToken").unwrap(), Some("ZAACAA=="));
        assert_eq!(params("/").first("alt"), None);
    }

    #[test]
    fn only_one_application_json_content_type_is_accepted() {
        let check = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            }
            require_json(&headers).is_ok()
        };
        assert!(check(&["application/json"]));
        assert!(check(&["application/json; charset=utf-8"]));
        assert!(check(&[" application/json ;x=y"]));
        assert!(!check(&[]));
        assert!(!check(&["text/plain"]));
        assert!(!check(&["application/json", "application/json"]));
    }
}
