//! Writing masks into the syntax tree: [`clear_masks`] and [`set_masks`] edit the AST by
//! statement name, so that the result prints with [`crate::syntax::print::print`], comments
//! and all.
//!
//! Invariant: an edit either applies to every named statement or changes nothing.

use crate::syntax::ast::{File, Item, List, ListItem, Mask, MaskKind};
use std::collections::HashMap;

/// Removes every mask of `kind` from the model's statements; returns how many were removed.
pub fn clear_masks(file: &mut File, kind: MaskKind) -> usize {
    let Some(model) = &mut file.model else {
        return 0;
    };
    let mut removed = 0;
    for item in &mut model.items {
        if let Item::Node(stmt) = item {
            let before = stmt.masks.len();
            stmt.masks.retain(|m| m.kind != kind);
            removed += before - stmt.masks.len();
        }
    }
    removed
}

/// Writes `masks` (statement name without `%`, kept channels ascending) as masks of `kind`,
/// replacing a mask of that kind already on the statement and keeping the other kind. A new
/// `keep_in` goes before an existing `keep_out`, a new `keep_out` after an existing `keep_in`.
///
/// Nothing is changed unless every name is defined by a statement; otherwise the names that
/// are not are returned. The masks are not validated: lowering the result checks them.
///
/// ```
/// use nnirc::syntax::{ast::MaskKind, parse, print::print};
/// let src = "model m(%x: f32[1, 4]) -> (%y) {\n  param @w: f32[2, 4]\n  %y = linear(%x, @w)\n}\n";
/// let mut file = parse(src).file.unwrap();
/// nnirc::prune::set_masks(&mut file, MaskKind::KeepIn, &[("y", &[0, 1, 2][..])]).unwrap();
/// assert!(print(&file, "", &[]).contains("%y = linear(%x, @w) keep_in=[0..3]"));
/// ```
pub fn set_masks<S: AsRef<str>, K: AsRef<[usize]>>(
    file: &mut File,
    kind: MaskKind,
    masks: &[(S, K)],
) -> Result<(), Vec<String>> {
    let Some(model) = &mut file.model else {
        return Err(masks.iter().map(|(n, _)| n.as_ref().to_string()).collect());
    };
    let mut stmts: HashMap<&str, usize> = HashMap::new();
    for (i, item) in model.items.iter().enumerate() {
        if let Item::Node(stmt) = item {
            stmts.entry(stmt.result.text.as_str()).or_insert(i);
        }
    }
    let mut targets = Vec::with_capacity(masks.len());
    let mut unknown = Vec::new();
    for (name, kept) in masks {
        match stmts.get(name.as_ref()) {
            Some(&i) => targets.push((i, kept.as_ref())),
            None => unknown.push(name.as_ref().to_string()),
        }
    }
    if !unknown.is_empty() {
        return Err(unknown);
    }
    for (i, kept) in targets {
        let Item::Node(stmt) = &mut model.items[i] else {
            unreachable!("indexed statements are nodes");
        };
        // New masks get an empty span at the end of the statement (spans are only used to
        // place comments, which attach to the statement).
        let at = stmt.span.end..stmt.span.end;
        let list = List {
            items: kept
                .iter()
                .map(|&c| (ListItem::Int(c as i64), at.clone()))
                .collect(),
            span: at.clone(),
        };
        let mask = Mask {
            kind,
            list,
            span: at,
        };
        if let Some(old) = stmt.masks.iter_mut().find(|m| m.kind == kind) {
            *old = Mask {
                span: old.span.clone(),
                ..mask
            };
        } else if kind == MaskKind::KeepIn {
            stmt.masks.insert(0, mask);
        } else {
            stmt.masks.push(mask);
        }
    }
    Ok(())
}
