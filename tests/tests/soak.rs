//! The soak's short form (the full one is `mgsd-soak`, see the README).

use mgsd_tests::soak::{self, Soak};
use std::path::Path;

#[test]
fn a_short_soak_holds() {
    let dir = tempfile::tempdir().unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_mgsd-soak"));
    match soak::run(&Soak::short(), exe, dir.path()) {
        Ok(report) => println!("{report}"),
        Err(why) => panic!("{why}"),
    }
}
