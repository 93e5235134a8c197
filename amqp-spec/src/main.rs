//! `cargo run -p amqp-spec --bin amqp-codegen`: regenerates `src/protocol/generated.rs` from
//! `amqp-spec/amqp-0-9-1.spec`. With `--check`, only reports whether the file is up to date.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec_path = root.join("amqp-0-9-1.spec");
    let out_path = root.join("../src/protocol/generated.rs");
    let check = std::env::args().any(|arg| arg == "--check");

    let spec = match std::fs::read_to_string(&spec_path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("cannot read {}: {error}", spec_path.display());
            return ExitCode::FAILURE;
        }
    };
    let generated = match amqp_spec::generate(&spec) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}: {error}", spec_path.display());
            return ExitCode::FAILURE;
        }
    };
    if check {
        let current = std::fs::read_to_string(&out_path).unwrap_or_default();
        if current != generated {
            eprintln!(
                "{} is out of date: run `cargo run -p amqp-spec --bin amqp-codegen`",
                out_path.display()
            );
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    if let Err(error) = std::fs::write(&out_path, generated) {
        eprintln!("cannot write {}: {error}", out_path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("wrote {}", out_path.display());
    ExitCode::SUCCESS
}
