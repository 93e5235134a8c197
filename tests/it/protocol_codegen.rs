//! The checked-in `src/protocol/generated.rs` must be exactly what the generator makes from
//! `amqp-spec/amqp-0-9-1.spec` today.

#[test]
fn generated_code_matches_the_spec() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = std::fs::read_to_string(root.join("amqp-spec/amqp-0-9-1.spec")).unwrap_or_default();
    let checked_in =
        std::fs::read_to_string(root.join("src/protocol/generated.rs")).unwrap_or_default();
    let expected = match amqp_spec::generate(&spec) {
        Ok(code) => code,
        Err(error) => panic!("amqp-spec/amqp-0-9-1.spec does not parse: {error}"),
    };
    if checked_in != expected {
        let line = checked_in
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the end".to_string(), |n| format!("line {}", n + 1));
        panic!(
            "src/protocol/generated.rs is out of date (first difference at {line}); \
             run `cargo run -p amqp-spec --bin amqp-codegen` and commit the result"
        );
    }
}
