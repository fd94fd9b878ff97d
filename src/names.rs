//! `names` owns which names hoard accepts: bucket names (S3's rules), user names, and
//! the names hoard keeps for itself. A leaf: it imports nothing of the crate, so the
//! S3 surface, the admin API, the CLI and replication all check names the same way.

/// Bucket names hoard keeps for itself (the admin API's path).
pub const RESERVED_BUCKETS: &[&str] = &["hoard-admin"];

/// The grant target that stands for every bucket.
pub const ALL_BUCKETS: &str = "*";

/// S3's bucket naming rules (3-63 of lowercase letters, digits, '-' and '.',
/// starting and ending with a letter or digit, not an IP address).
pub fn valid_bucket_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// A bucket name a user may create: valid and not one hoard keeps.
pub fn creatable_bucket_name(name: &str) -> bool {
    valid_bucket_name(name) && !RESERVED_BUCKETS.contains(&name)
}

/// 1 to 64 letters, digits, '.', '_', '-' or '@', and not "root".
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name != "root"
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-@".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        assert!(valid_bucket_name("backups-2024.daily"));
        for bad in [
            "ab",
            "Upper",
            "-lead",
            "trail-",
            "a..b",
            "192.168.1.1",
            "under_score",
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
        assert!(valid_bucket_name("hoard-admin") && !creatable_bucket_name("hoard-admin"));
    }

    #[test]
    fn user_names_exclude_root_and_path_characters() {
        assert!(valid_user_name("veeam.proxy-1@site"));
        for bad in ["", "root", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
    }
}
