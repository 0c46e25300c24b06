//! A program as the runtime runs it: a list of [`Unit`]s, one per kernel onnxruntime executes
//! after its fusions, each with a [`Kernel`] key (everything about the layer except its channel
//! counts) and the channel counts it reads and writes.
//!
//! Fusion follows onnxruntime's CPU graph optimizer: a conv2d absorbs the chain of single-user
//! ops after it that onnxruntime fuses into the conv kernel or runs next to it (a batch_norm, an
//! activation, a residual add, an activation after the add). The measured latency of a unit is
//! the time of all the kernels its ops become, so a fusion the runtime does or does not make is
//! measured, not modelled. `mul(x, sigmoid(x))` is one unit, a silu (onnxruntime's QuickGelu).
//! Every other op is a unit of its own; dropout (an Identity the runtime removes) is no unit at
//! all.
//!
//! Invariants: every non-input, non-dropout node is in exactly one unit; units come in the
//! topological order of their first nodes (a fused add may read a value computed later);
//! `c_in`/`c_out` are the channel counts of the unit's main input and of its output.

use crate::ir::{Activation, Op, Program};
use petgraph::graph::NodeIndex;
use serde::{Deserialize, Serialize};

/// An op fused into a conv2d unit, in order after the conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fused {
    BatchNorm,
    Relu,
    Relu6,
    Silu,
    Sigmoid,
    Hardswish,
    Hardsigmoid,
    /// A residual add whose other operand comes from elsewhere (same shape).
    Add,
    /// A product of two values of one shape (never fused; a pointwise unit of its own).
    Mul,
}

impl Fused {
    fn activation(a: Activation) -> Fused {
        match a {
            Activation::Relu => Fused::Relu,
            Activation::Relu6 => Fused::Relu6,
            Activation::Silu => Fused::Silu,
            Activation::Sigmoid => Fused::Sigmoid,
            Activation::HardSwish => Fused::Hardswish,
            Activation::HardSigmoid => Fused::Hardsigmoid,
        }
    }

    /// The `.nnir` op name.
    pub fn op_name(self) -> &'static str {
        match self {
            Fused::BatchNorm => "batch_norm",
            Fused::Relu => "relu",
            Fused::Relu6 => "relu6",
            Fused::Silu => "silu",
            Fused::Sigmoid => "sigmoid",
            Fused::Hardswish => "hardswish",
            Fused::Hardsigmoid => "hardsigmoid",
            Fused::Add => "add",
            Fused::Mul => "mul",
        }
    }

    fn is_activation(self) -> bool {
        !matches!(self, Fused::BatchNorm | Fused::Add | Fused::Mul)
    }
}

/// What a unit computes, without its channel counts: the key of a latency table entry.
/// `input` is the spatial size `[H, W]` of the unit's main input (`[1, 1]` for rank-2 values).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Kernel {
    /// A conv2d and the ops fused after it. `depthwise`: groups == C_in == C_out (then
    /// `groups` is 0, the count follows the width); otherwise `groups` as written.
    Conv {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 4],
        dilation: [usize; 2],
        depthwise: bool,
        groups: usize,
        bias: bool,
        input: [usize; 2],
        fused: Vec<Fused>,
    },
    Linear {
        bias: bool,
    },
    /// An activation, batch_norm or add/mul of equal shapes on its own.
    Pointwise {
        op: Fused,
        input: [usize; 2],
    },
    /// `mul` of `[N, C, H, W]` by `[N, C, 1, 1]` (a squeeze-excite gate).
    ScaleMul {
        input: [usize; 2],
    },
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 4],
        ceil_mode: bool,
        input: [usize; 2],
    },
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 4],
        ceil_mode: bool,
        count_include_pad: bool,
        input: [usize; 2],
    },
    GlobalAvgPool {
        input: [usize; 2],
    },
    /// `inputs` operands joined on channels; the width is the output's channel count.
    Concat {
        inputs: usize,
        input: [usize; 2],
    },
    /// A contiguous channel range (`c_in` source channels, `c_out` read).
    Slice {
        input: [usize; 2],
    },
    /// A channel gather or permutation (`c_in` source channels, `c_out` read).
    Gather {
        input: [usize; 2],
    },
    Flatten {
        input: [usize; 2],
    },
}

impl Kernel {
    /// Whether the unit has two independent widths (`c_in`, `c_out`); otherwise `c_in ==
    /// c_out` always (pointwise ops, pools, depthwise convs, concat).
    pub fn two_widths(&self) -> bool {
        match self {
            Kernel::Conv { depthwise, .. } => !depthwise,
            Kernel::Linear { .. } | Kernel::Slice { .. } | Kernel::Gather { .. } => true,
            _ => false,
        }
    }

    /// Whether the unit is a conv2d (the only kernels onnxruntime may run in its blocked
    /// NCHWc layout on its own; see [`super::predict`]).
    pub fn is_conv(&self) -> bool {
        matches!(self, Kernel::Conv { .. })
    }

