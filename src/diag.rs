//! Diagnostics: user errors with a code, a primary span and secondary labels.
//!
//! Every phase reports user errors as [`Diagnostic`]s (bugs are panics). Spans are byte ranges;
//! this is the only module that knows ariadne, and it renders with byte indexing.

use std::ops::Range;

/// A byte range into the source text.
pub type Span = Range<usize>;

/// Stable error codes, grouped by phase (`E01xx` syntax, `E02xx` names, `E03xx` ops and
/// attributes, `E04xx` shapes, `E05xx` weights, `E06xx` masks, `E07xx` graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    InvalidCharacter,
    UnterminatedString,
    NumberTooLarge,
    UnexpectedToken,
    UnexpectedEnd,
    UndefinedValue,
    RedefinedValue,
    UndefinedParam,
    RedefinedParam,
    UndefinedOutput,
    UnknownOp,
    UnknownAttribute,
    WrongArity,
    BadAttribute,
    DuplicateWeights,
    UnsupportedDtype,
    RankMismatch,
    ChannelMismatch,
    ShapeMismatch,
    BadShape,
    WeightsUnreadable,
    WeightMissing,
    WeightShape,
    WeightDtype,
    InlineInit,
    MaskNotAllowed,
    MaskOutOfRange,
    MaskUnsorted,
    MaskDuplicate,
    MaskEmpty,
    Cycle,
}

impl Code {
    /// The printed code, e.g. `E0101`.
    /// Every code, in numeric order.
    pub const ALL: &'static [Code] = &[
        Code::InvalidCharacter,
        Code::UnterminatedString,
        Code::NumberTooLarge,
        Code::UnexpectedToken,
        Code::UnexpectedEnd,
        Code::UndefinedValue,
        Code::RedefinedValue,
        Code::UndefinedParam,
        Code::RedefinedParam,
        Code::UndefinedOutput,
        Code::UnknownOp,
        Code::UnknownAttribute,
        Code::WrongArity,
        Code::BadAttribute,
        Code::DuplicateWeights,
        Code::UnsupportedDtype,
        Code::RankMismatch,
        Code::ChannelMismatch,
        Code::ShapeMismatch,
        Code::BadShape,
        Code::WeightsUnreadable,
        Code::WeightMissing,
        Code::WeightShape,
        Code::WeightDtype,
        Code::InlineInit,
        Code::MaskNotAllowed,
        Code::MaskOutOfRange,
        Code::MaskUnsorted,
        Code::MaskDuplicate,
        Code::MaskEmpty,
        Code::Cycle,
    ];

    pub fn as_str(self) -> &'static str {
        use Code::*;
        match self {
            InvalidCharacter => "E0101",
            UnterminatedString => "E0102",
            NumberTooLarge => "E0103",
            UnexpectedToken => "E0104",
            UnexpectedEnd => "E0105",
            UndefinedValue => "E0201",
            RedefinedValue => "E0202",
            UndefinedParam => "E0203",
            RedefinedParam => "E0204",
            UndefinedOutput => "E0205",
            UnknownOp => "E0301",
            UnknownAttribute => "E0302",
            WrongArity => "E0303",
            BadAttribute => "E0304",
            DuplicateWeights => "E0305",
            UnsupportedDtype => "E0306",
            RankMismatch => "E0401",
            ChannelMismatch => "E0402",
            ShapeMismatch => "E0403",
            BadShape => "E0404",
            WeightsUnreadable => "E0501",
            WeightMissing => "E0502",
            WeightShape => "E0503",
            WeightDtype => "E0504",
            InlineInit => "E0505",
            MaskNotAllowed => "E0601",
            MaskOutOfRange => "E0602",
            MaskUnsorted => "E0603",
            MaskDuplicate => "E0604",
            MaskEmpty => "E0605",
            Cycle => "E0701",
        }
    }
}

/// A labelled span.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// One user error.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(
        code: Code,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            primary: Label {
                span,
                message: label.into(),
            },
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a secondary label (another place the error involves).
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// Levenshtein distance, for "did you mean" notes.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != b[j]))
                .min(row[j] + 1)
                .min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Rendering options.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderConfig {
    pub color: bool,
}

/// Renders diagnostics against `source` (named `path` in the output), in span order.
pub fn render(diags: &[Diagnostic], path: &str, source: &str, config: RenderConfig) -> String {
    use ariadne::{Config, IndexType, Label as ALabel, Report, ReportKind, Source};
    let mut sorted: Vec<&Diagnostic> = diags.iter().collect();
    sorted.sort_by_key(|d| (d.primary.span.start, d.code));
    let mut out = Vec::new();
    let clamp = |span: &Span| {
        let end = span.end.min(source.len());
        span.start.min(end)..end
    };
    for diag in sorted {
        let primary = clamp(&diag.primary.span);
        let mut report = Report::build(ReportKind::Error, (path, primary.clone()))
            .with_config(
                Config::default()
                    .with_color(config.color)
                    .with_index_type(IndexType::Byte),
            )
            .with_code(diag.code.as_str())
            .with_message(&diag.message)
            .with_label(
                ALabel::new((path, primary))
                    .with_message(&diag.primary.message)
                    .with_order(0),
            );
        for (i, label) in diag.secondary.iter().enumerate() {
            report = report.with_label(
                ALabel::new((path, clamp(&label.span)))
                    .with_message(&label.message)
                    .with_order(i as i32 + 1),
            );
        }
        for note in &diag.notes {
            report = report.with_note(note);
        }
        report
            .finish()
            .write((path, Source::from(source)), &mut out)
            .expect("writing to a Vec cannot fail");
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A diagnostic about a file as a whole (no source text to point into), e.g. an unreadable
/// weights file: rendered as one line.
pub fn render_plain(diag: &Diagnostic, path: &str) -> String {
    let mut s = format!(
        "error[{}]: {}: {}\n",
        diag.code.as_str(),
        path,
        diag.message
    );
    for note in &diag.notes {
        s.push_str(&format!("  note: {note}\n"));
    }
    s
}
