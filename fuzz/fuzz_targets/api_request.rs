//! Fuzzes the API's request decoding (`flotte::api::decode`): no request head or body may
//! panic it, every refusal is a 4xx, and what it accepts holds what the handlers rely on: a
//! unit's name is its path's and its options read back unchanged from the canonical form
//! (the form stored for large units), a metadata change names valid keys only.
//!
//! The first byte picks the decoder; the rest is its input.
#![no_main]

use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Uri, Version};
use flotte::api::decode;
use flotte::machine::validate_key;
use flotte::unit::{MAX_FILE_SIZE, UnitFile};
use libfuzzer_sys::fuzz_target;

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let result = match which % 5 {
        // PUT /units/NAME: the name up to the first newline, then the body.
        0 => {
            let (name, body) = match input.iter().position(|&b| b == b'\n') {
                Some(i) => (&input[..i], &input[i + 1..]),
                None => (input, &[][..]),
            };
            let name = String::from_utf8_lossy(name);
            decode::unit_put(&name, &json_headers(), body).map(|request| {
                assert_eq!(request.name.as_str(), name);
                if let Some(file) = request.file {
                    let text = file.serialize();
                    assert!(text.len() <= MAX_FILE_SIZE, "{} bytes", text.len());
                    let back = UnitFile::parse(text.as_bytes())
                        .expect("an accepted unit's canonical text parses");
                    assert_eq!(back.file, file);
                }
            })
        }
        // PATCH /machines.
        1 => decode::machines_patch(&json_headers(), input).map(|changes| {
            for (_, key) in changes.keys() {
                validate_key(key).expect("an accepted metadata key is valid");
            }
        }),
        // A listing's page token and the changes long poll's parameters.
        2 | 3 => match Uri::try_from(input) {
            Ok(uri) if which % 5 == 2 => decode::page(&uri).map(drop),
            Ok(uri) => decode::changes(&uri).map(drop),
            Err(_) => Ok(()),
        },
        // Host headers, one a line, on HTTP/1.0, 1.1 or 2.
        _ => {
            let version = [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2][which as usize % 3];
            let mut headers = HeaderMap::new();
            for line in input.split(|&b| b == b'\n') {
                if let Ok(value) = HeaderValue::from_bytes(line) {
                    headers.append(HOST, value);
                }
            }
            decode::host(version, &headers)
        }
    };
    if let Err(e) = result {
        assert!(e.status().is_client_error(), "{} for {e}", e.status());
    }
});
