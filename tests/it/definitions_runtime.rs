//! Users, vhosts and permissions changed at run time through the definitions service
//! (`Broker::apply`): the next connection sees the change, and the changes survive a restart.

use std::net::SocketAddr;

use crate::common::{
    open_vhost, plain_response, start_ok, start_server, tune_ok, Close, RawClient,
};
use warren::broker::{Applied, DefinitionChange, Permission};
use warren::config::Config;
use warren::protocol::PROTOCOL_HEADER;
use warren::server::{Server, ServerHandle};

const LOGIN_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.";

/// Logs in as `user` and asks for `vhost`; the client then waits for open-ok or a close.
async fn attempt(addr: SocketAddr, name: &str, user: &str, password: &str) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    c.send_raw(&PROTOCOL_HEADER).await;
    c.expect_method("connection.start").await;
    c.send_method(
        0,
        &start_ok(name, "PLAIN", plain_response(user, password), true),
    )
    .await;
    c
}

async fn open(addr: SocketAddr, name: &str, user: &str, password: &str, vhost: &str) -> RawClient {
    let mut c = attempt(addr, name, user, password).await;
    c.expect_method("connection.tune").await;
    c.send_method(0, &tune_ok(2047, 131_072, 0)).await;
    c.send_method(0, &open_vhost(vhost)).await;
    c
}

async fn apply(handle: &ServerHandle, change: DefinitionChange) -> Applied {
    let broker = handle.broker().expect("server running");
    broker.apply(change).await.unwrap()
}

fn put_user(name: &str, password: &str) -> DefinitionChange {
    DefinitionChange::PutUser {
        name: name.into(),
        password: password.into(),
        tags: vec![],
    }
}

fn grant(vhost: &str, user: &str) -> DefinitionChange {
    DefinitionChange::SetPermission {
        vhost: vhost.into(),
        user: user.into(),
        permission: Permission::full(),
    }
}

#[tokio::test]
async fn a_user_and_permission_added_at_run_time_work_for_the_next_connection() {
    let server = start_server(|_| {}).await;
    let mut c = attempt(server.addr, "defs/before", "app", "pw").await;
    assert_eq!(c.expect_close().await, Close::new(403, LOGIN_REFUSED, 0, 0));

    assert_eq!(
        apply(&server.handle, put_user("app", "pw")).await,
        Applied::Created
    );
    let mut c = open(server.addr, "defs/no_permission", "app", "pw", "/").await;
    assert_eq!(
        c.expect_close().await,
        Close::new(
            530,
            "NOT_ALLOWED - access to vhost '/' refused for user 'app'",
            10,
            40
        )
    );

    assert_eq!(
        apply(&server.handle, grant("/", "app")).await,
        Applied::Created
    );
    let mut c = open(server.addr, "defs/permitted", "app", "pw", "/").await;
    c.expect_method("connection.open-ok").await;
    c.open_channel(1).await;

    let delete = DefinitionChange::DeleteUser { name: "app".into() };
    assert_eq!(apply(&server.handle, delete).await, Applied::Deleted);
    let mut c = attempt(server.addr, "defs/deleted", "app", "pw").await;
    assert_eq!(c.expect_close().await, Close::new(403, LOGIN_REFUSED, 0, 0));
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_vhost_added_at_run_time_opens_and_a_deleted_one_is_not_found() {
    let server = start_server(|_| {}).await;
    let staging = DefinitionChange::PutVhost {
        name: "staging".into(),
    };
    assert_eq!(apply(&server.handle, staging).await, Applied::Created);
    apply(&server.handle, grant("staging", "guest")).await;
    let mut inside = open(server.addr, "defs/staging", "guest", "guest", "staging").await;
    inside.expect_method("connection.open-ok").await;
    inside.open_channel(1).await;
    inside.declare_queue(1, "defs.q").await;

    let delete = DefinitionChange::DeleteVhost {
        name: "staging".into(),
    };
    assert_eq!(apply(&server.handle, delete).await, Applied::Deleted);
    // The connection open in it is closed with RabbitMQ's 320.
    assert_eq!(
        inside.expect_close().await,
        Close::new(320, "CONNECTION_FORCED - vhost 'staging' is deleted", 0, 0)
    );
    let mut c = open(server.addr, "defs/gone", "guest", "guest", "staging").await;
    assert_eq!(
        c.expect_close().await,
        Close::new(530, "NOT_ALLOWED - vhost staging not found", 10, 40)
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn a_deleted_users_connections_are_closed() {
    let server = start_server(|_| {}).await;
    apply(&server.handle, put_user("app", "pw")).await;
    apply(&server.handle, grant("/", "app")).await;
    let mut app = open(server.addr, "defs/app", "app", "pw", "/").await;
    app.expect_method("connection.open-ok").await;
    app.open_channel(1).await;
    let mut other = RawClient::open(server.addr, "defs/other", 0).await;
    other.open_channel(1).await;
    let delete = DefinitionChange::DeleteUser { name: "app".into() };
    assert_eq!(apply(&server.handle, delete).await, Applied::Deleted);
    assert_eq!(
        app.expect_close().await,
        Close::new(320, "CONNECTION_FORCED - user 'app' is deleted", 0, 0)
    );
    // Other users' connections are untouched.
    other.ping(1).await;
    server.handle.shutdown().await;
}

#[tokio::test]
async fn run_time_changes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let handle = Server::start(config()).await.unwrap();
    apply(&handle, put_user("app", "pw")).await;
    let v = DefinitionChange::PutVhost { name: "v".into() };
    apply(&handle, v).await;
    apply(&handle, grant("v", "app")).await;
    let guest = DefinitionChange::DeleteUser {
        name: "guest".into(),
    };
    apply(&handle, guest).await;
    handle.shutdown().await;

    let handle = Server::start(config()).await.unwrap();
    let addr = handle.local_addr();
    let mut c = open(addr, "defs/restarted", "app", "pw", "v").await;
    c.expect_method("connection.open-ok").await;
    // RabbitMQ recreates guest only in a store without users or vhosts.
    let mut c = attempt(addr, "defs/guest_gone", "guest", "guest").await;
    assert_eq!(c.expect_close().await, Close::new(403, LOGIN_REFUSED, 0, 0));
    handle.shutdown().await;
}
