//! Analysis boundary: the segments of every example and of the fixtures in
//! `tests/data/segments` (snapshots of `nnirc segments`' text).
mod common;
use common::program;

/// The segment report of `source`, as `nnirc segments` prints it.
fn segments(source: &str) -> String {
    let program = program(source);
    let prov = nnirc::analysis::provenance(&program);
    let segs = nnirc::analysis::segment(&program, &prov);
    nnirc::analysis::describe(&program, &prov, &segs)
}

#[test]
fn fixture_segments() {
    insta::glob!("data/segments/*.nnir", |path| {
        insta::assert_snapshot!(segments(&std::fs::read_to_string(path).unwrap()));
    });
}

#[test]
fn example_segments() {
    insta::glob!("../examples", "*.nnir", |path| {
        insta::assert_snapshot!(segments(&std::fs::read_to_string(path).unwrap()));
    });
}

#[test]
fn dot_output_names_every_node() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/segments/se_depthwise.nnir"
    ))
    .unwrap();
    let program = program(&source);
    let prov = nnirc::analysis::provenance(&program);
    let segs = nnirc::analysis::segment(&program, &prov);
    let dot = nnirc::analysis::dot(&program, &prov, &segs);
    assert!(dot.starts_with("digraph \"se\" {"));
    for n in program.graph.node_indices() {
        assert!(dot.contains(&format!("%{} = ", program.graph[n].name)));
    }
}
