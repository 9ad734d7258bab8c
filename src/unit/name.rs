//! Unit names: systemd's naming rules as a validated newtype. Every file name flotte writes comes
//! from a `UnitName`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest unit name systemd accepts (`UNIT_NAME_MAX` minus the NUL byte).
pub const MAX_LEN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnitType {
    Service,
    Socket,
    Device,
    Mount,
    Automount,
    Swap,
    Target,
    Path,
    Timer,
    Slice,
    Scope,
}

impl UnitType {
    pub const ALL: [UnitType; 11] = [
        UnitType::Service,
        UnitType::Socket,
        UnitType::Device,
        UnitType::Mount,
        UnitType::Automount,
        UnitType::Swap,
        UnitType::Target,
        UnitType::Path,
        UnitType::Timer,
        UnitType::Slice,
        UnitType::Scope,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            UnitType::Service => "service",
            UnitType::Socket => "socket",
            UnitType::Device => "device",
            UnitType::Mount => "mount",
            UnitType::Automount => "automount",
            UnitType::Swap => "swap",
            UnitType::Target => "target",
            UnitType::Path => "path",
            UnitType::Timer => "timer",
            UnitType::Slice => "slice",
            UnitType::Scope => "scope",
        }
    }

    fn from_suffix(suffix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.suffix() == suffix)
    }

    /// systemd allows templates and instances only for these types.
    pub fn may_template(self) -> bool {
        matches!(
            self,
            UnitType::Service
                | UnitType::Socket
                | UnitType::Target
                | UnitType::Path
                | UnitType::Timer
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unit name `{name}` is not a valid systemd unit name: {why}")]
pub struct NameError {
    pub name: String,
    pub why: NameProblem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("it has no type suffix such as `.service`")]
    NoSuffix,
    #[error(
        "its type suffix is unknown (service, socket, device, mount, automount, swap, target, path, timer, slice, scope)"
    )]
    UnknownSuffix,
    #[error("it contains a character outside A-Z a-z 0-9 : _ . - @ \\")]
    BadCharacter,
    #[error("it has nothing before the `@` or the type suffix")]
    EmptyPrefix,
    #[error("it contains `..` or starts with `.`")]
    DotTrick,
    #[error("only service, socket, target, path and timer units can be templates or instances")]
    TemplateNotAllowed,
    #[error("an instance name cannot be empty")]
    EmptyInstance,
}

/// A valid systemd unit name: `foo.service`, a template `foo@.service` or an instance
/// `foo@bar.service`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UnitName {
    name: String,
    unit_type: UnitType,
    /// Byte index of the first `@`, if any.
    at: Option<usize>,
}

impl UnitName {
    pub fn new(name: &str) -> Result<Self, NameError> {
        let err = |why| NameError {
            name: name.to_owned(),
            why,
        };
        if name.is_empty() {
            return Err(err(NameProblem::Empty));
        }
        if name.len() > MAX_LEN {
            return Err(err(NameProblem::TooLong));
        }
        if !name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'-' | b'@' | b'\\')
        }) {
            return Err(err(NameProblem::BadCharacter));
        }
        if name.starts_with('.') || name.contains("..") {
            return Err(err(NameProblem::DotTrick));
        }
        let (stem, suffix) = name.rsplit_once('.').ok_or(err(NameProblem::NoSuffix))?;
        let unit_type = UnitType::from_suffix(suffix).ok_or(err(NameProblem::UnknownSuffix))?;
        let at = stem.find('@');
        let prefix = at.map_or(stem, |i| &stem[..i]);
        if prefix.is_empty() {
            return Err(err(NameProblem::EmptyPrefix));
        }
        if at.is_some() && !unit_type.may_template() {
            return Err(err(NameProblem::TemplateNotAllowed));
        }
        Ok(Self {
            name: name.to_owned(),
            unit_type,
            at,
        })
    }

    /// `NAME` with `.service` added when the argument has no type suffix, as fleetctl does.
    pub fn from_argument(arg: &str) -> Result<Self, NameError> {
        match arg.rsplit_once('.') {
            Some((_, suffix)) if UnitType::from_suffix(suffix).is_some() => Self::new(arg),
            _ => Self::new(&format!("{arg}.service")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn unit_type(&self) -> UnitType {
        self.unit_type
    }

    fn stem(&self) -> &str {
        &self.name[..self.name.len() - self.unit_type.suffix().len() - 1]
    }

    /// The part before the `@` (or the whole stem): `web` for `web@1.service` (systemd's `%p`).
    pub fn prefix(&self) -> &str {
        let stem = self.stem();
        self.at.map_or(stem, |i| &stem[..i])
    }

    /// The instance of an instance unit: `1` for `web@1.service`; `None` for templates and plain
    /// units.
    pub fn instance(&self) -> Option<&str> {
        let at = self.at?;
        let instance = &self.stem()[at + 1..];
        (!instance.is_empty()).then_some(instance)
    }

    /// The name without its type suffix (systemd's `%N`).
    pub fn without_suffix(&self) -> &str {
        self.stem()
    }

    pub fn is_template(&self) -> bool {
        self.at.is_some() && self.instance().is_none()
    }

    pub fn is_instance(&self) -> bool {
        self.instance().is_some()
    }

    /// The template an instance is made from: `web@.service` for `web@1.service`.
    pub fn template(&self) -> Option<UnitName> {
        self.instance()?;
        let name = format!("{}@.{}", self.prefix(), self.unit_type.suffix());
        Some(Self::new(&name).expect("the template of a valid instance is valid"))
    }

    /// The instance `instance` of this template: `web@.service` + `3` gives `web@3.service`.
    pub fn instantiate(&self, instance: &str) -> Result<UnitName, NameError> {
        let name = format!("{}@{instance}.{}", self.prefix(), self.unit_type.suffix());
        if !self.is_template() {
            return Err(NameError {
                name,
                why: NameProblem::TemplateNotAllowed,
            });
        }
        if instance.is_empty() {
            return Err(NameError {
                name,
                why: NameProblem::EmptyInstance,
            });
        }
        Self::new(&name)
    }
}

impl TryFrom<String> for UnitName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<UnitName> for String {
    fn from(n: UnitName) -> String {
        n.name
    }
}

impl std::str::FromStr for UnitName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnitName({})", self.name)
    }
}

