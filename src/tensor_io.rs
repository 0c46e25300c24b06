//! Tensor files: model inputs in, model outputs out, as safetensors or `.npy`.
//!
//! Writing: safetensors with dtype F32 or F64 (after the [`Scalar`] type), or `.npy` format
//! version 1.0 (`<f4` / `<f8`, C order), one tensor per file. Every file is written atomically
//! ([`write_atomic`]: a temporary file in the same directory, then a rename), so a reader never
//! sees half a file. Reading: safetensors and `.npy` (versions 1.0 to 3.0, F32 or F64 in either
//! byte order, C order), converting to the requested [`Scalar`]. Bad files are
//! [`TensorIoError`]s; no byte sequence makes a reader panic.

use crate::ir::ops::dims_text;
use crate::ir::Program;
use crate::tensor::{Scalar, Tensor};
use crate::weights::{file, Dtype, TensorData};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

/// Why a tensor file could not be read or written.
#[derive(Debug)]
pub enum TensorIoError {
    Io(std::io::Error),
    /// The bytes are not a valid file of the expected format.
    Format(String),
    /// A model input has no tensor of its name in the file.
    Missing {
        name: String,
    },
    /// A tensor has another shape than the model input it is for.
    Shape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
}

impl fmt::Display for TensorIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorIoError::Io(e) => write!(f, "{e}"),
            TensorIoError::Format(m) => f.write_str(m),
            TensorIoError::Missing { name } => {
                write!(f, "no tensor named `{name}` for the model input `%{name}`")
            }
            TensorIoError::Shape {
                name,
                expected,
                got,
            } => write!(
                f,
                "tensor `{name}` has shape {}, but the input `%{name}` is declared {}",
                dims_text(got),
                dims_text(expected)
            ),
        }
    }
}

impl std::error::Error for TensorIoError {}

impl From<std::io::Error> for TensorIoError {
    fn from(e: std::io::Error) -> Self {
        TensorIoError::Io(e)
    }
}

fn format_err(message: impl Into<String>) -> TensorIoError {
    TensorIoError::Format(message.into())
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same directory, which is
/// then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut outputs = Outputs::default();
    outputs.stage(path, &[bytes])?;
    outputs.commit()
}

/// A set of output files written all or nothing: each is staged in a temporary file beside its
/// target, and only [`Outputs::commit`] renames them into place; dropping the set without
/// committing removes every staged file. A target that exists and is not a regular file (a
/// device, a FIFO, a symlink, a directory) is refused, never replaced.
#[derive(Default)]
pub struct Outputs {
    staged: Vec<(tempfile::NamedTempFile, std::path::PathBuf)>,
}

impl Outputs {
    /// Stages `parts`, concatenated, as the future content of `path`.
    pub fn stage(&mut self, path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "it exists and is not a regular file; refusing to replace it",
                ));
            }
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        {
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            for part in parts {
                w.write_all(part)?;
            }
            w.flush()?;
        }
        // Temporary files are private (0600); a written output gets ordinary permissions.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        self.staged.push((tmp, path.to_path_buf()));
        Ok(())
    }

    /// Renames every staged file into place.
    pub fn commit(self) -> std::io::Result<()> {
        for (tmp, path) in self.staged {
            tmp.persist(&path).map_err(|e| e.error)?;
        }
        Ok(())
    }
}

fn le_bytes<T: Scalar>(data: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * T::BYTES);
    for &v in data {
        v.write_le(&mut out);
    }
    out
}

/// `t` as weights data of its own dtype (F32 or F64 after `T`).
fn tensor_data<T: Scalar>(t: &Tensor<T>) -> TensorData {
    let bytes = le_bytes(&t.data);
    let dtype = if T::BYTES == 4 {
        Dtype::F32
    } else {
        Dtype::F64
    };
    let len = bytes.len();
    TensorData::view(std::sync::Arc::new(bytes), 0..len, dtype)
}

/// A safetensors file holding `tensors` (dtype F32 or F64 after `T`). Names must be distinct
/// and not `__metadata__`.
pub fn safetensors_bytes<T: Scalar>(
    tensors: &[(&str, &Tensor<T>)],
) -> Result<Vec<u8>, TensorIoError> {
    let data: Vec<TensorData> = tensors.iter().map(|(_, t)| tensor_data(t)).collect();
    let named: Vec<file::Named> = tensors
        .iter()
        .zip(&data)
        .map(|((name, t), d)| (*name, t.shape.as_slice(), d))
        .collect();
    file::to_bytes(&named).map_err(format_err)
}

/// Writes `tensors` as a safetensors file, atomically.
pub fn write_safetensors<T: Scalar>(
    path: &Path,
    tensors: &[(&str, &Tensor<T>)],
) -> Result<(), TensorIoError> {
    write_atomic(path, &safetensors_bytes(tensors)?)?;
    Ok(())
}

