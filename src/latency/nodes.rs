//! The measured table as the pruner's per-node latency ([`crate::prune::NodeLatency`]): a
//! node that starts a unit costs the unit's predicted time at its widths; a node fused into a
//! unit costs nothing of its own (its time is in the unit's). Layout reorders and the
//! runtime's overheads depend on the whole graph and are not per-node; `nnirc latency
//! predict` adds them, and so does the whole-program cost
//! ([`crate::prune::NodeLatency::program_ms`]) that
//! the export-aware knapsack prices exports with.

use super::table::Table;
use super::units::{units, Kernel};
use crate::ir::Program;
use crate::prune::NodeLatency;
use petgraph::graph::NodeIndex;

/// A table bound to one program's units.
#[derive(Debug, Clone)]
pub struct UnitLatency {
    table: Table,
    /// Per node: the kernel and the model's own widths of the unit it starts, if it does.
    starts: Vec<Option<(Kernel, usize, usize)>>,
}

impl UnitLatency {
    /// Binds `table` to `program`; an error names the units the table has no measurement
    /// for at the program's own widths.
    pub fn new(table: Table, program: &Program) -> Result<UnitLatency, super::predict::Missing> {
        super::predict(program, &table)?;
        let mut starts = vec![None; program.graph.node_count()];
        for u in units(program) {
            starts[u.nodes[0].index()] = Some((u.kernel, u.c_in, u.c_out));
        }
        Ok(UnitLatency { table, starts })
    }

    /// The NCHWc block of the runtime the table was measured on.
    pub fn block(&self) -> usize {
        self.table.block
    }
}

impl NodeLatency for UnitLatency {
    fn node_ms(&self, _program: &Program, node: NodeIndex, c_in: usize, c_out: usize) -> f64 {
        let Some((kernel, full_in, full_out)) = &self.starts[node.index()] else {
            return 0.0;
        };
        let (c_in, c_out) = if kernel.two_widths() {
            (c_in, c_out)
        } else {
            (c_out, c_out)
        };
        let us = match self.table.lookup(kernel, c_in.max(1), c_out.max(1)) {
            Some((us, _)) => us,
            // A width class the grid did not reach: the model's own point, scaled by the
            // widths (checked to exist in `new`).
            None => {
                let (full, _) = self
                    .table
                    .lookup(kernel, *full_in, *full_out)
                    .expect("UnitLatency::new checked the model's own widths");
                full * (c_in * c_out) as f64 / (*full_in * *full_out) as f64
            }
        };
        us * self.table.calibration.scale / 1e3
    }

    /// The table's gather at the consumer's input size; nothing where the table has none (the
    /// export's [`NodeLatency::program_ms`] then fails on the missing kernel, so nothing is priced
    /// silently at zero in the end).
    fn read_ms(&self, program: &Program, consumer: NodeIndex, c_in: usize, c_out: usize) -> f64 {
        let Some(&src) = program.operands(consumer).first() else {
            return 0.0;
        };
        let shape = &program.graph[src].shape;
        let input = match shape.len() {
            4 => [shape[2], shape[3]],
            _ => [1, 1],
        };
        self.table
            .lookup(&Kernel::Gather { input }, c_in.max(1), c_out.max(1))
            .map_or(0.0, |(us, _)| us * self.table.calibration.scale / 1e3)
    }

    /// [`super::predict`]: units, reorders and overheads of the whole program.
    fn program_ms(&self, program: &Program) -> Result<f64, String> {
        super::predict(program, &self.table)
            .map(|p| p.total_us / 1e3)
            .map_err(|e| e.to_string())
    }
}
