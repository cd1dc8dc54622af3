//! touchpoint-train: the offline trainer (journey logs -> propensity model artifacts).
use clap::Parser;

#[derive(Parser)]
#[command(name = "touchpoint-train", version, about = "Offline trainer for Touchpoint propensity models")]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    println!("touchpoint-train {} (library touchpoint {})", env!("CARGO_PKG_VERSION"), touchpoint::VERSION);
    Ok(())
}
