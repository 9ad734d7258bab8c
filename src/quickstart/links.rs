//! `/usr/local/bin/flottectl` and `flotted` linked to the binaries the cluster runs: the
//! example sidekicks run `/usr/local/bin/flottectl announce`.

use std::fs;
use std::path::PathBuf;

use super::{QuickstartError, io_error};
use crate::cli::Console;

/// Where `Links::dir` is but in tests: where the example units look.
pub const LINK_DIR: &str = "/usr/local/bin";

/// The directory the example units run flottectl from (`/usr/local/bin/flottectl announce` in
/// the sidekicks), and the binaries to link there.
#[derive(Debug, Clone)]
pub struct Links {
    pub dir: PathBuf,
    pub flottectl: PathBuf,
    pub flotted: PathBuf,
}

/// Links `dir/flottectl` and `dir/flotted` to the binaries, replacing older links (another
/// checkout's, a debug build's) but never a file: an installed flottectl is left alone, with
/// a warning, and the sidekicks run that one.
pub(super) fn link(links: &Links, console: &mut Console<'_>) -> Result<(), QuickstartError> {
    for (name, target) in [("flottectl", &links.flottectl), ("flotted", &links.flotted)] {
        let path = links.dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if !meta.file_type().is_symlink() => {
                writeln!(
                    console.err,
                    "local-cluster: warning: {} is no link; leaving it (the example units run it)",
                    path.display()
                )?;
                continue;
            }
            _ if fs::read_link(&path).is_ok_and(|t| &t == target) => continue,
            _ => {}
        }
        // Made aside and renamed over the old one: at no moment is there no flottectl.
        let partial = links.dir.join(format!(".{name}.flotte-link"));
        let _ = fs::remove_file(&partial);
        std::os::unix::fs::symlink(target, &partial)
            .and_then(|()| fs::rename(&partial, &path))
            .map_err(io_error(format!(
                "linking {} to {}",
                path.display(),
                target.display()
            )))?;
        writeln!(
            console.out,
            "Linked {} to {}.",
            path.display(),
            target.display()
        )?;
    }
    Ok(())
}
