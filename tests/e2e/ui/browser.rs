//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol through
//! `--remote-debugging-pipe`: the browser reads commands from fd 3 and writes answers and
//! events to fd 4, each a JSON object ended by a NUL byte. That is all the transport there is,
//! so a client is a few calls on tokio's pipes and serde_json, where a DevTools crate would
//! bring a WebSocket stack and thousands of generated protocol types to build; and a pipe,
//! unlike a debugging port, is reachable by no other process on the machine.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use nix::fcntl::OFlag;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, oneshot};

/// How long one protocol call may take.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

pub struct Browser {
    child: tokio::process::Child,
    to: tokio::sync::Mutex<pipe::Sender>,
    pending: Pending,
    events: broadcast::Sender<Value>,
    next: AtomicU64,
    _profile: tempfile::TempDir,
}

/// Where Debian's package puts the browser itself (`/usr/bin/chromium` is a wrapper script).
pub fn executable() -> Option<PathBuf> {
    ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Browser {
    pub async fn launch(program: &Path) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("flotte-chromium-")
            .tempdir()
            .unwrap();
        // Commands go in on the browser's fd 3, answers come out on its fd 4.
        let (cmd_read, cmd_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let (out_read, out_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let mut command = tokio::process::Command::new(program);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                // Nothing but the cluster under test is to be reached: no updates, reports,
                // sync or lookups, and every other address sent to a proxy that is not there
                // (loopback addresses, the test cluster's, bypass a proxy by Chromium's rules).
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-domain-reliability",
                "--disable-breakpad",
                "--disable-client-side-phishing-detection",
                "--metrics-recording-only",
                "--dns-prefetch-disable",
                "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
                "--proxy-server=http://127.0.0.1:9",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let (from, to) = (cmd_read.as_raw_fd(), out_write.as_raw_fd());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                use nix::libc;
                // Copies above 10 first, so that neither lands on the other's target.
                let a = libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(to, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        drop((cmd_read, out_write));
        let to = pipe::Sender::from_owned_fd(cmd_write).unwrap();
        let from = pipe::Receiver::from_owned_fd(out_read).unwrap();
        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(4096);
        tokio::spawn(read_messages(from, pending.clone(), events.clone()));
        Browser {
            child,
            to: tokio::sync::Mutex::new(to),
            pending,
            events,
            next: AtomicU64::new(1),
            _profile: profile,
        }
    }

    /// Sends one command (to a page's session, or to the browser) and awaits its result.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        match tokio::time::timeout(CALL_DEADLINE, self.try_call(session, method, params)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("DevTools {method} failed: {e}"),
            Err(_) => panic!("DevTools {method} did not answer within {CALL_DEADLINE:?}"),
        }
    }

    async fn try_call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to
            .lock()
            .await
            .write_all(&bytes)
            .await
            .map_err(|e| format!("writing to the browser: {e}"))?;
        rx.await.map_err(|_| "the browser went away".to_owned())?
    }

    /// Every event the browser sends from now on (`method`, `params`, `sessionId`).
    pub fn events(&self) -> broadcast::Receiver<Value> {
        self.events.subscribe()
    }

    /// A new tab, attached.
    pub async fn page(&self) -> Page<'_> {
        let target = self
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        let page = Page {
            browser: self,
            session,
        };
        page.call("Page.enable", json!({})).await;
        page.call("Runtime.enable", json!({})).await;
        page.call("Network.enable", json!({})).await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn read_messages(
    mut from: pipe::Receiver,
    pending: Pending,
    events: broadcast::Sender<Value>,
) {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buffer.extend_from_slice(&chunk[..n]);
        while let Some(end) = buffer.iter().position(|b| *b == 0) {
            let message: Value = serde_json::from_slice(&buffer[..end]).unwrap_or(Value::Null);
            buffer.drain(..=end);
            if let Some(id) = message["id"].as_u64() {
                let result = match message.get("error") {
                    Some(e) => Err(e.to_string()),
                    None => Ok(message["result"].clone()),
                };
                if let Some(tx) = pending.lock().unwrap().remove(&id) {
                    let _ = tx.send(result);
                }
            } else {
                let _ = events.send(message);
            }
        }
    }
    // Whoever still waits learns that the browser is gone.
    pending.lock().unwrap().clear();
}

/// One tab.
pub struct Page<'a> {
    browser: &'a Browser,
    session: String,
}

/// A request the page sent, from `Network.requestWillBeSent`.
#[derive(Debug, Clone)]
pub struct Sent {
    pub method: String,
    pub url: String,
}

