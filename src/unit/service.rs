//! `[X-Flotte-Service]`: what a unit serves while it runs, read from its unit file. The agent
//! of the machine running it registers an instance of the service (`agent::services`); the
//! catalog and DNS list the healthy ones.
//!
//! ```ini
//! [X-Flotte-Service]
//! Name=web
//! Port=80%i
//! Tags=v2 blue
//! Check=http /health
//! CheckInterval=5s
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::unit::specifier;
use crate::unit::{UnitFile, UnitName};

pub const SERVICE_SECTION: &str = "X-Flotte-Service";

/// How often a check runs when `CheckInterval` is not given.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// The bounds of `CheckInterval`: a check more often than this is load, not information, and
/// one less often than the longest is no health check.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// A service's name or a tag: one DNS label (`web`, `v2`), lowercase so that it has one
/// spelling, since names are looked up in DNS (`web.service.flotte`) and etcd keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a valid service name or tag: {why}")]
pub struct ServiceNameError {
    pub name: String,
    pub why: &'static str,
}

impl ServiceName {
    pub fn new(name: &str) -> Result<Self, ServiceNameError> {
        let why = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > 63 {
            Some("it is longer than 63 characters, the most a DNS label has")
        } else if !name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        {
            Some("use lowercase letters, digits and `-` (it is a DNS label)")
        } else if name.starts_with('-') || name.ends_with('-') {
            Some("it may not start or end with `-`")
        } else {
            None
        };
        match why {
            None => Ok(Self(name.to_owned())),
            Some(why) => Err(ServiceNameError {
                name: name.to_owned(),
                why,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ServiceName {
    type Error = ServiceNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<ServiceName> for String {
    fn from(n: ServiceName) -> String {
        n.0
    }
}

/// How the agent tells whether an instance is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Check {
    /// A TCP connection to the port is accepted.
    Tcp,
    /// `GET PATH` on the port answers 2xx.
    Http { path: String },
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Tcp => f.write_str("tcp"),
            Check::Http { path } => write!(f, "http {path}"),
        }
    }
}

/// A unit's `[X-Flotte-Service]` section, specifiers expanded for the unit's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDeclaration {
    pub name: ServiceName,
    pub port: u16,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<ServiceName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    #[serde(with = "millis")]
    pub check_interval: Duration,
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// A problem in `[X-Flotte-Service]`, at an option (an index into the unit's options list,
/// which `ParsedUnit::lines` turns into a line) or of the section as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub option: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceKey {
    Name,
    Port,
    Tags,
    Check,
    CheckInterval,
}

impl ServiceKey {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "Name" => Self::Name,
            "Port" => Self::Port,
            "Tags" => Self::Tags,
            "Check" => Self::Check,
            "CheckInterval" => Self::CheckInterval,
            _ => return None,
        })
    }
}

