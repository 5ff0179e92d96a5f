//! One way to print an error with its causes, for every binary and every log line that
//! shows a whole chain: `outer: cause: root cause`.

/// `e` and each of its `source()`s, joined with `": "`. A cause whose text the message so
/// far already ends with is not repeated (transport errors often embed their cause).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct E {
        text: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    fn e(text: &'static str, source: Option<E>) -> E {
        E {
            text,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn causes_are_joined_once_each() {
        let root = e("disk full", None);
        assert_eq!(error_chain(&root), "disk full");
        let two = e("writing x", Some(e("disk full", None)));
        assert_eq!(error_chain(&two), "writing x: disk full");
        let repeated = e("connect: refused", Some(e("refused", None)));
        assert_eq!(error_chain(&repeated), "connect: refused");
    }
}
