//! The front end and the weights reader never panic: random bytes, mutated valid files and
//! corrupt safetensors files all end in diagnostics (or success), and whatever parses cleanly
//! formats to a fixed point.
mod common;
use common::*;
use proptest::prelude::*;

/// Runs every front-end stage that takes user text, including rendering and formatting.
fn front_end(source: &str) {
    let compiled = nnirc::compile(source);
    let rendered = nnirc::diag::render(
        &compiled.diagnostics,
        "fuzz.nnir",
        source,
        Default::default(),
    );
    assert_eq!(compiled.diagnostics.is_empty(), rendered.is_empty());
    assert_eq!(
        compiled.program.is_some(),
        compiled.diagnostics.is_empty() && compiled.parsed.file.is_some()
    );
    if compiled.parsed.diagnostics.is_empty() {
        if let Some(file) = &compiled.parsed.file {
            let once = nnirc::syntax::print::print(file, source, &compiled.parsed.comments);
            let again = nnirc::syntax::parse(&once);
            assert!(
                again.diagnostics.is_empty(),
                "printed text does not parse:\n{once}\n{:?}",
                again.diagnostics
            );
            let twice =
                nnirc::syntax::print::print(again.file.as_ref().unwrap(), &once, &again.comments);
            assert_eq!(once, twice);
        }
    }
}

fn seeds() -> Vec<String> {
    let mut files = examples();
    files.extend(nnir_files("tests/data"));
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Pieces of `.nnir` worth splicing into valid files.
const SNIPPETS: &[&str] = &[
    "%",
    "@",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    ":",
    "->",
    "..",
    "\n",
    "#",
    "\"",
    "0",
    "-1",
    "99999999999999999999",
    "1e400",
    "f32",
    "keep_in=[",
    "keep_out=[0..",
    "groups=0",
    "stride=[0]",
    "model",
    "weights \"x\"",
    "param @p: f32[",
    "conv2d(",
    "concat(%x)",
    "%x",
    "@w",
    "0..4294967296",
    "\u{0}",
    "é",
    "9223372036854775807",
    "-9223372036854775808",
    "1099511627776",
    "\r\n",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, snippet: usize },
    DuplicateLine { line: usize },
    DropLine { line: usize },
    SwapLines { a: usize, b: usize },
    Number { at: usize, value: i64 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..SNIPPETS.len())
            .prop_map(|(at, snippet)| Mutation::Insert { at, snippet }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        any::<usize>().prop_map(|line| Mutation::DropLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        (
            any::<usize>(),
            prop_oneof![
                Just(0i64),
                Just(-1),
                Just(i64::MAX),
                Just(1 << 33),
                0i64..3000
            ]
        )
            .prop_map(|(at, value)| Mutation::Number { at, value }),
    ]
}

fn apply(source: &str, m: &Mutation) -> String {
    let boundary = |at: usize| {
        let mut at = at % (source.len() + 1);
        while !source.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    let mut lines: Vec<&str> = source.split_inclusive('\n').collect();
    match *m {
        Mutation::Delete { at, len } => {
            let a = boundary(at);
            let b = boundary((a + len).min(source.len()));
            format!("{}{}", &source[..a], &source[b.max(a)..])
        }
        Mutation::Insert { at, snippet } => {
            let a = boundary(at);
            format!("{}{}{}", &source[..a], SNIPPETS[snippet], &source[a..])
        }
        Mutation::DuplicateLine { line } if !lines.is_empty() => {
            let i = line % lines.len();
            lines.insert(i, lines[i]);
            lines.concat()
        }
        Mutation::DropLine { line } if !lines.is_empty() => {
            lines.remove(line % lines.len());
            lines.concat()
        }
        Mutation::SwapLines { a, b } if !lines.is_empty() => {
            let n = lines.len();
            lines.swap(a % n, b % n);
            lines.concat()
        }
        Mutation::Number { at, value } => {
            // Replace the first integer at or after `at`.
            let a = boundary(at);
            match source[a..].find(|c: char| c.is_ascii_digit()) {
                Some(off) => {
                    let start = a + off;
                    let end = source[start..]
                        .find(|c: char| !c.is_ascii_digit())
                        .map_or(source.len(), |e| start + e);
                    format!("{}{value}{}", &source[..start], &source[end..])
                }
                None => source.to_string(),
            }
        }
        _ => source.to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        front_end(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_token_soup(pieces in proptest::collection::vec(0..SNIPPETS.len(), 0..60)) {
        let text: String = pieces.iter().map(|&i| SNIPPETS[i]).collect::<Vec<_>>().join(" ");
        front_end(&text);
    }

    #[test]
    fn mutated_valid_files(file in any::<prop::sample::Index>(), mutations in proptest::collection::vec(mutation(), 1..4)) {
        let seeds = seeds();
        let mut source = seeds[file.index(seeds.len())].clone();
        for m in &mutations {
            source = apply(&source, m);
        }
        front_end(&source);
    }
}

/// A model bound to `weights.safetensors` in a temporary directory holding `bytes`.
fn load_weights(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("weights.safetensors"), bytes).unwrap();
    let source = "model m(%x: f32[1, 4, 8, 8]) -> (%y) {\n  weights \"weights.safetensors\"\n  param @conv.weight: f32[8, 4, 3, 3]\n  param @conv.bias: f32[8]\n  %y = conv2d(%x, @conv.weight, @conv.bias, padding=1)\n}\n";
    let program = nnirc::compile(source).program.unwrap();
    match nnirc::weights::load(&program, dir.path()) {
        Ok(w) => assert_eq!(w.len(), program.params.len()),
        Err(diags) => {
            assert!(!diags.is_empty());
            let _ = nnirc::diag::render(&diags, "m.nnir", source, Default::default());
        }
    }
}

fn fixture() -> Vec<u8> {
    std::fs::read(root().join("tests/data/errors/weights.safetensors")).unwrap()
}

#[test]
fn intact_weights_load() {
    load_weights(&fixture());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn corrupt_safetensors(cut in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6)) {
        let mut bytes = fixture();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        load_weights(&bytes);
    }

    #[test]
    fn random_safetensors(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        load_weights(&bytes);
    }

    #[test]
    fn lying_header_length(len in any::<u64>(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend(tail);
        load_weights(&bytes);
    }
}
