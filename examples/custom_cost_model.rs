//! A cost model written outside the crate, passed to the library's optimize entry, and
//! compared with the built-in ones (docs/cost-models.md explains the contract).
//!
//! Run: `cargo run --example custom_cost_model [MODEL.nnir]` (default: the SqueezeNet fire
//! example). It prints, per cost model, the selection ops, copies and MACs of the optimized
//! program, and exits 1 if the custom model yields the same plan as `views` (it is meant to
//! show a plan change; CI runs it).
//!
//! The model: a runtime where every selection op costs a fixed launch overhead, whatever its
//! size (a GPU-style kernel launch), and a zero weight column costs its multiply-adds at a
//! small price. Copies of any size are then worth avoiding, and small gaps are read through
//! zero columns instead.

use nnirc::egraph::{Cost, CostModel};
use nnirc::optimize::{optimize, CostModelKind, Mode, OptimizeConfig};
use std::sync::Arc;

/// Every slice or gather costs `launch` units; a zero column costs 1 unit per
/// `macs_per_unit` multiply-adds. Unit: nanoseconds.
struct LaunchBound {
    launch: u64,
    macs_per_unit: u64,
}

impl CostModel for LaunchBound {
    fn name(&self) -> &str {
        "launch-bound"
    }
    fn slice(&self, _channels: usize, _bytes_per_channel: u64) -> Cost {
        Cost::new(self.launch)
    }
    fn gather(&self, _channels: usize, _bytes_per_channel: u64) -> Cost {
        Cost::new(self.launch)
    }
    fn zero_columns(&self, columns: usize, macs_per_column: u64) -> Cost {
        let macs = (columns as u64).saturating_mul(macs_per_column);
        Cost::ratio(macs, 1, self.macs_per_unit)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/squeezenet_fire.nnir").to_string()
    });
    let source = std::fs::read_to_string(&path)?;
    let compiled = nnirc::compile(&source);
    let Some(program) = compiled.program else {
        return Err(format!("{path} does not compile: {:?}", compiled.diagnostics).into());
    };
    let weights = nnirc::weights::random(&program, 0);

    let mut models: Vec<Arc<dyn CostModel>> = vec![
        CostModelKind::Views.model(None)?,
        CostModelKind::Graph.model(None)?,
    ];
    models.push(Arc::new(LaunchBound {
        launch: 5_000,
        macs_per_unit: 1_000,
    }));
    println!(
        "{:<14} {:>14} {:>12} {:>14} {:>14}",
        "cost model", "selection ops", "copying ops", "bytes copied", "MACs"
    );
    let mut plans = Vec::new();
    for model in models {
        let config = OptimizeConfig {
            mode: Mode::Upscale,
            cost_model: model.clone(),
            verify: Some(0),
            ..Default::default()
        };
        let optimized = optimize(&program, &weights, &config)?;
        let after = optimized.report.after;
        println!(
            "{:<14} {:>14} {:>12} {:>14} {:>14}",
            model.name(),
            after.selection_ops,
            after.copying_ops,
            after.bytes_copied,
            after.macs
        );
        plans.push(nnirc::codegen::program_text(&optimized.program, None));
    }
    if plans[2] == plans[0] {
        eprintln!("the launch-bound model chose the same program as `views`");
        std::process::exit(1);
    }
    println!("the launch-bound model changed the plan (every result verified)");
    Ok(())
}
