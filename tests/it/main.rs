//! The integration tests, one module per area, in one binary: each test binary links RocksDB
//! (about 250 MB with debug info), so one binary instead of thirty saves most of the link time.
//!
//! Run one area with `cargo test --test it <area>::`, e.g. `cargo test --test it crash::`.
//!
//! Nothing here may set process-wide state another test would see: servers listen on
//! ephemeral ports and keep their data in temp dirs, the one tracing subscriber
//! (`heartbeat`) is thread-local, and the tests that need a process of their own (`binary`,
//! `crash`, `store_process`) start one as a child.

// Tests may unwrap and panic: a failed assertion is their job. Clippy's `allow-*-in-tests`
// settings cover only `#[test]` functions, not the helpers they call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod alarms;
mod bad_inputs;
mod binary;
mod connection;
mod crash;
mod definitions_runtime;
mod durability;
mod heartbeat;
mod messaging_compat;
mod messaging_errors;
mod messaging_publish;
mod messaging_queues;
mod protocol_codegen;
mod protocol_field_types;
mod protocol_fuzz_corpus;
mod protocol_rabbitmq_bytes;
mod queue_features_consumer_timeout;
mod queue_features_declare;
mod queue_features_delivery_limit;
mod queue_features_dlx;
mod queue_features_expires;
mod queue_features_maxlen;
mod queue_features_priority;
mod queue_features_sac;
mod queue_features_ttl;
mod queue_reconfigure;
mod store_conformance;
mod store_model;
mod store_process;
