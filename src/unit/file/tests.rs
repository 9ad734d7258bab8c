//! Unit files: the parser's cases, the option rules, and round trips of arbitrary input.

use super::*;
use proptest::prelude::*;

fn opt(section: &str, name: &str, value: &str) -> UnitOption {
    UnitOption::new(section, name, value)
}

/// Parses `input` and compares with `expected`: the options with their start lines, or the
/// error's line and message.
fn check(input: &str, expected: Result<&[(usize, UnitOption)], (usize, &str)>) {
    check_bytes(input.as_bytes(), expected);
}

fn check_bytes(input: &[u8], expected: Result<&[(usize, UnitOption)], (usize, &str)>) {
    let got = UnitFile::parse(input)
        .map(|p| {
            p.lines
                .into_iter()
                .zip(p.file.into_options())
                .collect::<Vec<_>>()
        })
        .map_err(|e| (e.line, e.problem.to_string()));
    let expected = expected
        .map(<[_]>::to_vec)
        .map_err(|(line, message)| (line, message.to_owned()));
    assert_eq!(got, expected, "input: {:?}", String::from_utf8_lossy(input));
}

#[test]
fn the_parser_follows_systemd_syntax() {
    let cases: &[(&str, &[(usize, UnitOption)])] = &[
        ("", &[]),
        ("\n\n  \n", &[]),
        (
            "[Unit]\nDescription=Web\n",
            &[(2, opt("Unit", "Description", "Web"))],
        ),
        // whitespace around `=` and at both ends is trimmed, inner whitespace kept
        (
            "  [Service]  \n\t ExecStart  =  /bin/sh -c  'x'  \t\n",
            &[(2, opt("Service", "ExecStart", "/bin/sh -c  'x'"))],
        ),
        // comments with `#` and `;`, after leading whitespace too
        (
            "# top\n[Unit]\n; semi\n   # indented\nA=1 # not a comment\n",
            &[(5, opt("Unit", "A", "1 # not a comment"))],
        ),
        // repeated keys keep every value in order; empty values are kept
        (
            "[Service]\nExecStart=\nExecStart=/a\nExecStart=/b\n",
            &[
                (2, opt("Service", "ExecStart", "")),
                (3, opt("Service", "ExecStart", "/a")),
                (4, opt("Service", "ExecStart", "/b")),
            ],
        ),
        // keys are case-sensitive, quotes are preserved
        (
            "[Unit]\na=1\nA=\"x y\" 'z'\n",
            &[
                (2, opt("Unit", "a", "1")),
                (3, opt("Unit", "A", "\"x y\" 'z'")),
            ],
        ),
        // a continuation: the backslash becomes a space, the option starts on its first line
        (
            "[Service]\nExecStart=/bin/echo \\\n  hello \\\n world\nB=2\n",
            &[
                (2, opt("Service", "ExecStart", "/bin/echo    hello   world")),
                (5, opt("Service", "B", "2")),
            ],
        ),
        // comment lines inside a continuation are skipped
        (
            "[Service]\nA=one\\\n# note\n; note\ntwo\n",
            &[(2, opt("Service", "A", "one two"))],
        ),
        // an even number of trailing backslashes is an escaped backslash, not a continuation
        (
            "[S]\nA=x\\\\\nB=y\n",
            &[(2, opt("S", "A", "x\\\\")), (3, opt("S", "B", "y"))],
        ),
        ("[S]\nA=x\\\\\\\ny\n", &[(2, opt("S", "A", "x\\\\ y"))]),
        // a blank line ends a continuation
        (
            "[S]\nA=x\\\n\nB=y\n",
            &[(2, opt("S", "A", "x")), (4, opt("S", "B", "y"))],
        ),
        // a continuation may run into the end of the file
        ("[S]\nA=x\\", &[(2, opt("S", "A", "x"))]),
        ("[S]\nA=x\\\ny\\\n", &[(2, opt("S", "A", "x y"))]),
        // CRLF line endings
        (
            "[Unit]\r\nA=1\r\nB = 2 \r\n\r\n",
            &[(2, opt("Unit", "A", "1")), (3, opt("Unit", "B", "2"))],
        ),
        ("[S]\r\nA=x\\\r\ny\r\n", &[(2, opt("S", "A", "x y"))]),
        // sections may repeat; the list order is the model
        (
            "[A]\nx=1\n[B]\ny=2\n[A]\nz=3\n",
            &[
                (2, opt("A", "x", "1")),
                (4, opt("B", "y", "2")),
                (6, opt("A", "z", "3")),
            ],
        ),
        // an empty section is allowed and leaves no trace
        ("[A]\n[B]\ny=2\n", &[(3, opt("B", "y", "2"))]),
        // systemd keeps whitespace inside the brackets
        ("[ X ]\na=b\n", &[(2, opt(" X ", "a", "b"))]),
        // the first `=` splits; later ones belong to the value
        (
            "[Service]\nEnvironment=A=1 B=2\n",
            &[(2, opt("Service", "Environment", "A=1 B=2"))],
        ),
        // a byte order mark at the start is skipped
        ("\u{feff}[Unit]\nA=1\n", &[(2, opt("Unit", "A", "1"))]),
        // tabs and non-ASCII text are part of a value
        (
            "[S]\nA=a\tb é\u{a0}\n",
            &[(2, opt("S", "A", "a\tb é\u{a0}"))],
        ),
    ];
    for (input, expected) in cases {
        check(input, Ok(expected));
    }
}

