//! The `touchpoint` binary's config checking: exit codes and messages that point at the entry.
use std::process::Command;

fn touchpoint(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_touchpoint")).args(args).env("RUST_LOG", "error").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_config_accepts_the_example() {
    let path = crate::harness::example_path();
    let (code, out, _) = touchpoint(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("ok") && out.contains("5 stages"), "{out}");
}

#[test]
fn bad_config_exits_64_naming_entry_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let example = std::fs::read_to_string(crate::harness::example_path()).unwrap();
    // Break the third offer's channels: the error must name offers[2].channels and its line.
    let marker = "id = \"bestsellers_email\"";
    let at = example.find(marker).unwrap();
    let line = example[..at].lines().count() + 4;
    let broken =
        format!("{}{}", &example[..at], example[at..].replacen("channels = [\"email\"]", "channels = [\"fax\"]", 1));
    assert_eq!(broken.lines().nth(line - 1).unwrap().trim(), "channels = [\"fax\"]");
    std::fs::write(&bad, broken).unwrap();
    for args in [vec!["check-config", bad.to_str().unwrap()], vec!["serve", "--config", bad.to_str().unwrap()]] {
        let (code, _, err) = touchpoint(&args);
        assert_eq!(code, 64, "{err}");
        assert!(err.contains(&format!("bad.toml:{line}: offers[2].channels")), "{err}");
        assert!(err.contains("unknown channel \"fax\""), "{err}");
    }
    let (code, _, err) = touchpoint(&["check-config", "/no/such/file.toml"]);
    assert_eq!(code, 64);
    assert!(err.contains("cannot read"), "{err}");
}
