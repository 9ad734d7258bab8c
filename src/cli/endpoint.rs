//! Where flottectl finds flotted's API: `unix:///PATH`, `http://HOST:PORT` or
//! `https://HOST:PORT`, parsed and validated before anything connects.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// flottectl's default: the unix socket every flotted listens on.
pub const DEFAULT: &str = "unix:///run/flotte/flotte.sock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Http(HostPort),
    Https(HostPort),
}

/// A TCP destination as written in the endpoint; `host` keeps an IPv6 address's brackets off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// `host:port` for connecting and for the `Host` header (`[::1]:8080` for IPv6).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint `{endpoint}` is invalid: {why}")]
pub struct EndpointError {
    pub endpoint: String,
    pub why: &'static str,
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| EndpointError {
            endpoint: s.to_owned(),
            why,
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| err("write unix:///PATH, http://HOST:PORT or https://HOST:PORT"))?;
        match scheme {
            "unix" => {
                // fleetctl's classic mistake: `unix://var/run/x.sock` names host `var`.
                if !rest.starts_with('/') {
                    return Err(err(
                        "a unix socket path must be absolute: unix:///run/flotte/flotte.sock",
                    ));
                }
                Ok(Endpoint::Unix(PathBuf::from(rest)))
            }
            "http" => Ok(Endpoint::Http(host_port(rest, 80).map_err(err)?)),
            "https" => Ok(Endpoint::Https(host_port(rest, 443).map_err(err)?)),
            _ => Err(err("the scheme must be unix, http or https")),
        }
    }
}

/// `host[:port][/]`; a path after the authority is refused, since the API lives at the root.
fn host_port(rest: &str, default_port: u16) -> Result<HostPort, &'static str> {
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('?') || authority.contains('#') {
        return Err("give only HOST:PORT after the scheme, without a path");
    }
    if authority.contains('@') {
        return Err("user names in the endpoint are not supported");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address needs a closing `]`")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected `:PORT` after `]`")?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing");
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("the port must be a number from 1 to 65535")?,
    };
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Http(hp) => write!(f, "http://{}", hp.authority()),
            Endpoint::Https(hp) => write!(f, "https://{}", hp.authority()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn endpoints_parse_into_their_kind_and_print_back() {
        for (text, endpoint, shown) in [
            (
                "unix:///run/flotte/flotte.sock",
                Endpoint::Unix("/run/flotte/flotte.sock".into()),
                "unix:///run/flotte/flotte.sock",
            ),
            (
                "http://10.0.0.2:8080",
                Endpoint::Http(hp("10.0.0.2", 8080)),
                "http://10.0.0.2:8080",
            ),
            (
                "http://flotte.example/",
                Endpoint::Http(hp("flotte.example", 80)),
                "http://flotte.example:80",
            ),
            (
                "https://flotte.example:8443",
                Endpoint::Https(hp("flotte.example", 8443)),
                "https://flotte.example:8443",
            ),
            (
                "https://[::1]:8443",
                Endpoint::Https(hp("::1", 8443)),
                "https://[::1]:8443",
            ),
        ] {
            let parsed: Endpoint = text.parse().unwrap();
            assert_eq!(parsed, endpoint, "{text}");
            assert_eq!(parsed.to_string(), shown);
        }
    }

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        for (text, why) in [
            ("/run/flotte/flotte.sock", "write unix:///PATH"),
            ("unix://run/flotte.sock", "must be absolute"),
            ("ftp://host:21", "scheme must be"),
            ("http://host:0", "port must be"),
            ("http://host:http", "port must be"),
            ("http://:8080", "host is missing"),
            ("http://host:8080/fleet/v1", "without a path"),
            ("https://[::1", "closing `]`"),
        ] {
            let e = text.parse::<Endpoint>().unwrap_err();
            assert!(e.to_string().contains(why), "{text}: {e}");
            assert!(e.to_string().contains(text), "{text}: {e}");
        }
    }
}