    /// A one-line description, for reports.
    pub fn describe(&self) -> String {
        let hw = |i: &[usize; 2]| format!("{}x{}", i[0], i[1]);
        match self {
            Kernel::Conv {
                kernel,
                stride,
                depthwise,
                groups,
                input,
                fused,
                dilation,
                ..
            } => {
                let mut s = format!("conv {}x{}", kernel[0], kernel[1]);
                if stride != &[1, 1] {
                    s += &format!(" s{}", stride[0]);
                }
                if dilation != &[1, 1] {
                    s += &format!(" d{}", dilation[0]);
                }
                if *depthwise {
                    s += " dw";
                } else if *groups > 1 {
                    s += &format!(" g{groups}");
                }
                for f in fused {
                    s += "+";
                    s += f.op_name();
                }
                s + " @" + &hw(input)
            }
            Kernel::Linear { .. } => "linear".into(),
            Kernel::Pointwise { op, input } => format!("{} @{}", op.op_name(), hw(input)),
            Kernel::ScaleMul { input } => format!("mul (gate) @{}", hw(input)),
            Kernel::MaxPool { kernel, input, .. } => {
                format!("max_pool {}x{} @{}", kernel[0], kernel[1], hw(input))
            }
            Kernel::AvgPool { kernel, input, .. } => {
                format!("avg_pool {}x{} @{}", kernel[0], kernel[1], hw(input))
            }
            Kernel::GlobalAvgPool { input } => format!("global_avg_pool @{}", hw(input)),
            Kernel::Concat { inputs, input } => format!("concat x{inputs} @{}", hw(input)),
            Kernel::Slice { input } => format!("slice @{}", hw(input)),
            Kernel::Gather { input } => format!("gather @{}", hw(input)),
            Kernel::Flatten { input } => format!("flatten @{}", hw(input)),
        }
    }
}

/// One kernel of the program as the runtime runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub kernel: Kernel,
    /// The program's nodes in the unit, the first one (conv, op) first; its output is the
    /// last one's.
    pub nodes: Vec<NodeIndex>,
    /// The values the unit reads (main input first; a fused add's other operand; every
    /// operand of a concat or binary op).
    pub inputs: Vec<NodeIndex>,
    pub c_in: usize,
    pub c_out: usize,
}

impl Unit {
    /// The node whose value the unit produces.
    pub fn output(&self) -> NodeIndex {
        *self.nodes.last().expect("a unit has a node")
    }
}

fn spatial(shape: &[usize]) -> [usize; 2] {
    match shape {
        [_, _, h, w, ..] => [*h, *w],
        _ => [1, 1],
    }
}

