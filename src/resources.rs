//! Memory and CPU: what a unit requests (`[X-Fleet]` `Memory=`, `CPU=`) and what a machine has
//! (its capacity). One type for both, in whole bytes and thousandths of a CPU, so that sums and
//! comparisons are exact. Parsing and display are pure; `detect` reads the machine.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Memory in bytes and CPU in thousandths of a CPU. As a request, zero in a dimension means
/// "nothing asked"; as a capacity, zero means "none to give".
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Resources {
    /// Bytes.
    #[serde(default)]
    pub memory: u64,
    /// Thousandths of a CPU: 500 is half a CPU.
    #[serde(default)]
    pub millicpus: u64,
}

impl Resources {
    pub const ZERO: Resources = Resources {
        memory: 0,
        millicpus: 0,
    };

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    pub fn saturating_add(self, other: Resources) -> Resources {
        Resources {
            memory: self.memory.saturating_add(other.memory),
            millicpus: self.millicpus.saturating_add(other.millicpus),
        }
    }

    pub fn saturating_sub(self, other: Resources) -> Resources {
        Resources {
            memory: self.memory.saturating_sub(other.memory),
            millicpus: self.millicpus.saturating_sub(other.millicpus),
        }
    }

    /// Whether a request of `self` fits in `free`: every dimension it asks for (non-zero) fits.
    /// A request of nothing fits anywhere, even on a machine already over its capacity.
    pub fn fits_in(&self, free: Resources) -> bool {
        (self.memory == 0 || self.memory <= free.memory)
            && (self.millicpus == 0 || self.millicpus <= free.millicpus)
    }

    /// The smallest of every dimension of both.
    pub fn min(self, other: Resources) -> Resources {
        Resources {
            memory: self.memory.min(other.memory),
            millicpus: self.millicpus.min(other.millicpus),
        }
    }
}

impl fmt::Display for Resources {
    /// `512 MiB, 0.5 CPU`; a zero dimension is left out, and all-zero reads `nothing`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.memory, self.millicpus) {
            (0, 0) => f.write_str("nothing"),
            (m, 0) => write!(f, "{}", Memory(m)),
            (0, c) => write!(f, "{}", Cpu(c)),
            (m, c) => write!(f, "{}, {}", Memory(m), Cpu(c)),
        }
    }
}

/// A byte count for people: `512 MiB`, `1.5 GiB`, `300 B`.
#[derive(Debug, Clone, Copy)]
pub struct Memory(pub u64);

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
        let bytes = self.0;
        for (unit, shift) in UNITS {
            let size = 1u64 << shift;
            if bytes >= size {
                // Two decimals at most, trailing zeros dropped; truncated so that a free amount
                // is never shown larger than it is.
                let hundredths = (u128::from(bytes) * 100 / u128::from(size)) as u64;
                return write!(f, "{} {unit}", decimal(hundredths, 2));
            }
        }
        write!(f, "{bytes} B")
    }
}

/// Thousandths of a CPU for people: `0.5 CPU`, `2 CPUs`.
#[derive(Debug, Clone, Copy)]
pub struct Cpu(pub u64);

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.0 == 1000 { "CPU" } else { "CPUs" };
        let word = if self.0 < 1000 { "CPU" } else { word };
        write!(f, "{} {word}", decimal(self.0, 3))
    }
}

/// Thousandths of a CPU as a plain number: `0.5`, `2`.
pub fn cpus(millicpus: u64) -> String {
    decimal(millicpus, 3)
}

/// `value / 10^places` written with at most `places` decimals, trailing zeros dropped.
fn decimal(value: u64, places: u32) -> String {
    let scale = 10u64.pow(places);
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = places as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses a memory size as systemd writes them (`MemoryMax=`): a number of bytes with an
/// optional suffix `K`, `M`, `G` or `T` (powers of 1024); a suffixed number may have a
/// fraction (`1.5G`). The result is in whole bytes.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, shift) = match text.as_bytes().last() {
        Some(b'K') => (&text[..text.len() - 1], 10),
        Some(b'M') => (&text[..text.len() - 1], 20),
        Some(b'G') => (&text[..text.len() - 1], 30),
        Some(b'T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let wrong = || {
        format!(
            "`{text}` is not a memory size: write bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1.5G"
        )
    };
    let (whole, fraction) = split_decimal(number).ok_or_else(wrong)?;
    if shift == 0 && !fraction.is_empty() {
        return Err(format!(
            "`{text}` is not a whole number of bytes: use a suffix (K, M, G, T) for fractions"
        ));
    }
    let too_large = || format!("`{text}` is too large a memory size");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    // Digits past the 18th cannot change a byte count below 2^64 by a whole byte.
    let fraction = &fraction[..fraction.len().min(18)];
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| wrong())?
    };
    let bytes = whole
        .checked_shl(shift)
        .filter(|b| b >> shift == whole)
        .ok_or_else(too_large)?
        + ((fraction << shift) / scale);
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Parses a number of CPUs (`0.5`, `2`, `0.125`) into thousandths of a CPU.
pub fn parse_cpu(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (whole, fraction) = split_decimal(text).ok_or_else(|| {
        format!("`{text}` is not a number of CPUs: write a decimal number such as 0.5 or 2")
    })?;
    if fraction.len() > 3 {
        return Err(format!(
            "`{text}` is finer than a thousandth of a CPU: write at most three decimals"
        ));
    }
    let too_large = || format!("`{text}` is too many CPUs");
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let fraction: u64 = format!("{fraction:0<3}").parse().unwrap_or(0);
    whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(too_large)
}

