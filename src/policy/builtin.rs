//! The built-in policies, built from `policies/<name>` as components by `build.rs` and
//! carried in the binary. The list is Cargo.toml's `builtin-policies`; this module is generated
//! from it, so the build, the configuration and the default set can't disagree.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

#[cfg(test)]
mod tests {
    #[test]
    fn every_name_has_an_embedded_component() {
        for name in super::NAMES {
            let bytes = super::component(name).unwrap_or_else(|| panic!("{name} is embedded"));
            // A component's preamble: magic, then version 0x0d and layer 1 (a core module has layer 0).
            assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0", "{name} is a component");
        }
        assert_eq!(super::component("no-such-policy"), None);
    }

    #[test]
    fn every_digest_is_the_sha256_of_its_component() {
        for name in super::NAMES {
            let component = super::component(name).unwrap();
            assert_eq!(super::digest(name), Some(crate::policy::host::digest(component).as_str()), "{name}");
        }
        assert_eq!(super::digest("no-such-policy"), None);
    }

    #[test]
    fn every_policy_crate_that_builds_a_component_is_a_builtin() {
        let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        for entry in std::fs::read_dir(&policies).unwrap() {
            let dir = entry.unwrap().path();
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
            if manifest.contains("cdylib") {
                let name = dir.file_name().unwrap().to_str().unwrap();
                assert!(
                    super::NAMES.contains(&name),
                    "policies/{name} builds a component but is not in builtin-policies"
                );
            }
        }
    }
}
