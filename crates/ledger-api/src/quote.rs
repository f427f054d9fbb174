//! Quoting client input in error messages, bounded: a 60,000-character stream name is quoted
//! by its first [`MAX_QUOTED_CHARS`] characters, an ellipsis and its length, never whole.

use std::borrow::Cow;

/// Most characters of one piece of input an error body quotes.
pub(crate) const MAX_QUOTED_CHARS: usize = 100;

/// `text` as an error body may show it: whole when short, else its first
/// [`MAX_QUOTED_CHARS`] characters, an ellipsis and its length in characters.
pub(crate) fn excerpt(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!(
            "{}… ({} characters)",
            &text[..cut],
            text.chars().count()
        )),
    }
}

/// `text` quoted (as `{:?}` would) for a message, bounded like [`excerpt`].
pub(crate) fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} characters)", &text[..cut], text.chars().count()),
    }
}

/// A message written by another component (a JSON or query parser, the domain, the store)
/// with every span it quotes (between `"` or between backticks) bounded like [`excerpt`], so
/// input it echoes stays short.
pub(crate) fn bound_quotes(message: &str) -> Cow<'_, str> {
    if message.chars().count() <= MAX_QUOTED_CHARS {
        return Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len().min(4 * MAX_QUOTED_CHARS));
    let mut changed = false;
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let delimiter = rest[open..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=open]);
        let body = &rest[open + 1..];
        let end = span_end(body, delimiter).unwrap_or(body.len());
        let span = &body[..end];
        match span_cut(span, delimiter) {
            Some(cut) => {
                changed = true;
                out.push_str(&span[..cut]);
                out.push('…');
                if end < body.len() {
                    out.push(delimiter);
                }
                out.push_str(&format!(" ({} characters)", span.chars().count()));
            }
            None => {
                out.push_str(span);
                if end < body.len() {
                    out.push(delimiter);
                }
            }
        }
        rest = body.get(end + 1..).unwrap_or("");
    }
    if !changed {
        return Cow::Borrowed(message);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Where a span opened by `delimiter` closes in `body` (a `"` span honours `\` escapes).
fn span_end(body: &str, delimiter: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if delimiter == '"' && !escaped => escaped = true,
            c if c == delimiter && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// Where to cut a span over [`MAX_QUOTED_CHARS`] characters, never inside an escape.
fn span_cut(span: &str, delimiter: char) -> Option<usize> {
    let (mut cut, _) = span.char_indices().nth(MAX_QUOTED_CHARS)?;
    if delimiter == '"' {
        // Back up to the start of an escape sequence the cut would split (`\"`, `\u{1b}`).
        if let Some(backslash) = span[..cut].rfind('\\') {
            let escape = &span[backslash..];
            let len = if escape.starts_with("\\u{") {
                escape.find('}').map_or(escape.len(), |e| e + 1)
            } else {
                2
            };
            if backslash + len > cut {
                cut = backslash;
            }
        }
    }
    Some(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_whole() {
        assert_eq!(excerpt("order-1"), "order-1");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        let exactly = "x".repeat(MAX_QUOTED_CHARS);
        assert_eq!(excerpt(&exactly), exactly.as_str());
    }

    #[test]
    fn long_input_is_cut_with_its_length() {
        let long = "é".repeat(60_000);
        let e = excerpt(&long);
        assert!(e.starts_with(&"é".repeat(MAX_QUOTED_CHARS)));
        assert!(e.ends_with("… (60000 characters)"), "{e}");
        let q = quote(&long);
        assert!(q.len() < 400, "{}", q.len());
        assert!(q.ends_with("\"… (60000 characters)"), "{q}");
    }

    #[test]
    fn quoted_spans_of_foreign_messages_are_bounded() {
        let long = "v".repeat(5000);
        let serde =
            format!("unknown variant `{long}`, expected one of `a`, `b` at line 1 column 5012");
        let bounded = bound_quotes(&serde);
        assert!(bounded.len() < 300, "{bounded}");
        assert!(bounded.contains(&format!("`{}…` (5000 characters)", "v".repeat(100))));
        assert!(bounded.ends_with("expected one of `a`, `b` at line 1 column 5012"));
        // A cut never splits an escape: the span is cut before the `\"`.
        let escaped = format!(
            "invalid value: string \"{}\\\"x\", expected",
            "w".repeat(99)
        );
        assert_eq!(
            bound_quotes(&escaped),
            format!(
                "invalid value: string \"{}…\" (102 characters), expected",
                "w".repeat(99)
            )
        );
        let unterminated = format!("slug \"{long}");
        assert!(bound_quotes(&unterminated).len() < 200);
        let plain = "a long message without quotes; ".repeat(10);
        assert_eq!(bound_quotes(&plain), plain.as_str());
    }
}
