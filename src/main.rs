//! argv → logger → run → exit code; nothing else.
use std::process::ExitCode;

use ephemcrypt::cli;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "-v" || a == "--verbose");
    ephemcrypt::log::init(if verbose { log::LevelFilter::Debug } else { log::LevelFilter::Info }, false);
    let result = cli::parse(&args).and_then(|cmd| cli::run(&cmd, &mut std::io::stdout().lock()));
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
