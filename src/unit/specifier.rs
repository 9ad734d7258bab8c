//! systemd's unit-name specifiers (`%n %N %p %i %%`), as fleet expands them in `[X-Fleet]` values.

use crate::unit::UnitName;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecifierError {
    #[error("unknown specifier `%{spec}` in `{value}`: use %n, %N, %p, %i or %%")]
    Unknown { spec: char, value: String },
    #[error("`{0}` ends in a lone `%`: write `%%` for a percent sign")]
    Trailing(String),
}

/// Expands the specifiers of `value` for unit `name`. `%i` is empty for templates and plain
/// units, as in systemd; other specifiers only make sense on the host, so they are errors here.
pub fn expand(value: &str, name: &UnitName) -> Result<String, SpecifierError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push_str(name.as_str()),
            Some('N') => out.push_str(name.without_suffix()),
            Some('p') => out.push_str(name.prefix()),
            Some('i') => out.push_str(name.instance().unwrap_or_default()),
            Some('%') => out.push('%'),
            Some(spec) => {
                return Err(SpecifierError::Unknown {
                    spec,
                    value: value.to_owned(),
                });
            }
            None => return Err(SpecifierError::Trailing(value.to_owned())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, value: &str, expected: Result<&str, &str>) {
        let name = UnitName::new(name).unwrap();
        let got = expand(value, &name).map_err(|e| e.to_string());
        assert_eq!(
            got,
            expected.map(str::to_owned).map_err(str::to_owned),
            "{value} for {name}"
        );
    }

    #[test]
    fn specifiers_expand_to_parts_of_the_unit_name() {
        let cases = [
            ("web@3.service", "%n", "web@3.service"),
            ("web@3.service", "%N", "web@3"),
            ("web@3.service", "%p", "web"),
            ("web@3.service", "%i", "3"),
            ("web@3.service", "db@%i.service", "db@3.service"),
            ("web@3.service", "100%%", "100%"),
            ("web@3.service", "%%i", "%i"),
            ("web@3.service", "no specifiers", "no specifiers"),
            ("web@3.service", "%p-%i %n", "web-3 web@3.service"),
            ("web@.service", "db@%i.service", "db@.service"),
            ("web@.service", "%N", "web@"),
            ("web.service", "[%i]", "[]"),
            ("a.b@x.y.timer", "%p %i %N", "a.b x.y a.b@x.y"),
            ("web@3.service", "é%n", "éweb@3.service"),
        ];
        for (name, value, expected) in cases {
            check(name, value, Ok(expected));
        }
    }

    #[test]
    fn unknown_and_lone_specifiers_are_errors_naming_them() {
        check(
            "web.service",
            "%H",
            Err("unknown specifier `%H` in `%H`: use %n, %N, %p, %i or %%"),
        );
        check(
            "web.service",
            "x-%I",
            Err("unknown specifier `%I` in `x-%I`: use %n, %N, %p, %i or %%"),
        );
        check(
            "web.service",
            "50%",
            Err("`50%` ends in a lone `%`: write `%%` for a percent sign"),
        );
    }
}
