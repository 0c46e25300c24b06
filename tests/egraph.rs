//! The e-graph read planner: one-line cases per rule family and cost model, sharing, limits,
//! latency tables, and property tests (every choice valid, never costlier than the naive plan,
//! optimal against brute force, every term of a class numerically equal to the naive one).

use nnirc::egraph::{
    build_reads, candidates, eval, plan_reads, saturate, ConcatSource, Cost, CostModel, Env, Graph,
    IndexSet, Latency, LayoutGraph, Limits, Matrix, Part, PlanReport, ReadChoice, ReadRequest,
    Tables, TensorInfo, Value, Views, WeightInfo,
};
use nnirc::optimize::CostModelKind;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A 1x1 conv with 64 outputs at 56x56 in f32: one channel is 12,544 bytes and 200,704 MACs.
const B: u64 = 12_544;
const M: u64 = 200_704;

fn req(tensor: usize, channels: usize, keep: &[usize], bytes: u64, macs: u64) -> ReadRequest {
    ReadRequest {
        tensor,
        channels,
        keep: keep.to_vec(),
        bytes_per_channel: bytes,
        macs_per_channel: macs,
        concat: None,
    }
}

fn full(zero_columns: &[usize]) -> ReadChoice {
    ReadChoice::Full {
        zero_columns: zero_columns.to_vec(),
    }
}

fn slice(start: usize, end: usize, zero_columns: &[usize]) -> ReadChoice {
    ReadChoice::Slice {
        start,
        end,
        zero_columns: zero_columns.to_vec(),
    }
}

fn gather(indices: &[usize]) -> ReadChoice {
    ReadChoice::Gather {
        indices: indices.to_vec(),
    }
}

fn range(a: usize, b: usize) -> Vec<usize> {
    (a..b).collect()
}

fn without(l: usize, gaps: &[usize]) -> Vec<usize> {
    (0..l).filter(|c| !gaps.contains(c)).collect()
}

/// The illustrative latency table (test data, not a measurement).
fn example_table() -> Latency {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/latency_example.json");
    Latency::from_json(&std::fs::read_to_string(&path).unwrap()).expect("the example table loads")
}

/// A built-in model; `latency` with the example table.
fn model(kind: CostModelKind) -> std::sync::Arc<dyn CostModel> {
    let table = (kind == CostModelKind::Latency).then(example_table);
    kind.model(table).expect("a built-in model")
}

fn plan(kind: CostModelKind, requests: &[ReadRequest]) -> (Vec<ReadChoice>, PlanReport) {
    plan_reads(requests, &*model(kind), &Limits::default())
}

/// One consumer, one expected choice.
fn check(
    kind: CostModelKind,
    channels: usize,
    keep: &[usize],
    bytes: u64,
    macs: u64,
) -> ReadChoice {
    let (choices, report) = plan(kind, &[req(0, channels, keep, bytes, macs)]);
    assert_eq!(report.stop_reason, "saturated");
    assert!(report.total_cost <= report.baseline_cost);
    choices.into_iter().next().unwrap()
}

/// The naive choice: whole tensor, exact slice or gather.
fn naive(r: &ReadRequest) -> ReadChoice {
    let (a, b) = (r.keep[0], r.keep[r.keep.len() - 1] + 1);
    if b - a != r.keep.len() {
        gather(&r.keep)
    } else if (a, b) == (0, r.channels) {
        full(&[])
    } else {
        slice(a, b, &[])
    }
}

