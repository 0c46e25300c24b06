//! Lexer: `.nnir` text -> tokens with byte spans, comments on the side.
//!
//! Invariants: every byte of the input is either inside a token, inside a comment, whitespace,
//! a leading byte order mark, or covered by exactly one [`LexError`]; lexing never fails as a whole and never panics.
//! Newlines are statement terminators only at bracket depth 0: [`lex`] drops them inside
//! `(...)` and `[...]`, collapses runs, and inserts a zero-width one before a `}` that ends a
//! statement, so the grammar sees exactly one `Newline` after every statement.

use logos::Logos;
use std::ops::Range;

/// A byte range into the source text.
pub type Span = Range<usize>;

/// Why a piece of input is not a token.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum LexErrorKind {
    #[default]
    UnexpectedChar,
    UnterminatedString,
    NumberTooLarge,
}

/// A lexing error with its span (reported, then skipped: parsing goes on without it).
#[derive(Debug, Clone, PartialEq)]
pub struct LexError {
    pub kind: LexErrorKind,
    pub span: Span,
}

/// The tokens of `.nnir`.
#[derive(Logos, Debug, Clone, Copy, PartialEq)]
#[logos(error = LexErrorKind)]
#[logos(skip r"[ \t\r\f]+")]
pub enum Token<'input> {
    #[token("model")]
    Model,
    #[token("weights")]
    Weights,
    #[token("param")]
    Param,
    #[token("keep_in")]
    KeepIn,
    #[token("keep_out")]
    KeepOut,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token("=")]
    Eq,
    #[token("->")]
    Arrow,
    #[token("..")]
    DotDot,
    #[token("\n")]
    Newline,
    /// `# ...` to the end of the line.
    #[regex(r"#[^\n]*", allow_greedy = true)]
    Comment,
    /// `%name`: an SSA value; the slice excludes the sigil.
    #[regex(r"%[A-Za-z0-9_][A-Za-z0-9_./]*", |lex| &lex.slice()[1..])]
    Value(&'input str),
    /// `@name`: a parameter tensor; the slice excludes the sigil.
    #[regex(r"@[A-Za-z0-9_][A-Za-z0-9_./]*", |lex| &lex.slice()[1..])]
    ParamRef(&'input str),
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*")]
    Ident(&'input str),
    #[regex(r"-?[0-9]+", |lex| lex.slice().parse::<i64>().map_err(|_| LexErrorKind::NumberTooLarge))]
    Int(i64),
    #[regex(r"-?[0-9]+\.[0-9]+([eE][+-]?[0-9]+)?", finite_float)]
    #[regex(r"-?[0-9]+[eE][+-]?[0-9]+", finite_float)]
    Float(f64),
    /// A double-quoted string without escapes; the slice excludes the quotes.
    #[regex(r#""[^"\n]*""#, |lex| { let s = lex.slice(); &s[1..s.len() - 1] })]
    #[regex(r#""[^"\n]*"#, |_| Err(LexErrorKind::UnterminatedString))]
    Str(&'input str),
}

/// A float literal's value; literals beyond the f64 range are errors, not infinities.
fn finite_float<'s>(lex: &mut logos::Lexer<'s, Token<'s>>) -> Result<f64, LexErrorKind> {
    match lex.slice().parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        _ => Err(LexErrorKind::NumberTooLarge),
    }
}

impl Token<'_> {
    /// How the token is named in "expected one of" notes.
    pub fn describe(&self) -> String {
        match self {
            Token::Value(v) => format!("value `%{v}`"),
            Token::ParamRef(p) => format!("parameter `@{p}`"),
            Token::Ident(i) => format!("identifier `{i}`"),
            Token::Int(i) => format!("integer `{i}`"),
            Token::Float(f) => format!("number `{f:?}`"),
            Token::Str(s) => format!("string \"{s}\""),
            Token::Newline => "end of line".to_string(),
            other => format!("`{}`", other.text()),
        }
    }

    fn text(&self) -> &'static str {
        match self {
            Token::Model => "model",
            Token::Weights => "weights",
            Token::Param => "param",
            Token::KeepIn => "keep_in",
            Token::KeepOut => "keep_out",
            Token::True => "true",
            Token::False => "false",
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::Comma => ",",
            Token::Colon => ":",
            Token::Eq => "=",
            Token::Arrow => "->",
            Token::DotDot => "..",
            _ => "?",
        }
    }
}

/// The output of [`lex`]: tokens ready for the parser, plus what is not a token.
#[derive(Debug, Default)]
pub struct Lexed<'input> {
    pub tokens: Vec<(usize, Token<'input>, usize)>,
    /// Spans of `#` comments, in source order (the pretty-printer keeps them).
    pub comments: Vec<Span>,
    pub errors: Vec<LexError>,
}

