//! `snapkeep`: parse, run, exit with SPEC.md's codes.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(snapkeep::cli::main_with_args(std::env::args_os()))
}
