//! Labelled image datasets: [`Dataset`], and [`load`] for the ones on disk (Fashion-MNIST).
//!
//! A [`Dataset`] holds `len` images of one shape `[C, H, W]` as unsigned bytes (pixel values
//! 0..=255, row-major, image after image) and one label `< classes` per image; its constructor
//! checks that, so every `Dataset` is consistent. [`load`] reads the IDX files of a split from
//! a directory (gzipped or not) and says where it looked and how to install the data when the
//! files are absent.

use super::idx::{self, Idx, IdxError};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The Fashion-MNIST class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The datasets [`load`] knows (a command-line value: `fashion-mnist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetKind {
    /// Fashion-MNIST (Xiao et al. 2017): 28x28 greyscale, 10 classes, 60k train, 10k test.
    FashionMnist,
}

impl DatasetKind {
    /// The name used in messages and reports (`fashion-mnist`).
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::FashionMnist => "fashion-mnist",
        }
    }

    /// The directory the data is read from by default.
    pub fn default_dir(self) -> &'static Path {
        match self {
            DatasetKind::FashionMnist => Path::new(FASHION_MNIST_DIR),
        }
    }
}

/// Which part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Images and labels; see the module note for the invariants.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    name: String,
    shape: [usize; 3],
    classes: usize,
    images: Vec<u8>,
    labels: Vec<u8>,
}

/// Why a dataset could not be read or built.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetError {
    /// A file of the dataset is in none of the places looked at.
    Missing {
        dataset: &'static str,
        looked_for: Vec<PathBuf>,
    },
    /// A file exists but cannot be read.
    Read { path: PathBuf, message: String },
    /// A file is not a valid IDX array.
    Idx { path: PathBuf, error: IdxError },
    /// Images and labels do not fit together (or the constructor's arguments do not).
    Inconsistent { message: String },
}

impl fmt::Display for DatasetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetError::Missing {
                dataset,
                looked_for,
            } => {
                let places: Vec<String> =
                    looked_for.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "the {dataset} data is not there: looked for {}",
                    places.join(", ")
                )?;
                if *dataset == DatasetKind::FashionMnist.name() {
                    write!(
                        f,
                        "; install it with `apt-get install dataset-fashion-mnist` (Debian, \
                         puts it in {FASHION_MNIST_DIR}) or name its directory with --data-dir"
                    )?;
                }
                Ok(())
            }
            DatasetError::Read { path, message } => {
                write!(f, "cannot read {}: {message}", path.display())
            }
            DatasetError::Idx { path, error } => write!(f, "{}: {error}", path.display()),
            DatasetError::Inconsistent { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for DatasetError {}

fn inconsistent(message: String) -> DatasetError {
    DatasetError::Inconsistent { message }
}

impl Dataset {
    /// A dataset of `labels.len()` images of shape `[C, H, W]` = `shape`; `images` holds them
    /// one after the other, `C * H * W` bytes each. Fails unless the sizes agree and every
    /// label is below `classes`.
    pub fn new(
        name: &str,
        shape: [usize; 3],
        classes: usize,
        images: Vec<u8>,
        labels: Vec<u8>,
    ) -> Result<Self, DatasetError> {
        let per_image: usize = shape.iter().product();
        if per_image == 0 || labels.len().checked_mul(per_image) != Some(images.len()) {
            return Err(inconsistent(format!(
                "{name}: {} image bytes do not make {} images of shape {shape:?}",
                images.len(),
                labels.len()
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(inconsistent(format!(
                "{name}: label {l} of image {i} is not below the {classes} classes"
            )));
        }
        Ok(Dataset {
            name: name.to_string(),
            shape,
            classes,
            images,
            labels,
        })
    }

    /// A dataset from IDX arrays: images `[count, H, W]` (one channel) or `[count, C, H, W]`,
    /// labels `[count]`.
    pub fn from_idx(
        name: &str,
        images: Idx,
        labels: Idx,
        classes: usize,
    ) -> Result<Self, DatasetError> {
        let shape = match images.dims[..] {
            [_, h, w] => [1, h, w],
            [_, c, h, w] => [c, h, w],
            _ => {
                return Err(inconsistent(format!(
                    "{name}: images have dimensions {:?}, not [count, H, W] or [count, C, H, W]",
                    images.dims
                )))
            }
        };
        if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
            return Err(inconsistent(format!(
                "{name}: {} images but labels of dimensions {:?}",
                images.dims[0], labels.dims
            )));
        }
        Dataset::new(name, shape, classes, images.data, labels.data)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[C, H, W]` of every image.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Labels are in `0..classes`.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The bytes of images `range` (`C * H * W` each, one after the other).
    pub fn images(&self, range: std::ops::Range<usize>) -> &[u8] {
        let per: usize = self.shape.iter().product();
        &self.images[range.start * per..range.end * per]
    }

    /// The labels of all images.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }
}

