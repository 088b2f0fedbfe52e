//! `cargo bench`: the benchmark zoo, exactly as `cargo run --release --example zoo` runs it
//! (see `examples/zoo.rs`); arguments after `--` pass through, e.g.
//! `cargo bench --bench zoo -- --models lenet5,mlp --steps 50` (plain `cargo bench` runs every
//! model).

use std::process::{exit, Command};

fn main() {
    // cargo passes `--bench` to every bench target; the zoo takes only its own flags.
    let args = std::env::args().skip(1).filter(|a| a != "--bench");
    let status = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--release", "--example", "zoo", "--"])
        .args(args)
        .status();
    match status {
        Ok(s) => exit(s.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("error: could not run the zoo example through cargo: {e}");
            exit(1);
        }
    }
}
