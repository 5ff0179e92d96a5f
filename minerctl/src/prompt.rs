//! Questions on the terminal: asked on stderr, answered on stdin, only when both are a
//! terminal (a script never hangs on a question it cannot see).

use std::io::{BufRead, IsTerminal, Write};

/// Whether a question can be asked: stdin and stderr are terminals.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks a yes/no question (default no); `None` when stdin closed before an answer.
pub fn ask_yes_no(question: &str) -> Option<bool> {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    drop(err);
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(yes(&line)),
    }
}

/// `y` or `yes`, any case, surrounding blanks ignored.
pub fn yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_yes_is_yes() {
        assert!(super::yes("y\n"));
        assert!(super::yes(" YES "));
        assert!(!super::yes("\n"));
        assert!(!super::yes("n"));
        assert!(!super::yes("yep"));
    }
}
