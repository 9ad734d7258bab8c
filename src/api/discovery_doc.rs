//! `/discovery`: the discovery document (Google's format, as fleet's `schema/v1.json`)
//! describing fleet v1's resources as flotte serves them, and flotte's additions.

use axum::http::header;
use axum::response::IntoResponse;

/// Written by hand; `tests/api.rs` calls every method it lists against a live server.
pub const DOCUMENT: &str = include_str!("discovery_doc.json");

pub async fn get() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_json_and_describes_every_resource() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        let resources = doc["resources"].as_object().unwrap();
        let mut names: Vec<&str> = resources.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["Changes", "Machines", "UnitState", "Units"]);
        for (name, resource) in resources {
            for (method, m) in resource["methods"].as_object().unwrap() {
                assert!(m["path"].is_string(), "{name}.{method} has a path");
                assert!(m["httpMethod"].is_string(), "{name}.{method} has a method");
            }
        }
    }
}
