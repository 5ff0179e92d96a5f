//! Plot and job ids as users type them: a full UUID or a unique prefix.

use uuid::Uuid;

use crate::error::DaemonError;

/// Why an id did not resolve.
#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// Nothing matches.
    NotFound(String),
    /// Too short, or more than one match.
    Ambiguous(String, usize),
}

impl ResolveError {
    /// The daemon error for a plot or job id.
    pub fn for_kind(self, kind: &'static str) -> DaemonError {
        match self {
            ResolveError::NotFound(id) if kind == "plot" => DaemonError::PlotNotFound { id },
            ResolveError::NotFound(id) => DaemonError::JobNotFound { id },
            ResolveError::Ambiguous(id, matches) => DaemonError::AmbiguousId { kind, id, matches },
        }
    }
}

/// Resolves a full UUID or a unique prefix (≥ 4 characters, case-insensitive).
pub fn resolve_id(id: &str, ids: impl Iterator<Item = Uuid>) -> Result<Uuid, ResolveError> {
    let want = id.trim().to_ascii_lowercase();
    if let Ok(u) = Uuid::parse_str(&want) {
        let all: Vec<Uuid> = ids.collect();
        return all
            .into_iter()
            .find(|x| *x == u)
            .ok_or(ResolveError::NotFound(id.to_owned()));
    }
    if want.len() < 4 {
        return Err(ResolveError::Ambiguous(id.to_owned(), 0));
    }
    let matches: Vec<Uuid> = ids.filter(|u| u.to_string().starts_with(&want)).collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(ResolveError::NotFound(id.to_owned())),
        many => Err(ResolveError::Ambiguous(id.to_owned(), many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_prefixes_resolve_uniquely() {
        let a = Uuid::parse_str("aaaa1111-0000-4000-8000-000000000000").unwrap();
        let b = Uuid::parse_str("aaaa2222-0000-4000-8000-000000000000").unwrap();
        let ids = [a, b];
        assert_eq!(resolve_id("aaaa1", ids.iter().copied()), Ok(a));
        assert_eq!(
            resolve_id(&a.to_string().to_uppercase(), ids.iter().copied()),
            Ok(a)
        );
        assert_eq!(
            resolve_id("aaaa", ids.iter().copied()),
            Err(ResolveError::Ambiguous("aaaa".into(), 2))
        );
        assert_eq!(
            resolve_id("aa", ids.iter().copied()),
            Err(ResolveError::Ambiguous("aa".into(), 0))
        );
        assert_eq!(
            resolve_id("bbbb", ids.iter().copied()),
            Err(ResolveError::NotFound("bbbb".into()))
        );
    }
}
