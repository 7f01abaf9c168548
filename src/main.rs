//! The `persona` binary: parses arguments, runs the command, prints errors as one sentence
//! followed by their causes. Exit code 2 for bad command-line arguments (clap's own errors and
//! [`persona::Error::Arguments`]), 1 for everything else ([`persona::Error::exit_code`]).

use clap::Parser;

/// mimalloc keeps freed memory for reuse. glibc's malloc hands every block over 32 MiB back to
/// the kernel on free and pays zeroing page faults to get it again, which cost a sixth of Q7's time
/// (its sorts allocate and free arrays of millions of rows). Library users pick their own allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = persona::cli::Cli::parse();
    // Every command's sessions are dropped by now, and with them the waits for what their
    // exports left to remove in the background.
    let result = persona::cli::run(cli);
    if let Err(e) = result {
        persona::cli::report_error(&e);
        std::process::exit(e.exit_code());
    }
}
