//! A bare HTTP/1 client of one flotted's API socket, as a load generator: it sends fleet v1
//! requests exactly as any client would, and nothing of flottectl's own logic.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

#[derive(Clone)]
pub struct Api {
    socket: PathBuf,
}

impl Api {
    pub fn new(socket: &Path) -> Api {
        Api {
            socket: socket.to_owned(),
        }
    }

    /// Sends one request on a connection of its own; panics unless the answer is 2xx.
    pub async fn send(&self, method: Method, path: &str, body: Option<String>) -> Vec<u8> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.socket.display()));
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", "flotte");
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let response = sender.send_request(request).await.expect("HTTP request");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("HTTP body")
            .to_bytes();
        assert!(
            status.is_success(),
            "{method} {path}: {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.to_vec()
    }

    /// Waits until the API answers 200 to a list of machines (it answers 503 until its
    /// machine registered), polling under `deadline`.
    pub async fn await_ready(&self, deadline: std::time::Duration) {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if self.status(Method::GET, "/fleet/v1/machines").await == Some(200) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "the API at {} did not answer 200 within {deadline:?}",
                self.socket.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The status of one request, `None` when no connection could be made.
    async fn status(&self, method: Method, path: &str) -> Option<u16> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "flotte")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.ok()?;
        Some(response.status().as_u16())
    }

    /// Submits a unit as `launched` through fleet's v1 API.
    pub async fn put_launched(&self, name: &str, exec_start: &str) {
        let body = serde_json::json!({
            "desiredState": "launched",
            "options": [
                {"section": "Service", "name": "ExecStart", "value": exec_start},
            ],
        })
        .to_string();
        self.send(Method::PUT, &format!("/fleet/v1/units/{name}"), Some(body))
            .await;
    }

    pub async fn delete(&self, name: &str) {
        self.send(Method::DELETE, &format!("/fleet/v1/units/{name}"), None)
            .await;
    }
}
