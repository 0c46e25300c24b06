//! Codegen: a [`Program`] back to `.nnir` text (its weights are written by
//! [`crate::weights::file`]).
//!
//! Invariant: [`program_text`] prints text that parses and lowers to a program with the same
//! nodes, ops, attributes, params, masks and shapes (statements in topological order,
//! attributes that equal their defaults left out), and is in canonical `nnirc fmt` form.

use crate::ir::{Op, ParamInit, Pool2d, Program};
use crate::syntax::print::{compress_runs, float_text};
use std::fmt::Write;

/// The `.nnir` text of `program`. `weights_file` replaces the program's `weights` line (use
/// `Some` when the weights are written next to the text).
pub fn program_text(program: &Program, weights_file: Option<&str>) -> String {
    let mut out = String::new();
    let inputs: Vec<String> = program
        .inputs
        .iter()
        .map(|&n| {
            format!(
                "%{}: f32{}",
                program.graph[n].name,
                dims(&program.graph[n].shape)
            )
        })
        .collect();
    let outputs: Vec<String> = program
        .outputs
        .iter()
        .map(|&n| format!("%{}", program.graph[n].name))
        .collect();
    let _ = writeln!(
        out,
        "model {}({}) -> ({}) {{",
        program.name,
        inputs.join(", "),
        outputs.join(", ")
    );
    let weights = weights_file.or(program.weights_file.as_ref().map(|(path, _)| path.as_str()));
    if let Some(path) = weights {
        let _ = writeln!(out, "  weights \"{path}\"");
    }
    for p in &program.params {
        let _ = write!(out, "  param @{}: f32{}", p.name, dims(&p.shape));
        if let ParamInit::Inline(values) = &p.init {
            let values: Vec<String> = values.iter().map(|&v| float_text(v)).collect();
            let _ = write!(out, " = [{}]", values.join(", "));
        }
        out.push('\n');
    }
    for n in program.topo_order() {
        let node = &program.graph[n];
        if node.op == Op::Input {
            continue;
        }
        let mut args: Vec<String> = program
            .operands(n)
            .iter()
            .map(|&o| format!("%{}", program.graph[o].name))
            .collect();
        args.extend(
            node.params
                .iter()
                .map(|&p| format!("@{}", program.params[p].name)),
        );
        args.extend(attributes(&node.op));
        let _ = write!(
            out,
            "  %{} = {}({})",
            node.name,
            node.op.name(),
            args.join(", ")
        );
        if let Some(k) = &node.keep_in {
            let _ = write!(out, " keep_in=[{}]", runs(k));
        }
        if let Some(k) = &node.keep_out {
            let _ = write!(out, " keep_out=[{}]", runs(k));
        }
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

fn dims(shape: &[usize]) -> String {
    crate::ir::ops::dims_text(shape)
}

fn runs(values: &[usize]) -> String {
    let values: Vec<i64> = values.iter().map(|&v| v as i64).collect();
    compress_runs(&values)
}

/// `n` for equal pairs, `[a, b]` otherwise.
fn pair(v: [usize; 2]) -> String {
    if v[0] == v[1] {
        v[0].to_string()
    } else {
        format!("[{}, {}]", v[0], v[1])
    }
}

/// Padding in its shortest form: `p`, `[ph, pw]` or `[top, left, bottom, right]`.
fn pads(p: [usize; 4]) -> String {
    if p.iter().all(|&x| x == p[0]) {
        p[0].to_string()
    } else if p[0] == p[2] && p[1] == p[3] {
        format!("[{}, {}]", p[0], p[1])
    } else {
        format!("[{}, {}, {}, {}]", p[0], p[1], p[2], p[3])
    }
}

/// The attributes of `op` that differ from their defaults, as `name=value`.
fn attributes(op: &Op) -> Vec<String> {
    let mut a = Vec::new();
    match op {
        Op::Conv2d(c) => {
            if c.stride != [1, 1] {
                a.push(format!("stride={}", pair(c.stride)));
            }
            if c.padding != [0; 4] {
                a.push(format!("padding={}", pads(c.padding)));
            }
            if c.dilation != [1, 1] {
                a.push(format!("dilation={}", pair(c.dilation)));
            }
            if c.groups != 1 {
                a.push(format!("groups={}", c.groups));
            }
        }
        Op::BatchNorm { eps } => {
            if *eps != 1e-5 {
                a.push(format!("eps={}", float_text(*eps)));
            }
        }
        Op::MaxPool2d(p) => pool(&mut a, p, false),
        Op::AvgPool2d(p) => pool(&mut a, p, true),
        Op::Dropout { p } => {
            if *p != 0.5 {
                a.push(format!("p={}", float_text(*p)));
            }
        }
        Op::Gather { indices } => a.push(format!("indices=[{}]", runs(indices))),
        Op::Slice { start, end } => {
            a.push(format!("start={start}"));
            a.push(format!("end={end}"));
        }
        Op::Permute { order } => a.push(format!("order=[{}]", runs(order))),
        Op::Input
        | Op::Activation(_)
        | Op::Add
        | Op::Mul
        | Op::Concat
        | Op::GlobalAvgPool
        | Op::AdaptiveAvgPool
        | Op::Flatten
        | Op::Linear => {}
    }
    a
}

fn pool(a: &mut Vec<String>, p: &Pool2d, average: bool) {
    a.push(format!("kernel={}", pair(p.kernel)));
    if p.stride != p.kernel {
        a.push(format!("stride={}", pair(p.stride)));
    }
    if p.padding != [0; 4] {
        a.push(format!("padding={}", pads(p.padding)));
    }
    if p.ceil_mode {
        a.push("ceil_mode=true".to_string());
    }
    if average && !p.count_include_pad {
        a.push("count_include_pad=false".to_string());
    }
}
