//! Explicit `keep_in` masks for an imported model (`nnirc import --masks FILE.json`).
//!
//! Input: an [`Imported`] model and a JSON spec
//! `{"layers": {"NAME": {"in_channels": C, "keep_in": [i, ...]}}}` (unknown fields are errors,
//! and so is a key given twice in any object: the text is first read by [`UniqueKeys`], which
//! walks every object at every depth, so no "last one wins" can slip through a later typed
//! read; a leading UTF-8 byte order mark is skipped).
//! `NAME` is a param's `.nnir` name or, if no param has that name, the ONNX initializer it was
//! made from (every param made from it); it must be the weight of a layer that takes masks
//! (conv2d with groups == 1, linear). `keep_in` follows the language (docs/nnir.md section
//! 9.2): non-empty, strictly ascending, below `C`, which must be the layer's input channel
//! count.
//!
//! Output: the same model with those layers' `keep_in` replaced (a list of every channel
//! clears it), printed and lowered again, so it is a program the front end accepts. Every
//! problem is an [`OnnxError`] naming the spec file (and the layer key); the model is then
//! left unchanged. Never panics.

use super::{Imported, OnnxError};
use crate::ir::{Op, ParamId, Program};
use petgraph::graph::NodeIndex;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    layers: Layers,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerSpec {
    in_channels: usize,
    /// Signed, so that a negative index is reported as out of range.
    keep_in: Vec<i64>,
}

/// The `layers` object in file order; a key given twice is an error.
#[derive(Debug)]
struct Layers(Vec<(String, LayerSpec)>);

impl<'de> Deserialize<'de> for Layers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(LayersVisitor)
    }
}

struct LayersVisitor;

impl<'de> Visitor<'de> for LayersVisitor {
    type Value = Layers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object mapping layer names to {\"in_channels\", \"keep_in\"}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Layers, A::Error> {
        let mut layers = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            // Untyped first, so that a layer's structural error can name its key (the
            // position is added where the layer ends).
            let value: serde_json::Value = map.next_value()?;
            let Object(layer) = Object::<LayerSpec>::deserialize(value)
                .map_err(|e| de::Error::custom(format!("layer `{key}`: {e}")))?;
            layers.push((key, layer));
        }
        Ok(Layers(layers))
    }
}

/// Any JSON value in which no object gives a key twice; `path` holds the keys of the objects
/// around it (to name the layer in messages).
struct UniqueKeys<'p> {
    path: &'p [String],
}

impl<'de> de::DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                let what = match self.path {
                    [layers] if layers == "layers" => format!("layer `{key}`"),
                    [layers, layer] if layers == "layers" => {
                        format!("layer `{layer}`: field `{key}`")
                    }
                    _ => format!("field `{key}`"),
                };
                return Err(de::Error::custom(format!("{what} is given twice")));
            }
            let mut path = self.path.to_vec();
            path.push(key);
            map.next_value_seed(UniqueKeys { path: &path })?;
        }
        Ok(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(UniqueKeys { path: self.path })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A `T` read from a JSON object only (a derived struct would also accept an array of its
/// fields in order).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Object<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
    }
}

/// Sets the `keep_in` masks that the JSON spec `json` (read from `path`, which names it in
/// messages) gives, and returns how many layers now carry one of them. On error `imported` is
/// unchanged.
///
/// ```
/// use std::path::Path;
/// let src = "model m(%x: f32[1, 4]) -> (%y) {\n  param @fc.weight: f32[2, 4]\n  %y = linear(%x, @fc.weight)\n}\n";
/// let program = nnirc::compile(src).program.unwrap();
/// let bytes = nnirc::onnx::export_bytes(&program, &nnirc::weights::random(&program, 0)).unwrap();
/// let opts = nnirc::onnx::ImportOptions::default();
/// let mut imported = nnirc::onnx::import(&bytes, Path::new("m.onnx"), &opts).unwrap();
/// let spec = r#"{"layers": {"fc.weight": {"in_channels": 4, "keep_in": [0, 2]}}}"#;
/// let n = nnirc::onnx::apply_masks(&mut imported, spec, Path::new("masks.json")).unwrap();
/// assert_eq!(n, 1);
/// assert!(imported.text(None).contains("keep_in=[0, 2]"));
/// ```
pub fn apply_masks(imported: &mut Imported, json: &str, path: &Path) -> Result<usize, OnnxError> {
    let shown = path.display().to_string();
    let json = json.strip_prefix('\u{feff}').unwrap_or(json);
    let parse = |json| -> Result<Object<Spec>, serde_json::Error> {
        let mut unique = serde_json::Deserializer::from_str(json);
        de::DeserializeSeed::deserialize(UniqueKeys { path: &[] }, &mut unique)?;
        unique.end()?;
        serde_json::from_str::<Object<Spec>>(json)
    };
    let Object(spec) = parse(json).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "invalid JSON: "
            }
            _ => "",
        };
        OnnxError(format!("{shown}: {what}{e}"))
    })?;
    let program = &imported.program;
    let mut named_by: HashMap<ParamId, &str> = HashMap::new();
    let mut updates: Vec<(NodeIndex, Option<Vec<usize>>)> = Vec::new();
    for (key, layer) in &spec.layers.0 {
        let fail = |msg: String| OnnxError(format!("{shown}: layer `{key}`: {msg}"));
        for p in resolve(imported, key).map_err(fail)? {
            if let Some(other) = named_by.insert(p, key) {
                return Err(fail(format!(
                    "names the same param `@{}` as layer `{other}`",
                    program.params[p].name
                )));
            }
            for node in weight_users(program, p).map_err(fail)? {
                let mask = check_keep_in(program, node, layer).map_err(fail)?;
                updates.push((node, mask));
            }
        }
    }
    let mut masked = program.clone();
    for (node, mask) in &updates {
        masked.graph[*node].keep_in = mask.clone();
    }
    imported.program = super::relower(&masked).map_err(|first| {
        OnnxError(format!(
            "{shown}: the masked model is not a valid .nnir program: {first}"
        ))
    })?;
    Ok(updates.iter().filter(|(_, m)| m.is_some()).count())
}