#[test]
fn parse_errors_name_the_line_and_the_problem() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "Description=x\n",
            1,
            "`Description` is outside any section: put a section header such as `[Unit]` before it",
        ),
        ("[Unit]\nA=1\nFoo\n", 3, "`Foo` has no `=`"),
        ("[Unit]\n  = x\n", 2, "`= x` has no name before `=`"),
        (
            "[Unit\nA=1\n",
            1,
            "section header `[Unit` has no closing `]`",
        ),
        ("[\n", 1, "section header `[` has no closing `]`"),
        (
            "[Unit] # c\n",
            1,
            "section header `[Unit] # c` has no closing `]`",
        ),
        ("[A]\n[]\n", 2, "section header `[]` has no name"),
        ("[A[B]\n", 1, "section name `A[B` contains `[`"),
        ("[A]B]\n", 1, "section name `A]B` contains `]`"),
        (
            "[A\u{1}]\n",
            1,
            "section name `A\\u{1}` contains the control character U+0001",
        ),
        ("[S]\nA B=1\n", 2, "option name `A B` contains whitespace"),
        ("[S]\nA[0]=1\n", 2, "option name `A[0]` contains `[`"),
        (
            "[S]\nA=x\ry\n",
            2,
            "value `x\\ry` of `A` contains the control character U+000D",
        ),
        (
            "[S]\nA=x\u{7f}\n",
            2,
            "value `x\\u{7f}` of `A` contains the control character U+007F",
        ),
        // an error inside a continued line is reported where the line starts
        ("[S]\nA=1\n\\\n#c\nfoo\n", 3, "`foo` has no `=`"),
    ];
    for (input, line, message) in cases {
        check(input, Err((*line, message)));
    }
}

#[test]
fn encoding_errors_name_the_line_of_the_first_bad_byte() {
    check_bytes(
        b"[S]\nA=1\nB=\xff\n\0",
        Err((3, "invalid UTF-8 (byte 0xff)")),
    );
    check_bytes(
        b"[S]\nA=\0\nB=\xff\n",
        Err((2, "a NUL byte, which a unit file cannot contain")),
    );
    check_bytes(
        b"\0",
        Err((1, "a NUL byte, which a unit file cannot contain")),
    );
    // a truncated multi-byte character at the very end
    check_bytes(b"[S]\nA=\xc3", Err((2, "invalid UTF-8 (byte 0xc3)")));
}