/// `12`, `12.5`, `0.25`: ASCII digits, at most one dot with digits on both sides.
fn split_decimal(text: &str) -> Option<(&str, &str)> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let dotted = text.contains('.');
    (!whole.is_empty() && digits(whole) && digits(fraction) && (!dotted || !fraction.is_empty()))
        .then_some((whole, fraction))
}

/// Parses `memory=8G,cpu=4` (flotted.conf's `capacity` and `reserved`): either key may be left
/// out, and is then `None`.
pub fn parse_amounts(text: &str) -> Result<(Option<u64>, Option<u64>), String> {
    let mut memory = None;
    let mut cpu = None;
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!(
                "`{item}` is not of the form memory=SIZE or cpu=CPUS (e.g. memory=8G,cpu=4)"
            ));
        };
        let (slot, amount) = match key.trim() {
            "memory" => (&mut memory, parse_memory(value)?),
            "cpu" => (&mut cpu, parse_cpu(value)?),
            other => {
                return Err(format!(
                    "unknown key `{other}` in `{item}`: only memory and cpu are known"
                ));
            }
        };
        if slot.replace(amount).is_some() {
            return Err(format!("{} is given more than once", key.trim()));
        }
    }
    Ok((memory, cpu))
}

/// The memory a cgroup limit file (`memory.max`, cgroup v2) allows: `None` for `max`.
pub fn parse_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The CPUs a `cpu.max` file (`QUOTA PERIOD`, cgroup v2) allows, in thousandths: `None` for
/// `max`.
pub fn parse_cpu_max(text: &str) -> Option<u64> {
    let mut words = text.split_whitespace();
    let quota: u64 = words.next()?.parse().ok()?;
    let period: u64 = words.next().unwrap_or("100000").parse().ok()?;
    (period > 0).then(|| quota.saturating_mul(1000) / period)
}

