//! Lowering boundary: the inferred shape of every value of every example and of the shape
//! fixtures in `tests/data/shapes` (snapshots).
mod common;
use common::program;

/// One line per value, in topological order: `%name = op(operands) : [shape]  keep_in=k/n`.
fn shapes(source: &str) -> String {
    let program = program(source);
    let mut out = format!("model {}\n", program.name);
    for n in program.topo_order() {
        let node = &program.graph[n];
        let operands: Vec<String> = program
            .operands(n)
            .iter()
            .map(|&o| format!("%{}", program.graph[o].name))
            .collect();
        out += &format!(
            "%{} = {}({}) : {:?}",
            node.name,
            node.op.name(),
            operands.join(", "),
            node.shape
        );
        if let Some(k) = &node.keep_in {
            let total = program.graph[program.operands(n)[0]].shape[1];
            out += &format!("  keep_in={}/{total}", k.len());
        }
        if let Some(k) = &node.keep_out {
            out += &format!("  keep_out={}/{}", k.len(), node.shape[1]);
        }
        out.push('\n');
    }
    out
}

#[test]
fn example_shapes() {
    insta::glob!("../examples", "**/*.nnir", |path| {
        let source = std::fs::read_to_string(path).unwrap();
        insta::assert_snapshot!(shapes(&source));
    });
}

#[test]
fn fixture_shapes() {
    insta::glob!("data/shapes/*.nnir", |path| {
        let source = std::fs::read_to_string(path).unwrap();
        insta::assert_snapshot!(shapes(&source));
    });
}
