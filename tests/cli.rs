//! The command line as an operator uses it: exit codes and messages.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn lifeline(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_lifeline")).args(args).current_dir(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lifeline-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn version_and_usage() {
    let dir = tempdir("version");
    let (code, out, _) = lifeline(&["version"], &dir);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("lifeline {}", env!("CARGO_PKG_VERSION")));
    let (code, _, err) = lifeline(&["frobnicate"], &dir);
    assert_eq!(code, 64);
    assert!(err.contains("usage: lifeline"), "{err}");
}

#[test]
fn check_reports_file_and_line_and_exits_64() {
    let dir = tempdir("check");
    // No config anywhere: the embedded defaults are valid.
    let (code, out, _) = lifeline(&["check"], &dir);
    assert_eq!(code, 0, "{out}");

    std::fs::write(
        dir.join("bad.toml"),
        "[sip]\ndomain = \"edge.example.com\"\nlisten = [\"udp:nowhere\"]\n",
    )
    .unwrap();
    let (code, _, err) = lifeline(&["check", "--config", "bad.toml"], &dir);
    assert_eq!(code, 64);
    assert!(err.starts_with("bad.toml:3: sip.listen: 'udp:nowhere'"), "{err}");

    // ./lifeline.toml is picked up without --config.
    std::fs::write(dir.join("lifeline.toml"), "[limits]\nmax_dialogs = 0\n").unwrap();
    let (code, _, err) = lifeline(&["check"], &dir);
    assert_eq!(code, 64);
    assert!(err.starts_with("lifeline.toml:2: limits.max_dialogs = 0"), "{err}");

    // A dialplan problem is reported with its file and line, and refused.
    std::fs::create_dir_all(dir.join("plans")).unwrap();
    std::fs::write(
        dir.join("plans/x.toml"),
        "[[route]]\npattern = '^(+1'\ntrunks = [\"nobody\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("lifeline.toml"), "[dialplan]\ndir = \"plans\"\n").unwrap();
    let (code, _, err) = lifeline(&["check"], &dir);
    assert_eq!(code, 64);
    assert!(err.contains("x.toml:1: route pattern '^(+1'"), "{err}");
    assert!(err.contains("x.toml:1: route '^(+1' names unknown trunk 'nobody'"), "{err}");

    let (code, _, err) = lifeline(&["run", "--config", "missing.toml"], &dir);
    assert_eq!(code, 64);
    assert!(err.contains("missing.toml:0: cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