/// This file's own cost of a plan: each distinct selection of a tensor once, plus every
/// consumer's zero columns.
fn plan_cost(model: &dyn CostModel, requests: &[ReadRequest], choices: &[ReadChoice]) -> Cost {
    let mut nodes = BTreeSet::new();
    let mut total = Cost::ZERO;
    for (r, c) in requests.iter().zip(choices) {
        let tensor = (r.tensor, r.channels, r.bytes_per_channel);
        let mut selections = vec![(tensor, c)];
        if let ReadChoice::Distributed { parts } = c {
            let blocks = &r.concat.as_ref().expect("a concat's read").blocks;
            selections = parts
                .iter()
                .map(|p| {
                    (
                        (blocks[p.block].0, p.channels, r.bytes_per_channel),
                        &p.read,
                    )
                })
                .collect();
        }
        for (tensor, c) in selections {
            match c {
                ReadChoice::Full { .. } => {}
                ReadChoice::Slice { start, end, .. } => {
                    nodes.insert((tensor, 0, vec![*start, *end]));
                }
                ReadChoice::Gather { indices } => {
                    nodes.insert((tensor, 1, indices.clone()));
                }
                ReadChoice::Distributed { .. } => panic!("a part is not distributed"),
            }
        }
        if !c.zero_columns().is_empty() {
            total += model.zero_columns(c.zero_columns().len(), r.macs_per_channel);
        }
    }
    for ((_, _, bytes), kind, sel) in nodes {
        total += match kind {
            0 => model.slice(sel[1] - sel[0], bytes),
            _ => model.gather(sel.len(), bytes),
        };
    }
    total
}