impl ServiceDeclaration {
    /// Reads `[X-Flotte-Service]` of `file` as unit `name` (`%i` expands to the instance, as in
    /// `[X-Fleet]`); `Ok(None)` when the file has no such section. A template's own file is
    /// read as its instance `1` would be, so that `Port=80%i` is checked as a port. Every
    /// problem is reported, not just the first.
    pub fn from_unit(
        name: &UnitName,
        file: &UnitFile,
    ) -> Result<Option<ServiceDeclaration>, Vec<ServiceError>> {
        let as_instance;
        let name = if name.is_template() {
            as_instance = name.instantiate("1").unwrap_or_else(|_| name.clone());
            &as_instance
        } else {
            name
        };
        let mut errors = Vec::new();
        let mut error = |option: usize, message: String| {
            errors.push(ServiceError {
                option: Some(option),
                message,
            })
        };
        let mut seen = false;
        let mut service_name = None;
        let mut port = None;
        let mut tags: Vec<ServiceName> = Vec::new();
        let mut check = None;
        let mut interval = None;
        let mut given: Vec<ServiceKey> = Vec::new();
        for (index, option) in file.options().iter().enumerate() {
            if option.section != SERVICE_SECTION {
                continue;
            }
            seen = true;
            let written = option.name.as_str();
            let Some(key) = ServiceKey::from_name(written) else {
                error(
                    index,
                    format!(
                        "unknown [{SERVICE_SECTION}] option `{written}` (known: Name, Port, Tags, Check, CheckInterval)"
                    ),
                );
                continue;
            };
            if key != ServiceKey::Tags {
                if given.contains(&key) {
                    error(
                        index,
                        format!("{written}: given more than once; a unit declares one service"),
                    );
                    continue;
                }
                given.push(key);
            }
            let value = match specifier::expand(&option.value, name) {
                Ok(v) => v.trim().to_owned(),
                Err(e) => {
                    error(index, format!("{written}: {e}"));
                    continue;
                }
            };
            match key {
                ServiceKey::Name => match ServiceName::new(&value) {
                    Ok(n) => service_name = Some(n),
                    Err(e) => error(index, format!("{written}: {e}")),
                },
                ServiceKey::Port => match parse_port(&value) {
                    Ok(p) => port = Some(p),
                    Err(why) => error(index, format!("{written}: `{value}` {why}")),
                },
                ServiceKey::Tags => {
                    for word in value.split_whitespace() {
                        match ServiceName::new(word) {
                            Ok(t) if tags.contains(&t) => {}
                            Ok(t) => tags.push(t),
                            Err(e) => error(index, format!("{written}: {e}")),
                        }
                    }
                }
                ServiceKey::Check => match parse_check(&value) {
                    Ok(c) => check = Some(c),
                    Err(why) => error(index, format!("{written}: `{value}` {why}")),
                },
                ServiceKey::CheckInterval => match parse_interval(&value) {
                    Ok(d) => interval = Some((d, index)),
                    Err(why) => error(index, format!("{written}: `{value}` {why}")),
                },
            }
        }
        if !seen {
            return Ok(None);
        }
        let mut section_error = |message: String| {
            errors.push(ServiceError {
                option: None,
                message,
            })
        };
        if !given.contains(&ServiceKey::Name) {
            section_error(format!("[{SERVICE_SECTION}] has no Name"));
        }
        if !given.contains(&ServiceKey::Port) {
            section_error(format!("[{SERVICE_SECTION}] has no Port"));
        }
        if let (Some((_, index)), false) = (interval, given.contains(&ServiceKey::Check)) {
            errors.push(ServiceError {
                option: Some(index),
                message: "CheckInterval: there is no Check to run".into(),
            });
        }
        match (service_name, port) {
            (Some(name), Some(port)) if errors.is_empty() => Ok(Some(ServiceDeclaration {
                name,
                port,
                tags,
                check,
                check_interval: interval.map_or(DEFAULT_CHECK_INTERVAL, |(d, _)| d),
            })),
            _ => Err(errors),
        }
    }
}

fn parse_port(value: &str) -> Result<u16, &'static str> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not a port number (1 to 65535)");
    }
    match value.parse::<u16>() {
        Ok(0) | Err(_) => Err("is not a port number (1 to 65535)"),
        Ok(p) => Ok(p),
    }
}

fn parse_check(value: &str) -> Result<Check, &'static str> {
    let words: Vec<&str> = value.split_whitespace().collect();
    match words.as_slice() {
        ["tcp"] => Ok(Check::Tcp),
        ["http", path] => {
            if !path.starts_with('/') {
                Err("has a path that does not start with `/`")
            } else if !path.bytes().all(|b| b.is_ascii_graphic()) {
                Err("has a path that is not printable ASCII")
            } else {
                Ok(Check::Http {
                    path: (*path).to_owned(),
                })
            }
        }
        ["http"] => Err("has no path: write `http /health`"),
        _ => Err("is not a check: write `tcp` or `http PATH`"),
    }
}

