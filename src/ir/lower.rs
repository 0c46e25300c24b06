//! Lowering: AST -> [`Program`], with name resolution, op and attribute checking, cycle
//! detection, shape inference and mask validation.
//!
//! Every problem found is a diagnostic; lowering goes on past errors so one run reports as many
//! as it can, but a node whose operands failed is skipped silently (no cascades). A program is
//! returned only when there is no diagnostic at all.

use super::ops::{infer_shape, signature, Activation, Conv2d, Op, Pool2d, Shape, SIGNATURES};
use super::{Node, Param, ParamInit, Program};
use crate::diag::{edit_distance, Code, Diagnostic, Span};
use crate::syntax::ast::{self, AttrValue, ListItem, MaskKind, NodeStmt, Operand};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;

/// Largest element count of any tensor (2^40): guards arithmetic and allocation on hostile input.
const MAX_ELEMENTS: usize = 1 << 40;
/// Longest integer range expanded from a list (channel lists never come near it).
const MAX_RANGE: i64 = 1 << 24;

/// The result of [`lower`].
#[derive(Debug)]
pub struct Lowered {
    /// Present iff `diagnostics` is empty.
    pub program: Option<Program>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Lowers a parsed file. A file without a model (its header failed to parse) lowers to nothing
/// and no new diagnostics.
pub fn lower(file: &ast::File) -> Lowered {
    let Some(model) = &file.model else {
        return Lowered {
            program: None,
            diagnostics: Vec::new(),
        };
    };
    let mut cx = Lowerer::default();
    let program = cx.model(model);
    Lowered {
        program: program.filter(|_| cx.diags.is_empty()),
        diagnostics: cx.diags,
    }
}

/// A value definition: a model input or a statement.
struct Def<'a> {
    name: &'a ast::Name,
    span: Span,
    stmt: Option<&'a NodeStmt>,
    op: Option<Op>,
    /// Resolved value operands (definition indices); `None` if any failed.
    operands: Option<Vec<usize>>,
    params: Option<Vec<usize>>,
    shape: Option<Shape>,
    masks: Masks,
}

#[derive(Default)]
struct Masks {
    keep_in: Option<(Vec<usize>, Vec<Span>, Span)>,
    keep_out: Option<(Vec<usize>, Vec<Span>, Span)>,
}

#[derive(Default)]
struct Lowerer {
    diags: Vec<Diagnostic>,
}