#[test]
fn files_over_the_size_limit_are_refused_with_the_limit_stated() {
    let mut big = b"[Service]\nA=".to_vec();
    big.resize(MAX_FILE_SIZE - 1, b'x');
    big.push(b'\n');
    let parsed = UnitFile::parse(&big).expect("exactly the limit is fine");
    assert_eq!(parsed.file.serialize().len(), MAX_FILE_SIZE);
    big.push(b'\n');
    let err = UnitFile::parse(&big).unwrap_err();
    assert_eq!(err.line, 0);
    assert_eq!(err.to_string(), "the file is larger than the 512 KiB limit");
}

#[test]
fn a_file_whose_canonical_form_passes_the_limit_is_refused() {
    // Each section change gains a blank line when serialized: 14 bytes become 16.
    let block = "[A]\nk=\n[B]\nk=\n";
    let input = block.repeat(MAX_FILE_SIZE / block.len());
    assert!(input.len() <= MAX_FILE_SIZE);
    let err = UnitFile::parse(input.as_bytes()).unwrap_err();
    assert_eq!(
        err.problem.to_string(),
        "value `` of `k` takes the unit past the 512 KiB limit"
    );
    // the option that crosses the limit is on this line
    let options: Vec<_> = (0..MAX_FILE_SIZE / block.len() * 2)
        .map(|i| opt(if i % 2 == 0 { "A" } else { "B" }, "k", ""))
        .collect();
    let index = UnitFile::from_options(options).unwrap_err().index;
    assert_eq!(err.line, index * 2 + 2);
}

#[test]
fn from_options_refuses_lists_past_the_size_limit() {
    let half = "x".repeat(MAX_FILE_SIZE / 2);
    let options = vec![
        opt("Service", "A", &half),
        opt("Service", "B", &half),
        opt("Service", "C", "1"),
    ];
    let err = UnitFile::from_options(options).unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(err.problem.flaw, Flaw::PastSizeLimit);
    assert!(
        err.to_string()
            .ends_with("of `B` takes the unit past the 512 KiB limit"),
        "{err}"
    );
}

#[test]
fn error_messages_carry_the_line_and_shorten_long_text() {
    let err = UnitFile::parse(b"[Unit]\nA=1\nFoo\n").unwrap_err();
    assert_eq!(err.to_string(), "line 3: `Foo` has no `=`");
    let long = format!("[Unit]\n{}\n", "x".repeat(200));
    let err = UnitFile::parse(long.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("line 2: `{}…` has no `=`", "x".repeat(80))
    );
}

#[test]
fn serialization_is_canonical() {
    let parsed = UnitFile::parse(
        b"# c\n[Unit]\nDescription = Web \n\n\n[Service]\nExecStart=\nExecStart=/a \\\n b\n[Unit]\nAfter=x\n",
    )
    .unwrap();
    assert_eq!(
        parsed.file.serialize(),
        "[Unit]\nDescription=Web\n\n[Service]\nExecStart=\nExecStart=/a   b\n\n[Unit]\nAfter=x\n"
    );
    assert_eq!(UnitFile::default().serialize(), "");
}

#[test]
fn the_hash_is_sha1_of_the_canonical_form() {
    let a = UnitFile::parse(b"[Unit]\nDescription=x\n").unwrap().file;
    let b = UnitFile::parse(b"# other comments\r\n[Unit]\r\n Description = x\r\n")
        .unwrap()
        .file;
    assert_eq!(a.hash(), b.hash());
    // sha1sum of "[Unit]\nDescription=x\n"
    assert_eq!(
        a.hash().to_string(),
        "9fcce57bebda098e6fb9d87b2543194856511ef2"
    );
    assert_eq!(a.hash().short(), "9fcce57");
    let c = UnitFile::parse(b"[Unit]\nDescription=y\n").unwrap().file;
    assert_ne!(a.hash(), c.hash());
}