/// Every tensor of a safetensors file, by name, converted to `T` (F32 and F64 accepted).
pub fn read_safetensors<T: Scalar>(
    bytes: &[u8],
) -> Result<BTreeMap<String, Tensor<T>>, TensorIoError> {
    let st = file::parse(std::sync::Arc::new(bytes.to_vec())).map_err(format_err)?;
    let mut out = BTreeMap::new();
    for entry in &st.entries {
        let Some(data) = st.data(entry) else {
            return Err(format_err(format!(
                "tensor `{}` has dtype {:?}; only F32 and F64 are supported",
                entry.name, entry.dtype
            )));
        };
        let shape = entry.shape.clone();
        out.insert(
            entry.name.clone(),
            Tensor {
                shape,
                data: data.to_vec(),
            },
        );
    }
    Ok(out)
}

fn decode<T: Scalar, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| T::from_f64(f(c.try_into().expect("chunks of N"))))
        .collect()
}

/// The model inputs from a safetensors file, matched by name (`%x` reads tensor `x`); other
/// tensors in the file are ignored.
pub fn inputs_from_safetensors<T: Scalar>(
    program: &Program,
    bytes: &[u8],
) -> Result<Vec<Tensor<T>>, TensorIoError> {
    let mut all = read_safetensors::<T>(bytes)?;
    program
        .inputs
        .iter()
        .map(|&n| {
            let node = &program.graph[n];
            let t = all
                .remove(&node.name)
                .ok_or_else(|| TensorIoError::Missing {
                    name: node.name.clone(),
                })?;
            check_shape(&node.name, &node.shape, t)
        })
        .collect()
}

fn check_shape<T>(
    name: &str,
    expected: &[usize],
    t: Tensor<T>,
) -> Result<Tensor<T>, TensorIoError> {
    if t.shape != expected {
        return Err(TensorIoError::Shape {
            name: name.to_string(),
            expected: expected.to_vec(),
            got: t.shape,
        });
    }
    Ok(t)
}

/// The largest inputs file [`read_inputs`] reads (4 GiB).
pub const MAX_INPUTS_BYTES: u64 = 4 << 30;

/// Reads the model inputs from `path`: a `.safetensors` file (inputs by name) or, for a model
/// with one input, a `.npy` file. Only a regular file of at most [`MAX_INPUTS_BYTES`] is read
/// ([`crate::files::read_regular`]): a FIFO or a device is refused, never waited on.
pub fn read_inputs<T: Scalar>(
    program: &Program,
    path: &Path,
) -> Result<Vec<Tensor<T>>, TensorIoError> {
    let bytes = crate::files::read_regular(path, MAX_INPUTS_BYTES)
        .map_err(|e| TensorIoError::Format(e.0))?;
    inputs_from_bytes(program, &bytes, path)
}