impl Page<'_> {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// This page's events from now on.
    pub fn events(&self) -> PageEvents {
        PageEvents {
            rx: self.browser.events(),
            session: self.session.clone(),
        }
    }

    /// Opens `url` and waits for its load event.
    pub async fn goto(&self, url: &str) {
        let mut events = self.events();
        let nav = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(
            nav.get("errorText").is_none(),
            "opening {url} failed: {nav}"
        );
        events
            .until(&format!("the load of {url}"), |m, _| {
                m == "Page.loadEventFired"
            })
            .await;
    }

    /// The value of a JavaScript expression (awaited when it is a promise).
    pub async fn eval(&self, expression: &str) -> Value {
        match tokio::time::timeout(CALL_DEADLINE, self.try_eval(expression)).await {
            Ok(v) => v,
            Err(_) => panic!("evaluating `{expression}` took over {CALL_DEADLINE:?}"),
        }
    }

    async fn try_eval(&self, expression: &str) -> Value {
        let params =
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let answer = self
            .browser
            .try_call(Some(&self.session), "Runtime.evaluate", params)
            .await
            .unwrap_or_else(|e| panic!("evaluating `{expression}` failed: {e}"));
        if let Some(e) = answer.get("exceptionDetails") {
            panic!("evaluating `{expression}` threw: {e}");
        }
        answer["result"]["value"].clone()
    }

    /// Waits until `predicate` (a JavaScript expression) is truthy, checked again on every
    /// change of the document (a MutationObserver: no polling), and returns its value; fails
    /// after `deadline` saying `what` did not happen and what the page showed.
    pub async fn wait_for(&self, what: &str, predicate: &str, deadline: Duration) -> Value {
        let expression = format!(
            "new Promise((resolve) => {{
               const check = () => {{
                 let v;
                 try {{ v = ({predicate}); }} catch (e) {{ v = undefined; }}
                 if (v) {{ observer.disconnect(); resolve(v); return true; }}
                 return false;
               }};
               const observer = new MutationObserver(check);
               if (!check()) observer.observe(document, {{ subtree: true, childList: true, characterData: true, attributes: true }});
             }})"
        );
        match tokio::time::timeout(deadline, self.try_eval(&expression)).await {
            Ok(v) => v,
            Err(_) => {
                let shown = self
                    .eval("document.getElementById('live').textContent + '\\n' + document.querySelector('main').innerText")
                    .await;
                panic!(
                    "{what} did not happen within {deadline:?}; the page showed:\n{}",
                    shown.as_str().unwrap_or_default()
                )
            }
        }
    }

    /// Presses a key on the element that has the keyboard focus, as a person would.
    pub async fn press(&self, key: &str, code: &str, key_code: u32) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({ "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code, "text": if kind == "keyDown" && key == "Enter" { "\r" } else { "" } }),
            )
            .await;
        }
    }

    /// A PNG of the page at this width, as tall as its content (up to `max_height`).
    pub async fn screenshot(&self, path: &Path, width: u32, max_height: u32, mobile: bool) {
        let metrics = |height: u32| json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile });
        self.call("Emulation.setDeviceMetricsOverride", metrics(600))
            .await;
        let height = self
            .eval("document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap_or(800) as u32;
        self.call(
            "Emulation.setDeviceMetricsOverride",
            metrics(height.clamp(400, max_height)),
        )
        .await;
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
        self.call("Emulation.clearDeviceMetricsOverride", json!({}))
            .await;
    }
}

/// One page's events.
pub struct PageEvents {
    rx: broadcast::Receiver<Value>,
    session: String,
}

impl PageEvents {
    /// The next event of this page.
    pub async fn next(&mut self) -> (String, Value) {
        loop {
            match self.rx.recv().await {
                Ok(m) if m["sessionId"].as_str() == Some(&self.session) => {
                    return (
                        m["method"].as_str().unwrap_or_default().to_owned(),
                        m["params"].clone(),
                    );
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    panic!("{n} browser events were missed")
                }
                Err(broadcast::error::RecvError::Closed) => panic!("the browser went away"),
            }
        }
    }

    /// Waits for the event that satisfies `done`.
    pub async fn until(&mut self, what: &str, done: impl Fn(&str, &Value) -> bool) -> Value {
        let wait = async {
            loop {
                let (method, params) = self.next().await;
                if done(&method, &params) {
                    return params;
                }
            }
        };
        tokio::time::timeout(CALL_DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("{what} did not happen within {CALL_DEADLINE:?}"))
    }
}

/// The requests a page sends while it is being watched, and which of them are still open.
pub struct Requests {
    events: PageEvents,
    pub sent: Vec<Sent>,
    open: HashMap<String, Sent>,
}

impl Requests {
    pub fn watch(page: &Page<'_>) -> Requests {
        Requests {
            events: page.events(),
            sent: Vec::new(),
            open: HashMap::new(),
        }
    }

    fn take(&mut self, method: &str, params: &Value) {
        let id = params["requestId"].as_str().unwrap_or_default().to_owned();
        match method {
            "Network.requestWillBeSent" => {
                let sent = Sent {
                    method: params["request"]["method"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    url: params["request"]["url"].as_str().unwrap_or_default().into(),
                };
                self.sent.push(sent.clone());
                self.open.insert(id, sent);
            }
            "Network.loadingFinished" | "Network.loadingFailed" => {
                self.open.remove(&id);
            }
            _ => {}
        }
    }

    /// Reads events until every request seen so far has finished.
    pub async fn settle(&mut self) {
        let wait = async {
            // What came in already is in the channel.
            while let Ok(m) = self.events.rx.try_recv() {
                if m["sessionId"].as_str() == Some(&self.events.session) {
                    let method = m["method"].as_str().unwrap_or_default().to_owned();
                    self.take(&method, &m["params"]);
                }
            }
            while !self.open.is_empty() {
                let (method, params) = self.events.next().await;
                self.take(&method, &params);
            }
        };
        tokio::time::timeout(CALL_DEADLINE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "requests still open after {CALL_DEADLINE:?}: {:?}",
                    self.open
                )
            });
    }
}
