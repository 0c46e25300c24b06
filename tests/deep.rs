//! Deep but valid graphs on a small stack: nothing in the front end or the ONNX import recurses
//! over the graph, so a chain's length is bounded by memory, not by the stack. The models are
//! generated here (no large files in the repository).
mod common;
use nnirc::onnx::proto;
use prost::Message;

/// Runs `f` on a thread with a 256 KiB stack (a recursion per node would overflow within a few
/// thousand nodes).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .expect("the thread overflowed its stack or panicked")
}

fn relu_chain(n: usize) -> String {
    let mut s = String::from("model chain(%v0: f32[1, 2]) -> (%y) {\n");
    for i in 1..n {
        s.push_str(&format!("  %v{i} = relu(%v{})\n", i - 1));
    }
    s.push_str(&format!("  %y = relu(%v{})\n}}\n", n - 1));
    s
}

#[test]
fn a_200k_statement_chain_lowers_on_a_small_stack() {
    let source = relu_chain(200_000);
    let nodes = on_small_stack(move || {
        let c = nnirc::compile(&source);
        assert!(c.diagnostics.is_empty(), "{:?}", &c.diagnostics[..1]);
        let n = c.program.as_ref().map(|p| p.graph.node_count());
        // Dropped here too: dropping must not recurse either.
        drop(c);
        n
    });
    assert_eq!(nodes, Some(200_001));
}

#[test]
fn a_long_cycle_is_reported_on_a_small_stack() {
    let mut source = relu_chain(50_000);
    source = source.replace("%v1 = relu(%v0)", "%v1 = relu(%v49999)");
    let diags = on_small_stack(move || nnirc::compile(&source).diagnostics);
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].code, nnirc::diag::Code::Cycle);
    assert!(diags[0].message.starts_with("cycle: `%v1`, `%v2`"));
}

#[test]
fn a_100k_node_onnx_relu_chain_imports_on_a_small_stack() {
    let n = 100_000;
    let value = |i: usize| {
        if i == 0 {
            "x".to_string()
        } else {
            format!("v{i}")
        }
    };
    let model = proto::ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(proto::GraphProto {
            node: (1..=n)
                .map(|i| proto::NodeProto {
                    op_type: Some("Relu".to_string()),
                    input: vec![value(i - 1)],
                    output: vec![value(i)],
                    ..Default::default()
                })
                .collect(),
            input: vec![common::value_info("x", &[1, 2])],
            output: vec![common::value_info(&value(n), &[1, 2])],
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = model.encode_to_vec();
    let nodes = on_small_stack(move || {
        let opts = nnirc::onnx::ImportOptions::default();
        let imported = nnirc::onnx::import(&bytes, "chain.onnx".as_ref(), &opts).unwrap();
        imported.program.graph.node_count()
    });
    assert_eq!(nodes, n + 1);
}

/// A concat read through 20,000 per-channel ops by a pruned conv: the optimize pass (the read
/// planner holds the whole chain as one per-channel term) runs on a small stack and verifies.
#[test]
fn a_concat_read_through_a_20k_op_chain_optimizes_on_a_small_stack() {
    let n = 20_000;
    let mut source = String::from(
        "model deep(%x: f32[1, 4, 8, 8]) -> (%y) {\n  param @wa: f32[8, 4, 1, 1]\n  \
         param @wb: f32[8, 4, 1, 1]\n  param @wc: f32[6, 16, 1, 1]\n  %a = conv2d(%x, @wa)\n  \
         %b = conv2d(%x, @wb)\n  %v0 = concat(%a, %b)\n",
    );
    for i in 1..=n {
        source.push_str(&format!("  %v{i} = relu(%v{})\n", i - 1));
    }
    source.push_str(&format!(
        "  %y = conv2d(%v{n}, @wc) keep_in=[0, 2, 5, 9, 11, 14]\n}}\n"
    ));
    let verified = on_small_stack(move || {
        let program = nnirc::compile(&source).program.expect("the chain compiles");
        let weights = nnirc::weights::random(&program, 0);
        let config = nnirc::optimize::OptimizeConfig {
            verify: Some(0),
            ..Default::default()
        };
        let optimized = nnirc::optimize::optimize(&program, &weights, &config).unwrap();
        optimized.report.verify.is_some_and(|v| v.passed())
    });
    assert!(verified);
}
