//! Replays the fuzz seeds, the minimized corpus and every saved crasher through the fuzz
//! target's entry point, so stable CI keeps what the fuzzer found.

use std::path::{Path, PathBuf};

use warren::protocol::fuzz::decode_all;

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .filter(|path| {
            !path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(".")
                .starts_with('.')
        })
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn seeds_are_real_frames_that_decode() {
    let seeds = files("seeds");
    assert!(
        seeds.len() >= 10,
        "expected the captured seeds, found {}",
        seeds.len()
    );
    for path in seeds {
        let decoded = decode_all(&read(&path));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.contains("session") || name.contains("publish") {
            assert!(decoded > 3, "{name} decoded only {decoded} frames");
        } else {
            assert_eq!(decoded, 1, "{name} should hold exactly one frame");
        }
    }
}

#[test]
fn corpus_and_regressions_replay_without_panics() {
    let mut count = 0;
    for dir in ["corpus/frame_decode", "regressions/frame_decode"] {
        for path in files(dir) {
            decode_all(&read(&path));
            count += 1;
        }
    }
    assert!(
        count > 0,
        "no corpus committed under tests/fuzz/corpus/frame_decode"
    );
}
