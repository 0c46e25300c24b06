//! `nnirc latency measure`: times every kernel of the given models on a width grid in
//! onnxruntime and writes a [`Table`].
//!
//! Method (docs/latency.md):
//! - each grid point is a micro-model of one unit ([`super::micro`]), exported by nnirc;
//! - all points of one kernel get a session each (the deploy settings: intra-op threads,
//!   sequential execution, the optimization level) with onnxruntime's profiler on; after
//!   `warmup` runs each, `runs` rounds run every session twice back to back (the second run
//!   timed: its input and weights are in cache, as a layer's input is in a model), in an
//!   order shuffled per round;
//! - from the profile, a run's unit time is the sum of its kernels other than layout reorders
//!   (so what the runtime fuses is measured, not assumed); the point's time is the
//!   interquartile mean over runs (the profiler counts whole microseconds, a median alone
//!   would round small kernels); reorders give the reorder cost by bytes, and each run's time
//!   outside kernels gives the overheads (a least-squares fit of `run + kernels * kernel`);
//! - each whole model is then timed (seeded random weights, median wall time) and the table's
//!   calibration scale set so that `scale * (units + reorders) + overheads` matches it: the
//!   kernels of a model run together are not exactly the sum of the kernels run alone;
//! - every finished kernel is appended to a cache file (JSON lines) at once, keyed by the
//!   runtime version, the CPU, its ISA flags, the threads and the optimization level: an
//!   interrupted measurement resumes where it stopped, and a different machine or setting
//!   never reuses it.
//!
//! onnxruntime is loaded at run time (`ort` with `load-dynamic`) from the shared library the
//! PyPI wheel ships (`onnxruntime/capi/libonnxruntime.so.*`).

use super::micro::{grid, micro_source, CONTEXT};
use super::table::{
    BytesPoint, Calibration, CalibrationModel, Entry, Machine, Method, Overhead, Point, Reorders,
    Runtime, Table,
};
use super::units::{units, Kernel};
use crate::ir::Program;
use crate::tensor::SplitMix64;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A measurement that could not be made.
#[derive(Debug)]
pub struct MeasureError(pub String);

impl fmt::Display for MeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MeasureError {}

fn err<E: fmt::Display>(context: &str) -> impl Fn(E) -> MeasureError + '_ {
    move |e| MeasureError(format!("{context}: {e}"))
}

/// The process's onnxruntime environment (onnxruntime allows one per process), loaded from
/// `library` on first use; a later call with another library is an error.
fn runtime_environment(
    library: &Path,
) -> Result<&'static ort::environment::Environment, MeasureError> {
    static ENVIRONMENT: std::sync::OnceLock<(PathBuf, ort::environment::Environment)> =
        std::sync::OnceLock::new();
    static LOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if ENVIRONMENT.get().is_none() {
        let env = ort::init_from(library)
            .map_err(|e| {
                MeasureError(format!(
                    "cannot load onnxruntime from {}: {e}",
                    library.display()
                ))
            })?
            .with_name("nnirc")
            .build()
            .map_err(|e| MeasureError(format!("onnxruntime environment: {e}")))?;
        let _ = ENVIRONMENT.set((library.to_path_buf(), env));
    }
    let (loaded, env) = ENVIRONMENT.get().expect("set above");
    if loaded != library {
        return Err(MeasureError(format!(
            "onnxruntime is already loaded from {} in this process; cannot load {}",
            loaded.display(),
            library.display()
        )));
    }
    Ok(env)
}

fn session_option<E: fmt::Display>(e: E) -> MeasureError {
    MeasureError(format!("onnxruntime session options: {e}"))
}

/// onnxruntime's graph optimization levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    All,
}

