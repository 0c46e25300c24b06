//! The safetensors format: every read and every write of it in the crate goes through here.
//!
//! A file is an 8-byte little-endian header length `n`, `n` bytes of JSON (an object mapping
//! each tensor name to `{"dtype", "shape", "data_offsets": [start, end]}`, plus an optional
//! `"__metadata__"`), then the data section; offsets are relative to the data section.
//!
//! Reading ([`parse`]) never panics and never trusts a number in the header: the header length
//! is checked against the file, every tensor's byte range against the data section and against
//! `shape` times the dtype's size (with overflow checks), and a name given twice is an error
//! (a JSON object with a repeated key would otherwise let the last one win silently). The data
//! is not copied: [`SafetensorsFile::data`] returns a [`TensorData`] view into the same buffer,
//! which may be a memory map ([`map_file`]). F32 data is decoded from bytes, so no alignment is
//! assumed.
//!
//! Writing ([`write`], [`to_bytes`]) lays tensors out in the order given, each in its own
//! dtype, after a header padded with spaces to a multiple of 8 bytes.

use super::{Buffer, Dtype, TensorData};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// The dtype of a tensor in a file: one this crate computes with, or another one (kept by name
/// so that errors can say what it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileDtype {
    Known(Dtype),
    Other(String),
}

/// One tensor of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub dtype: FileDtype,
    pub shape: Vec<usize>,
    /// Bytes of the data section.
    range: Range<usize>,
}

/// A parsed safetensors file over its bytes.
#[derive(Clone)]
pub struct SafetensorsFile {
    buffer: Buffer,
    /// Where the data section starts in `buffer`.
    data_start: usize,
    /// In header order.
    pub entries: Vec<Entry>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("entries", &self.entries)
            .finish()
    }
}

impl SafetensorsFile {
    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The names of every tensor, in header order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// The data of `entry` (a view, no copy); `None` for a dtype this crate does not compute
    /// with.
    pub fn data(&self, entry: &Entry) -> Option<TensorData> {
        let FileDtype::Known(dtype) = entry.dtype else {
            return None;
        };
        let start = self.data_start + entry.range.start;
        Some(TensorData::view(
            self.buffer.clone(),
            start..self.data_start + entry.range.end,
            dtype,
        ))
    }
}

/// Maps a weights file into memory (read-only). Only regular files are accepted: a FIFO or a
/// device would block or never end. An empty file is read, not mapped.
///
/// The map is only as stable as the file: the caller must not change the file while the
/// returned buffer lives (as with any memory-mapped reader).
pub fn map_file(path: &Path) -> std::io::Result<Buffer> {
    // Look before opening: opening a FIFO blocks until a writer comes.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() == 0 {
        return Ok(Arc::new(Vec::new()));
    }
    // SAFETY: the map is read-only and private; the documented contract is that the file is
    // not modified while the map lives (the same contract every mmap-based reader has).
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok(Arc::new(map))
}

/// Parses the header of a safetensors file held in `buffer`.
pub fn parse(buffer: Buffer) -> Result<SafetensorsFile, String> {
    let bytes: &[u8] = (*buffer).as_ref();
    let Some(len) = bytes.get(..8) else {
        return Err(format!(
            "the file is {} bytes long: too short for a safetensors header",
            bytes.len()
        ));
    };
    let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    let rest = (bytes.len() - 8) as u64;
    if n > rest {
        return Err(format!(
            "the header claims {n} bytes, but only {rest} follow (truncated or not a safetensors file)"
        ));
    }
    let n = n as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n])
        .map_err(|e| format!("the header is not UTF-8: {e}"))?;
    let Header(fields) = serde_json::from_str(header.trim_end_matches(' '))
        .map_err(|e| format!("the header is not a JSON object: {e}"))?;
    let data_start = 8 + n;
    let data_len = bytes.len() - data_start;
    let mut entries = Vec::with_capacity(fields.len());
    let mut seen = std::collections::HashSet::new();
    for (name, info) in fields {
        if !seen.insert(name.clone()) {
            return Err(format!("the header names tensor `{name}` twice"));
        }
        if name == "__metadata__" {
            continue;
        }
        entries.push(entry(name, &info, data_len)?);
    }
    Ok(SafetensorsFile {
        buffer,
        data_start,
        entries,
    })
}

/// Checks one header entry.
fn entry(name: String, info: &serde_json::Value, data_len: usize) -> Result<Entry, String> {
    let dtype = match info.get("dtype").and_then(|d| d.as_str()) {
        Some("F32") => FileDtype::Known(Dtype::F32),
        Some("F64") => FileDtype::Known(Dtype::F64),
        Some(other) => FileDtype::Other(other.to_string()),
        None => return Err(format!("tensor `{name}` has no `dtype` in the header")),
    };
    let shape: Option<Vec<usize>> = info.get("shape").and_then(|s| s.as_array()).and_then(|s| {
        s.iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect()
    });
    let Some(shape) = shape else {
        return Err(format!(
            "tensor `{name}` has no valid `shape` in the header"
        ));
    };
    let offsets = info
        .get("data_offsets")
        .and_then(|o| o.as_array())
        .map(|o| o.iter().map(|v| v.as_u64()).collect::<Vec<_>>());
    let Some([Some(start), Some(end)]) = offsets.as_deref() else {
        return Err(format!(
            "tensor `{name}` has no valid `data_offsets` in the header"
        ));
    };
    let (start, end) = (*start, *end);
    if start > end || end > data_len as u64 {
        return Err(format!(
            "tensor `{name}` claims bytes {start}..{end}, but the data section is {data_len} bytes long (truncated file?)"
        ));
    }
    let range = start as usize..end as usize;
    if let FileDtype::Known(dtype) = dtype {
        let want = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
        if want != Some(range.len()) {
            return Err(format!(
                "tensor `{name}` has {} bytes, but its dtype and shape {shape:?} need {}",
                range.len(),
                want.map_or("more than fits in memory".to_string(), |w| w.to_string())
            ));
        }
    }
    Ok(Entry {
        name,
        dtype,
        shape,
        range,
    })
}

