//! Pure policy decisions on the topology's `[policy]`: exclusions (R2) and the action for an
//! L-Server (R5). Plain data rules, so the engine and the checkers apply the same ones.

use super::topology::{Action, PolicySpec};

impl PolicySpec {
    /// The excluded keyword contained in `threat` (case-insensitive), if any (R2).
    pub fn excluded_keyword(&self, threat: &str) -> Option<&str> {
        let threat = threat.to_lowercase();
        self.excluded_threat_keywords
            .iter()
            .filter(|k| !k.trim().is_empty())
            .find(|k| threat.contains(&k.to_lowercase()))
            .map(String::as_str)
    }

    /// The action for `path`: the exact path's rule, else the longest folder prefix's, else the
    /// default (R5). A folder rule `/tenant-a` covers `/tenant-a/vdi-001` but not `/tenant-ab/x`.
    pub fn action_for(&self, path: &str) -> Action {
        if let Some(action) = self.actions.get(path) {
            return *action;
        }
        self.actions
            .iter()
            .filter(|(prefix, _)| {
                let folder = prefix.trim_end_matches('/');
                path.len() > folder.len()
                    && path.starts_with(folder)
                    && path.as_bytes()[folder.len()] == b'/'
            })
            .max_by_key(|(prefix, _)| prefix.trim_end_matches('/').len())
            .map(|(_, action)| *action)
            .unwrap_or(self.default_action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &[(&str, Action)]) -> PolicySpec {
        PolicySpec {
            default_action: Action::Quarantine,
            excluded_threat_keywords: vec!["EICAR".into(), " ".into()],
            actions: rules.iter().map(|(p, a)| (p.to_string(), *a)).collect(),
        }
    }

    #[test]
    fn r5_exact_path_beats_folder_prefix() {
        let p = policy(&[("/t", Action::Reboot), ("/t/vdi-1", Action::None)]);
        assert_eq!(p.action_for("/t/vdi-1"), Action::None);
        assert_eq!(p.action_for("/t/vdi-2"), Action::Reboot);
    }

    #[test]
    fn r5_longest_folder_prefix_wins() {
        let p = policy(&[
            ("/t", Action::Reboot),
            ("/t/vdi/", Action::QuarantineReboot),
        ]);
        assert_eq!(p.action_for("/t/vdi/x"), Action::QuarantineReboot);
        assert_eq!(p.action_for("/t/other"), Action::Reboot);
    }

    #[test]
    fn r5_prefix_matches_whole_folders_only() {
        let p = policy(&[("/tenant-a", Action::Reboot)]);
        assert_eq!(p.action_for("/tenant-ab/x"), Action::Quarantine);
        assert_eq!(p.action_for("/tenant-a/x"), Action::Reboot);
    }

    #[test]
    fn r2_exclusion_is_case_insensitive_substring() {
        let p = policy(&[]);
        assert_eq!(p.excluded_keyword("Eicar_Test_File"), Some("EICAR"));
        assert_eq!(p.excluded_keyword("TROJ_GENERIC.A"), None);
    }
}
