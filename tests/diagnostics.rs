//! Diagnostics boundary: each file in `tests/data/errors` makes `nnirc check` exit 1 with a
//! rendered, span-accurate report (snapshot); every example checks clean.
mod common;
use common::*;

/// `nnirc check` on one file: (exit code, stderr). Stdout must stay empty.
fn check(path: &std::path::Path) -> (i32, String) {
    let (code, stdout, stderr) = nnirc(&["check", "--color", "never", &rel(path)]);
    assert_eq!(stdout, "", "check prints diagnostics on stderr only");
    (code, stderr)
}

#[test]
fn error_files_report_and_exit_1() {
    insta::glob!("data/errors/*.nnir", |path| {
        let (code, report) = check(path);
        assert_eq!(code, 1, "{} should fail to check:\n{report}", rel(path));
        assert!(report.contains("Error"), "{report}");
        insta::assert_snapshot!(report);
    });
}

#[test]
fn examples_check_clean() {
    for path in examples() {
        let (code, report) = check(&path);
        assert_eq!((code, report.as_str()), (0, ""), "{}", rel(&path));
    }
}

#[test]
fn several_files_in_one_run() {
    let (code, _, stderr) = nnirc(&[
        "check",
        "--color",
        "never",
        "tests/data/errors/cycle.nnir",
        "tests/data/errors/unknown_op.nnir",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("E0701") && stderr.contains("E0301"),
        "{stderr}"
    );
}

#[test]
fn colour_can_be_forced() {
    let (_, _, stderr) = nnirc(&[
        "check",
        "--color",
        "always",
        "tests/data/errors/unknown_op.nnir",
    ]);
    assert!(
        stderr.contains('\u{1b}'),
        "expected ANSI escapes:\n{stderr}"
    );
}

#[test]
fn every_code_has_an_error_file() {
    let snapshots: String = std::fs::read_dir(root().join("tests/snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("diagnostics__error_files")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    for code in nnirc::diag::Code::ALL {
        let code = code.as_str();
        assert!(
            snapshots.contains(&format!("[{code}]")),
            "no error file in tests/data/errors produces {code}"
        );
    }
}
