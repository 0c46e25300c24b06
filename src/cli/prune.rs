//! `nnirc prune`: masks written into the source, one call to [`crate::prune::prune`].

use super::*;
use crate::prune::{LatencySource, PruneError};

/// The `--latency-proxy` predictor of `--method sp-lamp`, if any.
fn proxy(opts: &PruneOptions) -> Option<LatencySource> {
    opts.latency_proxy.map(|proxy| match proxy {
        LatencyProxy::Macs => LatencySource(std::sync::Arc::new(crate::prune::MacsLatency)),
    })
}

impl Context {
    /// `--latency-table`: the measured table bound to the program
    /// ([`crate::latency::UnitLatency`]), and the width step (the table's NCHWc block unless
    /// `--width-step` says otherwise).
    fn bind_table(
        &self,
        table: &Path,
        opts: &PruneOptions,
        path: &Path,
        program: &Program,
    ) -> Result<(LatencySource, usize), Failure> {
        let table = self.read_table(table)?;
        let bound = crate::latency::UnitLatency::new(table, program).map_err(|e| {
            eprintln!("error: {}: {e}", path.display());
            Failure::Input
        })?;
        let step = opts.width_step.map_or(bound.block(), |n| n as usize);
        Ok((LatencySource(std::sync::Arc::new(bound)), step))
    }
}

impl Context {
    pub(super) fn prune(&self, path: &Path, opts: &PruneOptions) -> Result<(), Failure> {
        let sp_lamp = opts.method == Method::SpLamp;
        let amount = match (opts.amount, sp_lamp) {
            (Some(a), false) => a,
            (None, true) => 0.0,
            (None, false) => {
                return Err(Failure::Usage(
                    "--amount is required (except with --method sp-lamp)".to_string(),
                ))
            }
            (Some(_), true) => {
                return Err(Failure::Usage(
                    "--amount does not apply to --method sp-lamp: it chooses widths under \
                     --latency-budget"
                        .to_string(),
                ))
            }
        };
        if !sp_lamp
            && (opts.latency_table.is_some()
                || opts.latency_proxy.is_some()
                || opts.width_step.is_some())
        {
            return Err(Failure::Usage(
                "--latency-table, --latency-proxy and --width-step only apply to --method sp-lamp"
                    .to_string(),
            ));
        }
        let mut config = PruneConfig {
            method: opts.method,
            amount,
            side: opts.side,
            include_linear: opts.include_linear,
            global: opts.global,
            budget: opts.latency_budget,
            width_step: opts.width_step.map_or(8, |n| n as usize),
            latency: None,
        };
        // A table is bound to the program, so with one the config is checked after loading.
        if opts.latency_table.is_none() {
            config.latency = proxy(opts);
            config.check().map_err(|e| Failure::Usage(e.to_string()))?;
        }
        let loaded = self.load(path)?;
        let program = &loaded.program;
        if let Some(table) = &opts.latency_table {
            let (latency, step) = self.bind_table(table, opts, path, program)?;
            (config.latency, config.width_step) = (Some(latency), step);
            config.check().map_err(|e| Failure::Usage(e.to_string()))?;
        }
        let weights_in = weights_path(path, program);
        let mut inputs: Vec<&Path> = vec![path];
        inputs.extend(weights_in.as_deref());
        inputs.extend(opts.latency_table.as_deref());
        let outputs: Vec<&Path> = [&opts.output, &opts.json]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect();
        refuse_clashes(&outputs, &inputs)?;
        let estimate = crate::interp::memory_estimate(program);
        let seeded = match opts.random_weights {
            Some(_) => estimate.seeded_bytes,
            None => 0,
        };
        self.check_memory(
            path,
            &[
                ("seeded weights", seeded),
                ("scores", estimate.params.saturating_mul(16)),
            ],
        )?;
        let weights = self.weights(path, &loaded, opts.random_weights)?;
        let pruned =
            match crate::prune::prune(&loaded.source, &loaded.parsed, program, &weights, &config) {
                Ok(p) => p,
                Err(PruneError::Config(m)) => return Err(Failure::Usage(m)),
                Err(PruneError::Model {
                    message,
                    name,
                    span,
                }) => {
                    let line = loaded.source[..span.start.min(loaded.source.len())]
                        .matches('\n')
                        .count()
                        + 1;
                    eprintln!("error: {}:{line}: %{name}: {message}", path.display());
                    return Err(Failure::Input);
                }
                Err(e @ PruneError::Latency(_)) => {
                    eprintln!("error: {}: {e}", path.display());
                    return Err(Failure::Input);
                }
            };
        eprint!("{}", summary(path, &config, &pruned, opts.verbose));
        let mut staged = Outputs::default();
        if let Some(json) = &opts.json {
            let report = serde_json::json!({
                "model": path.display().to_string(),
                "method": opts.method.to_possible_value().map(|v| v.get_name().to_string()),
                "side": config.side.name(),
                "amount": opts.amount,
                "global": config.global,
                "eligible": pruned.eligible,
                "units": pruned.units,
                "replaced": pruned.replaced,
                "layers": pruned.layers,
                "latency": pruned.latency,
                "sp_lamp_score": pruned.sp_lamp_score,
            });
            let text = serde_json::to_string_pretty(&report).expect("the report serializes");
            stage(&mut staged, json, &[text.as_bytes()])?;
        }
        match &opts.output {
            Some(out) => stage(&mut staged, out, &[pruned.text.as_bytes()])?,
            None => {
                let _ = std::io::stdout().write_all(pruned.text.as_bytes());
            }
        }
        commit(staged)
    }
}

