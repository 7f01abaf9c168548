//! The `persona` binary: parses arguments, runs the command, prints errors as one sentence
//! followed by their causes. Exit code 2 for usage errors, 1 for everything else.

use clap::Parser;

fn main() {
    let cli = persona::cli::Cli::parse();
    let result = persona::cli::run(cli);
    persona::store::io::finish_background_removals();
    if let Err(e) = result {
        persona::cli::report_error(&e);
        let code = if matches!(e, persona::Error::Usage(_)) { 2 } else { 1 };
        std::process::exit(code);
    }
}
