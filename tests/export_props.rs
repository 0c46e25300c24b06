//! Export property tests: random masked programs, exported in naive and upscale mode (both
//! solvers), print to text that checks and compute what the masked program computes (f64 to
//! 1e-10, f32 to 1e-4 relative).
//!
//! The generator builds a network block by block from a seed: conv/batch-norm/activation
//! chains, residual adds (identity, downsample and two- or three-producer shortcuts, model
//! inputs as shortcuts), DenseNet-like growing concats (chained or flat), fire modules,
//! squeeze-excite gates, inverted residuals with depthwise convs, grouped convs and depthwise
//! convs with a channel multiplier, pools, element-wise ties (product of two producers,
//! channel-wise broadcast, one-channel broadcast, a value with itself), hand-written
//! slice/gather/permute, side branches (extra outputs, sometimes dead), and flatten + linear heads
//! (per-feature batch norm, flattened features added to or concatenated with linear outputs or
//! other flattened maps, residuals over features). Masks come afterwards: `keep_in` on most
//! channel-mixing consumers (random, full, contiguous, prefix/suffix, all but one, or shared with
//! another consumer of the same tensor; for a linear after flatten, whole channels or any
//! features) and, now and then, `keep_out` on a producer (its removed channels may reach a
//! sigmoid, which the optimized program masks back to zero).
//! Shrunk failures live in `tests/data/export/` and run through the same check in
//! [`export_regressions`].
mod common;
use common::*;
use nnirc::optimize::{optimize, verify, Mode, OptimizeConfig};
use nnirc::solver::SolverKind;
use nnirc::tensor::SplitMix64;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// The export configurations every program goes through: mode, solver, channel alignment.
const CONFIGS: [(Mode, SolverKind, usize); 4] = [
    (Mode::Naive, SolverKind::Exact, 1),
    (Mode::Upscale, SolverKind::Exact, 1),
    (Mode::Upscale, SolverKind::Paper, 1),
    (Mode::Upscale, SolverKind::Exact, 4),
];

/// f32 deviations below this (absolute) pass whatever their relative size.
const F32_ABS_FLOOR: f64 = 1e-6;

/// Compiles `source` (it must check), exports it in every configuration and checks the result.
/// Panics with the source and the configuration on any failure. Returns how often each
/// rewrite rule of the read planner fired over the configurations (all verified).
fn check(source: &str, label: &str) -> BTreeMap<String, usize> {
    let mut fired = BTreeMap::new();
    let compiled = nnirc::compile(source);
    assert!(
        compiled.diagnostics.is_empty(),
        "{label}: the generated program does not check:\n{source}\n{:#?}",
        compiled.diagnostics
    );
    let program = compiled.program.expect("no diagnostics");
    let weights = nnirc::weights::random(&program, 7);
    for (mode, solver, channel_align) in CONFIGS {
        let config = OptimizeConfig {
            mode,
            solver,
            channel_align,
            ..Default::default()
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let exported = optimize(&program, &weights, &config).map_err(|e| e.to_string())?;
            for (rule, times) in exported.report.egraph.iter().flat_map(|e| &e.rules_fired) {
                *fired.entry(rule.clone()).or_insert(0) += times;
            }
            let text = nnirc::codegen::program_text(&exported.program, None);
            let again = nnirc::compile(&text);
            if !again.diagnostics.is_empty() {
                let codes: Vec<String> = again
                    .diagnostics
                    .iter()
                    .map(|d| format!("{:?}: {}", d.code, d.message))
                    .collect();
                return Err(format!(
                    "exported text does not check: {codes:?}\n--- exported ---\n{text}"
                ));
            }
            let d64 = verify::<f64>(&program, &weights, &exported.program, &exported.weights, 1)
                .map_err(|e| format!("verify f64: {e}"))?;
            if d64.max_rel > 1e-10 {
                return Err(format!("f64 deviation {d64:?}\n--- exported ---\n{text}"));
            }
            let d32 = verify::<f32>(&program, &weights, &exported.program, &exported.weights, 1)
                .map_err(|e| format!("verify f32: {e}"))?;
            // An output that nearly cancels (a hardswish near -3, a sum of opposite terms) can
            // magnify f32 rounding past 1e-4 relative when it is itself tiny; an absolute floor
            // far below the outputs' usual size keeps such cases from failing. Real export bugs
            // show in f64 at 1e-10.
            if d32.max_rel > 1e-4 && d32.max_abs > F32_ABS_FLOOR {
                return Err(format!("f32 deviation {d32:?}\n--- exported ---\n{text}"));
            }
            Ok(())
        }));
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("panic: {message}")
            }
        };
        panic!("{label} {mode:?} {solver:?} align {channel_align}: {failure}\n--- source ---\n{source}");
    }
    fired
}

