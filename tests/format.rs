//! Pretty-printer boundary: `nnirc fmt` output is snapshot-tested and a fixed point, and it
//! never changes what a program means.
mod common;
use common::*;
use nnirc::syntax::{parse, print::print};

/// Formats source text (which must parse without diagnostics).
fn fmt(source: &str) -> String {
    let parsed = parse(source);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    print(parsed.file.as_ref().unwrap(), source, &parsed.comments)
}

/// A printout of what lowering made of `source`, to compare meaning across formatting.
fn meaning(source: &str) -> String {
    let compiled = nnirc::compile(source);
    let program = compiled.program.expect("compiles");
    let mut out = String::new();
    for n in program.topo_order() {
        let node = &program.graph[n];
        let operands: Vec<String> = program
            .operands(n)
            .iter()
            .map(|&o| program.graph[o].name.clone())
            .collect();
        out += &format!(
            "{} {:?} {:?} {:?} {:?} {:?}\n",
            node.name, node.op, operands, node.shape, node.keep_in, node.keep_out
        );
    }
    out
}

#[test]
fn snapshots() {
    insta::glob!("data/format/*.nnir", |path| {
        let source = std::fs::read_to_string(path).unwrap();
        insta::assert_snapshot!(fmt(&source));
    });
}

#[test]
fn fixed_point_on_every_parsable_file() {
    let mut files = examples();
    files.extend(nnir_files("tests/data"));
    let mut checked = 0;
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        let parsed = parse(&source);
        if !parsed.diagnostics.is_empty() {
            continue; // syntax-error fixtures
        }
        let once = fmt(&source);
        assert_eq!(fmt(&once), once, "fmt is not idempotent on {}", rel(&path));
        let compiled = nnirc::compile(&source);
        if compiled.diagnostics.is_empty() {
            assert_eq!(
                meaning(&once),
                meaning(&source),
                "fmt changed the meaning of {}",
                rel(&path)
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} files checked");
}

#[test]
fn examples_are_in_canonical_form() {
    for path in examples() {
        let (code, _, stderr) = nnirc(&["fmt", "--check", &rel(&path)]);
        assert_eq!(code, 0, "{stderr}");
    }
}

#[test]
fn fmt_refuses_to_overwrite_its_input() {
    let (code, _, stderr) = nnirc(&[
        "fmt",
        "tests/data/format/messy.nnir",
        "-o",
        "tests/data/format/messy.nnir",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("refusing"), "{stderr}");
}

#[test]
fn fmt_writes_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.nnir");
    let (code, stdout, stderr) = nnirc(&[
        "fmt",
        "tests/data/format/messy.nnir",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        written,
        fmt(&std::fs::read_to_string(root().join("tests/data/format/messy.nnir")).unwrap())
    );
    let (code, _, _) = nnirc(&["fmt", "--check", "tests/data/format/messy.nnir"]);
    assert_eq!(code, 1, "a messy file is not canonical");
}