impl OptLevel {
    pub fn name(self) -> &'static str {
        match self {
            OptLevel::Disable => "disable",
            OptLevel::Basic => "basic",
            OptLevel::Extended => "extended",
            OptLevel::All => "all",
        }
    }

    fn ort(self) -> GraphOptimizationLevel {
        match self {
            OptLevel::Disable => GraphOptimizationLevel::Disable,
            OptLevel::Basic => GraphOptimizationLevel::Level1,
            OptLevel::Extended => GraphOptimizationLevel::Level2,
            OptLevel::All => GraphOptimizationLevel::All,
        }
    }
}

/// What to measure with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The onnxruntime shared library.
    pub library: PathBuf,
    pub threads: usize,
    pub optimization: OptLevel,
    pub warmup: usize,
    pub runs: usize,
    /// The NCHWc block; `None`: from the CPU (16 with AVX-512F, else 8).
    pub block: Option<usize>,
    /// Measure only the models' own widths (a smoke test), not the grid.
    pub own_widths_only: bool,
}

/// Progress, for a bar: called with (points done, points in all, the kernel being measured).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, &str);

/// One finished point, as cached: times as the profiler gave them (the profiler's own cost
/// per kernel is taken off when the table is assembled, with this run's calibration).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    environment: String,
    kernel: Kernel,
    point: Point,
    /// The kernels the unit became.
    kernels: usize,
    /// (bytes of the plain side, us, into NCHWc) of each reorder, per-run medians.
    reorders: Vec<(u64, f64, bool)>,
}

