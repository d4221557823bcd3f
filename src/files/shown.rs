//! Paths and names as they may be printed: control characters escaped, so a file name holding
//! an escape sequence cannot drive the user's terminal.

use std::borrow::Cow;
use std::path::Path;

/// `text` with every character that `escaped` picks written as `\u{..}`.
fn escape_where(text: &str, escaped: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escaped) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if escaped(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// `text` with every control character (newline and tab included) written as `\u{..}`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape_where(text, char::is_control)
}

/// A path for messages: lossy UTF-8, control characters escaped.
pub fn shown(path: &Path) -> String {
    escape_controls(&path.to_string_lossy()).into_owned()
}

/// A message for the terminal: control characters escaped except newlines and tabs.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c.is_control() && c != '\n' && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_made_visible() {
        let p = Path::new("/tmp/\u{1b}]0;owned\u{7}run");
        assert_eq!(shown(p), "/tmp/\\u{1b}]0;owned\\u{7}run");
        assert_eq!(shown(Path::new("runs/ok")), "runs/ok");
        assert_eq!(terminal_safe("a\nb\u{1b}[2J"), "a\nb\\u{1b}[2J");
    }
}
