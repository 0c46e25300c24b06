//! `nnirc eval`: top-1 accuracy on a dataset, one call to [`crate::eval::evaluate`].

use super::*;

/// `nnirc eval`.
impl Context {
    pub(super) fn eval(&self, path: &Path, opts: &EvalOptions) -> Result<(), Failure> {
        use crate::eval::{EvalConfig, Split};
        let loaded = self.load(path)?;
        let weights_in = weights_path(path, &loaded.program);
        let dir = opts
            .data_dir
            .as_deref()
            .unwrap_or(opts.dataset.default_dir());
        let data_files = crate::eval::files(opts.dataset, dir, Split::Test);
        let mut inputs = vec![path];
        inputs.extend(weights_in.as_deref());
        inputs.extend(data_files.iter().map(PathBuf::as_path));
        refuse_clashes(&Vec::from_iter(opts.json.as_deref()), &inputs)?;
        let estimate = crate::interp::memory_estimate(&loaded.program);
        let seeded = match opts.random_weights {
            Some(_) => estimate.seeded_bytes,
            None => 0,
        };
        // At the batch evaluate runs (a model it cannot re-batch is its error to report).
        let run = crate::eval::with_batch(&loaded.program, opts.batch as usize)
            .map_or(0, |p| crate::interp::memory_estimate(&p).run_bytes(4));
        self.check_memory(path, &[("seeded weights", seeded), ("activations", run)])?;
        let weights = self.weights(path, &loaded, opts.random_weights)?;
        let data = crate::eval::load(opts.dataset, dir, Split::Test).map_err(|e| {
            eprintln!("error: {e}");
            Failure::Input
        })?;
        let config = EvalConfig {
            batch: opts.batch as usize,
            limit: opts.limit,
        };
        let bar = progress_bar("{bar:40} {pos}/{len} images, ETA {eta}");
        let started = std::time::Instant::now();
        let result = crate::eval::evaluate(
            &loaded.program,
            &weights,
            &data,
            &config,
            &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        );
        bar.finish_and_clear();
        let result = result.map_err(|e| {
            eprintln!("error: {}: {e}", path.display());
            Failure::Input
        })?;
        println!(
            "{}: top-1 {:.2}% ({} / {} images of {}) in {:.1} s",
            path.display(),
            100.0 * result.top1,
            result.correct,
            result.count,
            result.dataset,
            started.elapsed().as_secs_f64()
        );
        let Some(out) = &opts.json else {
            return Ok(());
        };
        let weights = match opts.random_weights {
            Some(seed) => format!("random:{seed}"),
            None => "file".to_string(),
        };
        let mut json = serde_json::to_value(&result).expect("the result serializes");
        json["model"] = path.display().to_string().into();
        json["weights"] = weights.into();
        let text = serde_json::to_string_pretty(&json).expect("the result serializes") + "\n";
        write_output(out, text.as_bytes())
    }
}