/// The stderr summary: what was masked, and for sp-lamp the predicted latency per layer.
fn summary(
    path: &Path,
    config: &PruneConfig,
    pruned: &crate::prune::Pruned,
    verbose: bool,
) -> String {
    let (mut kept, mut total) = (0, 0);
    let mut layers = String::new();
    for layer in &pruned.layers {
        kept += layer.kept;
        total += layer.channels;
        if verbose {
            layers += &format!(
                "  %{}: kept {} / {} {} channels\n",
                layer.name,
                layer.kept,
                layer.channels,
                config.side.name()
            );
        }
    }
    let how = match (&pruned.latency, config.global) {
        (Some(_), _) => "sp-lamp".to_string(),
        (None, true) => format!("global amount {}", config.amount),
        (None, false) => format!("amount {}", config.amount),
    };
    let units = match config.side {
        Side::Output => format!(" in {} coupled groups", pruned.units),
        Side::Input => String::new(),
    };
    let mut out = format!(
        "{}: {} side, {how}: masked {} of {} eligible layers{units}, kept {kept} / {total} of \
         their channels; {} masks replaced: {}\n{layers}",
        path.display(),
        config.side.name(),
        pruned.layers.len(),
        pruned.eligible,
        config.side.mask_kind().keyword(),
        pruned.replaced,
    );
    if let Some(l) = &pruned.latency {
        out += "  predicted latency per layer (ms, dense -> pruned; c_in -> c_out):\n";
        for row in l
            .nodes
            .iter()
            .filter(|r| r.op == "conv2d" || r.op == "linear")
        {
            out += &format!(
                "    %{}: {:.4} -> {:.4} ({} -> {})\n",
                row.name, row.dense_ms, row.ms, row.c_in, row.c_out
            );
        }
        let outside = match l.export {
            Some(_) => "outside the knapsack's model of the consumers at full width",
            None => "unchanged by pruning",
        };
        out += &format!(
            "  predicted latency: {:.4} ms of a {:.4} ms budget (dense {:.4} ms, {:.4} ms of it \
             {outside}); score {:.4} of {:.4}; {} knapsack rounds{}\n",
            l.predicted_ms,
            l.budget_ms,
            l.dense_ms,
            l.constant_ms,
            l.score,
            l.max_score,
            l.rounds,
            if l.converged { ", converged" } else { "" },
        );
        if let Some(e) = &l.export {
            out += &format!(
                "  priced on the {} export (`nnirc optimize` default): the knapsack's model of \
                 the consumers {:.4} ms + {:.4} ms it does not see; {} exports priced, {} \
                 local-search moves\n",
                e.mode, e.model_ms, e.rest_ms, e.evaluations, e.moves
            );
        }
    }
    out
}
