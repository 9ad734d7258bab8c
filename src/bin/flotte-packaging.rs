//! flotte-packaging: writes what the Debian package ships besides the binaries, generated from
//! the code so that it cannot drift from it: man pages (`flottectl(1)` and one page per
//! subcommand, `flotted(8)`, `flotted.conf(5)`), bash, zsh and fish completions of both
//! programs, and the documented `/etc/flotte/flotted.conf`. Run by packaging/build-deb:
//!
//!     flotte-packaging OUT_DIR
//!
//! writes OUT_DIR/man/, OUT_DIR/completions/{bash,zsh,fish}/ and OUT_DIR/flotted.conf.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{Roff, bold, italic, roman};
use flotte::config::{self, Key};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!("usage: flotte-packaging OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotte-packaging: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> anyhow::Result<()> {
    let man = out.join("man");
    mkdir(&man)?;
    let flottectl = flotte::cli::Cli::command();
    // One page for flottectl and one for each subcommand (flottectl-list-units(1), ...).
    clap_mangen::generate_to(flottectl.clone(), &man).context("writing flottectl's man pages")?;
    let mut page = Vec::new();
    clap_mangen::Man::new(flotte::daemon::command())
        .section("8")
        .render(&mut page)
        .context("rendering flotted(8)")?;
    write(&man.join("flotted.8"), &page)?;
    write(&man.join("flotted.conf.5"), flotted_conf_page().as_bytes())?;

    for (shell, dir, name) in [
        (Shell::Bash, "bash", "{}"),
        (Shell::Zsh, "zsh", "_{}"),
        (Shell::Fish, "fish", "{}.fish"),
    ] {
        let dir = out.join("completions").join(dir);
        mkdir(&dir)?;
        for mut cmd in [flottectl.clone(), flotte::daemon::command()] {
            let program = cmd.get_name().to_owned();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, &program, &mut script);
            write(&dir.join(name.replace("{}", &program)), &script)?;
        }
    }
    write(
        &out.join("flotted.conf"),
        config::documented_file().as_bytes(),
    )
}

/// flotted.conf(5): the file's syntax, then every key with its default and description, from
/// the same table as `flotted --help` and the packaged file.
fn flotted_conf_page() -> String {
    let mut page = Roff::new();
    page.control(
        "TH",
        [
            "FLOTTED.CONF",
            "5",
            "",
            &format!("flotte {}", flotte::daemon::VERSION),
        ],
    )
    .control("SH", ["NAME"])
    .text([roman(
        "flotted.conf - configuration of flotte's per-host daemon",
    )])
    .control("SH", ["SYNOPSIS"])
    .text([roman(config::DEFAULT_CONFIG_FILE)])
    .control("SH", ["DESCRIPTION"])
    .text([
        roman("flotted(8) reads its settings from this file (or the file named by "),
        bold("--config"),
        roman(" or "),
        bold("FLOTTE_CONFIG"),
        roman("), then from "),
        bold("FLOTTE_<KEY>"),
        roman(
            " environment variables, then from its flags, each layer winning over the one \
                 before. Lines are key=value; blank lines and lines starting with # are \
                 ignored; a value may be enclosed in double quotes. An unknown key is an error \
                 naming the file and line. After an edit, restart flotted: the units it runs \
                 keep running.",
        ),
    ])
    .control("SH", ["SETTINGS"]);
    for &key in Key::ALL {
        let default = match key.default_value() {
            "" => "no default".to_owned(),
            d => format!("default {d}"),
        };
        page.control("TP", [] as [&str; 0])
            .text([bold(key.name()), roman(" ("), italic(&default), roman(")")])
            .text([roman(key.help())]);
    }
    page.control("SH", ["FILES"])
        .control("TP", [] as [&str; 0])
        .text([roman(config::DEFAULT_CONFIG_FILE)])
        .text([roman(
            "Owned by root, group flotte, mode 0640: it may hold etcd's password, and \
             flottectl announce and services read it to reach etcd.",
        )])
        .control("SH", ["SEE ALSO"])
        .text([roman("flotted(8), flottectl(1), systemd.service(5)")]);
    page.render()
}

fn mkdir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn write(path: &PathBuf, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