// ---------------------------------------------------------------------------------------------
// The generator.

/// A value: rank 4 `[1, c, h, w]`, or rank 2 `[1, c]` (`h == w == 1`, `flat`).
#[derive(Debug, Clone)]
struct T {
    name: String,
    c: usize,
    h: usize,
    w: usize,
    flat: bool,
}

#[derive(Debug, Clone)]
struct Stmt {
    name: String,
    op: &'static str,
    values: Vec<String>,
    params: Vec<String>,
    attrs: Vec<String>,
    /// Channel-mixing (conv2d with groups == 1, linear): input entries and output channels.
    mix: Option<(usize, usize)>,
    keep_in: Option<Vec<usize>>,
    keep_out: Option<Vec<usize>>,
}

struct Gen {
    rng: SplitMix64,
    inputs: Vec<T>,
    params: Vec<String>,
    stmts: Vec<Stmt>,
    /// Every value so far, for extra consumers and outputs.
    values: Vec<T>,
    uses: HashMap<String, usize>,
    extra_outputs: Vec<String>,
    counter: usize,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: SplitMix64::new(seed),
            inputs: Vec::new(),
            params: Vec::new(),
            stmts: Vec::new(),
            values: Vec::new(),
            uses: HashMap::new(),
            extra_outputs: Vec::new(),
            counter: 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<'a, X>(&mut self, items: &'a [X]) -> &'a X {
        &items[self.below(items.len())]
    }

    /// A fresh model input of x's shape (rank 4 or rank 2).
    fn input_like(&mut self, x: &T) -> T {
        let mut t = self.input(x.c, x.h, x.w);
        t.flat = x.flat;
        self.inputs.last_mut().expect("just added").flat = x.flat;
        self.values.last_mut().expect("just added").flat = x.flat;
        t
    }

    fn input(&mut self, c: usize, h: usize, w: usize) -> T {
        let name = if self.inputs.is_empty() {
            "x".to_string()
        } else {
            format!("x{}", self.inputs.len())
        };
        let t = T {
            name,
            c,
            h,
            w,
            flat: false,
        };
        self.inputs.push(t.clone());
        self.values.push(t.clone());
        t
    }

    fn param(&mut self, name: String, shape: &[usize]) -> String {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        self.params
            .push(format!("param @{name}: f32[{}]", dims.join(", ")));
        name
    }

    #[allow(clippy::too_many_arguments)]
    fn stmt(
        &mut self,
        op: &'static str,
        values: &[&T],
        params: &[(&str, Vec<usize>)],
        attrs: Vec<String>,
        mix: Option<(usize, usize)>,
        out: (usize, usize, usize, bool),
    ) -> T {
        self.counter += 1;
        let name = format!("{op}_{}", self.counter);
        let params = params
            .iter()
            .map(|(suffix, shape)| self.param(format!("{name}.{suffix}"), shape))
            .collect();
        for v in values {
            *self.uses.entry(v.name.clone()).or_default() += 1;
        }
        self.stmts.push(Stmt {
            name: name.clone(),
            op,
            values: values.iter().map(|v| v.name.clone()).collect(),
            params,
            attrs,
            mix,
            keep_in: None,
            keep_out: None,
        });
        let t = T {
            name,
            c: out.0,
            h: out.1,
            w: out.2,
            flat: out.3,
        };
        self.values.push(t.clone());
        t
    }

    // ---- ops

    /// conv2d with a `k x k` kernel, padding `k / 2`.
    fn conv(&mut self, x: &T, cout: usize, k: usize, stride: usize, groups: usize) -> T {
        let pad = k / 2;
        let h = (x.h + 2 * pad - k) / stride + 1;
        let w = (x.w + 2 * pad - k) / stride + 1;
        let mut params = vec![("weight", vec![cout, x.c / groups, k, k])];
        if self.percent(40) {
            params.push(("bias", vec![cout]));
        }
        let mut attrs = Vec::new();
        if stride != 1 {
            attrs.push(format!("stride={stride}"));
        }
        if pad != 0 {
            attrs.push(format!("padding={pad}"));
        }
        if groups != 1 {
            attrs.push(format!("groups={groups}"));
        }
        let mix = (groups == 1).then_some((x.c, cout));
        self.stmt("conv2d", &[x], &params, attrs, mix, (cout, h, w, false))
    }

    /// A 1x1 or 3x3 conv, stride 1.
    fn conv_any(&mut self, x: &T, cout: usize) -> T {
        let k = if self.percent(50) { 1 } else { 3 };
        self.conv(x, cout, k, 1, 1)
    }

    fn bn(&mut self, x: &T) -> T {
        let c = x.c;
        let params = [
            ("weight", vec![c]),
            ("bias", vec![c]),
            ("running_mean", vec![c]),
            ("running_var", vec![c]),
        ];
        let attrs = if self.percent(30) {
            vec!["eps=1e-3".to_string()]
        } else {
            Vec::new()
        };
        self.stmt("batch_norm", &[x], &params, attrs, None, shape(x))
    }

    fn act(&mut self, x: &T) -> T {
        let op = *self.pick(&["relu", "relu", "relu6", "silu", "hardswish"]);
        self.stmt(op, &[x], &[], Vec::new(), None, shape(x))
    }

    fn maybe_bn_act(&mut self, x: &T) -> T {
        let mut t = x.clone();
        if self.percent(70) {
            t = self.bn(&t);
        }
        if self.percent(70) {
            t = self.act(&t);
        }
        if self.percent(5) {
            t = self.stmt("dropout", &[&t], &[], Vec::new(), None, shape(&t));
        }
        t
    }

    fn add(&mut self, a: &T, b: &T) -> T {
        let (a, b) = if self.percent(50) { (a, b) } else { (b, a) };
        self.stmt("add", &[a, b], &[], Vec::new(), None, shape(a))
    }

    fn concat(&mut self, parts: &[&T]) -> T {
        let c = parts.iter().map(|p| p.c).sum();
        let (h, w, flat) = (parts[0].h, parts[0].w, parts[0].flat);
        self.stmt("concat", parts, &[], Vec::new(), None, (c, h, w, flat))
    }

    fn linear(&mut self, x: &T, out: usize) -> T {
        let mut params = vec![("weight", vec![out, x.c])];
        if self.percent(60) {
            params.push(("bias", vec![out]));
        }
        self.stmt(
            "linear",
            &[x],
            &params,
            Vec::new(),
            Some((x.c, out)),
            (out, 1, 1, true),
        )
    }

    fn global_pool(&mut self, x: &T) -> T {
        if self.percent(25) {
            let attrs = if self.percent(50) {
                vec!["size=1".to_string()]
            } else {
                Vec::new()
            };
            self.stmt(
                "adaptive_avg_pool",
                &[x],
                &[],
                attrs,
                None,
                (x.c, 1, 1, false),
            )
        } else {
            self.stmt(
                "global_avg_pool",
                &[x],
                &[],
                Vec::new(),
                None,
                (x.c, 1, 1, false),
            )
        }
    }

    /// A max or average pool with a valid window, or `x` itself if none fits.
    fn pool(&mut self, x: &T) -> T {
        let op = if self.percent(50) {
            "max_pool2d"
        } else {
            "avg_pool2d"
        };
        let choice = self.below(4);
        let (k, s, p, ceil) = match choice {
            0 => (2, 2, 0, false),
            1 => (3, 1, 1, false),
            2 => (3, 2, 1, false),
            _ => (2, 2, 0, true),
        };
        let size = |n: usize| -> Option<usize> {
            if n + 2 * p < k {
                return None;
            }
            let span = n + 2 * p - k;
            let mut out = if ceil {
                span.div_ceil(s) + 1
            } else {
                span / s + 1
            };
            if ceil && (out - 1) * s >= n + p {
                out -= 1;
            }
            Some(out)
        };
        let (Some(h), Some(w)) = (size(x.h), size(x.w)) else {
            return x.clone();
        };
        let mut attrs = vec![format!("kernel={k}")];
        if s != k {
            attrs.push(format!("stride={s}"));
        }
        if p != 0 {
            attrs.push(format!("padding={p}"));
        }
        if ceil {
            attrs.push("ceil_mode=true".to_string());
        }
        if op == "avg_pool2d" && p != 0 && self.percent(50) {
            attrs.push("count_include_pad=false".to_string());
        }
        self.stmt(op, &[x], &[], attrs, None, (x.c, h, w, false))
    }

    fn channels(&mut self) -> usize {
        self.range(2, 12)
    }

    // ---- blocks (each takes the running value and returns the next one)

    /// conv -> [bn] -> [act], sometimes strided or changing the channel count.
    fn conv_block(&mut self, x: &T) -> T {
        let cout = if self.percent(50) {
            x.c
        } else {
            self.channels()
        };
        let stride = if x.h >= 4 && x.w >= 4 && self.percent(25) {
            2
        } else {
            1
        };
        let k = if self.percent(50) { 1 } else { 3 };
        let c = self.conv(x, cout, k, stride, 1);
        let t = self.maybe_bn_act(&c);
        if self.percent(20) {
            return self.pool(&t);
        }
        t
    }

    /// ResNet basic block: identity or downsample shortcut.
    fn residual(&mut self, x: &T) -> T {
        let mid = self.channels();
        let downsample = self.percent(35);
        let (cout, stride) = if downsample {
            let s = if x.h >= 4 && x.w >= 4 && self.percent(50) {
                2
            } else {
                1
            };
            (self.channels(), s)
        } else {
            (x.c, 1)
        };
        let a = self.conv(x, mid, 3, stride, 1);
        let a = self.maybe_bn_act(&a);
        let b = self.conv_any(&a, cout);
        let b = if self.percent(70) { self.bn(&b) } else { b };
        let shortcut = if downsample {
            let d = self.conv(x, cout, 1, stride, 1);
            if self.percent(70) {
                self.bn(&d)
            } else {
                d
            }
        } else {
            x.clone()
        };
        let s = self.add(&b, &shortcut);
        if self.percent(70) {
            self.act(&s)
        } else {
            s
        }
    }

    /// Two or three fresh producers tied through adds (no identity shortcut).
    fn multi_add(&mut self, x: &T) -> T {
        let cout = self.channels();
        let n = self.range(2, 3);
        let mut sum: Option<T> = None;
        for _ in 0..n {
            // Sometimes read an earlier value of the same spatial size instead of x.
            let src = self.same_size(x);
            let p = self.conv_any(&src, cout);
            let p = if self.percent(50) { self.bn(&p) } else { p };
            sum = Some(match sum {
                None => p,
                Some(s) => self.add(&s, &p),
            });
        }
        sum.expect("n >= 2")
    }

    /// Several consumers of x (Inception-like branches), joined by a concat or an add.
    fn fanout(&mut self, x: &T) -> T {
        let n = self.range(2, 5);
        let same = self.percent(50);
        let width = self.range(2, 6);
        let mut branches = Vec::new();
        for _ in 0..n {
            let c = if same { width } else { self.range(2, 6) };
            let b = self.conv_any(x, c);
            let b = self.maybe_bn_act(&b);
            branches.push(b);
        }
        if same && self.percent(50) {
            let mut sum = branches[0].clone();
            for b in &branches[1..] {
                sum = self.add(&sum, b);
            }
            return sum;
        }
        let refs: Vec<&T> = branches.iter().collect();
        self.concat(&refs)
    }

    /// A rank-4 value with x's spatial size (x itself or an earlier one).
    fn same_size(&mut self, x: &T) -> T {
        let candidates: Vec<T> = self
            .values
            .iter()
            .filter(|v| !v.flat && v.h == x.h && v.w == x.w)
            .cloned()
            .collect();
        if self.percent(60) || candidates.is_empty() {
            x.clone()
        } else {
            self.pick(&candidates).clone()
        }
    }

    /// DenseNet: every layer reads the concat of the block input and all previous layers'
    /// outputs (a chained or a flat concat), then a transition.
    fn dense(&mut self, x: &T) -> T {
        let layers = self.range(2, 4);
        let growth = self.range(2, 4);
        let flat = self.percent(50);
        let mut parts = vec![x.clone()];
        let mut cat = x.clone();
        for _ in 0..layers {
            if cat.c + growth > 20 {
                break;
            }
            let h = self.maybe_bn_act(&cat);
            let f = self.conv_any(&h, growth);
            cat = if flat {
                parts.push(f);
                let refs: Vec<&T> = parts.iter().collect();
                self.concat(&refs)
            } else {
                self.concat(&[&cat, &f])
            };
        }
        if self.percent(50) {
            let cout = self.channels();
            let t = self.maybe_bn_act(&cat);
            let t = self.conv(&t, cout, 1, 1, 1);
            if self.percent(50) {
                return self.pool(&t);
            }
            return t;
        }
        cat
    }

    /// SqueezeNet fire: squeeze 1x1, then expand 1x1 and expand 3x3, concatenated.
    fn fire(&mut self, x: &T) -> T {
        let s = self.range(2, 6);
        let sq = self.conv(x, s, 1, 1, 1);
        let sq = self.act(&sq);
        let e1 = self.range(2, 6);
        let e3 = self.range(2, 6);
        let a = self.conv(&sq, e1, 1, 1, 1);
        let a = self.act(&a);
        let b = self.conv(&sq, e3, 3, 1, 1);
        let b = self.act(&b);
        self.concat(&[&a, &b])
    }

    /// Squeeze-excite: pool -> conv -> act -> conv -> sigmoid/hardsigmoid -> mul with x.
    fn se(&mut self, x: &T) -> T {
        let p = self.global_pool(x);
        let r = self.range(1, (x.c / 2).max(1));
        let f1 = self.conv(&p, r, 1, 1, 1);
        let op = *self.pick(&["silu", "relu"]);
        let a = self.stmt(op, &[&f1], &[], Vec::new(), None, shape(&f1));
        let f2 = self.conv(&a, x.c, 1, 1, 1);
        let gate = *self.pick(&["sigmoid", "hardsigmoid"]);
        let g = self.stmt(gate, &[&f2], &[], Vec::new(), None, shape(&f2));
        let (a, b) = if self.percent(70) { (x, &g) } else { (&g, x) };
        self.stmt("mul", &[a, b], &[], Vec::new(), None, shape(x))
    }

    /// A spatial gate: a one-channel sigmoid map broadcast over x's channels.
    fn spatial_gate(&mut self, x: &T) -> T {
        let m = self.conv(x, 1, 1, 1, 1);
        let g = self.stmt("sigmoid", &[&m], &[], Vec::new(), None, shape(&m));
        self.stmt("mul", &[x, &g], &[], Vec::new(), None, shape(x))
    }

    /// MobileNet-v2 / EfficientNet block: expand, depthwise, [SE], project, [+ x].
    fn inverted(&mut self, x: &T) -> T {
        let e = self.range(x.c.max(2), x.c.max(12));
        let mut t = x.clone();
        if self.percent(80) {
            t = self.conv(&t, e, 1, 1, 1);
            t = self.maybe_bn_act(&t);
        }
        let stride = if t.h >= 4 && t.w >= 4 && self.percent(25) {
            2
        } else {
            1
        };
        let dw = self.conv(&t, t.c, 3, stride, t.c);
        let mut t = self.maybe_bn_act(&dw);
        if self.percent(50) {
            t = self.se(&t);
        }
        let cout = if self.percent(60) {
            x.c
        } else {
            self.channels()
        };
        let p = self.conv(&t, cout, 1, 1, 1);
        let p = if self.percent(70) { self.bn(&p) } else { p };
        if p.c == x.c && p.h == x.h && p.w == x.w && self.percent(80) {
            self.add(&p, x)
        } else {
            p
        }
    }

    /// A grouped conv (groups 2) or a depthwise conv with a channel multiplier of 2.
    fn grouped(&mut self, x: &T) -> T {
        if self.percent(30) {
            let k = if self.percent(50) { 1 } else { 3 };
            let g = self.conv(x, 2 * x.c, k, 1, x.c);
            return self.maybe_bn_act(&g);
        }
        let x = if x.c.is_multiple_of(2) {
            x.clone()
        } else {
            let c = 2 * self.range(1, 6);
            self.conv_any(x, c)
        };
        let cout = 2 * self.range(1, 6);
        let k = if self.percent(50) { 1 } else { 3 };
        let g = self.conv(&x, cout, k, 1, 2);
        self.maybe_bn_act(&g)
    }

    /// A side branch: a consumer of some earlier rank-4 value, left as an extra output.
    fn side(&mut self) {
        let candidates: Vec<T> = self.values.iter().filter(|v| !v.flat).cloned().collect();
        let v = self.pick(&candidates).clone();
        let c = self.channels();
        let t = self.conv_any(&v, c);
        if self.percent(50) {
            self.act(&t);
        }
    }

    /// Element-wise combinations that tie channels: a product of two producers, a
    /// channel-wise (spatially broadcast) add or mul, or a one-channel broadcast.
    fn elementwise(&mut self, x: &T) -> T {
        match self.below(4) {
            0 => {
                let a = self.conv_any(x, x.c);
                let b = self.conv_any(x, x.c);
                let b = self.act(&b);
                self.stmt("mul", &[&a, &b], &[], Vec::new(), None, shape(x))
            }
            1 => {
                // A per-channel bias from a pooled producer: [1, C, 1, 1] + [1, C, H, W].
                let p = self.global_pool(x);
                let b = self.conv(&p, x.c, 1, 1, 1);
                let op = if self.percent(50) { "add" } else { "mul" };
                let (l, r) = if self.percent(50) { (x, &b) } else { (&b, x) };
                self.stmt(op, &[l, r], &[], Vec::new(), None, shape(x))
            }
            2 => {
                // One channel broadcast over all of x's channels (an irregular tie).
                let m = self.conv_any(x, 1);
                let op = if self.percent(50) { "add" } else { "mul" };
                self.stmt(op, &[x, &m], &[], Vec::new(), None, shape(x))
            }
            _ => {
                // A value combined with itself, or concatenated with itself.
                if self.percent(50) {
                    self.stmt("add", &[x, x], &[], Vec::new(), None, shape(x))
                } else {
                    self.concat(&[x, x])
                }
            }
        }
    }

    /// A hand-written layout op on x: slice, gather (maybe repeating channels) or permute.
    fn layout(&mut self, x: &T) -> T {
        let (op, attrs, c) = match self.below(3) {
            0 => {
                let a = self.below(x.c);
                let b = self.range(a + 1, x.c);
                (
                    "slice",
                    vec![format!("start={a}"), format!("end={b}")],
                    b - a,
                )
            }
            1 => {
                let n = self.range(1, x.c + 2);
                let idx: Vec<String> = (0..n).map(|_| self.below(x.c).to_string()).collect();
                ("gather", vec![format!("indices=[{}]", idx.join(", "))], n)
            }
            _ => {
                let mut order: Vec<usize> = (0..x.c).collect();
                for i in (1..order.len()).rev() {
                    let j = self.below(i + 1);
                    order.swap(i, j);
                }
                let idx: Vec<String> = order.iter().map(|i| i.to_string()).collect();
                ("permute", vec![format!("order=[{}]", idx.join(", "))], x.c)
            }
        };
        let t = self.stmt(op, &[x], &[], attrs, None, (c, x.h, x.w, x.flat));
        if self.percent(50) {
            let c = self.channels();
            let y = if t.flat {
                self.linear(&t, c)
            } else {
                self.conv_any(&t, c)
            };
            return self.maybe_bn_act(&y);
        }
        t
    }

    /// A fresh model input of x's shape, added (or concatenated) to x, directly or through a
    /// producer.
    fn input_residual(&mut self, x: &T) -> T {
        let y = self.input_like(x);
        match self.below(3) {
            0 => self.add(x, &y),
            1 => {
                let c = if x.flat {
                    self.linear(&y, x.c)
                } else {
                    self.conv_any(&y, x.c)
                };
                let s = self.add(x, &c);
                self.add(&s, &y)
            }
            _ => self.concat(&[x, &y]),
        }
    }

    fn flatten(&mut self, x: &T) -> T {
        let x = if self.percent(50) || x.c * x.h * x.w > 150 {
            self.global_pool(x)
        } else {
            x.clone()
        };
        self.stmt(
            "flatten",
            &[&x],
            &[],
            Vec::new(),
            None,
            (x.c * x.h * x.w, 1, 1, true),
        )
    }

    /// flatten (after a global pool, or of the whole map) -> [per-feature ops, layout ops,
    /// feature concats and adds] -> linear layers.
    fn head(&mut self, x: &T) -> T {
        let f = self.flatten(x);
        let mut t = f.clone();
        if self.percent(20) {
            t = self.bn(&t);
        }
        if self.percent(20) {
            t = self.act(&t);
        }
        if self.percent(10) {
            t = self.layout(&t);
        }
        match self.below(6) {
            0 => {
                // Flattened features plus a linear's output of the same width.
                let l = self.linear(&t, t.c);
                t = self.add(&t, &l);
            }
            1 => {
                // Flattened features next to a linear's output.
                let width = self.range(2, 6);
                let l = self.linear(&t, width);
                t = if self.percent(50) {
                    self.concat(&[&t, &l])
                } else {
                    self.concat(&[&l, &t])
                };
            }
            2 => {
                // Two flattened maps side by side (maybe with different spatial sizes).
                let candidates: Vec<T> = self.values.iter().filter(|v| !v.flat).cloned().collect();
                let v = self.pick(&candidates).clone();
                let g = self.flatten(&v);
                t = if self.percent(50) {
                    self.concat(&[&t, &g])
                } else {
                    self.concat(&[&g, &t])
                };
            }
            _ => {}
        }
        let hidden = self.range(2, 12);
        t = self.linear(&t, hidden);
        if self.percent(40) {
            t = self.bn(&t);
        }
        if self.percent(60) {
            t = self.act(&t);
        }
        if self.percent(20) {
            let p = self.range(1, 5);
            t = self.stmt(
                "dropout",
                &[&t],
                &[],
                vec![format!("p=0.{p}")],
                None,
                shape(&t),
            );
        }
        if self.percent(10) {
            // A rank-2 model input joined to the features.
            t = self.input_residual(&t);
        }
        if self.percent(30) {
            // A residual over features.
            let u = self.linear(&t, t.c);
            let u = if self.percent(50) { self.act(&u) } else { u };
            t = self.add(&u, &t);
        }
        if self.percent(20) {
            // Two heads concatenated.
            let width = self.range(2, 6);
            let other = self.linear(&f, width);
            t = self.concat(&[&t, &other]);
        }
        if self.percent(70) {
            let classes = self.range(2, 10);
            t = self.linear(&t, classes);
        }
        t
    }

    // ---- masks and text

    /// A non-empty, sorted subset of `0..n`.
    fn subset(&mut self, n: usize) -> Vec<usize> {
        match self.below(7) {
            0 => (0..n).collect(),
            1 | 2 => {
                let a = self.below(n);
                let b = self.range(a + 1, n);
                (a..b).collect()
            }
            3 => {
                if self.percent(50) {
                    (0..self.range(1, n)).collect()
                } else {
                    (self.below(n)..n).collect()
                }
            }
            4 => {
                let skip = self.below(n);
                let all: Vec<usize> = (0..n).filter(|&i| i != skip || n == 1).collect();
                all
            }
            _ => {
                let p = self.range(20, 90);
                let mut s: Vec<usize> = (0..n).filter(|_| self.percent(p)).collect();
                if s.is_empty() {
                    s.push(self.below(n));
                }
                s
            }
        }
    }

    /// Feature masks for a linear after flatten: whole channels, or any features.
    fn feature_subset(&mut self, features: usize, per: usize) -> Vec<usize> {
        if per > 1 && self.percent(50) {
            let channels = self.subset(features / per);
            return channels
                .iter()
                .flat_map(|&c| c * per..(c + 1) * per)
                .collect();
        }
        self.subset(features)
    }

    fn assign_masks(&mut self) {
        // Features per channel of every flat value that comes straight from a flatten.
        let mut per: HashMap<String, usize> = HashMap::new();
        for s in &self.stmts {
            if s.op == "flatten" {
                let src = self
                    .values
                    .iter()
                    .find(|v| v.name == s.values[0])
                    .expect("operand");
                per.insert(s.name.clone(), src.h * src.w);
            }
        }
        let mut previous: HashMap<String, Vec<usize>> = HashMap::new();
        for i in 0..self.stmts.len() {
            let Some((cin, cout)) = self.stmts[i].mix else {
                continue;
            };
            let input = self.stmts[i].values[0].clone();
            if self.percent(75) {
                let mask = match previous.get(&input) {
                    Some(m) if self.percent(30) => m.clone(),
                    _ => match per.get(&input) {
                        Some(&p) => self.feature_subset(cin, p),
                        None => self.subset(cin),
                    },
                };
                previous.insert(input, mask.clone());
                self.stmts[i].keep_in = Some(mask);
            }
            if self.percent(25) {
                self.stmts[i].keep_out = Some(self.subset(cout));
            }
        }
    }

    /// The program text; `order` lists the statements in the order they are written.
    fn text(&self, outputs: &[String], order: &[usize]) -> String {
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|t| match t.flat {
                true => format!("%{}: f32[1, {}]", t.name, t.c),
                false => format!("%{}: f32[1, {}, {}, {}]", t.name, t.c, t.h, t.w),
            })
            .collect();
        let outs: Vec<String> = outputs.iter().map(|o| format!("%{o}")).collect();
        let mut s = format!(
            "model gen({}) -> ({}) {{\n",
            inputs.join(", "),
            outs.join(", ")
        );
        for p in &self.params {
            s += &format!("  {p}\n");
        }
        for st in order.iter().map(|&i| &self.stmts[i]) {
            let mut args: Vec<String> = st.values.iter().map(|v| format!("%{v}")).collect();
            args.extend(st.params.iter().map(|p| format!("@{p}")));
            args.extend(st.attrs.iter().cloned());
            s += &format!("  %{} = {}({})", st.name, st.op, args.join(", "));
            let list = |m: &[usize]| {
                m.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if let Some(m) = &st.keep_in {
                s += &format!(" keep_in=[{}]", list(m));
            }
            if let Some(m) = &st.keep_out {
                s += &format!(" keep_out=[{}]", list(m));
            }
            s += "\n";
        }
        s += "}\n";
        s
    }
}

