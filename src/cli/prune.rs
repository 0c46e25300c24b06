//! `nnirc prune`: masks written into the source, one call to [`crate::prune::prune`].

use super::*;

impl Context {
    pub(super) fn prune(&self, path: &Path, opts: &PruneOptions) -> Result<(), Failure> {
        let loaded = self.load(path)?;
        let program = &loaded.program;
        let weights_in = weights_path(path, program);
        let mut inputs: Vec<&Path> = vec![path];
        inputs.extend(weights_in.as_deref());
        refuse_clashes(&Vec::from_iter(opts.output.as_deref()), &inputs)?;
        let estimate = crate::interp::memory_estimate(program);
        let seeded = match opts.random_weights {
            Some(_) => estimate.seeded_bytes,
            None => 0,
        };
        self.check_memory(
            path,
            &[
                ("seeded weights", seeded),
                ("scores", estimate.params.saturating_mul(8)),
            ],
        )?;
        let weights = self.weights(path, &loaded, opts.random_weights)?;
        let config = PruneConfig {
            method: opts.method,
            amount: opts.amount,
            side: opts.side,
            include_linear: opts.include_linear,
        };
        let pruned =
            crate::prune::prune(&loaded.source, &loaded.parsed, program, &weights, &config);
        let (mut kept, mut total) = (0, 0);
        let mut summary = String::new();
        for layer in &pruned.layers {
            kept += layer.kept;
            total += layer.channels;
            if opts.verbose {
                summary += &format!(
                    "  %{}: kept {} / {} {} channels\n",
                    layer.name,
                    layer.kept,
                    layer.channels,
                    config.side.name()
                );
            }
        }
        eprint!(
            "{}: {} side, amount {}: masked {} of {} eligible layers, kept {kept} / {total} \
             of their channels; {} masks replaced: {}\n{summary}",
            path.display(),
            config.side.name(),
            config.amount,
            pruned.layers.len(),
            pruned.eligible,
            config.side.mask_kind().keyword(),
            pruned.replaced,
        );
        match &opts.output {
            Some(out) => write_output(out, pruned.text.as_bytes()),
            None => {
                let _ = std::io::stdout().write_all(pruned.text.as_bytes());
                Ok(())
            }
        }
    }
}
