//! `nnirc run`: the reference interpreter on given or seeded inputs, one call to
//! [`crate::interp::run`].

use super::*;

impl Context {
    pub(super) fn run(&self, path: &Path, opts: &RunOptions) -> Result<(), Failure> {
        if let Some(out) = &opts.output {
            crate::paths::check_target(out).map_err(Failure::Usage)?;
            if !matches!(extension(out), Some("safetensors" | "npy")) {
                return Err(Failure::Usage(format!(
                    "{}: outputs are written as .safetensors or .npy",
                    out.display()
                )));
            }
        }
        let loaded = self.load(path)?;
        let weights_in = weights_path(path, &loaded.program);
        let mut inputs: Vec<&Path> = vec![path];
        inputs.extend(weights_in.as_deref());
        inputs.extend(opts.inputs.as_deref());
        let files = match &opts.output {
            Some(out) => {
                run_output_files(out, &output_names(&loaded.program)).map_err(Failure::Usage)?
            }
            None => Vec::new(),
        };
        let outputs: Vec<&Path> = files.iter().map(|(f, _)| f.as_path()).collect();
        refuse_clashes(&outputs, &inputs)?;
        let estimate = crate::interp::memory_estimate(&loaded.program);
        let seeded = match opts.random_weights {
            Some(_) => estimate.seeded_bytes,
            None => 0,
        };
        let run = estimate.run_bytes(if opts.f64 { 8 } else { 4 });
        self.check_memory(path, &[("seeded weights", seeded), ("activations", run)])?;
        let weights = self.weights(path, &loaded, opts.random_weights)?;
        let mut program = loaded.program;
        if opts.no_masks {
            program.clear_masks();
        }
        let run = RunFiles {
            path,
            files: &files,
        };
        if opts.f64 {
            self.run_as::<f64>(&run, &program, &weights, opts)
        } else {
            self.run_as::<f32>(&run, &program, &weights, opts)
        }
    }

    fn run_as<T: Scalar>(
        &self,
        run: &RunFiles,
        program: &Program,
        weights: &Weights,
        opts: &RunOptions,
    ) -> Result<(), Failure> {
        let inputs: Vec<Tensor<T>> = match &opts.inputs {
            Some(file) => {
                let bytes = read_file(file, crate::tensor_io::MAX_INPUTS_BYTES)?;
                crate::tensor_io::inputs_from_bytes(program, &bytes, file).map_err(|e| {
                    eprintln!("error: {}: {e}", file.display());
                    Failure::Input
                })?
            }
            None => crate::interp::random_inputs(program, opts.seed),
        };
        let outputs = crate::interp::run(program, weights, &inputs).map_err(|e| {
            eprintln!("error: {}: {e}", run.path.display());
            Failure::Input
        })?;
        let names = output_names(program);
        let mut summary = String::new();
        for (name, t) in names.iter().zip(&outputs) {
            summary += &format!("%{name}: {}\n", tensor_summary(t));
        }
        let _ = std::io::stdout().write_all(summary.as_bytes());
        let mut staged = Outputs::default();
        for (file, held) in run.files {
            let tensor = |name: &str| {
                let i = names
                    .iter()
                    .position(|n| *n == name)
                    .expect("an output name");
                &outputs[i]
            };
            let bytes = if extension(file) == Some("npy") {
                crate::tensor_io::npy_bytes(tensor(&held[0]))
            } else {
                let named: Vec<(&str, &Tensor<T>)> =
                    held.iter().map(|n| (n.as_str(), tensor(n))).collect();
                crate::tensor_io::safetensors_bytes(&named).map_err(|e| {
                    eprintln!("error: cannot write {}: {e}", file.display());
                    Failure::Input
                })?
            };
            stage(&mut staged, file, &[&bytes])?;
        }
        commit(staged)
    }
}

/// What `nnirc run` writes: the model's path (for messages) and each output file with the
/// output names it holds.
struct RunFiles<'a> {
    path: &'a Path,
    files: &'a [(PathBuf, Vec<String>)],
}

/// The names of a program's outputs, in order (a name listed twice appears twice).
fn output_names(program: &Program) -> Vec<&str> {
    program
        .outputs
        .iter()
        .map(|&n| program.graph[n].name.as_str())
        .collect()
}

/// The files `nnirc run -o OUT` writes, each with the outputs it holds (every output name
/// once): `OUT.safetensors` holds them all; `OUT.npy` holds the only one, or, with several,
/// each goes to `OUT.<name>.npy` (`/` in a name becomes `_`). An error if two names would
/// share a file.
fn run_output_files(out: &Path, names: &[&str]) -> Result<Vec<(PathBuf, Vec<String>)>, String> {
    let mut distinct: Vec<String> = Vec::new();
    for name in names {
        if !distinct.iter().any(|d| d == name) {
            distinct.push(name.to_string());
        }
    }
    if extension(out) != Some("npy") || distinct.len() == 1 {
        return Ok(vec![(out.to_path_buf(), distinct)]);
    }
    let mut files: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for name in distinct {
        let file = out.with_extension(format!("{}.npy", name.replace('/', "_")));
        if let Some((_, other)) = files.iter().find(|(f, _)| *f == file) {
            return Err(format!(
                "the outputs %{} and %{name} would both be written to {}; write a \
                 .safetensors file instead",
                other[0],
                file.display()
            ));
        }
        files.push((file, vec![name]));
    }
    Ok(files)
}

/// `f32[1, 1000]  min -0.1 max 2.3 mean 0.01 l2 4.5`, over the values that are not NaN; a
/// tensor with NaNs gets `nan K` (their count) at the end, and min, max and mean are `nan` when
/// every value is.
fn tensor_summary<T: Scalar>(t: &Tensor<T>) -> String {
    let data = t.to_f64().data;
    let (mut min, mut max, mut sum, mut sq) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0);
    let mut nans = 0usize;
    for &v in &data {
        if v.is_nan() {
            nans += 1;
            continue;
        }
        min = min.min(v);
        max = max.max(v);
        sum += v;
        sq += v * v;
    }
    let count = data.len() - nans;
    if count == 0 {
        (min, max) = (f64::NAN, f64::NAN);
    }
    let mean = if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    };
    let num = |v: f64| {
        if v.is_nan() {
            "nan".to_string()
        } else {
            format!("{v:.6e}")
        }
    };
    let nan_count = if nans > 0 {
        format!("  nan {nans}")
    } else {
        String::new()
    };
    format!(
        "{}{}  min {}  max {}  mean {}  l2 {}{nan_count}",
        T::NAME,
        crate::ir::ops::dims_text(&t.shape),
        num(min),
        num(max),
        num(mean),
        num(sq.sqrt())
    )
}