/// Every way to read `r` without a copy beyond its own selection: exact, padded span, padded
/// whole tensor.
fn options(r: &ReadRequest) -> Vec<ReadChoice> {
    let l = r.channels;
    let (a, b) = (r.keep[0], r.keep[r.keep.len() - 1] + 1);
    let zeros = |lo: usize, hi: usize| -> Vec<usize> {
        (lo..hi)
            .filter(|p| r.keep.binary_search(p).is_err())
            .map(|p| p - lo)
            .collect()
    };
    let mut out = vec![naive(r)];
    for c in [
        if (a, b) == (0, l) {
            full(&zeros(0, l))
        } else {
            slice(a, b, &zeros(a, b))
        },
        full(&zeros(0, l)),
    ] {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

fn brute_force(model: &dyn CostModel, requests: &[ReadRequest]) -> Cost {
    let opts: Vec<Vec<ReadChoice>> = requests.iter().map(options).collect();
    let mut pick = vec![0; requests.len()];
    let mut best = Cost::MAX;
    loop {
        let choices: Vec<ReadChoice> = pick.iter().zip(&opts).map(|(&i, o)| o[i].clone()).collect();
        best = best.min(plan_cost(model, requests, &choices));
        let mut i = 0;
        loop {
            if i == pick.len() {
                return best;
            }
            pick[i] += 1;
            if pick[i] < opts[i].len() {
                break;
            }
            pick[i] = 0;
            i += 1;
        }
    }
}

/// Checks that `choice` reads exactly `r.keep` through non-zero columns, and is well formed.
fn assert_valid(r: &ReadRequest, choice: &ReadChoice) {
    let read = choice.read(r.channels);
    let zero = choice.zero_columns();
    assert!(
        read.iter().all(|&p| p < r.channels),
        "{choice:?} reads out of range"
    );
    assert!(
        zero.windows(2).all(|w| w[0] < w[1]),
        "{choice:?}: zero columns sorted"
    );
    assert!(
        zero.iter().all(|&j| j < read.len()),
        "{choice:?}: zero columns in range"
    );
    if let ReadChoice::Slice { start, end, .. } = choice {
        assert!(start < end && *end <= r.channels, "{choice:?}: bad range");
    }
    assert_eq!(choice.kept(r.channels), r.keep, "{choice:?} for {r:?}");
}

fn models() -> Vec<std::sync::Arc<dyn CostModel>> {
    CostModelKind::ALL.into_iter().map(model).collect()
}

// ---------------------------------------------------------------------------------------------
// One-line cases: (model, channels, keep, bytes per channel, MACs per channel) -> choice

#[test]
fn reads_whole_tensors_and_runs() {
    use CostModelKind::*;
    for kind in CostModelKind::ALL {
        assert_eq!(check(kind, 8, &range(0, 8), B, M), full(&[]), "{kind}");
    }
    assert_eq!(check(Views, 8, &range(2, 5), B, M), slice(2, 5, &[]));
    assert_eq!(check(Graph, 8, &range(2, 5), B, M), slice(2, 5, &[]));
    assert_eq!(check(Latency, 8, &range(2, 5), B, M), slice(2, 5, &[]));
    // No MACs to speak of: a graph runtime reads everything rather than copy a slice.
    assert_eq!(check(Graph, 8, &range(2, 5), B, 10), full(&[0, 1, 5, 6, 7]));
    // Views: an exact slice is free, a padded read is not, even at zero cost per MAC tie.
    assert_eq!(check(Views, 8, &range(2, 5), B, 0), slice(2, 5, &[]));
}

#[test]
fn one_small_gap_reads_through_a_zero_column() {
    use CostModelKind::*;
    let one_gap = without(8, &[3]);
    assert_eq!(check(Graph, 8, &one_gap, B, M), full(&[3]));
    assert_eq!(check(Latency, 8, &one_gap, B, M), full(&[3]));
    assert_eq!(check(Views, 8, &one_gap, B, M), full(&[3]));
    // A 3x3 kernel: nine times the MACs, the copy is cheaper.
    assert_eq!(check(Graph, 8, &one_gap, B, 9 * M), gather(&one_gap));
    // A gap inside a span that does not reach the ends: a padded slice.
    assert_eq!(check(Views, 16, &[2, 3, 5], B, M / 8), slice(2, 6, &[2]));
    assert_eq!(check(Views, 16, &[0, 1, 3], B, M / 8), slice(0, 4, &[2]));
}

#[test]
fn scattered_or_widely_spread_sets_are_gathered() {
    use CostModelKind::*;
    assert_eq!(check(Views, 8, &[0, 2, 5, 7], B, M), gather(&[0, 2, 5, 7]));
    assert_eq!(check(Graph, 100, &[0, 99], B, M), gather(&[0, 99]));
    assert_eq!(check(Latency, 100, &[0, 99], B, M), gather(&[0, 99]));
    assert_eq!(check(Views, 64, &[1, 62], B, M), gather(&[1, 62]));
}

// ---------------------------------------------------------------------------------------------
// Sharing: a selection read by several consumers is paid once

#[test]
fn equal_gathers_are_shared_and_paid_once() {
    let keep = [0, 2, 5, 7];
    let requests = [req(0, 8, &keep, B, M), req(0, 8, &keep, B, M)];
    let (choices, report) = plan(CostModelKind::Views, &requests);
    assert_eq!(choices, vec![gather(&keep), gather(&keep)]);
    let once = Views::default().gather(4, B);
    assert_eq!(report.total_cost, once);
    assert_eq!(report.baseline_cost, once);
    // Another tensor with the same ids is not shared.
    let requests = [req(0, 8, &keep, B, M), req(1, 8, &keep, B, M)];
    assert_eq!(
        plan(CostModelKind::Views, &requests).1.total_cost,
        once.times(2)
    );
}

#[test]
fn sharing_decides_between_a_copy_and_zero_columns() {
    let keep = without(8, &[3]);
    let graph = Graph::default();
    // Alone, a zero column beats the copy; three readers share one copy instead.
    assert_eq!(check(CostModelKind::Graph, 8, &keep, B, M), full(&[3]));
    let three = vec![req(0, 8, &keep, B, M); 3];
    let (choices, report) = plan(CostModelKind::Graph, &three);
    assert_eq!(choices, vec![gather(&keep); 3]);
    assert_eq!(report.total_cost, graph.gather(7, B));
    assert!(report.exact);
}

#[test]
fn exact_extraction_escapes_what_local_search_cannot() {
    // Two readers of one gather: each alone would pay a zero column for 40,000 < 91,904, but
    // leaving the shared gather alone saves nothing; only both together do.
    let keep = without(8, &[3]);
    let macs = 100_000; // 40,000 byte-equivalents per zero column
    let requests = vec![req(0, 8, &keep, B, macs); 2];
    let model = Graph::default();
    let (choices, report) = plan_reads(&requests, &model, &Limits::default());
    assert_eq!(choices, vec![full(&[3]); 2]);
    assert_eq!(report.total_cost, model.zero_columns(1, macs).times(2));
    assert!(report.exact);
    let local = Limits {
        exact_shared: 0,
        ..Limits::default()
    };
    let (choices, report) = plan_reads(&requests, &model, &local);
    assert_eq!(choices, vec![gather(&keep); 2]);
    assert!(!report.exact);
    assert_eq!(report.total_cost, report.baseline_cost);
}

#[test]
fn a_padded_read_can_share_another_consumers_slice() {
    // Consumer 0 slices 2..6; consumer 1 keeps {2, 5}: its padded span is the same slice.
    let requests = [
        req(0, 16, &range(2, 6), B, M),
        req(0, 16, &[2, 5], B, M / 64),
    ];
    let (choices, report) = plan(CostModelKind::Graph, &requests);
    assert_eq!(choices, vec![slice(2, 6, &[]), slice(2, 6, &[1, 2])]);
    let graph = Graph::default();
    assert_eq!(
        report.total_cost,
        graph.slice(4, B) + graph.zero_columns(2, M / 64)
    );
}

// ---------------------------------------------------------------------------------------------
// Rule families on hand-written terms

/// An e-graph with tensor leaf 0 of `channels` channels and weight leaf 0 of `columns`.
fn tables(channels: usize, columns: usize) -> Tables {
    let mut t = Tables::default();
    t.add_tensor(TensorInfo {
        channels,
        bytes_per_channel: 4,
    });
    t.add_weight(WeightInfo {
        rows: 2,
        columns,
        macs_per_column: 1,
        bytes_per_row: 4,
    });
    t
}

/// Saturates `from` (with `{name}` index sets substituted) and checks that each of `to` is
/// in its class.
fn check_equal(mut tables: Tables, sets: &[(&str, IndexSet)], from: &str, to: &[&str]) {
    let subst = |s: &str, tables: &mut Tables| {
        let mut s = s.to_string();
        for (name, set) in sets {
            s = s.replace(
                &format!("{{{name}}}"),
                &tables.intern(set.clone()).to_string(),
            );
        }
        s
    };
    let from = subst(from, &mut tables);
    let to: Vec<String> = to.iter().map(|t| subst(t, &mut tables)).collect();
    let mut egraph = LayoutGraph::new(tables);
    let root = egraph.add_expr(&from.parse().unwrap());
    let run = saturate(egraph, &Limits::default());
    assert_eq!(run.stop_reason, "saturated");
    for t in &to {
        let found = run.egraph.lookup_expr(&t.parse().unwrap());
        assert_eq!(found, Some(run.egraph.find(root)), "{from} = {t}");
    }
}

fn set(universe: usize, indices: &[usize]) -> IndexSet {
    IndexSet::new(universe, indices.to_vec()).unwrap()
}

#[test]
fn selection_rules() {
    // gather-of-range-is-slice
    check_equal(
        tables(8, 3),
        &[("k", set(8, &[2, 3, 4]))],
        "(gather {k} (tensor 0))",
        &["(slice 2 5 (tensor 0))"],
    );
    // full-slice-is-identity (after gather-of-range-is-slice)
    check_equal(
        tables(4, 4),
        &[("k", set(4, &[0, 1, 2, 3]))],
        "(gather {k} (tensor 0))",
        &["(slice 0 4 (tensor 0))", "(tensor 0)"],
    );
}

#[test]
fn distribution_rules() {
    // Tensor leaves 0 (8 channels), 1 (4) and 2 (4).
    let mut t = tables(8, 3);
    for _ in 0..2 {
        t.add_tensor(TensorInfo {
            channels: 4,
            bytes_per_channel: 4,
        });
    }
    // select-distributes-over-pointwise, select-distributes-over-concat, then
    // gather-of-range-is-slice and full-slice-is-identity on the parts.
    check_equal(
        t.clone(),
        &[
            ("k", set(16, &[2, 3, 8, 9, 10, 11, 13])),
            ("k0", set(8, &[2, 3])),
            ("k1", set(4, &[0, 1, 2, 3])),
            ("k2", set(4, &[1])),
        ],
        "(gather {k} (pointwise 7 (concat 5 (tensor 0) (tensor 1) (tensor 2))))",
        &[
            "(pointwise 7 (gather {k} (concat 5 (tensor 0) (tensor 1) (tensor 2))))",
            "(pointwise 7 (concat 5 (gather {k0} (tensor 0)) (gather {k1} (tensor 1)) (gather {k2} (tensor 2))))",
            "(pointwise 7 (concat 5 (slice 2 4 (tensor 0)) (tensor 1) (slice 1 2 (tensor 2))))",
        ],
    );
    // One block's part alone stays a concat (of one part).
    check_equal(
        t,
        &[("k", set(12, &[9, 10])), ("k1", set(4, &[1, 2]))],
        "(gather {k} (concat 5 (tensor 0) (tensor 1)))",
        &[
            "(concat 5 (gather {k1} (tensor 1)))",
            "(concat 5 (slice 1 3 (tensor 1)))",
        ],
    );
}

/// A request for the concat of `blocks` (caller ids and channels), through per-channel ops or
/// not.
fn concat_req(
    tensor: usize,
    blocks: &[(usize, usize)],
    pointwise: bool,
    keep: &[usize],
) -> ReadRequest {
    let channels = blocks.iter().map(|&(_, c)| c).sum();
    ReadRequest {
        concat: Some(ConcatSource {
            concat: tensor,
            pointwise: pointwise.then_some(1000 + tensor),
            blocks: blocks.to_vec(),
        }),
        ..req(tensor, channels, keep, B, M)
    }
}

/// Each block's part of a DenseNet-like read is a run of that block: slices (views: free)
/// instead of one gather of everything kept; a read that is one run of the concat stays one
/// slice.
#[test]
fn concat_reads_distribute_where_the_parts_are_runs() {
    let blocks = [(10, 8), (11, 4), (12, 4)];
    let requests = [
        concat_req(0, &blocks, true, &[2, 3, 8, 9, 10, 11, 13]),
        concat_req(1, &blocks, false, &[6, 7, 8]),
    ];
    let (choices, report) = plan(CostModelKind::Views, &requests);
    let part = |block: usize, offset: usize, channels: usize, read: ReadChoice| Part {
        block,
        offset,
        channels,
        read,
    };
    assert_eq!(
        choices[0],
        ReadChoice::Distributed {
            parts: vec![
                part(0, 0, 8, slice(2, 4, &[])),
                part(1, 8, 4, full(&[])),
                part(2, 12, 4, slice(1, 2, &[])),
            ]
        }
    );
    assert_eq!(choices[1], slice(6, 9, &[]));
    assert_eq!(report.total_cost, Cost::ZERO);
    for rule in [
        "select-distributes-over-pointwise",
        "select-distributes-over-concat",
        "gather-of-range-is-slice",
    ] {
        assert!(
            report.fired.get(rule).is_some_and(|&n| n > 0),
            "{rule}: {:?}",
            report.fired
        );
    }
    for (r, c) in requests.iter().zip(&choices) {
        assert_valid(r, c);
    }
}

#[test]
fn read_rules() {
    // consume-gather-as-padded-slice, then consume-slice-as-padded-full and pad-of-pad-composes
    check_equal(
        tables(8, 3),
        &[
            ("k", set(8, &[2, 3, 5])),
            ("in_span", set(4, &[0, 1, 3])),
            ("span", set(8, &[2, 3, 4, 5])),
            ("in_full", set(8, &[2, 3, 5])),
        ],
        "(consume 0 (weight 0) (gather {k} (tensor 0)))",
        &[
            "(consume 0 (pad-cols {in_span} (weight 0)) (slice 2 6 (tensor 0)))",
            "(consume 0 (pad-cols {span} (pad-cols {in_span} (weight 0))) (tensor 0))",
            "(consume 0 (pad-cols {in_full} (weight 0)) (tensor 0))",
        ],
    );
}

#[test]
fn ill_typed_terms_get_no_rewrites() {
    // The gather's set is over 8 channels, the tensor has 4: no slice is added.
    let mut tables = tables(4, 3);
    let k = tables.intern(set(8, &[2, 3, 4]));
    let mut egraph = LayoutGraph::new(tables);
    egraph.add_expr(&format!("(gather {k} (tensor 0))").parse().unwrap());
    let run = saturate(egraph, &Limits::default());
    assert_eq!(run.stop_reason, "saturated");
    assert_eq!(
        run.egraph
            .lookup_expr(&"(slice 2 5 (tensor 0))".parse().unwrap()),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Limits and reports

#[test]
fn limits_stop_early_and_say_why() {
    let keep = without(8, &[3]);
    let requests = [req(0, 8, &keep, B, M)];
    let model = Graph::default();
    let stop = |limits: Limits| plan_reads(&requests, &model, &limits);
    let (choices, report) = stop(Limits {
        iter_limit: 0,
        ..Limits::default()
    });
    assert_eq!(report.stop_reason, "iteration limit (0)");
    assert_eq!(choices, vec![gather(&keep)]); // the naive plan, unimproved
    let (choices, report) = stop(Limits {
        node_limit: 1,
        ..Limits::default()
    });
    assert!(
        report.stop_reason.starts_with("node limit"),
        "{}",
        report.stop_reason
    );
    assert_valid(&requests[0], &choices[0]);
    let (_, report) = stop(Limits {
        time_limit: Duration::ZERO,
        ..Limits::default()
    });
    assert!(
        report.stop_reason.starts_with("time limit"),
        "{}",
        report.stop_reason
    );
    let (_, report) = stop(Limits::default());
    assert_eq!(report.stop_reason, "saturated");
    assert_eq!(report.model, "graph");
    assert!(report.egraph_nodes > 0 && report.egraph_classes > 0 && report.iterations > 0);
}

#[test]
#[should_panic(expected = "keep must be non-empty")]
fn empty_reads_are_a_caller_bug() {
    plan(CostModelKind::Views, &[req(0, 8, &[], B, M)]);
}

#[test]
fn no_requests_no_cost() {
    let (choices, report) = plan(CostModelKind::Graph, &[]);
    assert!(choices.is_empty());
    assert_eq!(report.total_cost, Cost::ZERO);
}

// ---------------------------------------------------------------------------------------------
// Cost models

#[test]
fn cost_model_kinds_parse_and_print() {
    for kind in CostModelKind::ALL {
        assert_eq!(kind.to_string().parse::<CostModelKind>(), Ok(kind));
        assert_eq!(model(kind).name(), kind.name());
    }
    assert!("fast".parse::<CostModelKind>().is_err());
    // The latency model needs a measured table; the others take none.
    assert!(CostModelKind::Latency.model(None).is_err());
    assert!(CostModelKind::Views.model(Some(example_table())).is_err());
}

#[test]
fn saturating_costs_stay_ordered() {
    let model = Graph {
        op_overhead: u64::MAX,
        mac_per_mille: u64::MAX,
    };
    assert_eq!(model.gather(3, u64::MAX), Cost::MAX);
    assert_eq!(model.zero_columns(usize::MAX, u64::MAX), Cost::MAX);
    // Unaffordable everything: the naive plan stands.
    let requests = [req(0, 8, &without(8, &[3]), u64::MAX, u64::MAX)];
    let (choices, report) = plan_reads(&requests, &model, &Limits::default());
    assert_eq!(choices, vec![gather(&without(8, &[3]))]);
    assert_eq!(report.total_cost, Cost::MAX);
}

#[test]
fn latency_tables_load_or_say_why() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/latency_example.json");
    let table = Latency::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(table.description.is_some());
    let point = r#"[{"bytes": 0, "ns": 1}]"#;
    let table = |slice: &str, gather: &str, mac: &str| {
        format!(r#"{{"slice": {slice}, "gather": {gather}, "mac_ns": {mac}}}"#)
    };
    assert!(Latency::from_json(&table(point, point, "0.5")).is_ok());
    for (text, why) in [
        (String::new(), "EOF"),
        ("not json".to_string(), "expected"),
        ("{}".to_string(), "missing field"),
        ("[1, 2]".to_string(), "invalid type"),
        (table("[]", point, "1"), "at least one point"),
        (
            table(point, r#"[{"bytes": 0, "ns": -1}]"#, "1"),
            "non-negative",
        ),
        (
            table(point, r#"[{"bytes": -1, "ns": 1}]"#, "1"),
            "invalid value",
        ),
        (
            table(
                point,
                r#"[{"bytes": 5, "ns": 1}, {"bytes": 5, "ns": 2}]"#,
                "1",
            ),
            "increase",
        ),
        (
            table(point, r#"[{"bytes": 0, "ns": 1e999}]"#, "1"),
            "number out of range",
        ),
        (table(point, point, "-0.1"), "mac_ns"),
        (table(point, point, "\"fast\""), "invalid type"),
        (
            table(r#"[{"bytes": 0, "ns": 1, "size": 3}]"#, point, "1"),
            "unknown field",
        ),
        (
            format!(r#"{{"slice": {point}, "gather": {point}, "mac_ns": 1, "x": 1}}"#),
            "unknown field",
        ),
    ] {
        let err = Latency::from_json(&text).expect_err(&text);
        assert!(err.to_string().contains(why), "{text}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Random requests of concats (through 0-2 per-channel ops) of a few shared blocks, with some
/// plain reads of the blocks themselves; concats of the same blocks in the same order share
/// parts.
fn concat_requests() -> impl Strategy<Value = Vec<ReadRequest>> {
    let blocks = prop::collection::vec(1usize..7, 1..5);
    let reads = prop::collection::vec(
        (
            any::<u64>(),
            any::<bool>(),
            any::<u64>(),
            prop::bool::weighted(0.2),
        ),
        1..6,
    );
    (blocks, reads).prop_map(|(blocks, reads)| {
        let ids: Vec<(usize, usize)> = blocks
            .iter()
            .enumerate()
            .map(|(i, &c)| (100 + i, c))
            .collect();
        let mut out = Vec::new();
        for (i, (pick, pointwise, mask, plain)) in reads.into_iter().enumerate() {
            if plain {
                let (t, c) = ids[pick as usize % ids.len()];
                let keep: Vec<usize> = (0..c).filter(|b| mask >> b & 1 == 1).collect();
                out.push(req(t, c, if keep.is_empty() { &[0] } else { &keep }, B, M));
                continue;
            }
            // A non-empty subset of the blocks, in order.
            let mut chosen: Vec<(usize, usize)> = ids
                .iter()
                .enumerate()
                .filter(|(j, _)| pick >> j & 1 == 1)
                .map(|(_, &b)| b)
                .collect();
            if chosen.is_empty() {
                chosen.push(ids[pick as usize % ids.len()]);
            }
            let channels: usize = chosen.iter().map(|&(_, c)| c).sum();
            let keep: Vec<usize> = (0..channels)
                .filter(|b| mask >> (b % 64) & 1 == 1)
                .collect();
            let keep = if keep.is_empty() {
                vec![mask as usize % channels]
            } else {
                keep
            };
            out.push(concat_req(i, &chosen, pointwise, &keep));
        }
        out
    })
}

/// Random requests over a few tensors; some copy an earlier request's set on the same tensor,
/// so that sharing happens.
fn requests() -> impl Strategy<Value = Vec<ReadRequest>> {
    let tensors = prop::collection::vec((1usize..14, 1u64..20_000), 1..4);
    let reads = prop::collection::vec(
        (
            any::<usize>(),
            any::<u32>(),
            0u64..300_000,
            prop::option::of(any::<usize>()),
        ),
        1..7,
    );
    (tensors, reads).prop_map(|(tensors, reads)| {
        let mut out: Vec<ReadRequest> = Vec::new();
        for (t, mask, macs, copy) in reads {
            let t = t % tensors.len();
            let (channels, bytes) = tensors[t];
            let earlier: Vec<&ReadRequest> = out.iter().filter(|r| r.tensor == t).collect();
            let keep = match copy {
                Some(i) if !earlier.is_empty() => earlier[i % earlier.len()].keep.clone(),
                _ => {
                    let keep: Vec<usize> = (0..channels).filter(|c| mask >> c & 1 == 1).collect();
                    if keep.is_empty() {
                        vec![mask as usize % channels]
                    } else {
                        keep
                    }
                }
            };
            out.push(req(t, channels, &keep, bytes, macs));
        }
        out
    })
}

/// Deterministic pseudo-random numbers in [-1, 1).
fn numbers(seed: u64, n: usize) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Tensor(x), Value::Tensor(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(u, v)| (u - v).abs() <= 1e-12 * (1.0 + u.abs()))
        }
        _ => false,
    }
}

/// Every term of every consumer's class (after saturation) computes what its naive term
/// computes, on leaves drawn from `seed`.
fn same_meaning(requests: &[ReadRequest], seed: u64) -> Result<(), TestCaseError> {
    let reads = build_reads(requests);
    let run = saturate(reads.egraph, &Limits::default());
    let tables = &run.egraph.analysis;
    let env = Env {
        tensors: (0..)
            .map_while(|t| tables.tensor(t))
            .enumerate()
            .map(|(t, info)| numbers(seed ^ t as u64, info.channels))
            .collect(),
        weights: requests
            .iter()
            .enumerate()
            .map(|(i, r)| Matrix {
                rows: 3,
                cols: r.keep.len(),
                data: numbers(!seed ^ i as u64, 3 * r.keep.len()),
            })
            .collect(),
    };
    for (root, base) in reads.roots.iter().zip(&reads.baseline) {
        let want = eval(base, tables, &env).expect("the naive term evaluates");
        let terms = candidates(&run.egraph, *root, &Views::default());
        prop_assert!(!terms.is_empty());
        for term in terms {
            let got = eval(&term, tables, &env).expect("every term evaluates");
            prop_assert!(close(&got, &want), "{} vs {}", term, base);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every choice reads exactly the kept set; the plan is never costlier than the naive one;
    /// its reported cost is what this file computes for it, and brute force finds nothing
    /// cheaper.
    #[test]
    fn plans_are_valid_cheap_and_optimal(requests in requests()) {
        let naive_choices: Vec<ReadChoice> = requests.iter().map(naive).collect();
        let library: Vec<ReadChoice> = requests.iter().map(ReadChoice::naive).collect();
        prop_assert_eq!(&library, &naive_choices);
        for model in models() {
            let (choices, report) = plan_reads(&requests, &*model, &Limits::default());
            prop_assert_eq!(&report.stop_reason, "saturated");
            prop_assert_eq!(choices.len(), requests.len());
            for (r, c) in requests.iter().zip(&choices) {
                assert_valid(r, c);
            }
            prop_assert!(report.total_cost <= report.baseline_cost);
            prop_assert_eq!(report.baseline_cost, plan_cost(&*model, &requests, &naive_choices));
            // Nested zero paddings round per padding: allow one unit each.
            let slack = Cost::new(2 * requests.len() as u64);
            let ours = plan_cost(&*model, &requests, &choices);
            prop_assert!(ours <= report.total_cost + slack && report.total_cost <= ours + slack,
                "{}: reported {} computed {}", model.name(), report.total_cost, ours);
            prop_assert!(report.exact);
            let best = brute_force(&*model, &requests);
            prop_assert!(report.total_cost <= best + slack,
                "{}: {} but brute force {}", model.name(), report.total_cost, best);
        }
    }

    /// Local search (no exact groups) is still valid and never costlier than the naive plan.
    #[test]
    fn local_search_is_valid_and_no_worse(requests in requests()) {
        let limits = Limits { exact_shared: 0, ..Limits::default() };
        for model in models() {
            let (choices, report) = plan_reads(&requests, &*model, &limits);
            for (r, c) in requests.iter().zip(&choices) {
                assert_valid(r, c);
            }
            prop_assert!(report.total_cost <= report.baseline_cost);
        }
    }

    /// Every term of every consumer's class computes what its naive term computes.
    #[test]
    fn read_rules_preserve_meaning(requests in requests(), seed in any::<u64>()) {
        same_meaning(&requests, seed)?;
    }

    /// Distributed reads: every choice reads exactly the kept set, the plan costs what this
    /// file computes and never more than the naive plan, and every term of every consumer's
    /// class computes what its naive term computes.
    #[test]
    fn distributed_reads_are_valid_and_preserve_meaning(requests in concat_requests(), seed in any::<u64>()) {
        for model in models() {
            let (choices, report) = plan_reads(&requests, &*model, &Limits::default());
            prop_assert_eq!(&report.stop_reason, "saturated");
            for (r, c) in requests.iter().zip(&choices) {
                assert_valid(r, c);
            }
            prop_assert!(report.total_cost <= report.baseline_cost);
            let slack = Cost::new(2 * requests.len() as u64);
            let ours = plan_cost(&*model, &requests, &choices);
            prop_assert!(ours <= report.total_cost + slack && report.total_cost <= ours + slack,
                "{}: reported {} computed {}", model.name(), report.total_cost, ours);
        }
        same_meaning(&requests, seed)?;
    }
}
