//! The `touchpoint` binary's config checking: exit codes and messages that point at the entry.
use std::process::Command;

fn touchpoint(args: &[&str]) -> (i32, String, String) {
    touchpoint_with(args, &[])
}

/// A keys file with the harness key, named by `TOUCHPOINT_AUTH_KEYS_FILE` for every command
/// here (the example config has no key of its own).
fn keys_file() -> &'static str {
    static FILE: std::sync::OnceLock<tempfile::TempPath> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), crate::harness::auth_toml().replace("[[auth.keys]]", "[[keys]]")).unwrap();
        f.into_temp_path()
    })
    .to_str()
    .unwrap()
}

fn touchpoint_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_touchpoint"))
        .args(args)
        .env("RUST_LOG", "error")
        .env("TOUCHPOINT_AUTH_KEYS_FILE", keys_file())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_config_accepts_the_example() {
    let path = crate::harness::example_path();
    let path = path.to_str().unwrap();
    // The example has no key: a server could not start with it, and check-config says how to fix it.
    let out = Command::new(env!("CARGO_BIN_EXE_touchpoint"))
        .args(["check-config", path])
        .env_remove("TOUCHPOINT_AUTH_KEYS_FILE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("auth: authentication is on but no API key") && err.contains("keys new"), "{err}");
    // With a keys file named from the environment (a mounted secret), it is good.
    // The positional form and `--config` like the other commands.
    for args in [vec!["check-config", path], vec!["check-config", "--config", path]] {
        let (code, out, err) = touchpoint(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("ok") && out.contains("5 stages"), "{out}");
    }
    let (code, _, err) = touchpoint(&["check-config"]);
    assert_eq!(code, 2, "a file is required: {err}");
    let (code, _, err) = touchpoint(&["check-config", path, "--config", path]);
    assert_eq!(code, 2, "one file, not both: {err}");
}

/// 1-based line of the first line after `after` (itself a line of `text`) that starts with `key`.
fn line_of(text: &str, after: &str, key: &str) -> usize {
    let start = text.lines().position(|l| l.trim() == after).unwrap_or_else(|| panic!("{after} not found"));
    let rel = text.lines().skip(start).position(|l| l.trim_start().starts_with(key)).unwrap();
    start + rel + 1
}

#[test]
fn check_config_reports_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let example = std::fs::read_to_string(crate::harness::example_path()).unwrap();
    // Three problems of different kinds: an unknown key, a bad value and a CEL rule that does
    // not compile, far apart in the file.
    let at = example.find("id = \"bestsellers_email\"").unwrap();
    let broken = format!(
        "{}{}",
        &example[..at],
        // Still an email offer, so the email fallback naming it stays valid.
        example[at..].replacen("channels = [\"email\"]", "channels = [\"email\", \"fax\"]", 1)
    )
    .replacen("[redis]\n", "[redis]\nkey_prefx = \"typo\"\n", 1)
    .replacen("rule = \"profile.purchase_count >= 2.0\"", "rule = \"profile.purchase_count >= \"", 1);
    let unknown = line_of(&broken, "[redis]", "key_prefx");
    let cel = line_of(&broken, "[[segments]]", "rule = \"profile.purchase_count >= \"");
    let fax = broken.lines().position(|l| l.trim() == "channels = [\"email\", \"fax\"]").unwrap() + 1;
    assert!(unknown < cel && cel < fax, "{unknown} {cel} {fax}");
    std::fs::write(&bad, &broken).unwrap();
    let segment = broken.lines().take(cel).filter(|l| l.trim() == "[[segments]]").count() - 1;
    let offer = {
        let at = broken.lines().take(fax).filter(|l| l.trim() == "[[offers]]").count() - 1;
        format!("offers[{at}].channels")
    };
    for args in [vec!["check-config", bad.to_str().unwrap()], vec!["check-config", "--config", bad.to_str().unwrap()]] {
        let (code, _, err) = touchpoint(&args);
        assert_eq!(code, 64, "{err}");
        assert!(err.contains("(3 problems)"), "{err}");
        assert!(err.contains(&format!("bad.toml:{unknown}: redis.key_prefx: unknown key")), "{err}");
        assert!(err.contains(&format!("bad.toml:{cel}: segments[{segment}].rule: segment ")), "{err}");
        assert!(
            err.contains(&format!("bad.toml:{fax}: {offer}: ")) && err.contains("unknown channel \"fax\""),
            "{err}"
        );
        // In line order.
        let pos = |s: &str| err.find(&format!("bad.toml:{s}:")).unwrap();
        assert!(pos(&unknown.to_string()) < pos(&cel.to_string()) && pos(&cel.to_string()) < pos(&fax.to_string()));
    }
}

#[test]
fn environment_overrides_are_checked_and_named() {
    let path = crate::harness::example_path();
    let path = path.to_str().unwrap();
    let (code, _, err) = touchpoint_with(&["check-config", path], &[("TOUCHPOINT_REDIS_COMMAND_TIMEOUT_MS", "soon")]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("TOUCHPOINT_REDIS_COMMAND_TIMEOUT_MS: cannot parse \"soon\""), "{err}");
    let (code, _, err) = touchpoint_with(&["check-config", path], &[("TOUCHPOINT_DECISIONS_DEFAULT_LIMIT", "0")]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("decisions.default_limit") && err.contains("(set by TOUCHPOINT_DECISIONS_DEFAULT_LIMIT)"),
        "{err}"
    );
    let (code, out, err) = touchpoint_with(&["check-config", path], &[("TOUCHPOINT_DECISIONS_DEFAULT_LIMIT", "5")]);
    assert_eq!(code, 0, "{err}");
    let (_, plain, _) = touchpoint(&["check-config", path]);
    assert_ne!(out, plain, "an override changes the config version");
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

/// The load generator runs end to end (issue 9: benchmarks are not timed tests; CI only checks
/// that they run). One second per phase on the embedded store, a few hundred users.
#[test]
fn the_load_generator_runs() {
    let (code, out, err) = touchpoint(&["bench", "--users", "200", "--seconds", "1", "--concurrency", "4"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for phase in ["Decide", "RecordEvents", "DecideBatch", "echo"] {
        assert!(out.contains(phase), "the report names the {phase} phase:\n{out}");
    }
}

/// bench/h2load.sh (the independent load generator) runs one short round against this build,
/// on its own redis-server, and checks every call answered OK (it exits 1 otherwise).
#[test]
fn the_independent_load_generator_runs() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/bench/h2load.sh"))
        .args(["--rounds", "1", "--duration", "1", "--conns", "2", "--streams", "2"])
        .env("TOUCHPOINT_BIN", env!("CARGO_BIN_EXE_touchpoint"))
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("decide calls not OK: 0"), "{stdout}");
    assert!(stdout.contains("B of Redis memory per entry"), "{stdout}");
}

/// The analytics-counter cost run (`bench --counters`, issue 13) runs end to end against a
/// real redis-server and reports each figure (the figures themselves are in BENCHMARKS.md).
#[test]
fn the_counter_cost_run_runs() {
    let redis = crate::harness::RedisServer::start();
    let (code, out, err) = touchpoint(&["bench", "--counters", "--redis-url", &redis.url(), "--users", "200"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for line in ["extra Redis CPU per event", "per decision", "per outcome", "B per field"] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
}