/// The largest IDX file read (Fashion-MNIST's training images are 47 MB unpacked).
const MAX_IDX_BYTES: u64 = 1 << 30;

/// The IDX file names of a split: images, then labels.
fn file_names(kind: DatasetKind, split: Split) -> [&'static str; 2] {
    match (kind, split) {
        (DatasetKind::FashionMnist, Split::Test) => {
            ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
        }
        (DatasetKind::FashionMnist, Split::Train) => {
            ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]
        }
    }
}

/// Every file [`load`] may read for a split (each IDX file plain and gzipped): a command's
/// inputs, which no output may replace.
pub fn files(kind: DatasetKind, dir: &Path, split: Split) -> Vec<PathBuf> {
    file_names(kind, split)
        .iter()
        .flat_map(|base| [dir.join(base), dir.join(format!("{base}.gz"))])
        .collect()
}

/// Reads a split of `kind` from `dir`. The IDX files may be gzipped (`NAME.gz`, as Debian
/// ships them) or not (`NAME`); only regular files are read, up to 1 GiB each.
pub fn load(kind: DatasetKind, dir: &Path, split: Split) -> Result<Dataset, DatasetError> {
    let mut missing = Vec::new();
    let mut found = Vec::new();
    for base in file_names(kind, split) {
        let candidates = [dir.join(base), dir.join(format!("{base}.gz"))];
        match candidates.iter().find(|p| p.is_file()) {
            Some(p) => found.push(p.clone()),
            None => missing.extend(candidates),
        }
    }
    if !missing.is_empty() {
        return Err(DatasetError::Missing {
            dataset: kind.name(),
            looked_for: missing,
        });
    }
    let read = |path: &PathBuf| -> Result<Idx, DatasetError> {
        let bytes =
            crate::files::read_regular(path, MAX_IDX_BYTES).map_err(|e| DatasetError::Read {
                path: path.clone(),
                message: e.to_string(),
            })?;
        idx::parse(&bytes).map_err(|error| DatasetError::Idx {
            path: path.clone(),
            error,
        })
    };
    let name = format!(
        "{}/{}",
        kind.name(),
        if split == Split::Test {
            "test"
        } else {
            "train"
        }
    );
    Dataset::from_idx(&name, read(&found[0])?, read(&found[1])?, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructor_checks_sizes_and_labels() {
        assert!(Dataset::new("d", [1, 2, 2], 3, vec![0; 8], vec![0, 2]).is_ok());
        let err = Dataset::new("d", [1, 2, 2], 3, vec![0; 7], vec![0, 2]).unwrap_err();
        assert!(err.to_string().contains("7 image bytes"), "{err}");
        let err = Dataset::new("d", [1, 2, 2], 2, vec![0; 8], vec![0, 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "d: label 2 of image 1 is not below the 2 classes"
        );
        let images = Idx {
            dims: vec![2, 2, 2],
            data: vec![0; 8],
        };
        let labels = Idx {
            dims: vec![3],
            data: vec![0; 3],
        };
        let err = Dataset::from_idx("d", images, labels, 10).unwrap_err();
        assert!(err.to_string().contains("2 images but labels"), "{err}");
    }

    #[test]
    fn missing_files_say_where_and_how_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(DatasetKind::FashionMnist, dir.path(), Split::Test).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("t10k-images-idx3-ubyte.gz"), "{text}");
        assert!(text.contains("t10k-labels-idx1-ubyte"), "{text}");
        assert!(
            text.contains("apt-get install dataset-fashion-mnist"),
            "{text}"
        );
    }

    #[test]
    fn corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), [0, 0, 8, 3, 0]).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), b"junk").unwrap();
        let err = load(DatasetKind::FashionMnist, dir.path(), Split::Test).unwrap_err();
        assert!(
            matches!(
                err,
                DatasetError::Idx {
                    error: IdxError::TruncatedHeader { .. },
                    ..
                }
            ),
            "{err}"
        );
    }
}
