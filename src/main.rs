//! argv → logger → run → exit code; nothing else.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "-v" || a == "--verbose");
    // During boot the journal is not running yet: setup also logs to /dev/kmsg.
    let kmsg = args.first().is_some_and(|a| a == "setup");
    ephemcrypt::log::init(if verbose { log::LevelFilter::Debug } else { log::LevelFilter::Info }, kmsg);
    ExitCode::from(ephemcrypt::cli::main(&args, &mut std::io::stdout().lock()))
}
