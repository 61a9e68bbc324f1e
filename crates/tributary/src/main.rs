//! The `tributary` binary: parses flags and hands over to the library.

use clap::Parser;

/// Ingest allocates many short-lived rows on one thread and frees them on
/// another (the landing task); mimalloc handles that pattern far better
/// than the system allocator (about a fifth of ingest CPU went to glibc's
/// malloc/free in profiles).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = tributary::Cli::parse();
    let _logs = tributary::init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tributary::logging::say(format_args!("error: cannot start the async runtime: {e}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tributary::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            tributary::logging::say(format_args!("error: {}", tributary::error_chain(&e)));
            std::process::ExitCode::FAILURE
        }
    }
}