/// The units of `program`, in topological order (see the module docs).
///
/// ```
/// use nnirc::latency::units::{units, Fused, Kernel};
/// let src = "model m(%x: f32[1, 8, 4, 4]) -> (%y) {\n  param @w: f32[8, 8, 3, 3]\n  \
///            %c = conv2d(%x, @w, padding=1)\n  %r = relu(%c)\n  %a = add(%r, %x)\n  \
///            %y = global_avg_pool(%a)\n}\n";
/// let program = nnirc::compile(src).program.unwrap();
/// let units = units(&program);
/// assert_eq!(units.len(), 2);
/// let Kernel::Conv { fused, .. } = &units[0].kernel else { panic!() };
/// assert_eq!(fused, &[Fused::Relu, Fused::Add]);
/// assert_eq!((units[0].c_in, units[0].c_out), (8, 8));
/// ```
pub fn units(program: &Program) -> Vec<Unit> {
    let mut taken = vec![false; program.graph.node_count()];
    let mut out = Vec::new();
    for n in program.topo_order() {
        if taken[n.index()] {
            continue;
        }
        let node = &program.graph[n];
        let operands = program.operands(n);
        let channels = |v: NodeIndex| program.graph[v].shape.get(1).copied().unwrap_or(1);
        let main = operands.first().copied();
        let input = main.map_or([1, 1], |m| spatial(&program.graph[m].shape));
        let c_in = main.map_or(0, channels);
        let c_out = node.shape.get(1).copied().unwrap_or(1);
        let kernel = match &node.op {
            Op::Input | Op::Dropout { .. } => continue,
            Op::Conv2d(c) => {
                let weight = program.param_shapes(n)[0];
                let depthwise = program.is_depthwise(n);
                let (nodes, inputs, fused) = fuse_after_conv(program, n, &taken);
                for &f in &nodes {
                    taken[f.index()] = true;
                }
                let last = *nodes.last().expect("the conv itself");
                out.push(Unit {
                    kernel: Kernel::Conv {
                        kernel: [weight[2], weight[3]],
                        stride: c.stride,
                        padding: c.padding,
                        dilation: c.dilation,
                        depthwise,
                        groups: if depthwise { 0 } else { c.groups },
                        bias: node.params.len() > 1,
                        input,
                        fused,
                    },
                    nodes,
                    inputs,
                    c_in,
                    c_out: channels(last),
                });
                continue;
            }
            Op::Linear => Kernel::Linear {
                bias: node.params.len() > 1,
            },
            Op::BatchNorm { .. } => Kernel::Pointwise {
                op: Fused::BatchNorm,
                input,
            },
            Op::Activation(Activation::Sigmoid) if swish_mul(program, n).is_some() => {
                // `mul(x, sigmoid(x))` is a silu: onnxruntime runs the pair as one kernel.
                let m = swish_mul(program, n).expect("checked");
                taken[n.index()] = true;
                taken[m.index()] = true;
                out.push(Unit {
                    kernel: Kernel::Pointwise {
                        op: Fused::Silu,
                        input,
                    },
                    nodes: vec![n, m],
                    inputs: operands,
                    c_in: c_out,
                    c_out,
                });
                continue;
            }
            Op::Activation(a) => Kernel::Pointwise {
                op: Fused::activation(*a),
                input,
            },
            Op::Add => Kernel::Pointwise {
                op: Fused::Add,
                input,
            },
            Op::Mul => {
                let shapes: Vec<&[usize]> = operands
                    .iter()
                    .map(|&o| program.graph[o].shape.as_slice())
                    .collect();
                if shapes.windows(2).all(|w| w[0] == w[1]) {
                    Kernel::Pointwise {
                        op: Fused::Mul,
                        input,
                    }
                } else {
                    let big = operands
                        .iter()
                        .copied()
                        .max_by_key(|&o| program.graph[o].shape.iter().product::<usize>())
                        .expect("mul has operands");
                    Kernel::ScaleMul {
                        input: spatial(&program.graph[big].shape),
                    }
                }
            }
            Op::Concat => Kernel::Concat {
                inputs: operands.len(),
                input,
            },
            Op::MaxPool2d(p) => Kernel::MaxPool {
                kernel: p.kernel,
                stride: p.stride,
                padding: p.padding,
                ceil_mode: p.ceil_mode,
                input,
            },
            Op::AvgPool2d(p) => Kernel::AvgPool {
                kernel: p.kernel,
                stride: p.stride,
                padding: p.padding,
                ceil_mode: p.ceil_mode,
                count_include_pad: p.count_include_pad,
                input,
            },
            Op::GlobalAvgPool | Op::AdaptiveAvgPool => Kernel::GlobalAvgPool { input },
            Op::Flatten => Kernel::Flatten { input },
            Op::Gather { .. } | Op::Permute { .. } => Kernel::Gather { input },
            Op::Slice { .. } => Kernel::Slice { input },
        };
        taken[n.index()] = true;
        let (c_in, c_out) = match &kernel {
            Kernel::Concat { .. } => (c_out, c_out),
            // A flatten's width is its feature count.
            Kernel::Flatten { .. } => (c_out, c_out),
            k if k.two_widths() => (c_in, c_out),
            _ => (c_out, c_out),
        };
        out.push(Unit {
            kernel,
            nodes: vec![n],
            inputs: operands,
            c_in,
            c_out,
        });
    }
    out
}

/// The `mul(x, sigmoid(x))` that sigmoid node `n` (of `x`) is the only use of, if any.
fn swish_mul(program: &Program, n: NodeIndex) -> Option<NodeIndex> {
    let x = *program.operands(n).first()?;
    if program.outputs.contains(&n) {
        return None;
    }
    let [m] = program.users(n)[..] else {
        return None;
    };
    let ops = program.operands(m);
    let is_pair = ops.len() == 2 && ops.contains(&x) && ops.contains(&n);
    (program.graph[m].op == Op::Mul && is_pair).then_some(m)
}

/// The conv `n` and the single-user chain fused after it: `[batch_norm] [activation] [add
/// [activation]]`, stopping at a model output or at a node with several users.
fn fuse_after_conv(
    program: &Program,
    n: NodeIndex,
    taken: &[bool],
) -> (Vec<NodeIndex>, Vec<NodeIndex>, Vec<Fused>) {
    let mut nodes = vec![n];
    let mut inputs = vec![program.operands(n)[0]];
    let mut fused: Vec<Fused> = Vec::new();
    let mut last = n;
    loop {
        if program.outputs.contains(&last) {
            break;
        }
        let users = program.users(last);
        let [next] = users[..] else { break };
        if taken[next.index()] {
            break;
        }
        let step = match &program.graph[next].op {
            Op::BatchNorm { .. } if fused.is_empty() => Fused::BatchNorm,
            Op::Activation(a)
                if fused.last().is_none_or(|f| !f.is_activation())
                    && fused.iter().filter(|f| f.is_activation()).count() < 2 =>
            {
                Fused::activation(*a)
            }
            Op::Add if !fused.contains(&Fused::Add) => {
                let ops = program.operands(next);
                let same = ops.len() == 2
                    && ops
                        .iter()
                        .all(|&o| program.graph[o].shape == program.graph[last].shape);
                // `add(x, x)` has no other operand: leave it a unit of its own.
                if !same || ops[0] == ops[1] {
                    break;
                }
                inputs.extend(ops.iter().copied().filter(|&o| o != last));
                Fused::Add
            }
            _ => break,
        };
        fused.push(step);
        nodes.push(next);
        last = next;
    }
    (nodes, inputs, fused)
}