impl Lowerer {
    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn model(&mut self, model: &ast::Model) -> Option<Program> {
        let mut defs: Vec<Def> = Vec::new();
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        for input in &model.inputs {
            let shape = self.tensor_type(&input.ty);
            let def = Def {
                name: &input.name,
                span: input.name.span.start..input.ty.span.end,
                stmt: None,
                op: Some(Op::Input),
                operands: Some(Vec::new()),
                params: Some(Vec::new()),
                shape,
                masks: Masks::default(),
            };
            self.define(&mut defs, &mut by_name, def);
        }

        // Weights line and params.
        let mut weights_file: Option<(String, Span)> = None;
        let mut params: Vec<Param> = Vec::new();
        let mut param_ok: Vec<bool> = Vec::new();
        let mut param_by_name: HashMap<&str, usize> = HashMap::new();
        for item in &model.items {
            match item {
                ast::Item::Weights(w) => {
                    if let Some((_, first)) = &weights_file {
                        let d = Diagnostic::new(
                            Code::DuplicateWeights,
                            "more than one `weights` line",
                            w.span.clone(),
                            "second `weights` line",
                        )
                        .with_label(first.clone(), "first given here");
                        self.error(d);
                    } else {
                        weights_file = Some((w.path.clone(), w.span.clone()));
                    }
                }
                ast::Item::Param(p) => {
                    if let Some(&prev) = param_by_name.get(p.name.text.as_str()) {
                        let d = Diagnostic::new(
                            Code::RedefinedParam,
                            format!("parameter `@{}` is declared twice", p.name.text),
                            p.name.span.clone(),
                            "declared again here",
                        )
                        .with_label(params[prev].span.clone(), "first declared here");
                        self.error(d);
                        continue;
                    }
                    let shape = self.tensor_type(&p.ty);
                    let init = match (&p.init, &shape) {
                        (Some(list), Some(shape)) => {
                            self.inline_init(list, shape).map(ParamInit::Inline)
                        }
                        (None, _) => Some(ParamInit::File),
                        (Some(_), None) => None,
                    };
                    param_by_name.insert(&p.name.text, params.len());
                    param_ok.push(shape.is_some() && init.is_some());
                    params.push(Param {
                        name: p.name.text.clone(),
                        shape: shape.unwrap_or_default(),
                        init: init.unwrap_or(ParamInit::File),
                        span: p.name.span.clone(),
                    });
                }
                ast::Item::Node(_) | ast::Item::Broken(_) => {}
            }
        }

        // Statements: define every result first (order-free), then resolve.
        let first_stmt = defs.len();
        for item in &model.items {
            let (name, stmt) = match item {
                ast::Item::Node(stmt) => (&stmt.result, Some(stmt)),
                // Defined but poisoned: its users are skipped without further errors.
                ast::Item::Broken(broken) => (&broken.result, None),
                ast::Item::Weights(_) | ast::Item::Param(_) => continue,
            };
            let def = Def {
                name,
                span: item.span(),
                stmt,
                op: None,
                operands: None,
                params: None,
                shape: None,
                masks: Masks::default(),
            };
            self.define(&mut defs, &mut by_name, def);
        }
        for def in &mut defs[first_stmt..] {
            let Some(stmt) = def.stmt else {
                continue;
            };
            def.op = self.op(stmt);
            def.operands = self.resolve_values(stmt, &by_name);
            def.params = self.resolve_params(stmt, &param_by_name, &param_ok);
            def.masks = self.masks(stmt, def.op.as_ref());
        }

        let outputs: Vec<Option<usize>> = model
            .outputs
            .iter()
            .map(|o| {
                let found = by_name.get(o.text.as_str()).copied();
                if found.is_none() {
                    self.error(Diagnostic::new(
                        Code::UndefinedOutput,
                        format!("output `%{}` is not defined", o.text),
                        o.span.clone(),
                        "no value of this name",
                    ));
                }
                found
            })
            .collect();

        let order = self.acyclic_order(&defs);
        for &i in &order {
            self.infer(&mut defs, i, &params);
        }

        if !self.diags.is_empty() {
            return None;
        }
        self.build(model, defs, params, weights_file, outputs)
    }

