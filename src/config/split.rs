//! Finding the `[[users]]` entries of a config before parsing it, so that each entry is parsed
//! as a document of its own and read at once.
//!
//! A TOML document in memory costs far more than the text (every key, value and its formatting
//! is a node): 100,000 users as one document would take hundreds of MiB for a moment and a good
//! part of a second, for a sidecar that should start within one and live in 64 MiB. Entries are
//! independent of each other, so parsing them one by one changes nothing of the meaning.
//!
//! The split is done on TOML's tokens (`toml_parser`'s lexer), never on lines, so a `[[users]]`
//! inside a multi-line string or an array is not mistaken for a header. Whatever this module
//! does not recognise with certainty (a quoted `"users"` key in a header, a `[users.x]` table
//! before any entry), it declines, and the file is parsed whole as before.

use std::ops::Range;

use toml_parser::lexer::TokenKind;
use toml_parser::Source;

/// Where the `[[users]]` entries are.
pub struct Split {
    /// Each entry: its `[[users]]` header up to the next header that is not one of its own
    /// sub-tables (`[[users.permissions]]`).
    pub users: Vec<Range<usize>>,
}

impl Split {
    /// The text without the entries: each entry's bytes become spaces (newlines stay), so every
    /// position in what is left is its position in the file.
    pub fn rest(&self, text: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        for range in &self.users {
            for b in &mut bytes[range.clone()] {
                if *b != b'\n' && *b != b'\r' {
                    *b = b' ';
                }
            }
        }
        // Whole UTF-8 sequences were replaced, byte for byte, by ASCII spaces.
        String::from_utf8(bytes).unwrap_or_default()
    }
}

/// One table header: its start and its dotted key, unquoted keys only.
struct Header {
    start: usize,
    array: bool,
    /// `None` when a key in it is quoted: not recognised with certainty.
    path: Option<Vec<String>>,
}

/// The entries of `text`, or `None` when there is none or the file is better parsed whole.
pub fn users(text: &str) -> Option<Split> {
    let mut users: Vec<Range<usize>> = Vec::new();
    let mut open: Option<usize> = None;
    for header in headers(text) {
        let path = header.path?;
        match (path.first().map(String::as_str), path.len(), header.array) {
            (Some("users"), 1, true) => {
                if let Some(start) = open.replace(header.start) {
                    users.push(start..header.start);
                }
            }
            // A sub-table of the entry above it; before any entry, a shape to leave to the parser.
            (Some("users"), _, _) => {
                open?;
            }
            _ => {
                if let Some(start) = open.take() {
                    users.push(start..header.start);
                }
            }
        }
    }
    if let Some(start) = open {
        users.push(start..text.len());
    }
    (!users.is_empty()).then_some(Split { users })
}

/// The table headers of `text`, in order: a `[` that starts a line outside any array.
fn headers(text: &str) -> Vec<Header> {
    let mut out = Vec::new();
    let mut tokens = Source::new(text).lex().peekable();
    let mut depth = 0usize;
    let mut line_start = true;
    while let Some(token) = tokens.next() {
        match token.kind() {
            TokenKind::Eof => break,
            TokenKind::Newline => line_start = true,
            TokenKind::Whitespace | TokenKind::Comment => {}
            TokenKind::LeftSquareBracket if line_start && depth == 0 => {
                line_start = false;
                let start = token.span().start();
                let array = tokens
                    .next_if(|t| t.kind() == TokenKind::LeftSquareBracket)
                    .is_some();
                let mut key = String::new();
                let mut quoted = false;
                for t in tokens.by_ref() {
                    match t.kind() {
                        TokenKind::RightSquareBracket | TokenKind::Newline | TokenKind::Eof => {
                            break
                        }
                        TokenKind::Whitespace => {}
                        TokenKind::Atom | TokenKind::Dot => {
                            key.push_str(&text[t.span().start()..t.span().end()]);
                        }
                        _ => quoted = true,
                    }
                }
                if array {
                    tokens.next_if(|t| t.kind() == TokenKind::RightSquareBracket);
                }
                // A bare key may hold dots of its own only as separators: `a.b` is two keys.
                let path = (!quoted).then(|| key.split('.').map(str::to_owned).collect());
                out.push(Header { start, array, path });
            }
            TokenKind::LeftSquareBracket => {
                line_start = false;
                depth += 1;
            }
            TokenKind::RightSquareBracket => {
                line_start = false;
                depth = depth.saturating_sub(1);
            }
            _ => line_start = false,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Option<Vec<&str>> {
        users(text).map(|s| s.users.iter().map(|r| &text[r.clone()]).collect())
    }

    #[test]
    fn entries_end_at_the_next_header_that_is_not_their_own() {
        let text = "[server]\nlisten = \"x\"\n[[users]]\nuser = \"a\"\n[[users.permissions]]\naction = \"read\"\n\n[[users]]\nuser = \"b\"\n[jwt]\njwks_url = \"u\"\n";
        assert_eq!(
            entries(text).unwrap(),
            [
                "[[users]]\nuser = \"a\"\n[[users.permissions]]\naction = \"read\"\n\n",
                "[[users]]\nuser = \"b\"\n",
            ]
        );
        let split = users(text).unwrap();
        let rest = split.rest(text);
        assert_eq!(rest.len(), text.len());
        assert!(rest.contains("[jwt]") && !rest.contains("users"));
    }

    #[test]
    fn headers_inside_strings_and_arrays_are_not_headers() {
        let text = "[[users]]\nuser = \"a\"\npass = '''\n[[users]]\n'''\nips = [\n[\"x\"],\n]\n[[users]]\nuser = \"b\"\n";
        assert_eq!(entries(text).unwrap().len(), 2);
        assert_eq!(entries("a = \"\"\"\n[[users]]\n\"\"\"\n"), None);
    }

    #[test]
    fn declines_what_it_cannot_be_sure_of() {
        assert!(entries("[[\"users\"]]\nuser = \"a\"\n").is_none());
        assert!(entries("[users.x]\n[[users]]\n").is_none());
        assert!(entries("[server]\n").is_none());
        // Spaced headers are headers too.
        assert_eq!(entries("  [[ users ]]\nuser = \"a\"\n").unwrap().len(), 1);
    }
}
