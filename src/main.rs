//! The `touchpoint` binary: parse the command line and hand over to a command.
use clap::Parser;

mod cmd;

// mimalloc: decisions allocate many small short-lived objects (rule evaluation); it measured
// about twice as fast as glibc malloc for them (benches/decision.rs uses it too).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    touchpoint::telemetry::init_tracing();
    let cli = cmd::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    match runtime.block_on(cmd::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
