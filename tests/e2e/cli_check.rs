//! `flottectl check` as users run it: the real binary on files in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use tempfile::TempDir;

const GOOD: &str = "\
[Unit]
Description=Web server

[Service]
ExecStart=/usr/bin/web --port 80

[X-Fleet]
MachineMetadata=region=eu
Conflicts=web@*.service
";

struct Dir(TempDir);

impl Dir {
    fn new() -> Self {
        Self(TempDir::new().expect("a temporary directory"))
    }

    fn file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, content).expect("writing a test file");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

fn flottectl(args: &[&str], files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flottectl"))
        .args(args)
        .args(files)
        .output()
        .expect("running flottectl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

/// Checks `files` in text mode: the exit code and the lines printed, with `{dir}` standing
/// for the temporary directory.
fn check_text(dir: &Dir, files: &[&Path], code: i32, expected: &[&str]) {
    let output = flottectl(&["check"], files);
    let root = dir.0.path().display().to_string();
    let expected: Vec<String> = expected.iter().map(|l| l.replace("{dir}", &root)).collect();
    assert_eq!(stdout(&output).lines().collect::<Vec<_>>(), expected);
    assert_eq!(output.status.code(), Some(code), "{output:?}");
}

fn check_json(files: &[&Path]) -> (i32, Vec<Value>) {
    let output = flottectl(&["check", "--output", "json"], files);
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    let reports = json.as_array().expect("a JSON array").clone();
    (output.status.code().expect("an exit code"), reports)
}

#[test]
fn a_valid_file_prints_ok_and_exits_zero() {
    let dir = Dir::new();
    let web = dir.file("web@.service", GOOD);
    check_text(&dir, &[&web], 0, &["ok web@.service"]);
}

#[test]
fn warnings_are_printed_but_the_file_stays_valid() {
    let dir = Dir::new();
    let web = dir.file(
        "web.service",
        "[Unit]\nDescription=x\n\n[X-Fleet]\nMachineOf=\nColour=blue\n",
    );
    check_text(
        &dir,
        &[&web],
        0,
        &[
            "{dir}/web.service:5: warning: MachineOf: the value is empty, so this option has no effect",
            "{dir}/web.service:6: warning: unknown [X-Fleet] option `Colour` is ignored (known: MachineID, MachineOf, MachineMetadata, Conflicts, Global, Replaces, Memory, CPU)",
            "ok web.service",
        ],
    );
}

#[test]
fn a_syntax_error_is_reported_with_file_and_line() {
    let dir = Dir::new();
    let bad = dir.file("web.service", "[Unit]\nDescription=x\nFoo\n");
    check_text(&dir, &[&bad], 1, &["{dir}/web.service:3: `Foo` has no `=`"]);
}

#[test]
fn a_file_name_that_is_no_unit_name_is_an_error_without_a_line() {
    let dir = Dir::new();
    let bad = dir.file("web.txt", GOOD);
    check_text(
        &dir,
        &[&bad],
        1,
        &[
            "{dir}/web.txt: unit name `web.txt` is not a valid systemd unit name: its type suffix is unknown (service, socket, device, mount, automount, swap, target, path, timer, slice, scope)",
        ],
    );
}

#[test]
fn requirement_errors_point_at_the_option_line() {
    let dir = Dir::new();
    let bad = dir.file(
        "web.service",
        "[Unit]\nDescription=x\n\n[X-Fleet]\nMachineID=01234567\nGlobal=true\nMachineMetadata=\"region=eu\" \"disk\"\n",
    );
    check_text(
        &dir,
        &[&bad],
        1,
        &[
            "{dir}/web.service:7: MachineMetadata: item `disk` has no operator: write key=value, or compare with !=, <, <=, >, >=",
            "{dir}/web.service:6: MachineID cannot be combined with Global",
        ],
    );
}

#[test]
fn requests_are_shown_and_bad_ones_refused_with_their_line() {
    let dir = Dir::new();
    let db = dir.file(
        "db@.service",
        "[Unit]\nDescription=x\n\n[X-Fleet]\nMemory=512M\nCPU=0.5\n",
    );
    check_text(
        &dir,
        &[&db],
        0,
        &["ok db@.service (requests 512 MiB, 0.5 CPU)"],
    );
    let (code, reports) = check_json(&[&db]);
    assert_eq!(code, 0);
    assert_eq!(
        reports[0]["requirements"]["requests"],
        json!({"memory": 536870912, "millicpus": 500})
    );
    let bad = dir.file(
        "big.service",
        "[Unit]\nDescription=x\n\n[X-Fleet]\nMemory=12 GB\n",
    );
    check_text(
        &dir,
        &[&bad],
        1,
        &[
            "{dir}/big.service:5: Memory: `12 GB` is not a memory size: write bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1.5G",
        ],
    );
}

#[test]
fn unreadable_oversized_and_binary_files_are_errors() {
    let dir = Dir::new();
    let missing = dir.path("missing.service");
    let big = dir.file("big.service", vec![b'#'; 512 * 1024 + 1]);
    let binary = dir.file("bin.service", b"[Unit]\nDescription=\xff\n");
    check_text(
        &dir,
        &[&missing, &big, &binary],
        1,
        &[
            "{dir}/missing.service: cannot read the file: No such file or directory (os error 2)",
            "{dir}/big.service: the file is larger than the 512 KiB limit",
            "{dir}/bin.service:2: invalid UTF-8 (byte 0xff)",
        ],
    );
}

#[test]
fn one_bad_file_among_good_ones_fails_the_run_and_all_are_reported() {
    let dir = Dir::new();
    let good = dir.file("a.service", GOOD);
    let bad = dir.file("b.service", "Description=x\n");
    let also_good = dir.file("c.timer", "[Timer]\nOnCalendar=daily\n");
    check_text(
        &dir,
        &[&good, &bad, &also_good],
        1,
        &[
            "ok a.service",
            "{dir}/b.service:1: `Description` is outside any section: put a section header such as `[Unit]` before it",
            "ok c.timer",
        ],
    );
}

#[test]
fn json_output_describes_each_file() {
    let dir = Dir::new();
    let good = dir.file("web@3.service", GOOD.replace("region=eu", "shard=%i"));
    let bad = dir.file("db.service", "[X-Fleet]\nGlobal=maybe\nFoo=1\n");
    let (code, reports) = check_json(&[&good, &bad]);
    assert_eq!(code, 1);
    assert_eq!(reports.len(), 2);

    let good_report = &reports[0];
    assert_eq!(good_report["file"], json!(good.display().to_string()));
    assert_eq!(good_report["name"], json!("web@3.service"));
    assert_eq!(good_report["valid"], json!(true));
    let hash = good_report["hash"].as_str().expect("a hash");
    assert_eq!(hash.len(), 40);
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        good_report["options"][0],
        json!({"section": "Unit", "name": "Description", "value": "Web server"})
    );
    assert_eq!(good_report["options"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        good_report["requirements"],
        json!({
            "machineID": null,
            "machineOf": [],
            "machineMetadata": ["shard=3"],
            "conflicts": ["web@*.service"],
            "global": false,
            "replaces": [],
        })
    );
    assert_eq!(good_report["warnings"], json!([]));
    assert_eq!(good_report["errors"], json!([]));

    let bad_report = &reports[1];
    assert_eq!(bad_report["valid"], json!(false));
    assert!(bad_report.get("requirements").is_none());
    assert!(bad_report.get("hash").is_some(), "the file itself parsed");
    assert_eq!(
        bad_report["errors"],
        json!([{"line": 2, "message": "Global: `maybe` is not a boolean (use yes/no, true/false, on/off or 1/0)"}])
    );
}

#[test]
fn json_output_leaves_out_what_could_not_be_computed() {
    let dir = Dir::new();
    let bad = dir.file("web.service", "[Unit\n");
    let (code, reports) = check_json(&[&bad]);
    assert_eq!(code, 1);
    let report = &reports[0];
    for absent in ["hash", "options", "requirements"] {
        assert!(report.get(absent).is_none(), "{absent} in {report}");
    }
    assert_eq!(
        report["errors"],
        json!([{"line": 1, "message": "section header `[Unit` has no closing `]`"}])
    );
    assert_eq!(report["warnings"], json!([]));
}

#[test]
fn json_output_of_valid_files_exits_zero() {
    let dir = Dir::new();
    let good = dir.file("web.service", GOOD);
    let (code, reports) = check_json(&[&good]);
    assert_eq!(code, 0);
    assert_eq!(reports[0]["valid"], json!(true));
}

#[test]
fn usage_errors_exit_with_two() {
    let dir = Dir::new();
    let good = dir.file("web.service", GOOD);
    for args in [
        &["check"][..],
        &["check", "--output", "xml", "x.service"],
        &["frobnicate"],
        &[],
    ] {
        let output = flottectl(args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let output = flottectl(&["check", "--output", "yaml"], &[&good]);
    assert_eq!(output.status.code(), Some(2));
}