fn shape(x: &T) -> (usize, usize, usize, bool) {
    (x.c, x.h, x.w, x.flat)
}

/// A random masked program (text) from `seed`, with `blocks` blocks before the head. A program
/// with fewer blocks from the same seed starts with the same blocks (so proptest shrinks well).
fn generate(seed: u64, blocks: usize) -> String {
    let mut g = Gen::new(seed);
    let (c, h, w) = (g.channels(), g.range(3, 6), g.range(3, 6));
    let mut cur = g.input(c, h, w);
    for _ in 0..blocks {
        cur = match g.below(15) {
            0 | 1 => g.conv_block(&cur),
            2 | 3 => g.residual(&cur),
            4 => g.multi_add(&cur),
            5 => g.dense(&cur),
            6 => g.fire(&cur),
            7 => g.se(&cur),
            8 => g.inverted(&cur),
            9 => {
                if g.percent(70) {
                    g.grouped(&cur)
                } else {
                    g.spatial_gate(&cur)
                }
            }
            10 => {
                if g.percent(50) {
                    g.pool(&cur)
                } else {
                    g.input_residual(&cur)
                }
            }
            11 => g.elementwise(&cur),
            12 => g.layout(&cur),
            13 => g.fanout(&cur),
            _ => {
                g.side();
                cur
            }
        };
        if cur.c > 16 {
            let c = g.channels();
            cur = g.conv(&cur, c, 1, 1, 1);
        }
    }
    if g.percent(60) {
        cur = g.head(&cur);
    }
    if g.percent(20) {
        let pick = g.below(g.values.len());
        let name = g.values[pick].name.clone();
        g.extra_outputs.push(name);
    }
    g.assign_masks();
    // Outputs: the final value, most values nothing reads (the others are dead branches), and
    // maybe one intermediate.
    let mut outputs = vec![cur.name.clone()];
    let leaves: Vec<String> = g
        .values
        .iter()
        .filter(|v| !g.uses.contains_key(&v.name) && v.name != cur.name)
        .map(|v| v.name.clone())
        .collect();
    for v in leaves {
        if g.percent(80) {
            outputs.push(v);
        }
    }
    for o in &g.extra_outputs {
        if !outputs.contains(o) {
            outputs.push(o.clone());
        }
    }
    // Statements may appear in any order: now and then write them shuffled.
    let mut order: Vec<usize> = (0..g.stmts.len()).collect();
    if g.percent(15) {
        for i in (1..order.len()).rev() {
            let j = g.below(i + 1);
            order.swap(i, j);
        }
    }
    g.text(&outputs, &order)
}

