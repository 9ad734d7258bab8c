//! flotte's web page of the live cluster, under `/ui/` on every API listener: one HTML shell,
//! a stylesheet and a JavaScript module (`ui/`), compiled into flotted. The page reads the
//! same API as flottectl (fleet v1, `/flotte/v1/leader`, `/flotte/v1/services`), follows
//! `/flotte/v1/events` and updates in place; its actions are the API's own `PUT` and `DELETE`
//! of units, under the same listener's access rules (TLS, client certificates). Nothing is
//! fetched from anywhere else, and the policy sent with every asset says so to the browser.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha1::{Digest, Sha1};

use crate::wire::UI;

use super::ApiError;
use super::routes::Api;

/// One file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const SHELL: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("ui/index.html"),
};

/// What the shell loads, under `/ui/assets/`.
const ASSETS: [Asset; 2] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("ui/style.css"),
    },
];

/// The page's own paths, each answered with the shell (the script renders the page the path
/// names): real links that a browser can open, bookmark and reload.
pub const PAGES: [&str; 5] = ["machines", "units", "units/{name}", "services", "events"];

/// Only this origin's scripts, styles and API; no inline script, no frame, no form elsewhere.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

pub fn routes() -> Router<Api> {
    let mut router = Router::new()
        .route(UI, get(|| async { redirect() }))
        .route(&format!("{UI}/"), get(shell))
        .route(&format!("{UI}/assets/{{file}}"), get(asset));
    for page in PAGES {
        router = router.route(&format!("{UI}/{page}"), get(shell));
    }
    router
}

fn redirect() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(LOCATION, HeaderValue::from_static("/ui/"))],
    )
        .into_response()
}

async fn shell(headers: HeaderMap) -> Response {
    answer(&SHELL, if_none_match(&headers))
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == file)
        .ok_or_else(|| ApiError::NoRoute(format!("{UI}/assets/{file}")))?;
    Ok(answer(asset, if_none_match(&headers)))
}

fn if_none_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok())
}

/// Each asset's entity tag: its content's SHA-1, so that a browser revalidates (no-cache) and
/// gets a 304 until flotted is upgraded.
static TAGS: LazyLock<Vec<(&'static str, String)>> = LazyLock::new(|| {
    std::iter::once(&SHELL)
        .chain(ASSETS.iter())
        .map(|a| (a.name, tag(a.body)))
        .collect()
});

fn tag(body: &str) -> String {
    let digest = Sha1::digest(body.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The answer for `asset` to a request that holds `if_none_match`: the asset, or 304 when the
/// browser's copy is this one.
fn answer(asset: &Asset, if_none_match: Option<&str>) -> Response {
    let etag = TAGS
        .iter()
        .find(|(name, _)| *name == asset.name)
        .map(|(_, t)| t.as_str())
        .expect("every asset has its tag");
    let headers = [
        (ETAG, etag.to_owned()),
        (CACHE_CONTROL, "no-cache".to_owned()),
        (CONTENT_SECURITY_POLICY, POLICY.to_owned()),
        (X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (REFERRER_POLICY, "no-referrer".to_owned()),
    ];
    if is_fresh(etag, if_none_match) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, [(CONTENT_TYPE, asset.content_type)], asset.body).into_response()
}

/// RFC 9110 §13.1.2: `If-None-Match` is `*` or a list of tags, weak ones compared weakly.
fn is_fresh(etag: &str, if_none_match: Option<&str>) -> bool {
    let Some(list) = if_none_match else {
        return false;
    };
    list.split(',')
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_copy_is_fresh_only_with_the_same_tag() {
        let etag = "\"0123abcd\"";
        let cases = [
            (None, false),
            (Some("\"0123abcd\""), true),
            (Some("W/\"0123abcd\""), true),
            (Some("\"other\", \"0123abcd\""), true),
            (Some("*"), true),
            (Some("\"other\""), false),
            (Some("0123abcd"), false),
            (Some(""), false),
        ];
        for (header, fresh) in cases {
            assert_eq!(is_fresh(etag, header), fresh, "{header:?}");
        }
    }

    #[test]
    fn the_shell_loads_only_assets_that_are_served_and_nothing_from_elsewhere() {
        let html = SHELL.body;
        for a in &ASSETS {
            assert!(
                html.contains(&format!("/ui/assets/{}", a.name)),
                "index.html does not load {}",
                a.name
            );
        }
        for text in [SHELL.body, ASSETS[0].body, ASSETS[1].body] {
            for foreign in ["http://", "https://", "//cdn", "<script>", " onclick="] {
                assert!(!text.contains(foreign), "an asset holds `{foreign}`");
            }
        }
    }

    #[test]
    fn a_304_has_no_body_and_an_answer_names_its_type() {
        let fresh = answer(&ASSETS[0], Some(&tag(ASSETS[0].body)));
        assert_eq!(fresh.status(), StatusCode::NOT_MODIFIED);
        assert!(fresh.headers().get(CONTENT_TYPE).is_none());
        let full = answer(&ASSETS[0], Some("\"stale\""));
        assert_eq!(full.status(), StatusCode::OK);
        assert_eq!(
            full.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(full.headers()[CACHE_CONTROL], "no-cache");
    }
}