/// The params `key` names: the param with that `.nnir` name, else every param made from the
/// ONNX initializer of that name.
fn resolve(imported: &Imported, key: &str) -> Result<Vec<ParamId>, String> {
    let params = &imported.program.params;
    if let Some(p) = params.iter().position(|p| p.name == key) {
        return Ok(vec![p]);
    }
    let from_onnx: Vec<ParamId> = (0..params.len())
        .filter(|&p| imported.onnx_names.get(p).is_some_and(|n| n == key))
        .collect();
    if !from_onnx.is_empty() {
        return Ok(from_onnx);
    }
    let candidates = params
        .iter()
        .map(|p| p.name.as_str())
        .chain(imported.onnx_names.iter().map(String::as_str));
    let hint = match closest(key, candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    };
    Err(format!(
        "no param has this name, in the .nnir file or as an ONNX initializer{hint}"
    ))
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a typo.
fn closest<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .map(|c| (crate::diag::edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c)
}

/// The layers whose weight `p` is; an error unless every use of `p` is the weight of a layer
/// that takes masks.
fn weight_users(program: &Program, p: ParamId) -> Result<Vec<NodeIndex>, String> {
    let name = &program.params[p].name;
    let mut users = Vec::new();
    for n in program.graph.node_indices() {
        let node = &program.graph[n];
        for (pos, _) in node.params.iter().enumerate().filter(|(_, &q)| q == p) {
            let layer = format!("{} `%{}`", node.op.name(), node.name);
            let why = match (&node.op, pos) {
                (op, 0) if op.is_channel_mixing() => {
                    users.push(n);
                    continue;
                }
                (Op::Conv2d(c), 0) => format!(
                    "the weight of {layer} with groups={}; a grouped conv takes no mask",
                    c.groups
                ),
                (op, 1) if op.is_channel_mixing() => format!(
                    "the bias of {layer}; name its weight `{}` to mask that layer",
                    program.params[node.params[0]].name
                ),
                (op, pos) => format!(
                    "the {} of {layer}; only the weight of a conv2d with groups == 1 or of a linear takes a keep_in mask",
                    role(op, pos)
                ),
            };
            return Err(format!("`@{name}` is {why}"));
        }
    }
    if users.is_empty() {
        return Err(format!("`@{name}` is not used by any layer"));
    }
    Ok(users)
}

/// What param `pos` of `op` is, for messages.
fn role(op: &Op, pos: usize) -> String {
    match (op, pos) {
        (Op::BatchNorm { .. }, 2) => "running_mean".to_string(),
        (Op::BatchNorm { .. }, 3) => "running_var".to_string(),
        (_, 0) => "weight".to_string(),
        (_, 1) => "bias".to_string(),
        (_, pos) => format!("param {pos}"),
    }
}

/// The `keep_in` that `layer` gives `node` (`None` when it keeps every channel), checked as
/// the language checks a written mask.
fn check_keep_in(
    program: &Program,
    node: NodeIndex,
    layer: &LayerSpec,
) -> Result<Option<Vec<usize>>, String> {
    let n = &program.graph[node];
    let input = program.operands(node)[0];
    let count = program.graph[input].shape[1];
    let what = if n.op == Op::Linear {
        "input features"
    } else {
        "input channels"
    };
    let layer_name = format!("{} `%{}`", n.op.name(), n.name);
    if layer.in_channels != count {
        return Err(format!(
            "in_channels is {}, but {layer_name} has {count} {what}",
            layer.in_channels
        ));
    }
    if layer.keep_in.is_empty() {
        return Err("keep_in is empty; a layer must keep at least one channel".to_string());
    }
    let mut kept = Vec::with_capacity(layer.keep_in.len());
    for &i in &layer.keep_in {
        let Some(c) = usize::try_from(i).ok().filter(|&c| c < count) else {
            return Err(format!(
                "index {i} in keep_in is out of range: {layer_name} has {count} {what}"
            ));
        };
        match kept.last() {
            Some(&prev) if c == prev => {
                return Err(format!("index {c} is given twice in keep_in"));
            }
            Some(&prev) if c < prev => {
                return Err(format!(
                    "keep_in must be strictly ascending, but {c} comes after {prev}"
                ));
            }
            _ => kept.push(c),
        }
    }
    Ok((kept.len() < count).then_some(kept))
}