impl AsRef<str> for UnitName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, expected: Result<(), NameProblem>) {
        let got = UnitName::new(name).map(|_| ()).map_err(|e| e.why);
        assert_eq!(got, expected, "{name:?}");
    }

    #[test]
    fn names_follow_systemd_rules() {
        use NameProblem::*;
        let long = format!("{}.service", "a".repeat(MAX_LEN - 8));
        let too_long = format!("{}.service", "a".repeat(MAX_LEN - 7));
        let cases: &[(&str, Result<(), NameProblem>)] = &[
            ("foo.service", Ok(())),
            ("foo-bar_baz:1.2.timer", Ok(())),
            ("dev-disk-by\\x2duuid.device", Ok(())),
            ("web@.service", Ok(())),
            ("web@1.service", Ok(())),
            ("web@a@b.service", Ok(())),
            ("sshd@.socket", Ok(())),
            ("multi-user.target", Ok(())),
            ("x.automount", Ok(())),
            ("x.swap", Ok(())),
            ("x.path", Ok(())),
            ("x.slice", Ok(())),
            ("x.scope", Ok(())),
            ("x.mount", Ok(())),
            (&long, Ok(())),
            (&too_long, Err(TooLong)),
            ("", Err(Empty)),
            ("foo", Err(NoSuffix)),
            ("foo.exe", Err(UnknownSuffix)),
            ("foo.Service", Err(UnknownSuffix)),
            ("foo bar.service", Err(BadCharacter)),
            ("../x.service", Err(BadCharacter)),
            ("a/b.service", Err(BadCharacter)),
            ("a\nb.service", Err(BadCharacter)),
            ("café.service", Err(BadCharacter)),
            ("..service", Err(DotTrick)),
            (".hidden.service", Err(DotTrick)),
            ("a..b.service", Err(DotTrick)),
            (".service", Err(DotTrick)),
            ("@.service", Err(EmptyPrefix)),
            ("@foo.service", Err(EmptyPrefix)),
            ("foo@.mount", Err(TemplateNotAllowed)),
            ("foo@bar.slice", Err(TemplateNotAllowed)),
            ("foo@bar.device", Err(TemplateNotAllowed)),
        ];
        for (name, expected) in cases {
            check(name, *expected);
        }
    }

    #[test]
    fn templates_and_instances_are_told_apart() {
        // (name, prefix, instance, is_template, template)
        let cases = [
            ("web.service", "web", None, false, None),
            ("web@.service", "web", None, true, None),
            (
                "web@3.service",
                "web",
                Some("3"),
                false,
                Some("web@.service"),
            ),
            (
                "a.b@x.y.timer",
                "a.b",
                Some("x.y"),
                false,
                Some("a.b@.timer"),
            ),
        ];
        for (name, prefix, instance, is_template, template) in cases {
            let n = UnitName::new(name).unwrap();
            assert_eq!(n.prefix(), prefix, "{name}");
            assert_eq!(n.instance(), instance, "{name}");
            assert_eq!(n.is_template(), is_template, "{name}");
            assert_eq!(n.is_instance(), instance.is_some(), "{name}");
            assert_eq!(
                n.template().map(|t| t.to_string()).as_deref(),
                template,
                "{name}"
            );
        }
    }

    #[test]
    fn instantiate_builds_valid_instances_only() {
        let t = UnitName::new("web@.service").unwrap();
        assert_eq!(t.instantiate("3").unwrap().as_str(), "web@3.service");
        assert_eq!(
            t.instantiate("").unwrap_err().why,
            NameProblem::EmptyInstance
        );
        assert_eq!(
            t.instantiate("a/b").unwrap_err().why,
            NameProblem::BadCharacter
        );
        let plain = UnitName::new("web.service").unwrap();
        assert!(plain.instantiate("3").is_err());
    }

    #[test]
    fn arguments_without_a_suffix_are_services() {
        let cases = [
            ("web", "web.service"),
            ("web@1", "web@1.service"),
            ("web.timer", "web.timer"),
            ("web.1", "web.1.service"),
        ];
        for (arg, name) in cases {
            assert_eq!(UnitName::from_argument(arg).unwrap().as_str(), name);
        }
    }

    #[test]
    fn errors_name_the_value() {
        let e = UnitName::new("../x.service").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unit name `../x.service` is not a valid systemd unit name: it contains a character outside A-Z a-z 0-9 : _ . - @ \\"
        );
    }

    #[test]
    fn serde_validates_names() {
        let n: UnitName = serde_json::from_str("\"web@1.service\"").unwrap();
        assert_eq!(n.as_str(), "web@1.service");
        assert!(serde_json::from_str::<UnitName>("\"../etc.service\"").is_err());
    }
}
