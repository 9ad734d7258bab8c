//! systemd's object-path escaping of unit names (`web@1.service` is
//! `/org/freedesktop/systemd1/unit/web_401_2eservice`).

use crate::unit::UnitName;

const UNIT_PREFIX: &str = "/org/freedesktop/systemd1/unit/";

/// The unit name behind a unit object path, if the path is one and the name is valid.
pub fn unit_name_from_path(path: &str) -> Option<UnitName> {
    let label = path.strip_prefix(UNIT_PREFIX)?;
    UnitName::new(&unescape(label)?).ok()
}

/// Reverses `bus_label_escape`: `_xx` is the byte with hex value xx, everything else is literal.
fn unescape(label: &str) -> Option<String> {
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_unescape_to_names() {
        let cases = [
            (
                "/org/freedesktop/systemd1/unit/web_401_2eservice",
                Some("web@1.service"),
            ),
            (
                "/org/freedesktop/systemd1/unit/dbus_2esocket",
                Some("dbus.socket"),
            ),
            (
                "/org/freedesktop/systemd1/unit/a_2db_5cx2d_2eservice",
                Some("a-b\\x2d.service"),
            ),
            ("/org/freedesktop/systemd1/unit/bad_zz", None),
            ("/org/freedesktop/systemd1/unit/trunc_2", None),
            ("/org/freedesktop/systemd1/job/12", None),
            ("/org/freedesktop/systemd1/unit/noservice", None),
        ];
        for (path, name) in cases {
            assert_eq!(
                unit_name_from_path(path).as_ref().map(UnitName::as_str),
                name,
                "{path}"
            );
        }
    }
}