    fn define<'a>(
        &mut self,
        defs: &mut Vec<Def<'a>>,
        by_name: &mut HashMap<&'a str, usize>,
        def: Def<'a>,
    ) {
        if let Some(&prev) = by_name.get(def.name.text.as_str()) {
            let d = Diagnostic::new(
                Code::RedefinedValue,
                format!("value `%{}` is defined twice", def.name.text),
                def.name.span.clone(),
                "defined again here",
            )
            .with_label(defs[prev].name.span.clone(), "first defined here")
            .with_note("values are SSA: each name is defined exactly once");
            self.error(d);
            return;
        }
        by_name.insert(&def.name.text, defs.len());
        defs.push(def);
    }

    fn tensor_type(&mut self, ty: &ast::TensorType) -> Option<Shape> {
        let mut ok = true;
        if ty.dtype.text != "f32" {
            self.error(
                Diagnostic::new(
                    Code::UnsupportedDtype,
                    format!("unsupported dtype `{}`", ty.dtype.text),
                    ty.dtype.span.clone(),
                    "only `f32` is supported",
                )
                .with_note("the interpreter can still evaluate in f64 (`nnirc run --f64`)"),
            );
            ok = false;
        }
        let mut shape = Vec::new();
        let mut elements: usize = 1;
        for (d, span) in &ty.dims {
            match usize::try_from(*d) {
                Ok(d) if d >= 1 => {
                    shape.push(d);
                    elements = elements.saturating_mul(d);
                }
                _ => {
                    self.error(Diagnostic::new(
                        Code::BadShape,
                        "dimensions must be at least 1",
                        span.clone(),
                        format!("dimension {d}"),
                    ));
                    ok = false;
                }
            }
        }
        if ok && elements > MAX_ELEMENTS {
            self.error(Diagnostic::new(
                Code::BadShape,
                "tensor too large",
                ty.span.clone(),
                "more than 2^40 elements",
            ));
            ok = false;
        }
        if ty.dims.is_empty() {
            self.error(Diagnostic::new(
                Code::BadShape,
                "tensors need at least one dimension",
                ty.span.clone(),
                "empty shape",
            ));
            ok = false;
        }
        ok.then_some(shape)
    }

    fn inline_init(&mut self, list: &ast::List, shape: &[usize]) -> Option<Vec<f64>> {
        let mut values = Vec::with_capacity(list.items.len());
        for (item, span) in &list.items {
            match *item {
                ListItem::Int(i) => values.push(i as f64),
                ListItem::Float(f) => values.push(f),
                ListItem::Range(..) => {
                    self.error(Diagnostic::new(
                        Code::InlineInit,
                        "ranges are not values",
                        span.clone(),
                        "write the numbers out",
                    ));
                    return None;
                }
            }
        }
        let want: usize = shape.iter().product();
        if values.len() != want {
            self.error(Diagnostic::new(
                Code::InlineInit,
                format!(
                    "inline initializer has {} values, but the shape needs {want}",
                    values.len()
                ),
                list.span.clone(),
                format!("{} values", values.len()),
            ));
            return None;
        }
        Some(values)
    }

    fn op(&mut self, stmt: &NodeStmt) -> Option<Op> {
        let name = stmt.op.text.as_str();
        let Some(sig) = signature(name) else {
            let mut d = Diagnostic::new(
                Code::UnknownOp,
                format!("unknown op `{name}`"),
                stmt.op.span.clone(),
                "not an op of .nnir",
            );
            if let Some(close) = closest(name, SIGNATURES.iter().map(|s| s.name)) {
                d = d.with_note(format!("did you mean `{close}`?"));
            }
            self.error(d);
            return None;
        };
        let values = stmt
            .operands
            .iter()
            .filter(|o| matches!(o, Operand::Value(_)))
            .count();
        let params = stmt.operands.len() - values;
        let arity_ok = (sig.values.0..=sig.values.1).contains(&values)
            && (sig.params.0..=sig.params.1).contains(&params);
        let order_ok = stmt
            .operands
            .iter()
            .skip(values)
            .all(|o| matches!(o, Operand::Param(_)));
        if !arity_ok || !order_ok {
            let msg = if arity_ok {
                format!("`{name}` takes its `%value` operands before its `@param` operands")
            } else {
                format!("wrong number of operands for `{name}`: {values} value(s) and {params} parameter(s)")
            };
            self.error(
                Diagnostic::new(Code::WrongArity, msg, stmt.op.span.clone(), "in this call")
                    .with_note(format!("`{name}` takes ({})", sig.operands_doc)),
            );
            return None;
        }
        let mut attrs = Attrs::new(self, stmt, sig.attrs)?;
        let op = match name {
            "conv2d" => Op::Conv2d(Conv2d {
                stride: attrs.pair("stride", [1, 1], 1),
                padding: attrs.pads("padding"),
                dilation: attrs.pair("dilation", [1, 1], 1),
                groups: attrs.int("groups", 1, 1),
            }),
            "batch_norm" => Op::BatchNorm {
                eps: attrs.float("eps", 1e-5),
            },
            "relu" => Op::Activation(Activation::Relu),
            "relu6" => Op::Activation(Activation::Relu6),
            "silu" => Op::Activation(Activation::Silu),
            "sigmoid" => Op::Activation(Activation::Sigmoid),
            "hardswish" => Op::Activation(Activation::HardSwish),
            "hardsigmoid" => Op::Activation(Activation::HardSigmoid),
            "add" => Op::Add,
            "mul" => Op::Mul,
            "concat" => Op::Concat,
            "max_pool2d" | "avg_pool2d" => {
                let kernel = attrs.required_pair("kernel");
                let padding = attrs.pads("padding");
                let half_kernel = [kernel[0] / 2, kernel[1] / 2, kernel[0] / 2, kernel[1] / 2];
                if padding.iter().zip(half_kernel).any(|(&p, h)| p > h) {
                    attrs.bad("padding", "pool padding must be at most half the kernel");
                }
                let pool = Pool2d {
                    kernel,
                    stride: attrs.pair("stride", kernel, 1),
                    padding,
                    ceil_mode: attrs.bool("ceil_mode", false),
                    count_include_pad: attrs.bool("count_include_pad", true),
                };
                if name == "max_pool2d" {
                    Op::MaxPool2d(pool)
                } else {
                    Op::AvgPool2d(pool)
                }
            }
            "global_avg_pool" => Op::GlobalAvgPool,
            "adaptive_avg_pool" => {
                if attrs.pair("size", [1, 1], 1) != [1, 1] {
                    attrs.bad("size", "only adaptive pooling to 1x1 is supported");
                }
                Op::AdaptiveAvgPool
            }
            "flatten" => Op::Flatten,
            "linear" => Op::Linear,
            "dropout" => Op::Dropout {
                p: attrs.float("p", 0.5),
            },
            "gather" => Op::Gather {
                indices: attrs.required_list("indices"),
            },
            "slice" => {
                let start = attrs.required_int("start", 0);
                let end = attrs.required_int("end", 1);
                if end <= start {
                    attrs.bad("end", "a slice needs start < end");
                }
                Op::Slice { start, end }
            }
            "permute" => {
                let order = attrs.required_list("order");
                let mut seen = vec![false; order.len()];
                let is_perm = order
                    .iter()
                    .all(|&i| i < seen.len() && !std::mem::replace(&mut seen[i], true));
                if !is_perm {
                    attrs.bad("order", "must be a permutation of 0..C");
                }
                Op::Permute { order }
            }
            other => unreachable!("signature table and lowering disagree on `{other}`"),
        };
        attrs.finish().then_some(op)
    }

    fn resolve_values(
        &mut self,
        stmt: &NodeStmt,
        by_name: &HashMap<&str, usize>,
    ) -> Option<Vec<usize>> {
        let mut ok = true;
        let mut out = Vec::new();
        for o in &stmt.operands {
            if let Operand::Value(v) = o {
                match by_name.get(v.text.as_str()) {
                    Some(&i) => out.push(i),
                    None => {
                        let mut d = Diagnostic::new(
                            Code::UndefinedValue,
                            format!("value `%{}` is not defined", v.text),
                            v.span.clone(),
                            "not defined anywhere in this model",
                        );
                        if let Some(close) = closest(&v.text, by_name.keys().copied()) {
                            d = d.with_note(format!("did you mean `%{close}`?"));
                        }
                        self.error(d);
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(out)
    }

    fn resolve_params(
        &mut self,
        stmt: &NodeStmt,
        by_name: &HashMap<&str, usize>,
        param_ok: &[bool],
    ) -> Option<Vec<usize>> {
        let mut ok = true;
        let mut out = Vec::new();
        for o in &stmt.operands {
            if let Operand::Param(p) = o {
                match by_name.get(p.text.as_str()) {
                    Some(&i) => {
                        ok &= param_ok[i];
                        out.push(i);
                    }
                    None => {
                        self.error(
                            Diagnostic::new(
                                Code::UndefinedParam,
                                format!("parameter `@{}` is not declared", p.text),
                                p.span.clone(),
                                "no `param` declaration of this name",
                            )
                            .with_note(format!("declare it: `param @{}: f32[...]`", p.text)),
                        );
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(out)
    }

    /// Syntactic mask checks: integers, ascending, no duplicates, non-empty. Range checks come
    /// after shape inference.
    fn masks(&mut self, stmt: &NodeStmt, op: Option<&Op>) -> Masks {
        let mut masks = Masks::default();
        for mask in &stmt.masks {
            if let Some(op) = op.filter(|op| !op.is_channel_mixing()) {
                let what = match op {
                    Op::Conv2d(c) => format!("a grouped conv2d (groups={})", c.groups),
                    other => format!("`{}`", other.name()),
                };
                self.error(
                    Diagnostic::new(
                        Code::MaskNotAllowed,
                        format!("`{}` is not allowed on {what}", mask.kind.keyword()),
                        mask.span.clone(),
                        "mask here",
                    )
                    .with_note(
                        "masks go on channel-mixing layers: conv2d with groups == 1, and linear",
                    ),
                );
                continue;
            }
            let slot = match mask.kind {
                MaskKind::KeepIn => &mut masks.keep_in,
                MaskKind::KeepOut => &mut masks.keep_out,
            };
            if let Some((_, _, first)) = slot {
                let d = Diagnostic::new(
                    Code::BadAttribute,
                    format!("`{}` given twice", mask.kind.keyword()),
                    mask.span.clone(),
                    "second mask",
                )
                .with_label(first.clone(), "first given here");
                self.diags.push(d);
                continue;
            }
            if let Some((values, spans)) = self.mask_values(mask) {
                *slot = Some((values, spans, mask.span.clone()));
            }
        }
        masks
    }

    fn mask_values(&mut self, mask: &ast::Mask) -> Option<(Vec<usize>, Vec<Span>)> {
        let kw = mask.kind.keyword();
        if mask.list.items.is_empty() {
            self.error(
                Diagnostic::new(
                    Code::MaskEmpty,
                    format!("`{kw}` keeps no channel"),
                    mask.span.clone(),
                    "empty mask",
                )
                .with_note("a layer must keep at least one channel"),
            );
            return None;
        }
        let mut values: Vec<usize> = Vec::new();
        let mut spans: Vec<Span> = Vec::new();
        for (item, span) in &mask.list.items {
            let (lo, hi) = match *item {
                ListItem::Int(i) => (i, i.saturating_add(1)),
                ListItem::Range(a, b) => (a, b),
                ListItem::Float(_) => {
                    self.error(Diagnostic::new(
                        Code::BadAttribute,
                        "mask entries are channel indices",
                        span.clone(),
                        "not an integer",
                    ));
                    return None;
                }
            };
            if lo < 0 {
                self.error(Diagnostic::new(
                    Code::MaskOutOfRange,
                    "channel indices are not negative",
                    span.clone(),
                    "negative index",
                ));
                return None;
            }
            if hi > MAX_RANGE {
                self.error(Diagnostic::new(
                    Code::MaskOutOfRange,
                    "channel index too large",
                    span.clone(),
                    "beyond 2^24",
                ));
                return None;
            }
            if hi <= lo {
                self.error(
                    Diagnostic::new(
                        Code::MaskUnsorted,
                        format!("empty or reversed range `{lo}..{hi}`"),
                        span.clone(),
                        "ranges are half-open: `a..b` with a < b",
                    )
                    .with_note(format!("`{kw}` lists channels in ascending order")),
                );
                return None;
            }
            if hi - lo > MAX_RANGE {
                self.error(Diagnostic::new(
                    Code::MaskOutOfRange,
                    "range too long",
                    span.clone(),
                    "more than 2^24 channels",
                ));
                return None;
            }
            if let Some(&last) = values.last() {
                let lo = lo as usize;
                if lo == last || (lo < last && (hi as usize) > last) {
                    let d = Diagnostic::new(
                        Code::MaskDuplicate,
                        format!("channel {last} is listed twice in `{kw}`"),
                        span.clone(),
                        "listed again here",
                    )
                    .with_label(
                        spans.last().cloned().unwrap_or_default(),
                        "first listed here",
                    );
                    self.error(d);
                    return None;
                }
                if lo < last {
                    let d = Diagnostic::new(
                        Code::MaskUnsorted,
                        format!("`{kw}` is not sorted"),
                        span.clone(),
                        format!("{lo} comes after {last}"),
                    )
                    .with_label(
                        spans.last().cloned().unwrap_or_default(),
                        "the larger index is here",
                    )
                    .with_note("write mask channels in ascending order");
                    self.error(d);
                    return None;
                }
            }
            for v in lo..hi {
                values.push(v as usize);
                spans.push(span.clone());
            }
        }
        Some((values, spans))
    }

    /// Definition indices in an order where operands come first; reports every cycle. Defs in
    /// or downstream of a cycle are left out. No recursion: the components come from
    /// `kosaraju_scc` (two iterative depth-first passes with explicit stacks; `tarjan_scc` is
    /// recursive and overflowed the stack on chains of some 25k statements) and the order from
    /// Kahn's algorithm, so the depth of a graph is bounded by memory, not by the stack.
    fn acyclic_order(&mut self, defs: &[Def]) -> Vec<usize> {
        let mut graph: DiGraph<usize, ()> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..defs.len()).map(|i| graph.add_node(i)).collect();
        for (i, def) in defs.iter().enumerate() {
            for &o in def.operands.iter().flatten() {
                graph.add_edge(nodes[o], nodes[i], ());
            }
        }
        for scc in petgraph::algo::kosaraju_scc(&graph) {
            let cyclic = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
            if !cyclic {
                continue;
            }
            let mut members: Vec<usize> = scc.iter().map(|n| graph[*n]).collect();
            members.sort_unstable();
            let names: Vec<String> = members
                .iter()
                .map(|&m| format!("`%{}`", defs[m].name.text))
                .collect();
            let first = &defs[members[0]];
            let message = match names.as_slice() {
                [one] => format!("cycle: {one} is its own operand"),
                _ => format!("cycle: {} depend on each other", names.join(", ")),
            };
            let mut d = Diagnostic::new(
                Code::Cycle,
                message,
                first.name.span.clone(),
                "this value depends on itself",
            );
            for &m in &members[1..] {
                d = d.with_label(defs[m].name.span.clone(), "part of the cycle");
            }
            self.error(
                d.with_note("a model is an acyclic graph: a value cannot feed its own inputs"),
            );
        }
        // Kahn's algorithm; cyclic defs never become ready.
        let mut indegree: Vec<usize> = (0..defs.len())
            .map(|i| {
                graph
                    .neighbors_directed(nodes[i], petgraph::Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: std::collections::VecDeque<usize> =
            (0..defs.len()).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::new();
        while let Some(i) = ready.pop_front() {
            order.push(i);
            for t in graph.neighbors_directed(nodes[i], petgraph::Direction::Outgoing) {
                let t = graph[t];
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    ready.push_back(t);
                }
            }
        }
        order
    }

    fn infer(&mut self, defs: &mut [Def], i: usize, params: &[Param]) {
        if defs[i].stmt.is_none() {
            return; // inputs carry their declared shape; broken statements have none
        }
        let (Some(op), Some(operands), Some(param_ids)) =
            (&defs[i].op, &defs[i].operands, &defs[i].params)
        else {
            return;
        };
        let shapes: Option<Vec<&[usize]>> =
            operands.iter().map(|&o| defs[o].shape.as_deref()).collect();
        let Some(shapes) = shapes else {
            return; // an operand failed: already reported
        };
        let param_shapes: Vec<&[usize]> = param_ids
            .iter()
            .map(|&p| params[p].shape.as_slice())
            .collect();
        let stmt = defs[i].stmt.expect("checked above");
        let result = infer_shape(op, &shapes, &param_shapes).and_then(|s| {
            if s.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none_or(|n| n > MAX_ELEMENTS)
            {
                return Err(super::ops::ShapeError {
                    code: Code::BadShape,
                    message: "result too large (more than 2^40 elements)".into(),
                    operand: None,
                    param: None,
                });
            }
            Ok(s)
        });
        match result {
            Ok(shape) => {
                let shape_ok = self.check_mask_ranges(defs, i, &shapes, &shape);
                defs[i].shape = shape_ok.then_some(shape);
            }
            Err(e) => {
                let value_spans: Vec<&Span> = stmt
                    .operands
                    .iter()
                    .filter(|o| matches!(o, Operand::Value(_)))
                    .map(|o| &o.name().span)
                    .collect();
                let param_spans: Vec<&Span> = stmt
                    .operands
                    .iter()
                    .filter(|o| matches!(o, Operand::Param(_)))
                    .map(|o| &o.name().span)
                    .collect();
                let primary = match (e.operand, e.param) {
                    (Some(o), _) => value_spans[o].clone(),
                    (None, Some(p)) => param_spans[p].clone(),
                    (None, None) => stmt.op.span.clone(),
                };
                let mut d = Diagnostic::new(
                    e.code,
                    e.message,
                    primary,
                    format!("in this `{}`", stmt.op.text),
                );
                if let Some(p) = e.param {
                    let param = &params[param_ids[p]];
                    d = d.with_label(
                        param.span.clone(),
                        format!(
                            "`@{}` declared here as {}",
                            param.name,
                            super::ops::dims_text(&param.shape)
                        ),
                    );
                }
                // Point at the definitions of the operands involved (all of them for ops that
                // combine several tensors).
                let involved: Vec<usize> = match (e.operand, operands.len()) {
                    (_, n) if n > 1 => (0..n).collect(),
                    (Some(o), _) => vec![o],
                    _ => vec![],
                };
                for o in involved {
                    let def = &defs[operands[o]];
                    let shape = def
                        .shape
                        .as_deref()
                        .map(super::ops::dims_text)
                        .unwrap_or_default();
                    d = d.with_label(
                        def.name.span.clone(),
                        format!("`%{}` is defined here with shape {shape}", def.name.text),
                    );
                }
                self.error(d);
            }
        }
    }

    /// Checks masks against the inferred shapes; false if any mask is wrong.
    fn check_mask_ranges(
        &mut self,
        defs: &[Def],
        i: usize,
        inputs: &[&[usize]],
        out: &[usize],
    ) -> bool {
        let def = &defs[i];
        let mut ok = true;
        for (kind, mask) in [
            (MaskKind::KeepIn, &def.masks.keep_in),
            (MaskKind::KeepOut, &def.masks.keep_out),
        ] {
            let Some((values, spans, _)) = mask else {
                continue;
            };
            let (limit, what) = match kind {
                MaskKind::KeepIn => (inputs[0][1], "input channels"),
                MaskKind::KeepOut => (out[1], "output channels"),
            };
            if let Some(pos) = values.iter().position(|&v| v >= limit) {
                let mut d = Diagnostic::new(
                    Code::MaskOutOfRange,
                    format!(
                        "channel {} is out of range: this layer has {limit} {what}",
                        values[pos]
                    ),
                    spans[pos].clone(),
                    format!("must be below {limit}"),
                );
                if kind == MaskKind::KeepIn {
                    let src = &defs[def.operands.as_ref().expect("inferred")[0]];
                    d = d.with_label(
                        src.name.span.clone(),
                        format!("`%{}` has {limit} channels", src.name.text),
                    );
                }
                self.error(d);
                ok = false;
            }
        }
        ok
    }

    fn build(
        &mut self,
        model: &ast::Model,
        defs: Vec<Def>,
        params: Vec<Param>,
        weights_file: Option<(String, Span)>,
        outputs: Vec<Option<usize>>,
    ) -> Option<Program> {
        let mut graph = DiGraph::new();
        let mut index = Vec::with_capacity(defs.len());
        for def in &defs {
            index.push(graph.add_node(Node {
                name: def.name.text.clone(),
                op: def.op.clone()?,
                params: def.params.clone()?,
                shape: def.shape.clone()?,
                keep_in: def.masks.keep_in.as_ref().map(|m| m.0.clone()),
                keep_out: def.masks.keep_out.as_ref().map(|m| m.0.clone()),
                span: def.span.clone(),
            }));
        }
        for (i, def) in defs.iter().enumerate() {
            for (pos, &o) in def.operands.as_ref()?.iter().enumerate() {
                graph.add_edge(index[o], index[i], pos);
            }
        }
        let inputs = index[..model.inputs.len()].to_vec();
        let outputs = outputs
            .into_iter()
            .map(|o| o.map(|o| index[o]))
            .collect::<Option<Vec<_>>>()?;
        Some(Program {
            name: model.name.text.clone(),
            graph,
            inputs,
            outputs,
            params,
            weights_file,
        })
    }
}

/// Typed access to a statement's attributes; reports unknown, duplicate and ill-typed ones.
struct Attrs<'a, 'l> {
    cx: &'l mut Lowerer,
    stmt: &'a NodeStmt,
    ok: bool,
}

impl<'a, 'l> Attrs<'a, 'l> {
    fn new(cx: &'l mut Lowerer, stmt: &'a NodeStmt, allowed: &[&str]) -> Option<Self> {
        let mut ok = true;
        for (i, a) in stmt.attrs.iter().enumerate() {
            if !allowed.contains(&a.name.text.as_str()) {
                let note = if allowed.is_empty() {
                    format!("`{}` takes no attributes", stmt.op.text)
                } else {
                    format!("`{}` accepts: {}", stmt.op.text, allowed.join(", "))
                };
                cx.error(
                    Diagnostic::new(
                        Code::UnknownAttribute,
                        format!("unknown attribute `{}` for `{}`", a.name.text, stmt.op.text),
                        a.name.span.clone(),
                        "unknown attribute",
                    )
                    .with_note(note),
                );
                ok = false;
            } else if let Some(first) = stmt.attrs[..i].iter().find(|b| b.name.text == a.name.text)
            {
                cx.error(
                    Diagnostic::new(
                        Code::BadAttribute,
                        format!("attribute `{}` given twice", a.name.text),
                        a.name.span.clone(),
                        "given again here",
                    )
                    .with_label(first.name.span.clone(), "first given here"),
                );
                ok = false;
            }
        }
        ok.then_some(Attrs { cx, stmt, ok: true })
    }

    fn get(&self, name: &str) -> Option<&'a ast::Attr> {
        self.stmt.attrs.iter().find(|a| a.name.text == name)
    }

    fn bad(&mut self, name: &str, why: &str) {
        let span = self
            .get(name)
            .map(|a| a.value_span.clone())
            .unwrap_or(self.stmt.op.span.clone());
        self.cx.error(Diagnostic::new(
            Code::BadAttribute,
            format!("bad value for `{name}`: {why}"),
            span,
            why.to_string(),
        ));
        self.ok = false;
    }

    fn missing(&mut self, name: &str) {
        self.cx.error(Diagnostic::new(
            Code::BadAttribute,
            format!("`{}` needs the attribute `{name}`", self.stmt.op.text),
            self.stmt.op.span.clone(),
            format!("`{name}` missing"),
        ));
        self.ok = false;
    }

    fn int(&mut self, name: &str, default: usize, min: usize) -> usize {
        match self.get(name).map(|a| &a.value) {
            None => default,
            Some(AttrValue::Int(i)) if *i >= min as i64 && *i <= MAX_RANGE => *i as usize,
            Some(_) => {
                self.bad(
                    name,
                    &format!("expected an integer >= {min} (at most 2^24)"),
                );
                default
            }
        }
    }

    fn required_int(&mut self, name: &str, min: usize) -> usize {
        if self.get(name).is_none() {
            self.missing(name);
        }
        self.int(name, min, min)
    }

    /// An integer `n` (meaning `[n, n]`) or a list `[a, b]`.
    fn pair(&mut self, name: &str, default: [usize; 2], min: usize) -> [usize; 2] {
        let Some(attr) = self.get(name) else {
            return default;
        };
        let ints =
            int_list(&attr.value).filter(|v| v.iter().all(|&x| x >= min as i64 && x <= MAX_RANGE));
        match ints.as_deref() {
            Some([n]) => [*n as usize; 2],
            Some([a, b]) => [*a as usize, *b as usize],
            _ => {
                self.bad(
                    name,
                    &format!("expected an integer >= {min} (at most 2^24) or a list of two"),
                );
                default
            }
        }
    }

    fn required_pair(&mut self, name: &str) -> [usize; 2] {
        if self.get(name).is_none() {
            self.missing(name);
        }
        self.pair(name, [1, 1], 1)
    }

    /// `p` (all sides), `[ph, pw]`, or `[top, left, bottom, right]`.
    fn pads(&mut self, name: &str) -> [usize; 4] {
        let Some(attr) = self.get(name) else {
            return [0; 4];
        };
        let ints =
            int_list(&attr.value).filter(|v| v.iter().all(|&x| (0..=MAX_RANGE).contains(&x)));
        match ints.as_deref() {
            Some([p]) => [*p as usize; 4],
            Some([h, w]) => [*h as usize, *w as usize, *h as usize, *w as usize],
            Some([t, l, b, r]) => [*t as usize, *l as usize, *b as usize, *r as usize],
            _ => {
                self.bad(
                    name,
                    "expected p, [ph, pw] or [top, left, bottom, right] (integers >= 0)",
                );
                [0; 4]
            }
        }
    }

    fn float(&mut self, name: &str, default: f64) -> f64 {
        match self.get(name).map(|a| &a.value) {
            None => default,
            Some(AttrValue::Float(f)) if f.is_finite() && *f >= 0.0 => *f,
            Some(AttrValue::Int(i)) if *i >= 0 => *i as f64,
            Some(_) => {
                self.bad(name, "expected a non-negative number");
                default
            }
        }
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.get(name).map(|a| &a.value) {
            None => default,
            Some(AttrValue::Bool(b)) => *b,
            Some(_) => {
                self.bad(name, "expected `true` or `false`");
                default
            }
        }
    }

    /// A list of channel indices (ranges expanded).
    fn required_list(&mut self, name: &str) -> Vec<usize> {
        let Some(attr) = self.get(name) else {
            self.missing(name);
            return Vec::new();
        };
        let mut out = Vec::new();
        if let AttrValue::List(list) = &attr.value {
            for (item, _) in &list.items {
                match *item {
                    ListItem::Int(i) if (0..MAX_RANGE).contains(&i) => out.push(i as usize),
                    ListItem::Range(a, b)
                        if a >= 0
                            && a < b
                            && b - a <= MAX_RANGE
                            && out.len() <= MAX_RANGE as usize =>
                    {
                        out.extend(a as usize..b as usize)
                    }
                    _ => {
                        self.bad(
                            name,
                            "expected channel indices (integers >= 0 and ranges a..b)",
                        );
                        return Vec::new();
                    }
                }
            }
            if out.is_empty() {
                self.bad(name, "the list is empty");
            }
        } else {
            self.bad(name, "expected a list of channel indices");
        }
        out
    }

    /// True if every attribute was well-formed.
    fn finish(self) -> bool {
        self.ok
    }
}

fn int_list(v: &AttrValue) -> Option<Vec<i64>> {
    match v {
        AttrValue::Int(i) => Some(vec![*i]),
        AttrValue::List(l) => l
            .items
            .iter()
            .map(|(i, _)| {
                if let ListItem::Int(i) = i {
                    Some(*i)
                } else {
                    None
                }
            })
            .collect(),
        _ => None,
    }
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a typo.
fn closest<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c)
}
