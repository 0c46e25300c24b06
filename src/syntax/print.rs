//! The canonical pretty-printer (`nnirc fmt`).
//!
//! Invariant: for any file that parses without diagnostics, `print(parse(print(f)))` equals
//! `print(f)`: printing is a fixed point. Comments are kept (a comment inside a statement moves
//! above it), runs of blank lines between statements become one, operands come before
//! attributes, and masks are written with maximal ascending runs as ranges.

use super::ast::*;
use std::fmt::Write;

const INDENT: &str = "  ";

/// Prints `file` canonically. `source` and `comments` (from [`super::parse`]) are used to keep
/// comments and blank lines; pass an empty source and no comments to print the tree alone.
pub fn print(file: &File, source: &str, comments: &[Span]) -> String {
    let mut out = String::new();
    let Some(model) = &file.model else {
        return out;
    };
    let comment = |span: &Span| {
        source
            .get(span.clone())
            .unwrap_or("#")
            .trim_end()
            .to_string()
    };

    let mut next_comment = 0;
    // Comments before the model.
    while next_comment < comments.len() && comments[next_comment].start < model.span.start {
        let c = &comments[next_comment];
        if next_comment > 0 && blank_line_between(source, comments[next_comment - 1].end, c.start) {
            out.push('\n');
        }
        out.push_str(&comment(c));
        out.push('\n');
        next_comment += 1;
    }
    if next_comment > 0
        && blank_line_between(source, comments[next_comment - 1].end, model.span.start)
    {
        out.push('\n');
    }

    write_header(&mut out, model);
    out.push_str(" {\n");

    let mut prev_end: Option<usize> = None;
    for item in &model.items {
        let span = item.span();
        // Leading comments: everything before the end of this item that is not a trailing
        // comment of the previous line.
        while next_comment < comments.len() && comments[next_comment].start < span.end {
            let c = &comments[next_comment];
            if prev_end.is_some_and(|e| blank_line_between(source, e, c.start)) {
                out.push('\n');
            }
            out.push_str(INDENT);
            out.push_str(&comment(c));
            out.push('\n');
            prev_end = Some(c.end);
            next_comment += 1;
        }
        if prev_end.is_some_and(|e| blank_line_between(source, e, span.start)) {
            out.push('\n');
        }
        out.push_str(INDENT);
        write_item(&mut out, item);
        prev_end = Some(span.end);
        // A trailing comment on the same line.
        if next_comment < comments.len()
            && !newline_between(source, span.end, comments[next_comment].start)
        {
            out.push_str("  ");
            out.push_str(&comment(&comments[next_comment]));
            prev_end = Some(comments[next_comment].end);
            next_comment += 1;
        }
        out.push('\n');
    }
    // Comments after the last statement, inside the body.
    while next_comment < comments.len() && comments[next_comment].start < model.span.end {
        let c = &comments[next_comment];
        if prev_end.is_some_and(|e| blank_line_between(source, e, c.start)) {
            out.push('\n');
        }
        out.push_str(INDENT);
        out.push_str(&comment(c));
        out.push('\n');
        prev_end = Some(c.end);
        next_comment += 1;
    }
    out.push_str("}\n");
    // Comments after the model.
    let mut prev_end = model.span.end;
    for c in &comments[next_comment..] {
        if blank_line_between(source, prev_end, c.start) {
            out.push('\n');
        }
        out.push_str(&comment(c));
        out.push('\n');
        prev_end = c.end;
    }
    out
}

fn newline_between(source: &str, from: usize, to: usize) -> bool {
    source.get(from..to).is_none_or(|s| s.contains('\n'))
}

fn blank_line_between(source: &str, from: usize, to: usize) -> bool {
    source
        .get(from..to)
        .is_some_and(|s| s.matches('\n').count() >= 2)
}

fn write_header(out: &mut String, model: &Model) {
    let inputs: Vec<String> = model
        .inputs
        .iter()
        .map(|i| format!("%{}: {}", i.name.text, type_text(&i.ty)))
        .collect();
    let outputs: Vec<String> = model
        .outputs
        .iter()
        .map(|o| format!("%{}", o.text))
        .collect();
    let _ = write!(
        out,
        "model {}({}) -> ({})",
        model.name.text,
        inputs.join(", "),
        outputs.join(", ")
    );
}

