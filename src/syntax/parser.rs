//! Drives the lalrpop parser over the logos tokens and turns every error into a diagnostic.

use super::ast::File;
use super::lexer::{lex, LexErrorKind, Span, Token};
use crate::diag::{Code, Diagnostic};
use lalrpop_util::{lalrpop_mod, ErrorRecovery, ParseError};

lalrpop_mod!(
    #[allow(clippy::all, clippy::pedantic, unused_parens, dead_code)]
    grammar,
    "/grammar/nnir.rs"
);

/// The result of [`parse`]: the tree (when the model header parsed), comments and diagnostics.
#[derive(Debug)]
pub struct Parsed {
    pub file: Option<File>,
    /// Spans of `#` comments, for the pretty-printer.
    pub comments: Vec<Span>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses `.nnir` source text. Never panics; reports every lexer error and every statement
/// that failed to parse.
pub fn parse(source: &str) -> Parsed {
    let lexed = lex(source);
    let mut diagnostics: Vec<Diagnostic> = lexed
        .errors
        .iter()
        .map(|e| match e.kind {
            LexErrorKind::UnexpectedChar => Diagnostic::new(
                Code::InvalidCharacter,
                "invalid character",
                e.span.clone(),
                "not part of any token",
            ),
            LexErrorKind::UnterminatedString => Diagnostic::new(
                Code::UnterminatedString,
                "unterminated string",
                e.span.clone(),
                "this string has no closing `\"` on its line",
            ),
            LexErrorKind::NumberTooLarge => Diagnostic::new(
                Code::NumberTooLarge,
                "number too large",
                e.span.clone(),
                "beyond the range of 64-bit integers and floats",
            ),
        })
        .collect();
    let mut recovered: Vec<ErrorRecovery<usize, Token<'_>, LexErrorKind>> = Vec::new();
    let result = grammar::FileParser::new().parse(&mut recovered, lexed.tokens.iter().cloned());
    for r in recovered {
        diagnostics.push(parse_error(r.error, source));
    }
    let file = match result {
        Ok(file) => Some(file),
        Err(e) => {
            diagnostics.push(parse_error(e, source));
            None
        }
    };
    Parsed {
        file,
        comments: lexed.comments,
        diagnostics,
    }
}

fn expected_note(expected: &[String]) -> Option<String> {
    if expected.is_empty() {
        return None;
    }
    let names: Vec<String> = expected.iter().map(|e| pretty_terminal(e)).collect();
    Some(match names.as_slice() {
        [one] => format!("expected {one}"),
        _ => format!("expected one of {}", names.join(", ")),
    })
}

/// lalrpop names terminals by their grammar strings (`"\"(\""`, `"\"%value\""`).
fn pretty_terminal(terminal: &str) -> String {
    let inner = terminal.trim_matches('"');
    match inner {
        "%value" | "@param" | "identifier" | "integer" | "number" | "string" | "newline" => {
            let article = if inner == "identifier" || inner == "integer" {
                "an"
            } else {
                "a"
            };
            match inner {
                "%value" => "a value (`%name`)".to_string(),
                "@param" => "a parameter (`@name`)".to_string(),
                "newline" => "end of line".to_string(),
                _ => format!("{article} {inner}"),
            }
        }
        _ => format!("`{inner}`"),
    }
}

fn parse_error(e: ParseError<usize, Token<'_>, LexErrorKind>, source: &str) -> Diagnostic {
    match e {
        ParseError::InvalidToken { location } => Diagnostic::new(
            Code::InvalidCharacter,
            "invalid token",
            location..location + 1,
            "here",
        ),
        ParseError::UnrecognizedEof { location, expected } => {
            let end = source.len();
            let d = Diagnostic::new(
                Code::UnexpectedEnd,
                "unexpected end of file",
                location.min(end)..end,
                "the file ends here",
            );
            match expected_note(&expected) {
                Some(n) => d.with_note(n),
                None => d,
            }
        }
        ParseError::UnrecognizedToken {
            token: (l, tok, r),
            expected,
        } => {
            let span = if l == r {
                l..(l + 1).min(source.len().max(l))
            } else {
                l..r
            };
            let d = Diagnostic::new(
                Code::UnexpectedToken,
                format!("unexpected {}", tok.describe()),
                span,
                "unexpected here",
            );
            match expected_note(&expected) {
                Some(n) => d.with_note(n),
                None => d,
            }
        }
        ParseError::ExtraToken { token: (l, tok, r) } => Diagnostic::new(
            Code::UnexpectedToken,
            format!("unexpected {} after the model", tok.describe()),
            l..r,
            "only one model per file",
        ),
        ParseError::User { error } => Diagnostic::new(
            Code::InvalidCharacter,
            format!("lexer error: {error:?}"),
            0..0,
            "here",
        ),
    }
}