/// Lexes `source` completely. See the module note for the newline rules. A UTF-8 byte order
/// mark at the very start is skipped (spans stay byte offsets into `source`, BOM included);
/// one anywhere else is an unexpected character.
pub fn lex(source: &str) -> Lexed<'_> {
    let mut out = Lexed::default();
    let mut raw: Vec<(Token<'_>, Span)> = Vec::new();
    let mut lexer = Token::lexer(source);
    if source.starts_with('\u{feff}') {
        lexer.bump('\u{feff}'.len_utf8());
    }
    while let Some(result) = lexer.next() {
        let span = lexer.span();
        let token = match result {
            Ok(token) => token,
            Err(kind) => {
                // Merge adjacent unexpected characters into one error.
                if let Some(last) = out.errors.last_mut() {
                    if last.kind == kind && last.span.end == span.start {
                        last.span.end = span.end;
                        continue;
                    }
                }
                // An unterminated string still counts as a string, so the parser does not
                // report the same mistake again.
                // Likewise an out-of-range number still counts as a number (diagnostics
                // that later phases raise at its span are dropped, see `crate::compile`).
                let text = &source[span.clone()];
                match kind {
                    LexErrorKind::UnterminatedString => {
                        raw.push((Token::Str(&text[1..]), span.clone()))
                    }
                    LexErrorKind::NumberTooLarge if text.contains(['.', 'e', 'E']) => {
                        raw.push((Token::Float(f64::MAX), span.clone()))
                    }
                    LexErrorKind::NumberTooLarge => raw.push((Token::Int(i64::MAX), span.clone())),
                    LexErrorKind::UnexpectedChar => {}
                }
                out.errors.push(LexError { kind, span });
                continue;
            }
        };
        if token == Token::Comment {
            out.comments.push(span);
            continue;
        }
        raw.push((token, span));
    }
    let mut depth = 0usize;
    for (i, (token, span)) in raw.iter().cloned().enumerate() {
        match token {
            Token::Newline => {
                // An unclosed bracket ends at a line that clearly starts a new statement.
                if depth > 0 && starts_statement(&raw[i + 1..]) {
                    depth = 0;
                }
                let after_break = matches!(
                    out.tokens.last(),
                    None | Some((_, Token::Newline | Token::LBrace, _))
                );
                if depth > 0 || after_break {
                    continue;
                }
            }
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            Token::LBrace => depth = 0,
            Token::RBrace => {
                depth = 0;
                let needs_break = !matches!(
                    out.tokens.last(),
                    None | Some((_, Token::Newline | Token::LBrace, _))
                );
                if needs_break {
                    out.tokens.push((span.start, Token::Newline, span.start));
                }
            }
            _ => {}
        }
        out.tokens.push((span.start, token, span.end));
    }
    out
}

/// Whether `rest` (the tokens after a newline) begins a statement or closes the body: such a
/// line can never continue a bracketed list.
fn starts_statement(rest: &[(Token<'_>, Span)]) -> bool {
    let mut rest = rest
        .iter()
        .map(|(t, _)| *t)
        .skip_while(|t| *t == Token::Newline);
    matches!(
        (rest.next(), rest.next()),
        (Some(Token::Value(_)), Some(Token::Eq))
            | (Some(Token::Param | Token::Weights | Token::RBrace), _)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Token<'_>> {
        lex(src).tokens.into_iter().map(|(_, t, _)| t).collect()
    }

    #[test]
    fn ranges_are_not_floats() {
        assert_eq!(
            kinds("[0..40, 1.5, -2, 1e-5]"),
            vec![
                Token::LBracket,
                Token::Int(0),
                Token::DotDot,
                Token::Int(40),
                Token::Comma,
                Token::Float(1.5),
                Token::Comma,
                Token::Int(-2),
                Token::Comma,
                Token::Float(1e-5),
                Token::RBracket
            ]
        );
    }

    #[test]
    fn newlines_inside_brackets_are_dropped() {
        let toks = kinds("{\n%a = f(%x,\n %y)\n\n}");
        assert_eq!(toks.iter().filter(|t| **t == Token::Newline).count(), 1);
    }

    #[test]
    fn brace_gets_a_statement_break() {
        assert_eq!(
            kinds("{ %a = f(%x) }"),
            vec![
                Token::LBrace,
                Token::Value("a"),
                Token::Eq,
                Token::Ident("f"),
                Token::LParen,
                Token::Value("x"),
                Token::RParen,
                Token::Newline,
                Token::RBrace
            ]
        );
    }

    #[test]
    fn unclosed_paren_ends_at_next_statement() {
        let toks = kinds("{\n%a = f(%x\n%b = g(%a)\n}");
        assert_eq!(toks.iter().filter(|t| **t == Token::Newline).count(), 2);
    }

    #[test]
    fn errors_are_kept_and_merged() {
        let lexed = lex("%a = $$ relu \"open");
        assert_eq!(lexed.errors.len(), 2);
        assert_eq!(lexed.errors[0].span, 5..7);
        assert_eq!(lexed.errors[1].kind, LexErrorKind::UnterminatedString);
    }
}
