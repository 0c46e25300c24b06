//! Abstract syntax of `.nnir`, as written: every node carries its byte span.
//!
//! The AST knows nothing of ops, shapes or weights; it is what the parser saw. Names are
//! stored without their sigils (`%`, `@`).

pub use super::lexer::Span;

/// A name with its span (without the `%` or `@` sigil).
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

/// A parsed file: at most one model (none when the header itself did not parse).
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub model: Option<Model>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: Name,
    pub inputs: Vec<InputDecl>,
    pub outputs: Vec<Name>,
    /// Statements that parsed; a statement with a syntax error is left out (and reported).
    pub items: Vec<Item>,
    pub span: Span,
}

/// `%x: f32[1, 3, 224, 224]` in the model header.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDecl {
    pub name: Name,
    pub ty: TensorType,
}

/// `f32[64, 3, 7, 7]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorType {
    pub dtype: Name,
    pub dims: Vec<(i64, Span)>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Weights(WeightsDecl),
    Param(ParamDecl),
    Node(NodeStmt),
    /// A statement `%name = ...` with a syntax error after the `=` (already reported).
    Broken(BrokenStmt),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Weights(w) => w.span.clone(),
            Item::Param(p) => p.span.clone(),
            Item::Node(n) => n.span.clone(),
            Item::Broken(b) => b.span.clone(),
        }
    }
}

/// `weights "block.safetensors"`: where file-bound parameters are read from.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightsDecl {
    pub path: String,
    pub path_span: Span,
    pub span: Span,
}

/// `param @conv1.weight: f32[64, 64, 3, 3]` (bound to the weights file) or
/// `param @w: f32[2, 1] = [0.5, -1]` (inline).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDecl {
    pub name: Name,
    pub ty: TensorType,
    pub init: Option<List>,
    pub span: Span,
}

/// `%a = conv2d(%x, @w, stride=2) keep_in=[0..40, 45]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStmt {
    pub result: Name,
    pub op: Name,
    pub operands: Vec<Operand>,
    pub attrs: Vec<Attr>,
    pub masks: Vec<Mask>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Value(Name),
    Param(Name),
}

impl Operand {
    pub fn name(&self) -> &Name {
        match self {
            Operand::Value(n) | Operand::Param(n) => n,
        }
    }
}

/// What is left of a statement that did not parse: the name it defines.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokenStmt {
    pub result: Name,
    pub span: Span,
}

/// `stride=2`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub name: Name,
    pub value: AttrValue,
    pub value_span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    List(List),
}

/// `[0..40, 45, 1.5]`: a bracketed list of numbers and half-open integer ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct List {
    pub items: Vec<(ListItem, Span)>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ListItem {
    Int(i64),
    Float(f64),
    /// `a..b`, half-open.
    Range(i64, i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// `keep_in`: the input channels (or features) a consumer keeps.
    KeepIn,
    /// `keep_out`: the output channels a producer keeps.
    KeepOut,
}

impl MaskKind {
    pub fn keyword(self) -> &'static str {
        match self {
            MaskKind::KeepIn => "keep_in",
            MaskKind::KeepOut => "keep_out",
        }
    }
}

/// `keep_in=[0..40, 45, 50..64]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub kind: MaskKind,
    pub list: List,
    pub span: Span,
}

/// A call argument before it is sorted into operands and attributes (parser only).
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Operand(Operand),
    Attr(Attr),
}
