//! Container image references (`[registry[:port]/]path[:tag][@digest]`), split as the container
//! runtime splits them: the one parser of the project. The flavor is derived from the path and
//! tag, and the `images` policy judges the registry, tag and digest, so both must read a
//! reference the same way (two copies once disagreed on an upper-case first component).

/// Where an image that names no registry is pulled from.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// The parts of an image reference, borrowed from the text as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// The registry host (with its port) when the reference names one.
    pub registry: Option<&'a str>,
    /// The path within the registry as written: `mysql`, `percona/percona-server`.
    pub path: &'a str,
    /// The tag, if written.
    pub tag: Option<&'a str>,
    /// The digest after `@` (`sha256:…`), if written.
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// Splits a reference. The first path component is a registry only when it looks like a
    /// host: it has a `.` or a `:`, is `localhost`, or has an upper-case letter (repository
    /// paths are lower-case), as in the Docker reference grammar's normalisation. The tag is
    /// looked for after the registry is split off, so `registry:5000/mysql` has a port, not a tag.
    pub fn parse(image: &'a str) -> Self {
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (image, None),
        };
        let (registry, rest) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (Some(first), rest)
            }
            _ => (None, name),
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((path, tag)) => (path, Some(tag)),
            None => (rest, None),
        };
        Self { registry, path, tag, digest }
    }

    /// The registry the runtime pulls from: lower-cased, `docker.io` when none is named (and
    /// for its alias `index.docker.io`).
    pub fn registry_or_default(&self) -> String {
        match self.registry.map(str::to_ascii_lowercase) {
            None => DEFAULT_REGISTRY.to_string(),
            Some(host) if host == "index.docker.io" => DEFAULT_REGISTRY.to_string(),
            Some(host) => host,
        }
    }

    /// The repository within the registry, with Docker Hub's implicit `library/` for
    /// single-component paths (`mysql` is `docker.io/library/mysql`).
    pub fn repository(&self) -> String {
        if self.registry_or_default() == DEFAULT_REGISTRY && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.to_string()
        }
    }

    /// The last path component: `mysql` for `docker.io/library/mysql:8.4`.
    pub fn name(&self) -> &'a str {
        self.path.rsplit('/').next().unwrap_or(self.path)
    }

    /// The component before the name, if any: `percona` for `percona/percona-server`.
    pub fn namespace(&self) -> Option<&'a str> {
        self.path.rsplit('/').nth(1)
    }
}

/// What the kubelet would certainly refuse as an image: empty, whitespace or control characters,
/// or a separator at either end. A loose check: the registry has the last word on the rest.
pub fn is_plausible(image: &str) -> bool {
    !image.is_empty()
        && !image.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        && !image.starts_with(['/', ':', '@'])
        && !image.ends_with([':', '/', '@'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_port_tag_and_digest_apart() {
        assert_eq!(
            ImageRef::parse("registry.example.com:5000/mirror/mysql:8.4@sha256:ff"),
            ImageRef {
                registry: Some("registry.example.com:5000"),
                path: "mirror/mysql",
                tag: Some("8.4"),
                digest: Some("sha256:ff")
            }
        );
        assert_eq!(
            ImageRef::parse("mysql"),
            ImageRef { registry: None, path: "mysql", tag: None, digest: None }
        );
        assert_eq!(
            ImageRef::parse("percona/percona-server:8.0"),
            ImageRef { registry: None, path: "percona/percona-server", tag: Some("8.0"), digest: None }
        );
    }

    #[test]
    fn a_port_is_not_a_tag() {
        let image = ImageRef::parse("localhost:5000/mysql");
        assert_eq!((image.registry, image.path, image.tag), (Some("localhost:5000"), "mysql", None));
    }

    #[test]
    fn an_upper_case_first_component_is_a_registry_host() {
        // The copies of this parser disagreed here: the flavor's read `Mirror/mysql` as a Docker
        // Hub path, the images policy as the host `mirror`. The runtime does the latter.
        let image = ImageRef::parse("Mirror/mysql:8.4");
        assert_eq!((image.registry, image.path, image.tag), (Some("Mirror"), "mysql", Some("8.4")));
        assert_eq!(image.registry_or_default(), "mirror");
        assert_eq!(image.repository(), "mysql");
    }

    #[test]
    fn docker_hub_is_the_default_registry_with_an_implicit_library() {
        let image = ImageRef::parse("mysql:8.4");
        assert_eq!(
            (image.registry_or_default(), image.repository()),
            ("docker.io".into(), "library/mysql".into())
        );
        let image = ImageRef::parse("index.docker.io/percona/percona-server:8.0");
        assert_eq!(
            (image.registry_or_default(), image.repository()),
            ("docker.io".into(), "percona/percona-server".into())
        );
        assert_eq!(ImageRef::parse("ghcr.io/mysql:8.4").repository(), "mysql");
    }

    #[test]
    fn names_and_namespaces_are_the_last_two_components() {
        let image = ImageRef::parse("docker.io/mariadb/server:10.11");
        assert_eq!((image.namespace(), image.name()), (Some("mariadb"), "server"));
        assert_eq!(ImageRef::parse("mysql").namespace(), None);
    }

    #[test]
    fn implausible_references_are_refused() {
        for bad in [
            "",
            " mysql",
            "mysql:8.4 ",
            "my\tsql",
            "/mysql",
            ":8.4",
            "@sha256:x",
            "mysql:",
            "mysql/",
            "mysql@",
        ] {
            assert!(!is_plausible(bad), "{bad:?}");
        }
        assert!(is_plausible("registry.example.com:5000/mirror/mysql:8.4@sha256:ff"));
    }
}
