//! Writes the seed corpora (`fuzz_targets::seeds`) to
//! `fuzz-targets/corpus/<target>/`, replacing files of the same name and
//! leaving the others (inputs added by hand) alone.

fn main() -> std::io::Result<()> {
    let root = fuzz_targets::crate_dir().join("corpus");
    let seeds = fuzz_targets::seeds::all();
    for (target, name, bytes) in &seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("{} seeds written under {}", seeds.len(), root.display());
    Ok(())
}