// ---------------------------------------------------------------------------------------------
// The tests.

proptest! {
    // A failure prints its seed and block count and the program; explore further with
    // PROPTEST_CASES=N.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_programs_export_exactly(seed in any::<u64>(), blocks in 1usize..=8) {
        check(&generate(seed, blocks), &format!("seed {seed}, {blocks} blocks"));
    }
}

/// Also: every rule family of the read planner is checked against the interpreter here, since
/// every rule fires on some of these programs, whose exports all verify.
#[test]
fn fixed_seeds_export_exactly() {
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 0..100u64 {
        let blocks = 1 + seed as usize % 8;
        let label = format!("seed {seed}, {blocks} blocks");
        for (rule, times) in check(&generate(seed, blocks), &label) {
            *fired.entry(rule).or_insert(0) += times;
        }
    }
    assert_eq!(
        fired.len(),
        nnirc::egraph::rules::rules().len(),
        "{fired:?}"
    );
    for (rule, times) in &fired {
        assert!(
            *times > 0,
            "rule {rule} never fires on the random programs: {fired:?}"
        );
    }
}

/// Shrunk failures found by the property tests, one file each.
#[test]
fn export_regressions() {
    let files = nnir_files("tests/data/export");
    assert!(
        !files.is_empty(),
        "no regression files in tests/data/export"
    );
    let mut failures = Vec::new();
    for path in &files {
        let source = std::fs::read_to_string(path).unwrap();
        let label = rel(path);
        let result = std::panic::catch_unwind(|| check(&source, &label));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "panic".to_string());
            failures.push(message);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} regression files fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
