//! Fuzzes the unit-file parser: no input may panic it, and whatever it accepts must be accepted
//! by the API's validation and read back unchanged from its canonical form.
#![no_main]

use flotte::unit::UnitFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = UnitFile::parse(data) else {
        return;
    };
    assert_eq!(parsed.lines.len(), parsed.file.options().len());
    let again = UnitFile::parse(parsed.file.serialize().as_bytes())
        .expect("the canonical form of a parsed unit parses");
    assert_eq!(again.file, parsed.file);
    let accepted = UnitFile::from_options(parsed.file.options().to_vec())
        .expect("the options of a parsed unit are representable");
    assert_eq!(accepted, parsed.file);
});
