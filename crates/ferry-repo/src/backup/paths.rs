//! Paths inside a snapshot: [`RepoPath`] (raw name components), the component rule
//! ([`bad_component`]) and the lexical cleaning of local paths ([`absolute_clean`]).

use crate::error::{Error, Result};

/// A path inside a snapshot: raw name components (each non-empty, not `.`/`..`, no `/` or NUL).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RepoPath(Vec<Vec<u8>>);

impl RepoPath {
    /// The snapshot root.
    pub fn root() -> RepoPath {
        RepoPath(Vec::new())
    }

    /// From components, validating each.
    pub fn from_components<I, C>(components: I) -> Result<RepoPath>
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let comps: Vec<Vec<u8>> = components
            .into_iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        for c in &comps {
            if let Some(reason) = bad_component(c) {
                return Err(Error::InvalidPath {
                    path: String::from_utf8_lossy(&comps.join(&b'/')).into_owned(),
                    reason: reason.into(),
                });
            }
        }
        Ok(RepoPath(comps))
    }

    /// From slash-separated bytes (`etc/hosts`, leading/trailing/double slashes ignored).
    pub fn parse(slashed: &[u8]) -> Result<RepoPath> {
        Self::from_components(slashed.split(|&b| b == b'/').filter(|c| !c.is_empty()))
    }

    /// From a local path: made absolute (relative to the current directory), cleaned
    /// lexically (`.` dropped, `..` pops), then the components below `/`.
    pub fn from_local(path: &std::path::Path) -> Result<RepoPath> {
        Self::from_components(
            absolute_clean(path)?
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.as_encoded_bytes().to_vec()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        )
    }

    /// The raw name components, root first.
    pub fn components(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// Append one name (refused, naming it, if [`bad_component`] objects).
    pub fn push(&mut self, name: &[u8]) -> Result<()> {
        if let Some(reason) = bad_component(name) {
            return Err(Error::InvalidPath {
                path: String::from_utf8_lossy(name).into_owned(),
                reason: reason.into(),
            });
        }
        self.0.push(name.to_vec());
        Ok(())
    }

    /// This path with one more name (as [`push`](Self::push)).
    pub fn join(&self, name: &[u8]) -> Result<RepoPath> {
        let mut p = self.clone();
        p.push(name)?;
        Ok(p)
    }

    /// `a/b/c` as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.join(&b'/')
    }

    /// `a/b/c` (lossy UTF-8) for messages.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }
}

/// Why a name is not acceptable as a path component (`None` if it is fine).
pub fn bad_component(c: &[u8]) -> Option<&'static str> {
    if c.is_empty() {
        Some("empty name")
    } else if c == b"." || c == b".." {
        Some("`.` or `..` as a name")
    } else if c.contains(&b'/') {
        Some("name contains `/`")
    } else if c.contains(&0) {
        Some("name contains NUL")
    } else {
        None
    }
}

/// Make `path` absolute and clean it lexically.
pub fn absolute_clean(path: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::path::{Component, PathBuf};
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("get current directory for", path, e))?
            .join(path)
    };
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}
