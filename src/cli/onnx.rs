//! `nnirc export` and `nnirc import`: ONNX out and in, one call to
//! [`crate::onnx::export_bytes`] or [`crate::onnx::import`] each.

use super::*;

/// `nnirc export` and `nnirc import` (ONNX).
impl Context {
    pub(super) fn export_onnx(
        &self,
        path: &Path,
        out: &Path,
        random: Option<u64>,
    ) -> Result<(), Failure> {
        let loaded = self.load(path)?;
        let weights_in = weights_path(path, &loaded.program);
        let mut inputs = vec![path];
        inputs.extend(weights_in.as_deref());
        refuse_clashes(&[out], &inputs)?;
        let estimate = crate::interp::memory_estimate(&loaded.program);
        let seeded = match random {
            Some(_) => estimate.seeded_bytes,
            None => 0,
        };
        // The initializers (f32) and the encoded model: twice the parameters at 4 bytes.
        self.check_memory(
            path,
            &[
                ("seeded weights", seeded),
                ("ONNX initializers", estimate.params.saturating_mul(8)),
            ],
        )?;
        let weights = self.weights(path, &loaded, random)?;
        let bytes = crate::onnx::export_bytes(&loaded.program, &weights).map_err(|e| {
            eprintln!("error: {}: {e}", path.display());
            Failure::Input
        })?;
        write_output(out, &bytes)
    }

    pub(super) fn import_onnx(
        &self,
        path: &Path,
        out: &Path,
        masks_from_zeros: bool,
        masks: Option<&Path>,
        no_weights: bool,
    ) -> Result<(), Failure> {
        nnir_output(out)?;
        let weights_out = out.with_extension("safetensors");
        let mut inputs = vec![path];
        inputs.extend(masks);
        let mut outputs = vec![out];
        if !no_weights {
            outputs.push(&weights_out);
        }
        refuse_clashes(&outputs, &inputs)?;
        let bytes = read_file(path, MAX_ONNX_BYTES)?;
        // The model's external data files are inputs too.
        let external = crate::onnx::external_files(&bytes, path);
        inputs.extend(external.iter().map(PathBuf::as_path));
        refuse_clashes(&outputs, &inputs)?;
        let spec = match masks {
            Some(m) => {
                let bytes = read_file(m, MAX_JSON_BYTES)?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    eprintln!("error: {}: not valid UTF-8", m.display());
                    Failure::Input
                })?;
                Some((m, text))
            }
            None => None,
        };
        let opts = crate::onnx::ImportOptions {
            masks_from_zeros,
            skip_external_weights: no_weights,
        };
        let mut imported = crate::onnx::import(&bytes, path, &opts).map_err(|e| {
            eprintln!("error: {e}");
            Failure::Input
        })?;
        let mut masked = String::new();
        if let Some((m, text)) = &spec {
            let n = crate::onnx::apply_masks(&mut imported, text, m).map_err(|e| {
                eprintln!("error: {e}");
                Failure::Input
            })?;
            let noun = if n == 1 { "mask" } else { "masks" };
            masked = format!(", {n} keep_in {noun} from {}", m.display());
        }
        let file_name = weights_out
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut staged = Outputs::default();
        if no_weights {
            stage(&mut staged, out, &[imported.text(None).as_bytes()])?;
        } else {
            let weight_bytes = imported.weights_bytes().map_err(|e| {
                eprintln!("error: cannot encode the weights: {e}");
                Failure::Input
            })?;
            stage(&mut staged, &weights_out, &[&weight_bytes])?;
            let text = imported.text(Some(&file_name));
            stage(&mut staged, out, &[text.as_bytes()])?;
        }
        commit(staged)?;
        eprintln!(
            "imported {} nodes and {} params{masked} into {}{}",
            imported.program.graph.node_count() - imported.program.inputs.len(),
            imported.program.params.len(),
            out.display(),
            if no_weights {
                String::new()
            } else {
                format!(" and {}", weights_out.display())
            }
        );
        Ok(())
    }
}
