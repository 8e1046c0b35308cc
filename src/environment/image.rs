//! What an image reference says about itself, and what we know about the
//! tracker images that upstream publishes.

use super::model::ConfigSchema;

/// `repository[:tag][@digest]`, split (the schema has already checked the form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef<'a> {
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    pub fn parse(reference: &'a str) -> Self {
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (reference, None),
        };
        // A colon after the last slash separates the tag; one before it is a registry port.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        Self {
            repository,
            tag,
            digest,
        }
    }

    /// Tags that upstream moves to new builds: a redeploy may change what runs.
    pub fn is_mutable(&self) -> bool {
        self.digest.is_none() && matches!(self.tag, Some("latest" | "develop") | None)
    }
}

/// What a known tracker image accepts and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerImageFacts {
    pub config_schema: ConfigSchema,
    /// `/api/v1/metrics` and `?format=prometheus`, which Prometheus scrapes.
    pub metrics: bool,
}

/// Facts for the official tracker image's well-known tags; `None` for anything
/// else (another repository, a digest, a custom tag), where the user must say.
pub fn tracker_image_facts(reference: &str) -> Option<TrackerImageFacts> {
    let image = ImageRef::parse(reference);
    let official = matches!(
        image.repository,
        "torrust/tracker" | "docker.io/torrust/tracker" | "index.docker.io/torrust/tracker"
    );
    if !official || image.digest.is_some() {
        return None;
    }
    match image.tag? {
        "3.0.0" | "v3.0.0" | "latest" => Some(TrackerImageFacts {
            config_schema: ConfigSchema::V2,
            metrics: false,
        }),
        "develop" => Some(TrackerImageFacts {
            config_schema: ConfigSchema::V3,
            metrics: true,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_registry_port_tag_and_digest() {
        let image = ImageRef::parse("registry.local:5000/torrust/tracker:3.0.0");
        assert_eq!(image.repository, "registry.local:5000/torrust/tracker");
        assert_eq!(image.tag, Some("3.0.0"));
        let digest = format!("torrust/tracker@sha256:{}", "a".repeat(64));
        let image = ImageRef::parse(&digest);
        assert_eq!((image.tag, image.digest.is_some()), (None, true));
        assert!(!image.is_mutable());
    }

    #[test]
    fn knows_the_official_tags() {
        let release = tracker_image_facts("torrust/tracker:3.0.0").unwrap();
        assert_eq!(release.config_schema, ConfigSchema::V2);
        assert!(!release.metrics);
        let develop = tracker_image_facts("torrust/tracker:develop").unwrap();
        assert_eq!(develop.config_schema, ConfigSchema::V3);
        assert!(tracker_image_facts("torrust/tracker:nightly").is_none());
        assert!(tracker_image_facts("example/tracker:3.0.0").is_none());
        assert!(ImageRef::parse("torrust/tracker:develop").is_mutable());
    }
}
