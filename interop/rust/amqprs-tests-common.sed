# Applied by interop/run to amqprs's tests/common/mod.rs (the crate's own copy, unpacked from
# cargo's registry). amqprs's integration tests all connect through build_conn_args(), which
# hard-codes localhost:5672, vhost "/", user "user", password "bitnami". This makes the host,
# port and vhost come from AMQPRS_TEST_HOST, AMQPRS_TEST_PORT and AMQPRS_TEST_VHOST (same
# defaults when unset); the user and password stay the crate's, so the broker must have the user
# "user" with password "bitnami". Nothing else in the crate is changed. interop/run checks that
# the substitution happened, so a new amqprs release that reshapes the line fails loudly.
s|OpenConnectionArguments::new("localhost", 5672, "user", "bitnami")$|OpenConnectionArguments::new(\&std::env::var("AMQPRS_TEST_HOST").unwrap_or_else(\|_\| "localhost".into()), std::env::var("AMQPRS_TEST_PORT").map_or(5672, \|p\| p.parse().expect("AMQPRS_TEST_PORT")), "user", "bitnami").virtual_host(\&std::env::var("AMQPRS_TEST_VHOST").unwrap_or_else(\|_\| "/".into())).finish()|
