//! Codegen boundary: printing a lowered program gives canonical text that lowers back to the
//! same program.
mod common;
use common::*;

/// Everything lowering decided about `program`, to compare two programs.
fn meaning(program: &nnirc::ir::Program) -> String {
    let mut out = format!(
        "{} {:?}\n",
        program.name,
        program
            .params
            .iter()
            .map(|p| (&p.name, &p.shape, &p.init))
            .collect::<Vec<_>>()
    );
    for n in program.topo_order() {
        let node = &program.graph[n];
        let operands: Vec<&str> = program
            .operands(n)
            .iter()
            .map(|&o| program.graph[o].name.as_str())
            .collect();
        let params: Vec<&str> = node
            .params
            .iter()
            .map(|&p| program.params[p].name.as_str())
            .collect();
        out += &format!(
            "{} {:?} {operands:?} {params:?} {:?} {:?} {:?}\n",
            node.name, node.op, node.shape, node.keep_in, node.keep_out
        );
    }
    let outputs: Vec<&str> = program
        .outputs
        .iter()
        .map(|&o| program.graph[o].name.as_str())
        .collect();
    out + &format!("outputs {outputs:?}\n")
}

#[test]
fn printed_programs_lower_to_themselves() {
    let mut files = examples();
    files.extend(nnir_files("tests/data/shapes"));
    files.extend(nnir_files("tests/data/segments"));
    files.extend(nnir_files("tests/data/format"));
    let mut checked = 0;
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        let Some(program) = nnirc::compile(&source).program else {
            continue;
        };
        checked += 1;
        let text = nnirc::codegen::program_text(&program, None);
        let again = nnirc::compile(&text);
        assert!(
            again.diagnostics.is_empty(),
            "{}: printed text does not check:\n{text}\n{:?}",
            rel(&path),
            again.diagnostics
        );
        assert_eq!(
            meaning(&again.program.unwrap()),
            meaning(&program),
            "{}",
            rel(&path)
        );
        let parsed = nnirc::syntax::parse(&text);
        let canonical =
            nnirc::syntax::print::print(parsed.file.as_ref().unwrap(), &text, &parsed.comments);
        assert_eq!(
            canonical,
            text,
            "{}: codegen output is not canonical",
            rel(&path)
        );
    }
    assert!(checked >= 15, "only {checked} programs printed");
}
