//! The IDX file format (the MNIST family's): bytes -> dimensions and unsigned-byte data.
//!
//! Layout: a 4-byte magic `0x00 0x00 TYPE RANK`, then `RANK` big-endian `u32` dimensions,
//! then the data, row-major, and nothing after it. Only `TYPE = 0x08` (unsigned byte, what
//! images and labels use) is read. A gzip stream (magic `0x1f 0x8b`) is inflated first, at
//! most [`MAX_BYTES`] of it. Every size is checked against the bytes present before anything
//! is allocated from a header, so a truncated, corrupt or hostile file is an [`IdxError`],
//! never a panic or a huge allocation.

use std::fmt;
use std::io::Read;

/// The largest decompressed IDX file accepted (the Fashion-MNIST training images are 47 MB).
pub const MAX_BYTES: u64 = 1 << 30;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions, outermost first (images: `[count, rows, cols]`; labels: `[count]`).
    pub dims: Vec<usize>,
    /// `dims.iter().product()` bytes, row-major.
    pub data: Vec<u8>,
}

/// Why bytes are not an IDX array this reader accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdxError {
    /// Fewer bytes than the header needs.
    TruncatedHeader { len: usize, needed: usize },
    /// The first two bytes are not zero (and not a gzip stream).
    BadMagic { magic: [u8; 4] },
    /// An element type other than unsigned byte (`0x08`).
    UnsupportedType { code: u8 },
    /// Rank 0.
    NoDimensions,
    /// The header's dimensions need `expected` data bytes, but `got` follow it.
    SizeMismatch {
        dims: Vec<usize>,
        expected: u128,
        got: usize,
    },
    /// The gzip stream is corrupt, or inflates past [`MAX_BYTES`].
    Gzip { message: String },
}

impl fmt::Display for IdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdxError::TruncatedHeader { len, needed } => write!(
                f,
                "truncated IDX header: {len} bytes, the header needs {needed}"
            ),
            IdxError::BadMagic { magic } => write!(
                f,
                "not an IDX file: magic {:02x} {:02x} {:02x} {:02x} (expected 00 00 TYPE RANK)",
                magic[0], magic[1], magic[2], magic[3]
            ),
            IdxError::UnsupportedType { code } => write!(
                f,
                "IDX element type 0x{code:02x} is not supported (only unsigned bytes, 0x08)"
            ),
            IdxError::NoDimensions => write!(f, "IDX array of rank 0"),
            IdxError::SizeMismatch {
                dims,
                expected,
                got,
            } => write!(
                f,
                "IDX dimensions {dims:?} need {expected} data bytes, but the file has {got}"
            ),
            IdxError::Gzip { message } => write!(f, "cannot inflate the gzip stream: {message}"),
        }
    }
}

impl std::error::Error for IdxError {}

/// Parses an IDX file's bytes, inflating them first if they are gzipped.
///
/// ```
/// let bytes = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6];
/// let idx = nnirc::eval::idx::parse(&bytes).unwrap();
/// assert_eq!(idx.dims, vec![2, 3]);
/// assert_eq!(idx.data, vec![1, 2, 3, 4, 5, 6]);
/// ```
pub fn parse(bytes: &[u8]) -> Result<Idx, IdxError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return parse_plain(&gunzip(bytes)?);
    }
    parse_plain(bytes)
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, IdxError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| IdxError::Gzip {
            message: e.to_string(),
        })?;
    if out.len() as u64 > MAX_BYTES {
        return Err(IdxError::Gzip {
            message: format!("it inflates to more than {MAX_BYTES} bytes"),
        });
    }
    Ok(out)
}

fn parse_plain(bytes: &[u8]) -> Result<Idx, IdxError> {
    let Some(&[z0, z1, code, rank]) = bytes.first_chunk::<4>() else {
        return Err(IdxError::TruncatedHeader {
            len: bytes.len(),
            needed: 4,
        });
    };
    if z0 != 0 || z1 != 0 {
        return Err(IdxError::BadMagic {
            magic: [z0, z1, code, rank],
        });
    }
    if code != 0x08 {
        return Err(IdxError::UnsupportedType { code });
    }
    if rank == 0 {
        return Err(IdxError::NoDimensions);
    }
    let header = 4 + 4 * rank as usize;
    if bytes.len() < header {
        return Err(IdxError::TruncatedHeader {
            len: bytes.len(),
            needed: header,
        });
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    // At most 255 factors below 2^32: the product in u128 can still overflow, so saturate.
    let expected = dims
        .iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128))
        .unwrap_or(u128::MAX);
    let got = bytes.len() - header;
    if expected != got as u128 {
        return Err(IdxError::SizeMismatch {
            dims,
            expected,
            got,
        });
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn reads_plain_and_gzipped() {
        let plain = idx(&[3], &[7, 8, 9]);
        let want = Idx {
            dims: vec![3],
            data: vec![7, 8, 9],
        };
        assert_eq!(parse(&plain), Ok(want.clone()));
        assert_eq!(parse(&gzip(&plain)), Ok(want));
        // An empty array is valid.
        assert_eq!(parse(&idx(&[0, 28], &[])).unwrap().dims, vec![0, 28]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let full = idx(&[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        for len in 0..full.len() {
            let err = parse(&full[..len]).unwrap_err();
            assert!(
                matches!(
                    err,
                    IdxError::TruncatedHeader { .. } | IdxError::SizeMismatch { .. }
                ),
                "{len}: {err}"
            );
        }
        let gz = gzip(&full);
        for len in 2..gz.len() {
            assert!(parse(&gz[..len]).is_err(), "gzip cut at {len}");
        }
    }

    #[test]
    fn wrong_magic_and_type() {
        let mut b = idx(&[1], &[0]);
        b[1] = 1;
        assert_eq!(
            parse(&b),
            Err(IdxError::BadMagic {
                magic: [0, 1, 8, 1]
            })
        );
        let mut b = idx(&[1], &[0]);
        b[2] = 0x0d; // float
        assert_eq!(parse(&b), Err(IdxError::UnsupportedType { code: 0x0d }));
        assert_eq!(parse(&[0, 0, 8, 0]), Err(IdxError::NoDimensions));
        assert!(matches!(
            parse(b"\x1f\x8bnot gzip at all"),
            Err(IdxError::Gzip { .. })
        ));
    }

    #[test]
    fn sizes_are_checked_before_allocating() {
        // Too many bytes after the data.
        let err = parse(&idx(&[2], &[1, 2, 3])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "IDX dimensions [2] need 2 data bytes, but the file has 3"
        );
        // A header that claims 2^32^4 bytes: refused without allocating it.
        let err = parse(&idx(&[u32::MAX; 4], &[0; 16])).unwrap_err();
        assert!(
            matches!(err, IdxError::SizeMismatch { got: 16, .. }),
            "{err}"
        );
        // Rank 255 with maximal dimensions overflows even u128.
        let err = parse(&idx(&[u32::MAX; 255], &[])).unwrap_err();
        assert!(
            matches!(
                err,
                IdxError::SizeMismatch {
                    expected: u128::MAX,
                    ..
                }
            ),
            "{err}"
        );
    }
}