/// The CPU's model name, its SIMD flags and its logical CPU count, from /proc/cpuinfo.
fn machine() -> Machine {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let flags = field("flags").unwrap_or_default();
    let wanted = [
        "sse4_1",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx_vnni",
        "amx_tile",
    ];
    let isa = flags
        .split_whitespace()
        .filter(|f| wanted.contains(f))
        .map(str::to_string)
        .collect();
    Machine {
        cpu: field("model name").unwrap_or_else(|| "unknown".into()),
        isa,
        logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// The runtime's version, from the library's file name (`libonnxruntime.so.1.31.1`).
fn library_version(library: &Path) -> String {
    let name = library
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split_once(".so.")
        .map_or_else(|| "unknown".to_string(), |(_, v)| v.to_string())
}

/// The kernels of `programs` and the width pairs each uses, plus a slice and a gather at every
/// spatial size a conv reads (what an optimized, pruned variant adds).
fn kernels(programs: &[&Program]) -> BTreeMap<Kernel, Vec<(usize, usize)>> {
    let mut seen: BTreeMap<Kernel, Vec<(usize, usize)>> = BTreeMap::new();
    for program in programs {
        for u in units(program) {
            if let Kernel::Conv { input, .. } = &u.kernel {
                for read in [
                    Kernel::Slice { input: *input },
                    Kernel::Gather { input: *input },
                ] {
                    seen.entry(read).or_default().push((u.c_in, u.c_in));
                }
            }
            if let Kernel::Linear { .. } = &u.kernel {
                for read in [
                    Kernel::Slice { input: [1, 1] },
                    Kernel::Gather { input: [1, 1] },
                ] {
                    seen.entry(read).or_default().push((u.c_in, u.c_in));
                }
            }
            seen.entry(u.kernel).or_default().push((u.c_in, u.c_out));
        }
    }
    seen
}

/// Measures a table for `programs` (see the module docs). `cache` is the resume file.
pub fn measure(
    programs: &[&Program],
    models: Vec<String>,
    settings: &Settings,
    cache: &Path,
    progress: Progress<'_>,
) -> Result<Table, MeasureError> {
    let machine = machine();
    let block = settings
        .block
        .unwrap_or(if machine.isa.iter().any(|f| f == "avx512f") {
            16
        } else {
            8
        });
    let runtime = Runtime {
        name: "onnxruntime".into(),
        version: library_version(&settings.library),
        provider: "CPUExecutionProvider".into(),
        threads: settings.threads,
        optimization: settings.optimization.name().into(),
    };
    let environment = format!(
        "onnxruntime {} | {} | {} | threads {} | optimization {} | block {} | warmup {} runs {}",
        runtime.version,
        machine.cpu,
        machine.isa.join(" "),
        runtime.threads,
        runtime.optimization,
        block,
        settings.warmup,
        settings.runs
    );
    let mut done: BTreeMap<(Kernel, usize, usize), Cached> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(cache) {
        // A torn last line (a crash mid-write) is skipped; everything before it is kept.
        for line in text.lines() {
            if let Ok(c) = serde_json::from_str::<Cached>(line) {
                if c.environment == environment {
                    done.insert((c.kernel.clone(), c.point.c_in, c.point.c_out), c);
                }
            }
        }
    }
    let plan: Vec<(Kernel, Vec<(usize, usize)>)> = kernels(programs)
        .into_iter()
        .map(|(k, seen)| {
            let pairs = if settings.own_widths_only {
                let set: BTreeSet<(usize, usize)> = seen.into_iter().collect();
                set.into_iter().collect()
            } else {
                grid(&k, &seen, block)
            };
            (k, pairs)
        })
        .collect();
    let total: usize = plan.iter().map(|(_, p)| p.len()).sum();
    let mut finished = plan
        .iter()
        .flat_map(|(k, p)| p.iter().map(move |&(i, o)| (k.clone(), i, o)))
        .filter(|key| done.contains_key(key))
        .count();
    let env = runtime_environment(&settings.library)?;
    let scratch = tempfile::tempdir().map_err(err("temporary directory"))?;
    progress(finished, total, "calibrating the overheads");
    let overhead = calibrate(env, settings, scratch.path())?;
    let mut cache_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cache)
        .map_err(|e| MeasureError(format!("cannot open the cache {}: {e}", cache.display())))?;
    for (kernel, pairs) in &plan {
        let pending: Vec<(usize, usize)> = pairs
            .iter()
            .copied()
            .filter(|&(i, o)| !done.contains_key(&(kernel.clone(), i, o)))
            .collect();
        if pending.is_empty() {
            continue;
        }
        progress(finished, total, &kernel.describe());
        let results = measure_kernel(env, kernel, &pending, settings, scratch.path())?;
        for (point, kernels, reorders) in results {
            let cached = Cached {
                environment: environment.clone(),
                kernel: kernel.clone(),
                point,
                kernels,
                reorders,
            };
            let line = serde_json::to_string(&cached).expect("serializes") + "\n";
            cache_file
                .write_all(line.as_bytes())
                .and_then(|()| cache_file.flush())
                .map_err(|e| MeasureError(format!("cannot write the cache: {e}")))?;
            done.insert((kernel.clone(), point.c_in, point.c_out), cached);
            finished += 1;
        }
    }
    let (entries, reorders) = assemble(plan, &done, overhead);
    let mut table = Table {
        version: super::table::VERSION,
        runtime,
        machine,
        block,
        method: Method {
            warmup: settings.warmup,
            runs: settings.runs,
            statistic: "interquartile mean of the per-run sum of the unit's kernel times \
                        (onnxruntime profiler, less its calibrated cost per kernel), each timed \
                        run right after an untimed one, in shuffled interleaved rounds"
                .into(),
        },
        measured: now_utc(),
        models: models.clone(),
        overhead,
        calibration: Calibration {
            scale: 1.0,
            models: Vec::new(),
        },
        reorders,
        entries,
    };
    progress(finished, total, "timing the whole models");
    table.calibration = calibrate_models(env, programs, &models, &table, settings)?;
    progress(finished, total, "done");
    Ok(table)
}

/// Times each whole model (seeded random weights, interleaved rounds, median wall time of
/// `session.run`) and sets the scale that maps the table's kernel sum onto it.
fn calibrate_models(
    env: &ort::environment::Environment,
    programs: &[&Program],
    models: &[String],
    table: &Table,
    settings: &Settings,
) -> Result<Calibration, MeasureError> {
    let mut probes = Vec::new();
    for (i, program) in programs.iter().enumerate() {
        let weights = crate::weights::random(program, 0);
        let bytes = crate::onnx::export_bytes(program, &weights)
            .map_err(|e| MeasureError(format!("export of {}: {e}", models[i])))?;
        probes.push(probe_bytes(env, &bytes, program, settings, None, i as u64)?);
    }
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); probes.len()];
    for round in 0..settings.warmup + settings.runs {
        for (i, p) in probes.iter_mut().enumerate() {
            let start = std::time::Instant::now();
            p.run()?;
            if round >= settings.warmup {
                wall[i].push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    let mut out = Vec::new();
    let mut log_sum = 0.0;
    for ((program, model), w) in programs.iter().zip(models).zip(wall) {
        let measured_us = median(w);
        let p = super::predict(program, table).map_err(|e| {
            MeasureError(format!("internal error: the new table misses {model}: {e}"))
        })?;
        let kernels_us = p.total_us - p.overhead_us;
        log_sum += ((measured_us - p.overhead_us).max(1e-3) / kernels_us.max(1e-3)).ln();
        out.push(CalibrationModel {
            model: model.clone(),
            measured_us,
            predicted_us: p.total_us,
        });
    }
    Ok(Calibration {
        scale: (log_sum / out.len().max(1) as f64).exp(),
        models: out,
    })
}

/// The entries and reorder costs from the finished points, with the profiler's cost per
/// kernel taken off.
fn assemble(
    plan: Vec<(Kernel, Vec<(usize, usize)>)>,
    done: &BTreeMap<(Kernel, usize, usize), Cached>,
    overhead: Overhead,
) -> (Vec<Entry>, Reorders) {
    let mut entries = Vec::new();
    let mut reorder_samples: [BTreeMap<u64, Vec<f64>>; 2] = Default::default();
    let profiler = |us: f64, kernels: usize| (us - overhead.profiler_us * kernels as f64).max(0.0);
    for (kernel, pairs) in plan {
        let mut points = Vec::new();
        for (i, o) in pairs {
            let c = &done[&(kernel.clone(), i, o)];
            points.push(Point {
                us: profiler(c.point.us, c.kernels),
                ..c.point
            });
            for &(bytes, us, input) in &c.reorders {
                reorder_samples[usize::from(input)]
                    .entry(bytes)
                    .or_default()
                    .push(profiler(us, 1));
            }
        }
        entries.push(Entry { kernel, points });
    }
    // One least-squares line per direction over every reorder seen (single samples of one
    // size scatter by a factor of two): its values at no bytes and at the largest size seen.
    let bytes_points = |samples: &BTreeMap<u64, Vec<f64>>| -> Vec<BytesPoint> {
        let all: Vec<(f64, f64)> = samples
            .iter()
            .flat_map(|(&b, us)| us.iter().map(move |&u| (b as f64, u)))
            .collect();
        let Some(&largest) = samples.keys().last() else {
            // No blocked conv anywhere: the predictor never needs a reorder.
            return vec![BytesPoint { bytes: 0, us: 0.0 }];
        };
        let (a, b) = fit_line(&all);
        let (a, b) = (a.max(0.0), b.max(0.0));
        let mut points = vec![BytesPoint { bytes: 0, us: a }];
        if largest > 0 {
            points.push(BytesPoint {
                bytes: largest,
                us: a + b * largest as f64,
            });
        }
        points
    };
    let reorders = Reorders {
        input: bytes_points(&reorder_samples[1]),
        output: bytes_points(&reorder_samples[0]),
    };
    (entries, reorders)
}

/// Least squares of `y = a + b x`, as `(a, b)`.
fn fit_line(samples: &[(f64, f64)]) -> (f64, f64) {
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 - my)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - b * mx, b)
}

