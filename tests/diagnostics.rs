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

/// 20k errors in one file: the line index is built once and only the first
/// `MAX_RENDERED` are printed, with a count of the rest (this was quadratic: 51 s).
#[test]
fn many_errors_render_once_and_are_capped() {
    let mut source = String::from("model m(%x: f32[1, 2]) -> (%y) {\n");
    for i in 0..20_000 {
        source.push_str(&format!("  %v{i} = frobnicate(%x)\n"));
    }
    source.push_str("  %y = relu(%x)\n}\n");
    let compiled = nnirc::compile(&source);
    assert_eq!(compiled.diagnostics.len(), 20_000);
    let out = nnirc::diag::render(
        &compiled.diagnostics,
        "many.nnir",
        &source,
        Default::default(),
    );
    let max = nnirc::diag::MAX_RENDERED;
    assert_eq!(out.matches("Error: unknown op").count(), max);
    assert!(
        out.ends_with(&format!(
            "... and {} more errors in many.nnir\n",
            20_000 - max
        )),
        "{}",
        &out[out.len() - 200..]
    );
    // The first ones, in source order.
    assert!(out.contains("many.nnir:2:9") && !out.contains(&format!("%v{max} =")));
}

/// Control, escape and bidirectional-override characters from the file never reach the
/// terminal, in messages or quoted source lines.
#[test]
fn control_characters_are_never_echoed() {
    for name in ["control_bytes.nnir", "bom_unknown_op.nnir"] {
        let (code, report) = check(&root().join("tests/data/errors").join(name));
        assert_eq!(code, 1);
        for c in report.chars() {
            assert!(!c.is_control() || c == '\n', "{name}: {:?} in\n{report}", c);
            assert!(
                !('\u{202a}'..='\u{202e}').contains(&c),
                "{name}: bidi in {report}"
            );
        }
    }
    let msg = nnirc::diag::Diagnostic::new(
        nnirc::diag::Code::UnknownOp,
        "op `\u{1b}]0;x\u{7}`\r",
        0..1,
        "\u{9b}here",
    );
    let out = nnirc::diag::render(&[msg], "a\u{1b}.nnir", "x\n", Default::default());
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(out.contains("\\u{1b}]0;x\\u{7}"), "{out}");
}

proptest::proptest! {
    /// Whatever the file and the messages hold, the rendering holds no control character (tabs
    /// and newlines aside) and no bidirectional override.
    #[test]
    fn rendering_never_echoes_control_characters(
        source in "(?s).{0,200}",
        message in "(?s).{0,20}",
        spans in proptest::collection::vec((0usize..250, 0usize..250), 1..4),
    ) {
        let diags: Vec<nnirc::diag::Diagnostic> = spans
            .iter()
            .filter(|&&(a, b)| {
                source.is_char_boundary(a.min(source.len()))
                    && source.is_char_boundary(b.min(source.len()))
            })
            .map(|&(a, b)| {
                nnirc::diag::Diagnostic::new(
                    nnirc::diag::Code::UnknownOp,
                    message.clone(),
                    a.min(b)..a.max(b),
                    message.clone(),
                )
                .with_note(message.clone())
            })
            .collect();
        let out = nnirc::diag::render(&diags, "f.nnir", &source, Default::default());
        for c in out.chars() {
            proptest::prop_assert!(!c.is_control() || c == '\n' || c == '\t', "{:?} in {:?}", c, out);
            let bidi = ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c);
            proptest::prop_assert!(!bidi, "bidi {:?}", c);
        }
    }
}