/// The header's fields in file order, repeated keys included (serde_json's own map would keep
/// only the last of them).
struct Header(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Header, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Header;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry()? {
                    fields.push(field);
                }
                Ok(Header(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// One tensor to write: its name, shape and data.
pub type Named<'a> = (&'a str, &'a [usize], &'a TensorData);

/// The header bytes (length prefix included) for `tensors`, laid out in order.
fn header(tensors: &[Named]) -> Result<Vec<u8>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut json = String::from("{");
    let mut offset = 0usize;
    for (i, &(name, shape, data)) in tensors.iter().enumerate() {
        if name == "__metadata__" || !seen.insert(name) {
            return Err(format!(
                "cannot write two tensors named `{name}` (or one named `__metadata__`) to one safetensors file"
            ));
        }
        let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if elements != Some(data.len()) {
            return Err(format!(
                "tensor `{name}` has {} values for shape {shape:?}",
                data.len()
            ));
        }
        let end = offset + data.bytes().len();
        if i > 0 {
            json.push(',');
        }
        let _ = write!(
            json,
            "{}:{{\"dtype\":\"{}\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
            serde_json::to_string(name).expect("a string serializes"),
            data.dtype().name(),
            serde_json::to_string(shape).expect("a shape serializes"),
        );
        offset = end;
    }
    json.push('}');
    while !(8 + json.len()).is_multiple_of(8) {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    Ok(out)
}

/// A whole safetensors file in memory.
pub fn to_bytes(tensors: &[Named]) -> Result<Vec<u8>, String> {
    let mut out = header(tensors)?;
    for (_, _, data) in tensors {
        out.extend_from_slice(data.bytes());
    }
    Ok(out)
}

/// The file's parts in order (header, then each tensor's bytes): what [`write`] writes, for
/// callers that write atomically themselves.
pub fn parts<'a>(tensors: &[Named<'a>]) -> Result<(Vec<u8>, Vec<&'a [u8]>), String> {
    let header = header(tensors)?;
    Ok((header, tensors.iter().map(|(_, _, d)| d.bytes()).collect()))
}

/// Writes a safetensors file to `out` (no copy of the data is made).
pub fn write(out: &mut impl std::io::Write, tensors: &[Named]) -> std::io::Result<()> {
    let (header, data) = parts(tensors).map_err(std::io::Error::other)?;
    out.write_all(&header)?;
    for d in data {
        out.write_all(d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn parse_bytes(bytes: Vec<u8>) -> Result<SafetensorsFile, String> {
        parse(Arc::new(bytes))
    }

    #[test]
    fn round_trip() {
        let a = TensorData::from_f32(&[1.0, -2.5]);
        let b = TensorData::from_f64(&[0.1]);
        let bytes = to_bytes(&[("a", &[2], &a), ("b.x", &[1, 1], &b)]).unwrap();
        assert_eq!(bytes.len() % 8, 0, "the header is padded to 8 bytes");
        let f = parse_bytes(bytes).unwrap();
        assert_eq!(f.names(), vec!["a", "b.x"]);
        assert_eq!(f.data(f.get("a").unwrap()).unwrap(), a);
        assert_eq!(
            f.data(f.get("b.x").unwrap()).unwrap().to_vec::<f64>(),
            [0.1]
        );
        assert_eq!(f.get("b.x").unwrap().shape, [1, 1]);
    }

    #[test]
    fn rejects_lying_headers() {
        let huge = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}"#;
        assert!(parse_bytes(file(huge, &[0; 4]))
            .unwrap_err()
            .contains("truncated"));
        assert!(parse_bytes(vec![1, 2, 3]).is_err());
        assert!(parse_bytes(u64::MAX.to_le_bytes().to_vec()).is_err());
        let short = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#;
        assert!(parse_bytes(file(short, &[0; 4]))
            .unwrap_err()
            .contains("need 8"));
        let overflow =
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#;
        assert!(parse_bytes(file(overflow, &[0; 4])).is_err());
    }

    #[test]
    fn rejects_a_name_given_twice() {
        let twice = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        assert!(parse_bytes(file(twice, &[0; 4]))
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn keeps_unknown_dtypes_by_name() {
        let h =
            r#"{"__metadata__":{"k":"v"},"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#;
        let f = parse_bytes(file(h, &[0; 8])).unwrap();
        assert_eq!(f.entries[0].dtype, FileDtype::Other("I64".into()));
        assert!(f.data(&f.entries[0]).is_none());
    }
}
