//! `vhost` decides between virtual-hosted-style (`bucket.DOMAIN`) and path-style
//! requests from the Host header.
//!
//! Unlike s3s's own parsers, a host that is not under one of the configured domains
//! is taken as path-style, so clients that address hoard by any other name or by IP
//! keep working.

use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};

pub struct VirtualHosts {
    domains: Vec<String>,
}

impl VirtualHosts {
    pub fn new(domains: &[String]) -> Result<Self, String> {
        for d in domains {
            if d.is_empty() || d.contains(':') || d.starts_with('.') || d.ends_with('.') {
                return Err(format!("invalid domain {d:?}"));
            }
        }
        Ok(VirtualHosts {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        })
    }

    /// The bucket a Host header names, if it is `bucket.DOMAIN[:port]`.
    pub fn bucket_of<'a>(&self, host: &'a str) -> Option<&'a str> {
        let name = host
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h);
        self.domains.iter().find_map(|d| {
            let prefix = name.len().checked_sub(d.len() + 1)?;
            let (bucket, rest) = name.split_at(prefix);
            (rest.len() == d.len() + 1
                && rest[1..].eq_ignore_ascii_case(d)
                && rest.starts_with('.')
                && !bucket.is_empty())
            .then_some(bucket)
        })
    }

    /// The bucket a request names: its Host's (virtual-hosted style), or else the
    /// first segment of its path (path style).
    pub fn bucket_of_request(&self, host: Option<&str>, path: &str) -> Option<String> {
        if let Some(bucket) = host.and_then(|h| self.bucket_of(h)) {
            return Some(bucket.to_owned());
        }
        let first = path.trim_start_matches('/').split('/').next()?;
        (!first.is_empty()).then(|| first.to_owned())
    }
}

impl S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.bucket_of(host) {
            Some(bucket) => VirtualHost::new(host).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subdomains_of_configured_domains_are_buckets() {
        let v = VirtualHosts::new(&["localhost".into(), "s3.example.com".into()]).unwrap();
        assert_eq!(v.bucket_of("photos.localhost:9000"), Some("photos"));
        assert_eq!(v.bucket_of("a.b.s3.example.com"), Some("a.b"));
        assert_eq!(v.bucket_of("localhost:9000"), None);
        assert_eq!(v.bucket_of("127.0.0.1:9000"), None);
        assert_eq!(v.bucket_of("hoard.internal"), None);
        assert_eq!(v.bucket_of("xlocalhost"), None);
        let of = |host, path| v.bucket_of_request(Some(host), path);
        assert_eq!(of("photos.localhost", "/a/b"), Some("photos".into()));
        assert_eq!(of("127.0.0.1:9000", "/logs/2026/x"), Some("logs".into()));
        assert_eq!(of("127.0.0.1:9000", "/"), None);
    }
}
