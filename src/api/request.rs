//! Reading requests: query parameters, the item name in a path, and JSON bodies, each failing
//! with an `ApiError` so that every refusal is answered in fleet's error format.

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Uri, Version, header, uri};
use http_body_util::{BodyExt, LengthLimitError, Limited};

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

/// RFC 7230 §5.4: an HTTP/1.1 request has exactly one `Host` header, an HTTP/1.0 one at most
/// one, and its value is empty or `host[:port]`. HTTP/2 carries the authority in its own
/// pseudo-header and may leave `Host` out.
pub fn check_host(version: Version, headers: &HeaderMap) -> Result<(), ApiError> {
    let hosts: Vec<&HeaderValue> = headers.get_all(header::HOST).iter().collect();
    match hosts.as_slice() {
        [] if version == Version::HTTP_11 => Err(ApiError::BadHost(
            "an HTTP/1.1 request needs a Host header".to_owned(),
        )),
        [] => Ok(()),
        [one] => {
            let valid = one.is_empty()
                || one.to_str().is_ok_and(|text| {
                    !text.contains('@') && text.parse::<uri::Authority>().is_ok()
                });
            if valid {
                Ok(())
            } else {
                Err(ApiError::BadHost(format!(
                    "Host header `{}` is not of the form host[:port]",
                    String::from_utf8_lossy(one.as_bytes())
                )))
            }
        }
        many => Err(ApiError::BadHost(format!(
            "the request has {} Host headers; send one",
            many.len()
        ))),
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

/// Reads the body, at most `MAX_BODY` bytes.
pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    Ok(Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                ApiError::BodyTooLarge(MAX_BODY)
            } else {
                ApiError::BadBody(e.to_string())
            }
        })?
        .to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn http_1_1_requests_need_exactly_one_valid_host() {
        type Case = (Version, &'static [&'static [u8]], Option<&'static str>);
        let cases: &[Case] = &[
            (Version::HTTP_11, &[b"flotte"], None),
            (Version::HTTP_11, &[b"127.0.0.1:8080"], None),
            (Version::HTTP_11, &[b"[::1]:49153"], None),
            (Version::HTTP_11, &[b""], None),
            (
                Version::HTTP_11,
                &[],
                Some("an HTTP/1.1 request needs a Host header (RFC 7230 §5.4)"),
            ),
            (
                Version::HTTP_11,
                &[b"a", b"b"],
                Some("the request has 2 Host headers; send one (RFC 7230 §5.4)"),
            ),
            (
                Version::HTTP_10,
                &[b"a", b"a"],
                Some("the request has 2 Host headers; send one (RFC 7230 §5.4)"),
            ),
            (
                Version::HTTP_11,
                &[b"a b"],
                Some("Host header `a b` is not of the form host[:port] (RFC 7230 §5.4)"),
            ),
            (
                Version::HTTP_11,
                &[b"user@host"],
                Some("Host header `user@host` is not of the form host[:port] (RFC 7230 §5.4)"),
            ),
            (
                Version::HTTP_11,
                &[b"host/path"],
                Some("Host header `host/path` is not of the form host[:port] (RFC 7230 §5.4)"),
            ),
            (Version::HTTP_10, &[], None),
            (Version::HTTP_2, &[], None),
        ];
        for (version, hosts, refused) in cases {
            let mut headers = HeaderMap::new();
            for h in *hosts {
                headers.append(header::HOST, HeaderValue::from_bytes(h).unwrap());
            }
            let got = check_host(*version, &headers).map_err(|e| {
                assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
                e.to_string()
            });
            assert_eq!(got.err().as_deref(), *refused, "{version:?} {hosts:?}");
        }
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