/// systemd's time spans in their common forms: `500ms`, `5s`, `5sec`, `1min`, `1m`, `1h`, or
/// plain seconds.
fn parse_interval(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| "is not a time span such as 5s, 500ms or 1min".to_owned())?;
    let seconds = match unit.trim() {
        "ms" | "msec" => n / 1000.0,
        "" | "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        "h" | "hr" => n * 3600.0,
        other => {
            return Err(format!(
                "has an unknown unit `{other}` (use ms, s, min or h)"
            ));
        }
    };
    let d = Duration::try_from_secs_f64(seconds).map_err(|_| "is out of range".to_owned())?;
    if d < MIN_CHECK_INTERVAL || d > MAX_CHECK_INTERVAL {
        return Err(format!(
            "is outside {}ms to {}s",
            MIN_CHECK_INTERVAL.as_millis(),
            MAX_CHECK_INTERVAL.as_secs()
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(unit: &str, section: &str) -> Result<Option<ServiceDeclaration>, Vec<String>> {
        let text = format!("[Service]\nExecStart=/bin/true\n{section}");
        let parsed = UnitFile::parse(text.as_bytes()).unwrap();
        ServiceDeclaration::from_unit(&UnitName::new(unit).unwrap(), &parsed.file).map_err(
            |errors| {
                errors
                    .into_iter()
                    .map(|e| match e.option {
                        Some(o) => format!("line {}: {}", parsed.lines[o], e.message),
                        None => e.message,
                    })
                    .collect()
            },
        )
    }

    fn names(words: &[&str]) -> Vec<ServiceName> {
        words.iter().map(|w| ServiceName::new(w).unwrap()).collect()
    }

    #[test]
    fn a_unit_without_the_section_declares_nothing() {
        assert_eq!(read("web.service", ""), Ok(None));
        assert_eq!(read("web.service", "[X-Fleet]\nGlobal=true\n"), Ok(None));
    }

    #[test]
    fn declarations_are_read_with_specifiers_and_defaults() {
        let web = |port, tags: &[&str], check, ms| ServiceDeclaration {
            name: ServiceName::new("web").unwrap(),
            port,
            tags: names(tags),
            check,
            check_interval: Duration::from_millis(ms),
        };
        let http = |p: &str| Some(Check::Http { path: p.to_owned() });
        let cases: &[(&str, &str, ServiceDeclaration)] = &[
            (
                "web.service",
                "Name=web\nPort=8000\n",
                web(8000, &[], None, 10_000),
            ),
            (
                "web@3.service",
                "Name=%p\nPort=800%i\nTags=v2 blue\nTags=blue edge\nCheck=http /health\nCheckInterval=5s\n",
                web(8003, &["v2", "blue", "edge"], http("/health"), 5_000),
            ),
            // A template's file is read as its instance `1`.
            (
                "web@.service",
                "Name=web\nPort=80%i\nCheck=tcp\n",
                web(801, &[], Some(Check::Tcp), 10_000),
            ),
            (
                "web.service",
                "[X-Flotte-Service]\nName=web\nPort=1\nCheck=  http   /a?b=1 \nCheckInterval=500ms\n",
                web(1, &[], http("/a?b=1"), 500),
            ),
            (
                "web.service",
                "Name=web\nPort=65535\nCheck=tcp\nCheckInterval=1min\n",
                web(65535, &[], Some(Check::Tcp), 60_000),
            ),
            (
                "web.service",
                "Name=web\nPort=80\nCheck=tcp\nCheckInterval=2\n",
                web(80, &[], Some(Check::Tcp), 2_000),
            ),
        ];
        for (unit, body, expected) in cases {
            let got = read(unit, &format!("[X-Flotte-Service]\n{body}"));
            assert_eq!(got, Ok(Some(expected.clone())), "{unit}: {body}");
        }
    }

    #[test]
    fn bad_values_are_refused_naming_line_and_value() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "web.service",
                "Name=Web\nPort=80\n",
                &[
                    "line 4: Name: `Web` is not a valid service name or tag: use lowercase letters, digits and `-` (it is a DNS label)",
                ],
            ),
            (
                "web.service",
                "Name=-web\nPort=80\n",
                &[
                    "line 4: Name: `-web` is not a valid service name or tag: it may not start or end with `-`",
                ],
            ),
            (
                "web.service",
                "Name=web.x\nPort=80\n",
                &[
                    "line 4: Name: `web.x` is not a valid service name or tag: use lowercase letters, digits and `-` (it is a DNS label)",
                ],
            ),
            (
                "web.service",
                "Name=web\nPort=0\n",
                &["line 5: Port: `0` is not a port number (1 to 65535)"],
            ),
            (
                "web.service",
                "Name=web\nPort=65536\n",
                &["line 5: Port: `65536` is not a port number (1 to 65535)"],
            ),
            (
                "web.service",
                "Name=web\nPort=%i\n",
                &["line 5: Port: `` is not a port number (1 to 65535)"],
            ),
            (
                "web.service",
                "Name=web\nPort=+80\n",
                &["line 5: Port: `+80` is not a port number (1 to 65535)"],
            ),
            (
                "web.service",
                "Name=web\nPort=80%H\n",
                &["line 5: Port: unknown specifier `%H` in `80%H`: use %n, %N, %p, %i or %%"],
            ),
            (
                "web.service",
                "Name=web\nPort=80\nTags=ok Bad\n",
                &[
                    "line 6: Tags: `Bad` is not a valid service name or tag: use lowercase letters, digits and `-` (it is a DNS label)",
                ],
            ),
            (
                "web.service",
                "Name=web\nPort=80\nCheck=udp\n",
                &["line 6: Check: `udp` is not a check: write `tcp` or `http PATH`"],
            ),
            (
                "web.service",
                "Name=web\nPort=80\nCheck=http\n",
                &["line 6: Check: `http` has no path: write `http /health`"],
            ),
            (
                "web.service",
                "Name=web\nPort=80\nCheck=http health\n",
                &["line 6: Check: `http health` has a path that does not start with `/`"],
            ),
            (
                "web.service",
                "Name=web\nPort=80\nCheck=tcp\nCheckInterval=5y\n",
                &["line 7: CheckInterval: `5y` has an unknown unit `y` (use ms, s, min or h)"],
            ),
            (
                "web.service",
                "Name=web\nPort=80\nCheck=tcp\nCheckInterval=10ms\n",
                &["line 7: CheckInterval: `10ms` is outside 100ms to 3600s"],
            ),
            (
                "web.service",
                "Name=web\nPort=80\nCheckInterval=5s\n",
                &["line 6: CheckInterval: there is no Check to run"],
            ),
            (
                "web.service",
                "Name=web\nPort=80\nPort=81\n",
                &["line 6: Port: given more than once; a unit declares one service"],
            ),
            (
                "web.service",
                "Name=web\nPort=80\nHealth=tcp\n",
                &[
                    "line 6: unknown [X-Flotte-Service] option `Health` (known: Name, Port, Tags, Check, CheckInterval)",
                ],
            ),
            (
                "web.service",
                "Port=x\n",
                &[
                    "line 4: Port: `x` is not a port number (1 to 65535)",
                    "[X-Flotte-Service] has no Name",
                ],
            ),
            (
                "web.service",
                "Tags=a\n",
                &[
                    "[X-Flotte-Service] has no Name",
                    "[X-Flotte-Service] has no Port",
                ],
            ),
        ];
        for (unit, body, expected) in cases {
            let got = read(unit, &format!("[X-Flotte-Service]\n{body}"));
            let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, Err(expected), "{unit}: {body}");
        }
    }
}