fn type_text(ty: &TensorType) -> String {
    let dims: Vec<String> = ty.dims.iter().map(|(d, _)| d.to_string()).collect();
    format!("{}[{}]", ty.dtype.text, dims.join(", "))
}

fn write_item(out: &mut String, item: &Item) {
    match item {
        Item::Weights(w) => {
            let _ = write!(out, "weights \"{}\"", w.path);
        }
        Item::Param(p) => {
            let _ = write!(out, "param @{}: {}", p.name.text, type_text(&p.ty));
            if let Some(init) = &p.init {
                out.push_str(" = ");
                out.push_str(&list_text(init));
            }
        }
        Item::Broken(b) => {
            // Only reachable when printing a file that had syntax errors.
            let _ = write!(
                out,
                "# statement defining %{} omitted: it has a syntax error",
                b.result.text
            );
        }
        Item::Node(n) => {
            let mut args: Vec<String> = n
                .operands
                .iter()
                .map(|o| match o {
                    Operand::Value(v) => format!("%{}", v.text),
                    Operand::Param(p) => format!("@{}", p.text),
                })
                .collect();
            args.extend(
                n.attrs
                    .iter()
                    .map(|a| format!("{}={}", a.name.text, attr_text(&a.value))),
            );
            let _ = write!(
                out,
                "%{} = {}({})",
                n.result.text,
                n.op.text,
                args.join(", ")
            );
            for m in &n.masks {
                let _ = write!(out, " {}={}", m.kind.keyword(), mask_text(&m.list));
            }
        }
    }
}

/// Formats a float so that it lexes back as a float and parses to the same value.
pub fn float_text(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

fn attr_text(v: &AttrValue) -> String {
    match v {
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Float(f) => float_text(*f),
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::List(l) => list_text(l),
    }
}

fn item_text(item: &ListItem) -> String {
    match item {
        ListItem::Int(i) => i.to_string(),
        ListItem::Float(f) => float_text(*f),
        ListItem::Range(a, b) => format!("{a}..{b}"),
    }
}

fn list_text(l: &List) -> String {
    let items: Vec<String> = l.items.iter().map(|(i, _)| item_text(i)).collect();
    format!("[{}]", items.join(", "))
}

/// A mask list as maximal ranges, when it is a strictly ascending set of integers (a valid
/// mask); otherwise as written, so that lowering still reports what is wrong with it.
fn mask_text(l: &List) -> String {
    let mut values = Vec::new();
    for (item, _) in &l.items {
        match *item {
            ListItem::Int(i) => values.push(i),
            ListItem::Range(a, b) if a < b && b.checked_sub(a).is_some_and(|n| n <= 1 << 24) => {
                values.extend(a..b)
            }
            _ => return list_text(l),
        }
    }
    if values.windows(2).any(|w| w[0] >= w[1]) {
        return list_text(l);
    }
    format!("[{}]", compress_runs(&values))
}

/// `0, 1, 2, 3, 7, 9, 10` -> `0..4, 7, 9, 10`: ascending runs of three or more become ranges.
pub fn compress_runs(values: &[i64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i + 1;
        while j < values.len() && Some(values[j]) == values[j - 1].checked_add(1) {
            j += 1;
        }
        if j - i >= 3 {
            parts.push(format!("{}..{}", values[i], i128::from(values[j - 1]) + 1));
        } else {
            parts.extend(values[i..j].iter().map(|v| v.to_string()));
        }
        i = j;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs() {
        assert_eq!(compress_runs(&[0, 1, 2, 3, 7, 9, 10]), "0..4, 7, 9, 10");
        assert_eq!(compress_runs(&[]), "");
        assert_eq!(
            compress_runs(&[i64::MAX - 2, i64::MAX - 1, i64::MAX]),
            "9223372036854775805..9223372036854775808"
        );
    }

    #[test]
    fn floats_stay_floats() {
        assert_eq!(float_text(1.0), "1.0");
        assert_eq!(float_text(1e-5), "1e-5");
        assert_eq!(float_text(-0.25), "-0.25");
    }
}
