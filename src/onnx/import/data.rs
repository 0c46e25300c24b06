//! Tensor data: initializers and `Constant` tensors decoded from `raw_data`, typed fields or
//! external files; input shapes.

use super::{Const, ConstData, MAX_ELEMENTS};
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

pub(super) fn element_count(dims: &[i64]) -> Result<(Vec<usize>, usize), String> {
    let mut n: usize = 1;
    let mut out = Vec::with_capacity(dims.len());
    for &d in dims {
        let d = usize::try_from(d).map_err(|_| format!("negative dimension {d}"))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or("the tensor is too large")?;
        out.push(d);
    }
    Ok((out, n))
}

/// The bytes of an external tensor, read from a file relative to `base` (only its range is
/// read: a model's tensors often share one large file).
pub(super) fn external_bytes(t: &proto::TensorProto, base: &Path) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
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
    let rel = Path::new(&location);
    if rel.is_absolute() {
        return Err(format!(
            "external data location `{location}` must be relative to the model"
        ));
    }
    let path = base.join(rel);
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut file = std::fs::File::open(&path).map_err(cannot)?;
    let size = file.metadata().map_err(cannot)?.len();
    let end = match length {
        Some(l) => offset.checked_add(l).ok_or("length too large")?,
        None => size,
    };
    if offset > end || end > size {
        return Err(format!(
            "external data range {offset}..{end} is outside {} ({size} bytes)",
            path.display()
        ));
    }
    let len = usize::try_from(end - offset).map_err(|_| "length too large".to_string())?;
    let mut bytes = vec![0; len];
    file.seek(SeekFrom::Start(offset)).map_err(cannot)?;
    file.read_exact(&mut bytes).map_err(cannot)?;
    Ok(bytes)
}

/// Decodes an initializer or `Constant` tensor. With `skip_external_floats`, a float32 tensor
/// stored in an external file is not read: it decodes as zeros of its shape.
pub(super) fn decode_tensor(
    t: &proto::TensorProto,
    base: &Path,
    skip_external_floats: bool,
) -> Result<Const, String> {
    let (dims, n) = element_count(&t.dims)?;
    let dtype = t.data_type.unwrap_or(0);
    let raw = if t.data_location == Some(EXTERNAL) {
        if skip_external_floats && dtype == FLOAT {
            return Ok(Const {
                dims,
                data: ConstData::F32(vec![0.0; n]),
            });
        }
        Some(external_bytes(t, base)?)
    } else {
        t.raw_data.clone()
    };
    let width = match dtype {
        FLOAT | INT32 => 4,
        INT64 => 8,
        other => {
            return Err(format!(
                "unsupported data type {other} (float32 or int64 only)"
            ))
        }
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
        (FLOAT, Some(raw)) => ConstData::F32(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        (FLOAT, None) => ConstData::F32(t.float_data.clone()),
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
        ConstData::F32(v) => v.len(),
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