#[test]
fn hashes_parse_and_serialize_as_lowercase_hex() {
    let hex = "0123456789abcdef0123456789abcdef01234567";
    let h: UnitHash = hex.parse().unwrap();
    assert_eq!(h.to_string(), hex);
    assert_eq!(format!("{h:?}"), hex);
    assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{hex}\""));
    assert_eq!(
        serde_json::from_str::<UnitHash>(&format!("\"{hex}\"")).unwrap(),
        h
    );
    for bad in [
        "",
        "0123",
        "0123456789ABCDEF0123456789abcdef01234567",
        "0123456789abcdef0123456789abcdef0123456g",
        "0123456789abcdef0123456789abcdef012345678",
        "é123456789abcdef0123456789abcdef0123456",
    ] {
        assert_eq!(
            bad.parse::<UnitHash>(),
            Err(HashError(bad.to_owned())),
            "{bad}"
        );
    }
    assert!(serde_json::from_str::<UnitHash>("\"xyz\"").is_err());
}

#[test]
fn from_options_rejects_exactly_what_cannot_be_written() {
    use Flaw::*;
    use OptionField::*;
    let cases: &[(UnitOption, Option<(OptionField, Flaw)>)] = &[
        (opt("Unit", "Description", "x"), None),
        (opt("Service", "ExecStart", ""), None),
        (opt(" X ", "a", "b"), None),
        (opt("S", "A", "x\\\\"), None),
        (opt("S", "A", "a\tb"), None),
        (opt("S", "A", "#x ;y [z] a=b"), None),
        (opt("S", "x#", "1"), None),
        (opt("", "A", "1"), Some((Section, Empty))),
        (opt("A]", "A", "1"), Some((Section, Contains(']')))),
        (opt("[A", "A", "1"), Some((Section, Contains('[')))),
        (opt("A\nB", "A", "1"), Some((Section, Control('\n')))),
        (opt("A\tB", "A", "1"), Some((Section, Control('\t')))),
        (opt("S", "", "1"), Some((Name, Empty))),
        (opt("S", "A B", "1"), Some((Name, Whitespace))),
        (opt("S", " A", "1"), Some((Name, Whitespace))),
        (opt("S", "A\u{a0}", "1"), Some((Name, Whitespace))),
        (opt("S", "A\tB", "1"), Some((Name, Control('\t')))),
        (opt("S", "A=B", "1"), Some((Name, Contains('=')))),
        (opt("S", "[A", "1"), Some((Name, Contains('[')))),
        (opt("S", "A[0]", "1"), Some((Name, Contains('[')))),
        (opt("S", "#A", "1"), Some((Name, StartsWith('#')))),
        (opt("S", ";A", "1"), Some((Name, StartsWith(';')))),
        (opt("S", "A", " x"), Some((Value, OuterWhitespace))),
        (opt("S", "A", "x\t"), Some((Value, OuterWhitespace))),
        (opt("S", "A", "x\ny"), Some((Value, Control('\n')))),
        (opt("S", "A", "x\r"), Some((Value, Control('\r')))),
        (opt("S", "A", "x\0"), Some((Value, Control('\0')))),
        (opt("S", "A", "x\\"), Some((Value, TrailingBackslash))),
        (opt("S", "A", "x\\\\\\"), Some((Value, TrailingBackslash))),
    ];
    for (option, expected) in cases {
        let got = UnitFile::from_options(vec![opt("Unit", "A", "1"), option.clone()])
            .map(|_| ())
            .map_err(|e| (e.index, e.problem.field, e.problem.flaw));
        assert_eq!(
            got,
            expected.map_or(Ok(()), |(field, flaw)| Err((1, field, flaw))),
            "{option:?}"
        );
        if expected.is_none() {
            let file = UnitFile::from_options(vec![option.clone()]).unwrap();
            assert_eq!(
                UnitFile::parse(file.serialize().as_bytes()).unwrap().file,
                file
            );
        }
    }
}

