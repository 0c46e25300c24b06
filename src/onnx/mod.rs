//! ONNX interchange: [`export`] writes a checked [`Program`](crate::ir::Program) and its
//! weights as an ONNX model (opset 17); [`import`] reads an ONNX model back as `.nnir` text,
//! a program and its weights; [`apply_masks`] sets `keep_in` masks on an import from a JSON
//! spec that names layers by their `.nnir` or ONNX weight names.
//!
//! Export invariant: the ONNX graph computes what the reference interpreter computes for the
//! *masked program* (docs/nnir.md section 9.3): masks become zeroed weight slices, and channels
//! removed by `keep_out` stay zero downstream (folded into batch norm and depthwise conv
//! params, or an explicit `Mul` by a 0/1 channel mask where an op would bring them back, such
//! as `sigmoid`). Every tensor is f32; weights are initializers with little-endian `raw_data`.
//!
//! Import invariant: nodes are mapped one by one onto the closed op set; an op that has no
//! exact `.nnir` meaning is an error naming the node, its op type and the model path, never
//! silently dropped. Import of an export computes the same outputs (tested in `tests/onnx.rs`).
//! What a model declares is checked before it is trusted: its IR version and opset
//! ([`OPSETS`]), single assignment of every value, each node's arity against the op table, and
//! every size against [`ImportLimits`] before memory is taken; external data is read only from
//! regular files inside the model's folder ([`crate::files`]). Hostile models are tested in
//! `tests/onnx_hostile.rs`, deep ones in `tests/deep.rs`.
//!
//! [`proto`] holds the ONNX protobuf types, generated from `tools/onnx_proto_gen/onnx.proto`
//! (ONNX 1.23.2) with `protox` + `prost-build`, so building nnirc needs no `protoc`. To
//! regenerate (for example after replacing `onnx.proto` with a newer one), run from the
//! repository root:
//!
//! ```text
//! cargo run --manifest-path tools/onnx_proto_gen/Cargo.toml
//! ```

mod export;
mod import;
mod masks;
#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod proto;

pub use export::{export, export_bytes, OPSET};
pub use import::{
    external_files, import, import_with_limits, ImportLimits, ImportOptions, Imported, OPSETS,
};
pub use masks::apply_masks;

/// Why an export or import failed: a message for the user (exit code 1 in the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxError(pub String);

impl std::fmt::Display for OnnxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OnnxError {}

/// Prints `program` and lowers the text again, so that the result is exactly what the front end
/// makes of it; on failure, the first diagnostic's message.
fn relower(program: &crate::ir::Program) -> Result<crate::ir::Program, String> {
    let compiled = crate::compile(&crate::codegen::program_text(program, None));
    compiled.program.ok_or_else(|| {
        compiled
            .diagnostics
            .first()
            .map(|d| d.message.clone())
            .unwrap_or_default()
    })
}

/// ONNX `TensorProto.DataType` codes used here.
pub(crate) const FLOAT: i32 = proto::tensor_proto::DataType::Float as i32;
pub(crate) const INT64: i32 = proto::tensor_proto::DataType::Int64 as i32;
