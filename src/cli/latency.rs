//! `nnirc latency measure` and `nnirc latency predict`: one call each to
//! `crate::latency::measure::measure` (cargo feature `onnxruntime`) and
//! [`crate::latency::predict`].

use super::*;

/// `nnirc latency ...`.
#[derive(Debug, Subcommand)]
pub enum LatencyCommand {
    /// Measure a latency table for models on this machine, in onnxruntime (CPU).
    ///
    /// Every kernel of the models (a conv with the ops the runtime fuses into it, a linear,
    /// each other op) is timed as a micro-model on a grid of channel widths around the
    /// models' own: aligned and unaligned to the runtime's NCHWc block, from about a quarter
    /// of each width to all of it, plus the slices and gathers an optimized, pruned variant
    /// adds. Use the settings the model will be deployed with. Finished kernels are kept in
    /// OUT.cache (JSON lines): after Ctrl-C or a crash, the same command resumes. Needs a
    /// build with `--features onnxruntime` and the onnxruntime library of the PyPI wheel
    /// (docs/latency.md).
    Measure {
        /// The .nnir models (their kernels are measured; weights are not needed).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the table (JSON, format version 2; docs/latency.md).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        settings: MeasureOptions,
    },
    /// Predict a model's onnxruntime latency from a measured table.
    ///
    /// Prints each unit (a kernel as the runtime runs it), its widths, its layout (blocked
    /// NCHWc or plain NCHW) and predicted time, the layout reorders the runtime will insert,
    /// and the total. A model whose kernels the table lacks is an error that names them.
    Predict {
        /// The .nnir model.
        file: PathBuf,
        /// The latency table (from `nnirc latency measure`).
        #[arg(long, value_name = "TABLE")]
        table: PathBuf,
        /// Also write the prediction as JSON here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct MeasureOptions {
    /// onnxruntime intra-op threads (inter-op: 1, sequential execution).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// onnxruntime's graph optimization level.
    #[arg(long, value_name = "LEVEL", default_value = "all",
          value_parser = ["disable", "basic", "extended", "all"])]
    pub optimization: String,
    /// Untimed runs of each micro-model first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Timed runs of each micro-model (interleaved with the other widths of its kernel).
    #[arg(long, default_value_t = 25)]
    pub runs: usize,
    /// libonnxruntime.so.* (default: $ORT_DYLIB_PATH, else the onnxruntime wheel in
    /// target/ort-venv or .venv).
    #[arg(long, value_name = "PATH")]
    pub library: Option<PathBuf>,
    /// The NCHWc block in floats (default: 16 with AVX-512F, else 8).
    #[arg(long, value_parser = ["4", "8", "16"])]
    pub block: Option<String>,
    /// Measure only the widths the models have, not the grid (a quick smoke test: the table
    /// then predicts those models, not their pruned variants).
    #[arg(long)]
    pub own_widths: bool,
}

impl Context {
    pub(super) fn latency(&self, command: &LatencyCommand) -> Result<(), Failure> {
        match command {
            LatencyCommand::Measure {
                files,
                output,
                settings,
            } => self.latency_measure(files, output, settings),
            LatencyCommand::Predict { file, table, json } => {
                self.latency_predict(file, table, json.as_deref())
            }
        }
    }

    /// Reads and checks a version-2 table.
    pub(super) fn read_table(&self, path: &Path) -> Result<crate::latency::Table, Failure> {
        let bytes = read_file(path, MAX_JSON_BYTES)?;
        let text = String::from_utf8_lossy(&bytes);
        crate::latency::Table::from_json(&text).map_err(|e| {
            eprintln!("error: {}: {e}", path.display());
            Failure::Input
        })
    }

    fn latency_predict(
        &self,
        path: &Path,
        table: &Path,
        json: Option<&Path>,
    ) -> Result<(), Failure> {
        refuse_clashes(&Vec::from_iter(json), &[path, table])?;
        let loaded = self.load(path)?;
        let table = self.read_table(table)?;
        let prediction = crate::latency::predict(&loaded.program, &table).map_err(|e| {
            eprintln!("error: {}: {e}", path.display());
            Failure::Input
        })?;
        print!("{}", prediction.text());
        if let Some(out) = json {
            let text = serde_json::to_string_pretty(&prediction).expect("serializes") + "\n";
            write_output(out, text.as_bytes())?;
        }
        Ok(())
    }

    #[cfg(not(feature = "onnxruntime"))]
    fn latency_measure(
        &self,
        _files: &[PathBuf],
        _output: &Path,
        _settings: &MeasureOptions,
    ) -> Result<(), Failure> {
        Err(Failure::Usage(
            "this nnirc was built without onnxruntime: build it with `cargo build --release \
             --features onnxruntime` (docs/latency.md)"
                .into(),
        ))
    }

    #[cfg(feature = "onnxruntime")]
    fn latency_measure(
        &self,
        files: &[PathBuf],
        output: &Path,
        opts: &MeasureOptions,
    ) -> Result<(), Failure> {
        use crate::latency::measure::{find_library, measure, OptLevel, Settings};
        let mut cache_name = output.as_os_str().to_owned();
        cache_name.push(".cache");
        let cache = PathBuf::from(cache_name);
        let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        refuse_clashes(&[output, cache.as_path()], &inputs)?;
        let library = opts.library.clone().or_else(find_library).ok_or_else(|| {
            Failure::Usage(
                "no onnxruntime library found: pass --library PATH/libonnxruntime.so.X or set \
                 ORT_DYLIB_PATH (the PyPI wheel ships it in onnxruntime/capi/; \
                 docs/latency.md)"
                    .into(),
            )
        })?;
        if opts.threads == 0 || opts.runs == 0 {
            return Err(Failure::Usage(
                "--threads and --runs must be at least 1".into(),
            ));
        }
        let mut programs = Vec::new();
        for f in files {
            programs.push(self.load(f)?.program);
        }
        let optimization = match opts.optimization.as_str() {
            "disable" => OptLevel::Disable,
            "basic" => OptLevel::Basic,
            "extended" => OptLevel::Extended,
            _ => OptLevel::All,
        };
        let settings = Settings {
            library,
            threads: opts.threads,
            optimization,
            warmup: opts.warmup,
            runs: opts.runs,
            block: opts
                .block
                .as_deref()
                .map(|b| b.parse().expect("a listed value")),
            own_widths_only: opts.own_widths,
        };
        let bar = progress_bar("{bar:40} {pos}/{len} points, ETA {eta} {msg}");
        let started = std::time::Instant::now();
        let refs: Vec<&Program> = programs.iter().collect();
        let models = files.iter().map(|f| f.display().to_string()).collect();
        let table = measure(
            &refs,
            models,
            &settings,
            &cache,
            &mut |done, total, what| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message(what.to_string());
            },
        );
        bar.finish_and_clear();
        let table = table.map_err(|e| {
            eprintln!("error: {e}");
            Failure::Input
        })?;
        write_output(output, table.to_json().as_bytes())?;
        let _ = std::fs::remove_file(&cache);
        let points: usize = table.entries.iter().map(|e| e.points.len()).sum();
        eprintln!(
            "{}: {} kernels, {points} points, onnxruntime {} on {} ({} thread(s), optimization \
             {}), in {:.1} s",
            output.display(),
            table.entries.len(),
            table.runtime.version,
            table.machine.cpu,
            table.runtime.threads,
            table.runtime.optimization,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}
