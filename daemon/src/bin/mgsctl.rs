//! `mgsctl`: the operator's command-line client (see `mgsd::cli`).

fn main() -> std::process::ExitCode {
    mgsd::cli::main()
}
