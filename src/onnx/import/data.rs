//! Tensor data: initializers and `Constant` tensors decoded from `raw_data`, typed fields or
//! external files; input shapes.

use super::{Const, ConstData, MAX_ELEMENTS};
use crate::files;
use crate::onnx::proto::{self, tensor_shape_proto::dimension, type_proto};
use crate::onnx::{FLOAT, INT64};
use std::path::Path;

const INT32: i32 = proto::tensor_proto::DataType::Int32 as i32;
const EXTERNAL: i32 = proto::tensor_proto::DataLocation::External as i32;

pub(super) fn input_shape(vi: &proto::ValueInfoProto) -> Result<Vec<usize>, String> {
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err("not a tensor".to_string());
    };
    if t.elem_type != Some(FLOAT) {
        return Err(format!(
            "element type {} is not float32",
            t.elem_type.unwrap_or(0)
        ));
    }
    let shape = t.shape.as_ref().ok_or("the shape is unknown")?;
    let dims: Vec<usize> = shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(dimension::Value::DimValue(v)) if *v > 0 => Ok(*v as usize),
            Some(dimension::Value::DimParam(p)) => Err(format!(
                "dimension `{p}` is symbolic; .nnir needs static shapes"
            )),
            _ => Err("a dimension is unknown or not positive".to_string()),
        })
        .collect::<Result<_, _>>()?;
    let as_i64: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    element_count(&as_i64)?;
    Ok(dims)
}

/// The dims of a declared shape and its element count, refused (before anything is allocated)
/// past [`MAX_ELEMENTS`] per tensor.
pub(super) fn element_count(dims: &[i64]) -> Result<(Vec<usize>, usize), String> {
    let mut n: usize = 1;
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| format!("negative dimension {d}"))?;
        n = n.checked_mul(d).filter(|&n| n <= MAX_ELEMENTS).ok_or_else(|| {
            format!("its shape {dims:?} has more than {MAX_ELEMENTS} elements (the limit per tensor)")
        })?;
        out.push(d);
    }
    Ok((out, n))
}

/// The `needed` bytes of an external tensor, read from a file inside the model's folder `base`
/// (only its range is read: a model's tensors often share one large file). The location is
/// resolved with [`files::resolve_inside`] and read with [`files::read_range`]: no file outside
/// the folder, and nothing but a regular file, is ever opened, and the range is checked against
/// the file's size before a byte is read.
fn external_bytes(t: &proto::TensorProto, base: &Path, needed: u64) -> Result<Vec<u8>, String> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for e in &t.external_data {
        let value = e.value.clone().unwrap_or_default();
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("bad external data value `{value}`"))
        };
        match e.key.as_deref() {
            Some("location") => location = Some(value.clone()),
            Some("offset") => offset = number()?,
            Some("length") => length = Some(number()?),
            _ => {}
        }
    }
    let location = location.ok_or("external data without a location")?;
    if length.is_some_and(|l| l != needed) {
        return Err(format!(
            "external data length {} differs from the {needed} bytes its shape needs",
            length.unwrap_or_default()
        ));
    }
    let path = files::resolve_inside(base, Path::new(&location))
        .map_err(|e| format!("external data: {e}"))?;
    files::read_range(&path, offset, Some(needed), needed)
        .map_err(|e| format!("external data: {e}"))
}

/// Decodes an initializer or `Constant` tensor. `budget` is how many more bytes of tensor data
/// the import may hold: the declared size is taken from it before anything is allocated or
/// read, so a model cannot make the import allocate past it. With `skip_external_floats`, a
/// float32 tensor stored in an external file is not read and nothing is allocated for it
/// ([`ConstData::F32`] holds `None`).
pub(super) fn decode_tensor(
    t: &proto::TensorProto,
    base: &Path,
    skip_external_floats: bool,
    budget: &mut u64,
) -> Result<Const, String> {
    let (dims, n) = element_count(&t.dims)?;
    let dtype = t.data_type.unwrap_or(0);
    let external = t.data_location == Some(EXTERNAL);
    if external && skip_external_floats && dtype == FLOAT {
        return Ok(Const {
            dims,
            data: ConstData::F32(None),
        });
    }
    let width = match dtype {
        FLOAT | INT32 => 4,
        INT64 => 8,
        other => {
            return Err(format!(
                "unsupported data type {other} (float32 or int64 only)"
            ))
        }
    };
    // Held as f32 or i64, and later as f64: 8 bytes per element, whatever the stored type.
    let held = n as u64 * 8;
    if held > *budget {
        return Err(format!(
            "its shape {dims:?} needs {held} bytes in memory, more than the {} bytes left \
             under the limit on the model's tensor data (ImportLimits::max_total_bytes)",
            *budget
        ));
    }
    *budget -= held;
    let raw = if external {
        Some(external_bytes(t, base, (n * width) as u64)?)
    } else {
        t.raw_data.clone()
    };
    if let Some(raw) = &raw {
        if raw.len() != n * width {
            return Err(format!(
                "holds {} bytes of data, but its shape needs {}",
                raw.len(),
                n * width
            ));
        }
    }
    let data = match (dtype, raw) {
        (FLOAT, Some(raw)) => ConstData::F32(Some(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )),
        (FLOAT, None) => ConstData::F32(Some(t.float_data.clone())),
        (INT64, Some(raw)) => ConstData::I64(
            raw.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ),
        (INT64, None) => ConstData::I64(t.int64_data.clone()),
        (_, Some(raw)) => ConstData::I64(
            raw.chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        (_, None) => ConstData::I64(t.int32_data.iter().map(|&v| i64::from(v)).collect()),
    };
    let len = match &data {
        ConstData::F32(v) => v.as_ref().map_or(n, Vec::len),
        ConstData::I64(v) => v.len(),
    };
    if len != n {
        return Err(format!(
            "holds {len} values, but its shape {:?} needs {n}",
            dims
        ));
    }
    Ok(Const { dims, data })
}
