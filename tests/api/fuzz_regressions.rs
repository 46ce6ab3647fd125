//! Every input saved under `fuzz/regressions/<target>/` (crashes `cargo fuzz` found, and seeds)
//! replayed through its target.

#[test]
fn saved_fuzz_inputs_stay_fixed() {
    let mut replayed = 0;
    for (name, target) in nudge::fuzzing::TARGETS {
        let dir = std::path::Path::new("fuzz/regressions").join(name);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            let data = std::fs::read(&path).expect("read");
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                panic!("{} panics again", path.display());
            }
            replayed += 1;
        }
    }
    assert!(replayed >= 4, "at least one saved input per target");
}