/// `MemTotal:` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The cgroup v2 path of a process from `/proc/<pid>/cgroup` (`0::/path`).
pub fn parse_own_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The machine's memory and CPUs as this process may use them: `/proc/meminfo`'s total and
/// the number of CPUs, each lowered by the cgroup v2 limits (`memory.max`, `cpu.max`) of the
/// process's own cgroup and its ancestors, where set. A dimension that cannot be read is 0.
pub fn detect() -> Resources {
    let read = |path: &Path| std::fs::read_to_string(path).ok();
    let mut memory = read(Path::new("/proc/meminfo"))
        .and_then(|t| parse_meminfo(&t))
        .unwrap_or(0);
    let mut millicpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64 * 1000)
        .unwrap_or(0);
    let own = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
    if let Some(path) = parse_own_cgroup(&own) {
        let root = Path::new("/sys/fs/cgroup");
        let mut dir = root.join(path.trim_start_matches('/'));
        loop {
            if let Some(limit) = read(&dir.join("memory.max")).and_then(|t| parse_memory_max(&t)) {
                memory = memory.min(limit);
            }
            if let Some(limit) = read(&dir.join("cpu.max")).and_then(|t| parse_cpu_max(&t)) {
                millicpus = millicpus.min(limit);
            }
            if dir == root || !dir.pop() {
                break;
            }
        }
    }
    Resources { memory, millicpus }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn memory_sizes_parse_like_systemds() {
        let cases: [(&str, Result<u64, &str>); 16] = [
            ("512M", Ok(512 * MIB)),
            ("1.5G", Ok(1536 * MIB)),
            ("1024", Ok(1024)),
            ("4K", Ok(4096)),
            ("2T", Ok(2 << 40)),
            (" 0 ", Ok(0)),
            ("0.5K", Ok(512)),
            (
                "512m",
                Err(
                    "`512m` is not a memory size: write bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1.5G",
                ),
            ),
            (
                "-1M",
                Err(
                    "`-1M` is not a memory size: write bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1.5G",
                ),
            ),
            (
                "M",
                Err(
                    "`M` is not a memory size: write bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1.5G",
                ),
            ),
            (
                "1.M",
                Err(
                    "`1.M` is not a memory size: write bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1.5G",
                ),
            ),
            (
                "lots",
                Err(
                    "`lots` is not a memory size: write bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1.5G",
                ),
            ),
            (
                "1.5",
                Err(
                    "`1.5` is not a whole number of bytes: use a suffix (K, M, G, T) for fractions",
                ),
            ),
            ("99999999T", Err("`99999999T` is too large a memory size")),
            (
                "18446744073709551616",
                Err("`18446744073709551616` is too large a memory size"),
            ),
            ("18446744073709551615", Ok(u64::MAX)),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_memory(text),
                expected.map_err(str::to_owned),
                "{text}"
            );
        }
    }

    #[test]
    fn cpu_amounts_parse_to_thousandths() {
        let cases: [(&str, Result<u64, &str>); 9] = [
            ("0.5", Ok(500)),
            ("2", Ok(2000)),
            ("0.125", Ok(125)),
            ("1.25", Ok(1250)),
            ("0", Ok(0)),
            (
                "0.0001",
                Err("`0.0001` is finer than a thousandth of a CPU: write at most three decimals"),
            ),
            (
                "50%",
                Err("`50%` is not a number of CPUs: write a decimal number such as 0.5 or 2"),
            ),
            (
                "-1",
                Err("`-1` is not a number of CPUs: write a decimal number such as 0.5 or 2"),
            ),
            (
                "99999999999999999999",
                Err("`99999999999999999999` is too many CPUs"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_cpu(text), expected.map_err(str::to_owned), "{text}");
        }
    }

    #[test]
    fn amounts_display_for_people() {
        let cases = [
            (
                Resources {
                    memory: 512 * MIB,
                    millicpus: 500,
                },
                "512 MiB, 0.5 CPU",
            ),
            (
                Resources {
                    memory: 1536 * MIB,
                    millicpus: 0,
                },
                "1.5 GiB",
            ),
            (
                Resources {
                    memory: 300,
                    millicpus: 2000,
                },
                "300 B, 2 CPUs",
            ),
            (
                Resources {
                    memory: 0,
                    millicpus: 1000,
                },
                "1 CPU",
            ),
            (
                Resources {
                    memory: 1023 * MIB + 1,
                    millicpus: 0,
                },
                "1023 MiB",
            ),
            (Resources::ZERO, "nothing"),
        ];
        for (amount, text) in cases {
            assert_eq!(amount.to_string(), text);
        }
    }

    #[test]
    fn requests_fit_per_dimension_they_ask_for() {
        let r = |memory, millicpus| Resources { memory, millicpus };
        let cases = [
            (r(10, 0), r(10, 0), true),
            (r(11, 0), r(10, 5), false),
            (r(0, 5), r(0, 5), true),
            (r(0, 6), r(100, 5), false),
            (r(0, 0), r(0, 0), true),
            (r(10, 1), r(10, 0), false),
        ];
        for (request, free, fits) in cases {
            assert_eq!(request.fits_in(free), fits, "{request:?} in {free:?}");
        }
    }

    #[test]
    fn capacity_settings_parse() {
        type Expected = Result<(Option<u64>, Option<u64>), &'static str>;
        let cases: [(&str, Expected); 6] = [
            ("memory=8G,cpu=4", Ok((Some(8 << 30), Some(4000)))),
            (" cpu = 0.5 ", Ok((None, Some(500)))),
            ("", Ok((None, None))),
            ("memory=1G,memory=2G", Err("memory is given more than once")),
            (
                "disk=1G",
                Err("unknown key `disk` in `disk=1G`: only memory and cpu are known"),
            ),
            (
                "8G",
                Err("`8G` is not of the form memory=SIZE or cpu=CPUS (e.g. memory=8G,cpu=4)"),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_amounts(text),
                expected.map_err(str::to_owned),
                "{text}"
            );
        }
    }

    #[test]
    fn machine_files_parse() {
        assert_eq!(
            parse_meminfo("MemTotal:       16305036 kB\nMemFree: 1 kB\n"),
            Some(16305036 * 1024)
        );
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max("536870912\n"), Some(512 * MIB));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1500));
        assert_eq!(parse_cpu_max("50000 100000"), Some(500));
        assert_eq!(
            parse_own_cgroup("0::/system.slice/flotted.service\n"),
            Some("/system.slice/flotted.service")
        );
        assert_eq!(parse_own_cgroup("1:name=systemd:/x\n"), None);
    }

    #[test]
    fn detection_reads_this_machine() {
        let found = detect();
        assert!(found.memory > 0, "no memory detected: {found:?}");
        assert!(found.millicpus > 0, "no CPU detected: {found:?}");
    }
}
