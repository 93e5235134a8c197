//! Empty: this package only pins crate versions (see Cargo.toml).
