//! Hub repository ids (`owner/name`), checked before anything is sent.

use super::HubError;

/// A model repository id, `owner/name`, as the Hub accepts it: each part starts with a letter
/// or digit and has only letters, digits, `-`, `_` and `.`, without `--` or `..`; the name is
/// at most 96 characters and does not end in `.git`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoId {
    owner: String,
    name: String,
}

impl RepoId {
    /// Parses and checks `owner/name`.
    pub fn parse(id: &str) -> Result<Self, HubError> {
        let bad = |reason: &str| HubError::BadRepoId {
            id: id.to_string(),
            reason: reason.to_string(),
        };
        let Some((owner, name)) = id.split_once('/') else {
            return Err(bad("expected owner/name"));
        };
        if name.contains('/') {
            return Err(bad("expected exactly one `/`"));
        }
        for (what, part) in [("owner", owner), ("name", name)] {
            if part.is_empty() {
                return Err(bad(&format!("the {what} is empty")));
            }
            if !part.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                return Err(bad(&format!(
                    "the {what} must start with a letter or digit"
                )));
            }
            if let Some(c) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
            {
                return Err(bad(&format!(
                    "`{c}` in the {what} (letters, digits, `-`, `_`, `.` only)"
                )));
            }
            if part.contains("--") || part.contains("..") {
                return Err(bad(&format!("`--` and `..` are not allowed in the {what}")));
            }
        }
        if name.len() > 96 {
            return Err(bad("the name is longer than 96 characters"));
        }
        if name.ends_with(".git") || name.ends_with('.') || name.ends_with('-') {
            return Err(bad("the name must not end in `.git`, `.` or `-`"));
        }
        Ok(Self {
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }

    /// The owner (user or organisation).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hub_ids_and_names_what_is_wrong() {
        let r = RepoId::parse("me/deepsynth-ocr_lora.v2").unwrap();
        assert_eq!((r.owner(), r.name()), ("me", "deepsynth-ocr_lora.v2"));
        assert_eq!(r.to_string(), "me/deepsynth-ocr_lora.v2");
        for (id, why) in [
            ("noslash", "owner/name"),
            ("a/b/c", "exactly one"),
            ("/name", "owner is empty"),
            ("me/", "name is empty"),
            ("me/bad name", "` ` in the name"),
            ("me/-x", "start with"),
            ("me/a--b", "`--`"),
            ("me/x.git", ".git"),
        ] {
            let e = RepoId::parse(id).unwrap_err().to_string();
            assert!(e.contains(why), "{id}: {e}");
        }
        assert!(RepoId::parse(&format!("me/{}", "a".repeat(97))).is_err());
    }
}