/// The chain lengths of the calibration models.
const CHAINS: [usize; 6] = [1, 2, 4, 8, 16, 32];

/// The runtime's overheads, from chains of `k` relus on 8 floats (whose kernels cost next to
/// nothing), run with and without the profiler and interleaved: wall time per run is
/// `run + k * kernel`, and the profiler's time per kernel is what it reports for a relu.
fn calibrate(
    env: &ort::environment::Environment,
    settings: &Settings,
    scratch: &Path,
) -> Result<Overhead, MeasureError> {
    let mut probes = Vec::new();
    for (i, &k) in CHAINS.iter().enumerate() {
        let mut source = "model chain(%x: f32[1, 8, 1, 1]) -> (%y) {\n".to_string();
        for j in 0..k {
            let from = if j == 0 {
                "%x".to_string()
            } else {
                format!("%r{j}")
            };
            let to = if j + 1 == k {
                "%y".to_string()
            } else {
                format!("%r{}", j + 1)
            };
            source += &format!("  {to} = relu({from})\n");
        }
        source += "}\n";
        for profiled in [false, true] {
            let prefix = profiled.then(|| scratch.join(format!("calibration{i}")));
            probes.push((
                k,
                probe(env, &source, settings, prefix.as_deref(), i as u64)?,
            ));
        }
    }
    let rounds = settings.runs.max(10) * 4;
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); probes.len()];
    for round in 0..settings.warmup + rounds {
        for (i, (_, p)) in probes.iter_mut().enumerate() {
            let start = std::time::Instant::now();
            p.run()?;
            if round >= settings.warmup {
                wall[i].push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    let mut plain = Vec::new();
    let mut profiled = Vec::new();
    for ((k, mut p), w) in probes.into_iter().zip(wall) {
        if p.profiled {
            let runs = parse_profile(&p.end()?)?;
            let timed = &runs[runs.len().saturating_sub(rounds)..];
            let per_kernel: Vec<f64> = timed
                .iter()
                .map(|r| r.unit_us / r.unit_kernels.max(1) as f64)
                .collect();
            profiled.push(median(per_kernel));
        } else {
            plain.push((k as f64, median(w)));
        }
    }
    let (run_us, kernel_us) = fit_line(&plain);
    Ok(Overhead {
        run_us: run_us.max(0.0),
        kernel_us: kernel_us.max(0.0),
        profiler_us: median(profiled),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The mean of the middle half (the interquartile mean).
fn interquartile_mean(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let (lo, hi) = (n / 4, n - n / 4);
    let mid = &v[lo..hi.max(lo + 1).min(n)];
    mid.iter().sum::<f64>() / mid.len() as f64
}

fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One micro-model session and its inputs.
struct Probe {
    session: Session,
    inputs: Vec<(String, Tensor<f32>)>,
    profiled: bool,
}

/// A session for the `.nnir` `source` (random weights, random inputs from `seed`), with the
/// profiler writing under `profile` if given.
fn probe(
    env: &ort::environment::Environment,
    source: &str,
    settings: &Settings,
    profile: Option<&Path>,
    seed: u64,
) -> Result<Probe, MeasureError> {
    let program = crate::compile(source).program.ok_or_else(|| {
        MeasureError(format!(
            "internal error: a micro-model does not compile:\n{source}"
        ))
    })?;
    let weights = crate::weights::random(&program, 0);
    let bytes = crate::onnx::export_bytes(&program, &weights)
        .map_err(|e| MeasureError(format!("export of a micro-model: {e}")))?;
    probe_bytes(env, &bytes, &program, settings, profile, seed)
        .map_err(|e| MeasureError(format!("{e}\n{source}")))
}

/// A session for the ONNX `bytes` of `program`, random inputs from `seed`.
fn probe_bytes(
    env: &ort::environment::Environment,
    bytes: &[u8],
    program: &Program,
    settings: &Settings,
    profile: Option<&Path>,
    seed: u64,
) -> Result<Probe, MeasureError> {
    let mut builder = Session::builder(env)
        .map_err(session_option)?
        .with_intra_threads(settings.threads)
        .map_err(session_option)?
        .with_inter_threads(1)
        .map_err(session_option)?
        .with_parallel_execution(false)
        .map_err(session_option)?
        .with_optimization_level(settings.optimization.ort())
        .map_err(session_option)?;
    if let Some(prefix) = profile {
        builder = builder.with_profiling(prefix).map_err(session_option)?;
    }
    let session = builder
        .commit_from_memory(bytes)
        .map_err(|e| MeasureError(format!("onnxruntime refused a model: {e}")))?;
    let mut rng = SplitMix64::new(seed);
    let mut inputs = Vec::new();
    for &n in &program.inputs {
        let shape: Vec<i64> = program.graph[n].shape.iter().map(|&d| d as i64).collect();
        let len: usize = program.graph[n].shape.iter().product();
        let data: Vec<f32> = (0..len).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
        let tensor = Tensor::from_array((shape, data))
            .map_err(|e| MeasureError(format!("input tensor: {e}")))?;
        inputs.push((program.graph[n].name.clone(), tensor));
    }
    Ok(Probe {
        session,
        inputs,
        profiled: profile.is_some(),
    })
}

impl Probe {
    fn run(&mut self) -> Result<(), MeasureError> {
        let values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = self
            .inputs
            .iter()
            .map(|(name, t)| (Cow::Borrowed(name.as_str()), SessionInputValue::from(t)))
            .collect();
        self.session
            .run(values)
            .map(drop)
            .map_err(|e| MeasureError(format!("onnxruntime run: {e}")))
    }

    /// Stops the profiler; its trace.
    fn end(&mut self) -> Result<String, MeasureError> {
        let file = self
            .session
            .end_profiling()
            .map_err(|e| MeasureError(format!("onnxruntime profiling: {e}")))?;
        let text = std::fs::read_to_string(&file).map_err(err("reading a profile"));
        let _ = std::fs::remove_file(&file);
        text
    }
}

/// A point's time, the kernels its unit became, and its reorders (bytes, us, into NCHWc).
type PointResult = (Point, usize, Vec<(u64, f64, bool)>);

fn measure_kernel(
    env: &ort::environment::Environment,
    kernel: &Kernel,
    pairs: &[(usize, usize)],
    settings: &Settings,
    scratch: &Path,
) -> Result<Vec<PointResult>, MeasureError> {
    let mut probes = Vec::with_capacity(pairs.len());
    for (index, &(c_in, c_out)) in pairs.iter().enumerate() {
        let source = micro_source(kernel, c_in, c_out);
        let prefix = scratch.join(format!("p{index}"));
        probes.push(probe(env, &source, settings, Some(&prefix), index as u64)?);
    }
    for probe in probes.iter_mut() {
        for _ in 0..settings.warmup {
            probe.run()?;
        }
    }
    let mut rng = SplitMix64::new(0x5eed);
    let mut order: Vec<usize> = (0..probes.len()).collect();
    for _ in 0..settings.runs {
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        // Twice back to back, the second timed: in a model a kernel's input was just
        // written by its producer (in cache), which a lone cold run would not show.
        for &i in &order {
            probes[i].run()?;
            probes[i].run()?;
        }
    }
    let mut results = Vec::with_capacity(probes.len());
    for (mut probe, &(c_in, c_out)) in probes.into_iter().zip(pairs) {
        let runs = parse_profile(&probe.end()?)?;
        // The warm-up runs are in the profile too: keep the second run of each timed pair.
        let pairs = &runs[runs.len().saturating_sub(2 * settings.runs)..];
        let timed: Vec<&ProfiledRun> = pairs.iter().skip(1).step_by(2).collect();
        let unit: Vec<f64> = timed.iter().map(|r| r.unit_us).collect();
        let nchwc = timed.iter().any(|r| r.nchwc);
        let timed = &timed[..];
        let kernels = timed.first().map_or(0, |r| r.unit_kernels);
        let mut reorders = Vec::new();
        if let Some(first) = timed.first() {
            for (i, &(bytes, _, input)) in first.reorders.iter().enumerate() {
                let us: Vec<f64> = timed
                    .iter()
                    .filter_map(|r| r.reorders.get(i).map(|x| x.1))
                    .collect();
                reorders.push((bytes, median(us), input));
            }
        }
        let point = Point {
            c_in,
            c_out,
            us: interquartile_mean(unit),
            nchwc,
        };
        results.push((point, kernels, reorders));
    }
    Ok(results)
}

/// One run, from the profile.
struct ProfiledRun {
    unit_us: f64,
    unit_kernels: usize,
    nchwc: bool,
    reorders: Vec<(u64, f64, bool)>,
}

#[derive(Deserialize)]
struct Event {
    cat: String,
    name: String,
    #[serde(default)]
    dur: f64,
    #[serde(default)]
    ts: f64,
    #[serde(default)]
    args: serde_json::Value,
}

/// Splits an onnxruntime profile (Chrome trace JSON) into runs.
fn parse_profile(text: &str) -> Result<Vec<ProfiledRun>, MeasureError> {
    let events: Vec<Event> = serde_json::from_str(text).map_err(err("onnxruntime profile"))?;
    let mut runs: Vec<(f64, f64, ProfiledRun)> = events
        .iter()
        .filter(|e| e.cat == "Session" && e.name == "model_run")
        .map(|e| {
            (
                e.ts,
                e.ts + e.dur,
                ProfiledRun {
                    unit_us: 0.0,
                    unit_kernels: 0,
                    nchwc: false,
                    reorders: Vec::new(),
                },
            )
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    for e in events
        .iter()
        .filter(|e| e.cat == "Node" && e.name.ends_with("_kernel_time"))
    {
        let Some((_, _, run)) = runs
            .iter_mut()
            .find(|(start, end, _)| *start <= e.ts && e.ts <= *end)
        else {
            continue;
        };
        let op = e.args.get("op_name").and_then(|v| v.as_str()).unwrap_or("");
        if e.name.starts_with(CONTEXT) {
            continue;
        }
        match op {
            "ReorderInput" | "ReorderOutput" => {
                let input = op == "ReorderInput";
                let side = if input {
                    "input_type_shape"
                } else {
                    "output_type_shape"
                };
                let elements: u64 = e
                    .args
                    .get(side)
                    .and_then(|v| v.get(0))
                    .and_then(|v| v.get("float"))
                    .and_then(|v| v.as_array())
                    .map_or(0, |dims| dims.iter().filter_map(|d| d.as_u64()).product());
                run.reorders.push((elements * 4, e.dur, input));
            }
            _ => {
                run.unit_us += e.dur;
                run.unit_kernels += 1;
                if e.name.contains("_nchwc") {
                    run.nchwc = true;
                }
            }
        }
    }
    Ok(runs.into_iter().map(|(_, _, r)| r).collect())
}

/// The onnxruntime library of the PyPI wheel: the `ORT_DYLIB_PATH` environment variable, else
/// the wheel in `target/ort-venv` or `.venv` under the current directory, or in the
/// `ort-venv` beside the directory of the running executable (`target/release/nnirc`).
pub fn find_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    let mut venvs = vec![PathBuf::from("target/ort-venv"), PathBuf::from(".venv")];
    if let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
    {
        venvs.push(target.join("ort-venv"));
    }
    for venv in venvs {
        let lib = venv.join("lib");
        let Ok(pythons) = std::fs::read_dir(&lib) else {
            continue;
        };
        for python in pythons.flatten() {
            let capi = python.path().join("site-packages/onnxruntime/capi");
            let Ok(files) = std::fs::read_dir(&capi) else {
                continue;
            };
            let mut found: Vec<PathBuf> = files
                .flatten()
                .map(|f| f.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so."))
                })
                .collect();
            found.sort();
            if let Some(p) = found.pop() {
                return Some(p);
            }
        }
    }
    None
}