#[test]
fn option_errors_name_the_index_field_and_value() {
    let err = UnitFile::from_options(vec![opt("Unit", "A", "1"), opt("Service", "B", "x\\")])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "option 1: value `x\\` of `B` ends in an unescaped backslash"
    );
    let err = UnitFile::from_options(vec![opt("Unit", "A b", "1")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "option 0: option name `A b` contains whitespace"
    );
    let err = UnitFile::from_options(vec![opt("U]", "A", "1")]).unwrap_err();
    assert_eq!(err.to_string(), "option 0: section name `U]` contains `]`");
}

#[test]
fn values_and_description_read_the_options() {
    let file = UnitFile::parse(
        b"[Unit]\nDescription=first\nDescription=last\n[Service]\nExecStart=/a\nExecStart=/b\n[X]\nExecStart=/c\n",
    )
    .unwrap()
    .file;
    assert_eq!(
        file.values("Service", "ExecStart").collect::<Vec<_>>(),
        ["/a", "/b"]
    );
    assert_eq!(file.values("Service", "execstart").count(), 0);
    assert_eq!(file.description(), Some("last"));
    let emptied = UnitFile::parse(b"[Unit]\nDescription=x\nDescription=\n")
        .unwrap()
        .file;
    assert_eq!(emptied.description(), None);
    assert_eq!(UnitFile::default().description(), None);
}

#[test]
fn unit_options_serialize_in_fleets_shape() {
    let json = serde_json::to_value(opt("Unit", "Description", "x")).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"section": "Unit", "name": "Description", "value": "x"})
    );
}

/// Section names, option names and values that can be written and read back, biased towards
/// the characters the syntax cares about.
fn section() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 #;=\\\\\"'%é\u{a0}-]{1,10}"
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_%é\"'\\\\-][a-zA-Z0-9_#;%é\"'\\]\\\\-]{0,10}"
}

fn value() -> impl Strategy<Value = String> {
    "[a-z =\\\\\t\"'#;\\[\\]%é\u{a0}]{0,16}".prop_map(|v| {
        let mut v = trim_blank(&v).to_owned();
        if ends_in_escape(&v) {
            v.push('\\');
        }
        v
    })
}

fn options() -> impl Strategy<Value = Vec<UnitOption>> {
    let option = (section(), name(), value()).prop_map(|(section, name, value)| UnitOption {
        section,
        name,
        value,
    });
    proptest::collection::vec(option, 0..12)
}

/// Bytes that look like unit files often enough to parse, and break the rules often enough
/// not to.
fn unit_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"[Unit]".to_vec()),
        Just(b"[X-Fleet]".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"Key".to_vec()),
        Just(b"=".to_vec()),
        Just(b"value".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\\".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"#".to_vec()),
        Just(b";".to_vec()),
        Just(b"\"".to_vec()),
        Just("\u{feff}".as_bytes().to_vec()),
        Just("é".as_bytes().to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Whatever parses can be handed to the API and written back unchanged.
fn assert_round_trip(bytes: &[u8]) {
    if let Ok(parsed) = UnitFile::parse(bytes) {
        assert_eq!(parsed.lines.len(), parsed.file.options().len());
        let again =
            UnitFile::parse(parsed.file.serialize().as_bytes()).expect("a serialized unit parses");
        assert_eq!(again.file, parsed.file);
        let accepted = UnitFile::from_options(parsed.file.options().to_vec())
            .expect("parsed options are representable");
        assert_eq!(accepted, parsed.file);
    }
}

proptest! {
    #[test]
    fn representable_options_round_trip(options in options()) {
        let file = UnitFile::from_options(options.clone()).expect("generated options are representable");
        let serialized = file.serialize();
        let parsed = UnitFile::parse(serialized.as_bytes()).expect("a serialized unit parses");
        prop_assert_eq!(parsed.file.options(), options.as_slice());
        prop_assert_eq!(parsed.file.hash(), file.hash());
        prop_assert_eq!(serialized_lengths(&options).last().unwrap_or(0), serialized.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        assert_round_trip(&bytes);
    }

    #[test]
    fn whatever_parses_round_trips(bytes in unit_like_bytes()) {
        assert_round_trip(&bytes);
    }
}
