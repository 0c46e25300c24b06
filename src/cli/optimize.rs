//! `nnirc optimize`: the UPSCALE export, one call to [`crate::optimize::optimize`].

use super::*;

impl Context {
    pub(super) fn optimize(&self, path: &Path, opts: &OptimizeOptions) -> Result<(), Failure> {
        use crate::optimize::{optimize, Mode, OptimizeConfig, OptimizeError};
        use crate::solver::SolverKind;
        let weights_out = opts
            .output
            .as_ref()
            .map(|o| o.with_extension("safetensors"));
        if let Some(out) = &opts.output {
            nnir_output(out)?;
        }
        let started = std::time::Instant::now();
        let loaded = self.load(path)?;
        let program = &loaded.program;
        let weights_in = weights_path(path, program);
        let mut inputs: Vec<&Path> = vec![path];
        inputs.extend(weights_in.as_deref());
        inputs.extend(opts.latency_table.as_deref());
        let outputs: Vec<&Path> = [&opts.output, &weights_out, &opts.report]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect();
        refuse_clashes(&outputs, &inputs)?;
        let estimate = crate::interp::memory_estimate(program);
        self.check_memory(
            path,
            &[
                (
                    "seeded weights",
                    if opts.random_weights.is_some() {
                        estimate.seeded_bytes
                    } else {
                        0
                    },
                ),
                ("cut weights", estimate.params.saturating_mul(8)),
                (
                    "verification",
                    if opts.verify {
                        estimate.run_bytes(8)
                    } else {
                        0
                    },
                ),
            ],
        )?;
        let deploy_table = match (opts.target, &opts.latency_table) {
            (TargetArg::OrtCpu, Some(file)) => Some(std::sync::Arc::new(self.read_table(file)?)),
            (TargetArg::OrtCpu, None) => {
                return Err(Failure::Usage(
                    "--target ort-cpu needs --latency-table T, a table measured on the target by                      `nnirc latency measure`"
                        .to_string(),
                ))
            }
            (TargetArg::Generic, _) => None,
        };
        if deploy_table.is_some() && opts.cost_model == crate::optimize::CostModelKind::Latency {
            return Err(Failure::Usage(
                "--target ort-cpu reads --latency-table as a measured table (`nnirc latency                  measure`), --cost-model latency as a per-op copy table: use one of them"
                    .to_string(),
            ));
        }
        let latency_table = match opts
            .latency_table
            .as_ref()
            .filter(|_| deploy_table.is_none())
        {
            Some(file) => {
                let bytes = read_file(file, MAX_JSON_BYTES)?;
                let text = String::from_utf8_lossy(&bytes);
                Some(crate::egraph::Latency::from_json(&text).map_err(|e| {
                    eprintln!("error: {}: {e}", file.display());
                    Failure::Input
                })?)
            }
            None => None,
        };
        let cost_model = opts
            .cost_model
            .model(latency_table)
            .map_err(Failure::Usage)?;
        let weights = self.weights(path, &loaded, opts.random_weights)?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let config = OptimizeConfig {
            mode: match opts.mode {
                ModeArg::Naive => Mode::Naive,
                ModeArg::Upscale => Mode::Upscale,
                ModeArg::Union => Mode::Union,
            },
            solver: match opts.solver {
                SolverArg::Exact => SolverKind::Exact,
                SolverArg::Paper => SolverKind::Paper,
            },
            cost_model,
            channel_align: opts.align as usize,
            verify: opts.verify.then_some(opts.seed),
            deploy: deploy_table.clone(),
            progress: None,
            ..Default::default()
        };
        let bar = deploy_table.is_some().then(|| {
            super::progress_bar("deploy search, sweep {msg}: {bar:40} {pos}/{len} moves, ETA {eta}")
        });
        let config = OptimizeConfig {
            progress: bar.clone().map(|bar| {
                let progress: crate::optimize::Progress =
                    std::sync::Arc::new(move |sweep, done, total| {
                        bar.set_message(sweep.to_string());
                        bar.set_length(total as u64);
                        bar.set_position(done as u64);
                    });
                progress
            }),
            ..config
        };
        let optimized = optimize(program, &weights, &config);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let mut optimized = match optimized {
            Ok(o) => o,
            Err(OptimizeError::Mismatch(report)) => {
                eprint!("{}", report.table());
                eprintln!(
                    "error: {}: {}",
                    path.display(),
                    OptimizeError::Mismatch(report)
                );
                return Err(Failure::Input);
            }
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return Err(Failure::Input);
            }
        };
        let report = &mut optimized.report;
        report.timings_ms.insert("load".to_string(), load_ms);
        let write_started = std::time::Instant::now();
        let mut staged = Outputs::default();
        if let (Some(out), Some(wout)) = (&opts.output, &weights_out) {
            let file_name = wout
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = crate::codegen::program_text(&optimized.program, Some(&file_name));
            let named = optimized.weights.named(&optimized.program);
            let (header, data) = crate::weights::file::parts(&named).map_err(|e| {
                eprintln!("error: cannot encode the weights: {e}");
                Failure::Input
            })?;
            let mut parts = vec![header.as_slice()];
            parts.extend(data);
            stage(&mut staged, wout, &parts)?;
            stage(&mut staged, out, &[text.as_bytes()])?;
        }
        let write_ms = write_started.elapsed().as_secs_f64() * 1e3;
        report.timings_ms.insert("write".to_string(), write_ms);
        eprint!("{}", report.table());
        if let Some(r) = &opts.report {
            let json = serde_json::to_string_pretty(&*report).expect("the report serializes");
            stage(&mut staged, r, &[json.as_bytes()])?;
        }
        commit(staged)
    }
}
