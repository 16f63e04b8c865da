//! `manual_backup`: the old name of `snapkeep backup`, with the same flags
//! (`manual_backup --no-drive --no-vacuum`).

fn main() -> std::process::ExitCode {
    let mut args: Vec<std::ffi::OsString> = vec!["snapkeep".into(), "backup".into()];
    args.extend(std::env::args_os().skip(1));
    std::process::ExitCode::from(snapkeep::cli::main_with_args(args))
}
