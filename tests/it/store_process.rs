//! RocksStore against real processes: a crash (abort, no clean close) loses nothing that was
//! synced and needs no manual step, and a data dir held by another process is refused.
//!
//! The test binary re-runs itself as the child: the `child_*` tests do nothing unless the parent
//! sets `WARREN_STORE_CHILD_DIR`.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use warren::store::{
    Batch, Durability, Op, QueueEntry, RocksOptions, RocksStore, Store, StoreError,
};

const CHILD_DIR: &str = "WARREN_STORE_CHILD_DIR";

fn spawn_child(test: &str, dir: &Path) -> Child {
    // The harness names a test by its path below the crate root: `store_process::<test>`.
    let (_crate, module) = module_path!().split_once("::").unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::{test}"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .spawn()
        .unwrap()
}

fn publish(store: &RocksStore, ids: std::ops::Range<u64>, durability: Durability) {
    let mut batch = Batch::new();
    for id in ids {
        batch.push(Op::PutMessage {
            id,
            body: Bytes::from(format!("body {id}")),
        });
        batch.push(Op::Enqueue {
            queue: 1,
            position: id,
            entry: QueueEntry {
                message: id,
                meta: Bytes::new(),
            },
        });
    }
    store.commit(batch, durability).unwrap();
}

#[test]
fn child_commits_then_aborts() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let store = RocksStore::open(dir, &RocksOptions::default()).unwrap();
    for start in (0..100).step_by(10) {
        publish(&store, start..start + 10, Durability::Sync);
    }
    // Unsynced: may or may not survive, but must not damage what was synced.
    publish(&store, 100..110, Durability::NoSync);
    std::process::abort();
}

#[test]
fn recovers_after_a_crash_without_manual_steps() {
    let dir = tempfile::tempdir().unwrap();
    let status = spawn_child("child_commits_then_aborts", dir.path())
        .wait()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");
    // The dead process's LOCK file is still there; its lock died with it.
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
    let entries = store.scan_queue(1, 0, usize::MAX).unwrap();
    assert!(
        entries.len() >= 100,
        "synced entries lost: {}",
        entries.len()
    );
    for (i, (position, entry)) in entries.iter().enumerate() {
        assert_eq!(*position, i as u64);
        assert_eq!(entry.message, i as u64);
        assert_eq!(
            store.get_message(entry.message).unwrap(),
            Some(Bytes::from(format!("body {i}")))
        );
    }
}

#[test]
fn child_holds_the_store_open() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let _store = RocksStore::open(&dir, &RocksOptions::default()).unwrap();
    std::fs::write(Path::new(&dir).join("child-ready"), b"").unwrap();
    // The parent kills us long before this ends.
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn refuses_a_dir_another_process_has_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child("child_holds_the_store_open", dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("child-ready").exists() {
        assert!(Instant::now() < deadline, "child never opened the store");
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap_err();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let text = err.to_string();
    eprintln!("refused: {text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    // Once the other process is gone, the dir opens.
    drop(RocksStore::open(dir.path(), &RocksOptions::default()).unwrap());
}