/// The model inputs from the bytes of the file `path` (its extension says the format, as in
/// [`read_inputs`]).
pub fn inputs_from_bytes<T: Scalar>(
    program: &Program,
    bytes: &[u8],
    path: &Path,
) -> Result<Vec<Tensor<T>>, TensorIoError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => {
            let [only] = program.inputs.as_slice() else {
                return Err(format_err(format!(
                    "a .npy file holds one tensor, but the model has {} inputs: use a .safetensors file with one tensor per input name",
                    program.inputs.len()
                )));
            };
            let node = &program.graph[*only];
            Ok(vec![check_shape(
                &node.name,
                &node.shape,
                read_npy(bytes)?,
            )?])
        }
        Some("safetensors") => inputs_from_safetensors(program, bytes),
        _ => Err(format_err(
            "input files must end in .safetensors or .npy".to_string(),
        )),
    }
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// A `.npy` file (format 1.0, or 2.0 if the header needs it) holding `t`: `<f4` or `<f8`,
/// C order, header padded to a multiple of 64 bytes.
pub fn npy_bytes<T: Scalar>(t: &Tensor<T>) -> Vec<u8> {
    let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!(
        "{{'descr': '<f{}', 'fortran_order': False, 'shape': {shape}, }}",
        T::BYTES
    );
    // magic (6) + version (2) + length (2 in 1.0, 4 in 2.0), then the dict padded with spaces
    // and a final '\n' so that the data starts at a multiple of 64.
    let header_len = |prefix: usize| (prefix + dict.len() + 1).next_multiple_of(64) - prefix;
    let v1 = header_len(10) <= u16::MAX as usize;
    let len = if v1 { header_len(10) } else { header_len(12) };
    while dict.len() + 1 < len {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = Vec::with_capacity(12 + len + t.data.len() * T::BYTES);
    out.extend_from_slice(NPY_MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(&le_bytes(&t.data));
    out
}

/// Writes `t` as a `.npy` file, atomically.
pub fn write_npy<T: Scalar>(path: &Path, t: &Tensor<T>) -> Result<(), TensorIoError> {
    write_atomic(path, &npy_bytes(t))?;
    Ok(())
}

/// Reads a `.npy` file of float32 or float64 values (either byte order, C order).
pub fn read_npy<T: Scalar>(bytes: &[u8]) -> Result<Tensor<T>, TensorIoError> {
    if bytes.get(..6) != Some(NPY_MAGIC) {
        return Err(format_err("not a .npy file (bad magic bytes)"));
    }
    let (len, start): (Option<usize>, usize) = match bytes.get(6) {
        Some(1) => (
            bytes
                .get(8..10)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize),
            10,
        ),
        Some(2 | 3) => (
            bytes
                .get(8..12)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
            12,
        ),
        _ => return Err(format_err("unsupported .npy format version")),
    };
    let header = len
        .and_then(|len| bytes.get(start..start.checked_add(len)?))
        .ok_or_else(|| format_err("truncated .npy header"))?;
    let header =
        std::str::from_utf8(header).map_err(|_| format_err("the .npy header is not text"))?;
    let dict = NpyHeader::parse(header).ok_or_else(|| {
        format_err(format!(
            "cannot parse the .npy header `{}`",
            header.trim_end()
        ))
    })?;
    if dict.fortran_order {
        return Err(format_err(
            "Fortran-order .npy files are not supported (save a C-contiguous array)",
        ));
    }
    let little = match dict.descr.as_bytes().first() {
        Some(b'<') => true,
        Some(b'>') => false,
        Some(b'=') => cfg!(target_endian = "little"),
        _ => return Err(format_err(format!("unsupported dtype `{}`", dict.descr))),
    };
    let size = match &dict.descr[1..] {
        "f4" => 4,
        "f8" => 8,
        other => {
            return Err(format_err(format!(
                "unsupported dtype `{other}`: only float32 (f4) and float64 (f8)"
            )))
        }
    };
    let data = &bytes[start + header.len()..];
    let want = dict
        .shape
        .iter()
        .try_fold(size, |a: usize, &d| a.checked_mul(d));
    if want != Some(data.len()) {
        return Err(format_err(format!(
            "the .npy data is {} bytes, but shape {} of {} needs {}",
            data.len(),
            dims_text(&dict.shape),
            dict.descr,
            want.map_or("more than fits in memory".to_string(), |w| w.to_string())
        )));
    }
    let data = match (size, little) {
        (4, true) => decode::<T, 4>(data, |b| f64::from(f32::from_le_bytes(b))),
        (4, false) => decode::<T, 4>(data, |b| f64::from(f32::from_be_bytes(b))),
        (_, true) => decode::<T, 8>(data, f64::from_le_bytes),
        (_, false) => decode::<T, 8>(data, f64::from_be_bytes),
    };
    Ok(Tensor {
        shape: dict.shape,
        data,
    })
}

/// The fields of a `.npy` header dict.
struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value in a `.npy` header (a Python literal).
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

impl NpyHeader {
    /// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` (any key order).
    fn parse(text: &str) -> Option<NpyHeader> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        p.expect(b'{')?;
        loop {
            if p.eat(b'}') {
                break;
            }
            let Literal::Str(key) = p.literal()? else {
                return None;
            };
            p.expect(b':')?;
            match (key.as_str(), p.literal()?) {
                ("descr", Literal::Str(s)) => descr = Some(s),
                ("fortran_order", Literal::Bool(b)) => fortran = Some(b),
                ("shape", Literal::Tuple(t)) => shape = Some(t),
                _ => return None,
            }
            if !p.eat(b',') {
                p.expect(b'}')?;
                break;
            }
        }
        if descr.as_deref().is_none_or(str::is_empty) {
            return None;
        }
        Some(NpyHeader {
            descr: descr?,
            fortran_order: fortran?,
            shape: shape?,
        })
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.eat(c).then_some(())
    }

    fn word(&mut self, w: &[u8]) -> bool {
        if self.s[self.i..].starts_with(w) {
            self.i += w.len();
            return true;
        }
        false
    }

    fn literal(&mut self) -> Option<Literal> {
        self.skip_ws();
        match *self.s.get(self.i)? {
            q @ (b'\'' | b'"') => {
                let start = self.i + 1;
                let len = self.s[start..].iter().position(|&c| c == q)?;
                self.i = start + len + 1;
                let text = std::str::from_utf8(&self.s[start..start + len]).ok()?;
                Some(Literal::Str(text.to_string()))
            }
            b'T' if self.word(b"True") => Some(Literal::Bool(true)),
            b'F' if self.word(b"False") => Some(Literal::Bool(false)),
            b'(' => {
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    if self.eat(b')') {
                        break;
                    }
                    self.skip_ws();
                    let start = self.i;
                    while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                        self.i += 1;
                    }
                    let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                    // Python 2 era files may write `3L`.
                    self.word(b"L");
                    dims.push(digits.parse().ok()?);
                    if !self.eat(b',') {
                        self.expect(b')')?;
                        break;
                    }
                }
                Some(Literal::Tuple(dims))
            }
            _ => None,
        }
    }
}
