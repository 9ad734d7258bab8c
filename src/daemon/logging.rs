//! flotted's logs: plain text for a terminal or a file, the same without timestamps and with
//! syslog priority prefixes (`<3>`) when stderr is systemd's journal (journald stamps each line
//! itself and files it under that priority, so `journalctl -p warning` works), or one JSON
//! object per line (`--log-format json`) for log collectors.

use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (without timestamps and with priorities under journald).
    Text,
    /// One JSON object per line: timestamp, level, target, message and fields.
    Json,
}

/// Installs the global subscriber writing to stderr; `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text if stderr_is_journal() => builder
            .with_ansi(false)
            .event_format(JournalPriority(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM` to its
/// `device:inode`, which a redirected stderr no longer matches (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .expect("stderr can be duplicated"),
    )
    .metadata() else {
        return false;
    };
    is_journal_stream(&stream, meta.dev(), meta.ino())
}

/// `JOURNAL_STREAM`'s `device:inode` (decimal) against stderr's.
fn is_journal_stream(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// sd-daemon(3)'s priority prefix for a tracing level.
fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Prefixes each event with its syslog priority, which journald takes off and records.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stderrs_own_device_and_inode_mean_the_journal() {
        for (value, journal) in [
            ("8:12345", true),
            ("8:12346", false),
            ("9:12345", false),
            ("8", false),
            ("", false),
            ("x:12345", false),
        ] {
            assert_eq!(is_journal_stream(value, 8, 12345), journal, "{value}");
        }
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        for (level, priority) in [
            (Level::ERROR, 3),
            (Level::WARN, 4),
            (Level::INFO, 6),
            (Level::DEBUG, 7),
            (Level::TRACE, 7),
        ] {
            assert_eq!(syslog_priority(&level), priority, "{level}");
        }
    }
}
