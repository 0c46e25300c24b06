//! Diagnostics: user errors with a code, a primary span and secondary labels.
//!
//! Every phase reports user errors as [`Diagnostic`]s (bugs are panics). Spans are byte ranges;
//! this is the only module that knows ariadne, and it renders with byte indexing.
//!
//! Rendering is safe on hostile input, by construction rather than case by case:
//! - every piece of text that reaches the terminal (messages, labels, notes, the quoted source
//!   lines) passes through [`printable`] or `printable_source`, so no control, escape or
//!   bidirectional-override character from a file is ever echoed (no terminal injection);
//! - the source's line index is built once per [`render`] call, whatever the number of
//!   diagnostics, and at most [`MAX_RENDERED`] are printed, followed by a count of the rest,
//!   so rendering is linear in the size of the file plus what is printed.

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

/// The most diagnostics [`render`] prints; a line counts the rest.
pub const MAX_RENDERED: usize = 50;

/// Whether `c` must not reach a terminal: C0 and C1 controls other than tab and line breaks,
/// DEL, and the bidirectional formatting characters (which reorder what is displayed).
fn unsafe_char(c: char) -> bool {
    (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character, and carriage returns (which would let a message
/// overwrite its own line), written as a `\u{..}` escape.
///
/// ```
/// assert_eq!(nnirc::diag::printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
/// ```
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if unsafe_char(c) || c == '\r' {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `source` with every unsafe character replaced by as many `?` as it has bytes: byte offsets,
/// and so every span, stay valid, and the line structure is kept.
fn printable_source(source: &str) -> std::borrow::Cow<'_, str> {
    if !source.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    for c in source.chars() {
        if unsafe_char(c) {
            out.extend(std::iter::repeat_n('?', c.len_utf8()));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Rendering options.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderConfig {
    pub color: bool,
}

/// Renders diagnostics against `source` (named `path` in the output), in span order: the first
/// [`MAX_RENDERED`], then a line counting the rest. Text from the file is made
/// [`printable`] first.
pub fn render(diags: &[Diagnostic], path: &str, source: &str, config: RenderConfig) -> String {
    use ariadne::{Config, IndexType, Label as ALabel, Report, ReportKind, Source};
    let mut sorted: Vec<&Diagnostic> = diags.iter().collect();
    sorted.sort_by_key(|d| (d.primary.span.start, d.code));
    let mut out = Vec::new();
    let shown_path = printable(path);
    let path = shown_path.as_str();
    // A leading byte order mark is not shown (the lexer skips it): spans move with it.
    let shift = if source.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    let source = &source[shift..];
    let text = printable_source(source);
    // One line index for the whole file (ariadne's `Source`), shared by every report.
    let mut cache = (path, Source::from(text.as_ref()));
    // `text` has the bytes of `source` at the same offsets, bar the replaced characters:
    // spans index both alike.
    let clamp = |span: &Span| {
        let end = span.end.saturating_sub(shift).min(source.len());
        span.start.saturating_sub(shift).min(end)..end
    };
    for diag in sorted.iter().take(MAX_RENDERED) {
        let primary = clamp(&diag.primary.span);
        let mut report = Report::build(ReportKind::Error, (path, primary.clone()))
            .with_config(
                Config::default()
                    .with_color(config.color)
                    .with_index_type(IndexType::Byte),
            )
            .with_code(diag.code.as_str())
            .with_message(printable(&diag.message))
            .with_label(
                ALabel::new((path, primary))
                    .with_message(printable(&diag.primary.message))
                    .with_order(0),
            );
        for (i, label) in diag.secondary.iter().enumerate() {
            report = report.with_label(
                ALabel::new((path, clamp(&label.span)))
                    .with_message(printable(&label.message))
                    .with_order(i as i32 + 1),
            );
        }
        for note in &diag.notes {
            report = report.with_note(printable(note));
        }
        report
            .finish()
            .write(&mut cache, &mut out)
            .expect("writing to a Vec cannot fail");
    }
    let mut rendered = String::from_utf8_lossy(&out).into_owned();
    if let Some(rest) = sorted.len().checked_sub(MAX_RENDERED).filter(|&r| r > 0) {
        let noun = if rest == 1 { "error" } else { "errors" };
        rendered.push_str(&format!("... and {rest} more {noun} in {path}\n"));
    }
    rendered
}

/// A diagnostic about a file as a whole (no source text to point into), e.g. an unreadable
/// weights file: rendered as one line.
pub fn render_plain(diag: &Diagnostic, path: &str) -> String {
    let mut s = format!(
        "error[{}]: {}: {}\n",
        diag.code.as_str(),
        printable(path),
        printable(&diag.message)
    );
    for note in &diag.notes {
        s.push_str(&format!("  note: {}\n", printable(note)));
    }
    s
}
