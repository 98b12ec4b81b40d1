//! The built-in policies, built from `policies/<name>` for wasm32-wasip2 by `build.rs` and
//! carried in the binary.

/// Names as used in `module: builtin:<name>`; the order is the default set's.
pub const NAMES: [&str; 5] = ["replica-quorum", "spread", "storage", "images", "resources"];

macro_rules! embedded {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/policies/", $name, ".wasm"))
    };
}

/// The component of the built-in policy `name`, if there is one.
pub fn component(name: &str) -> Option<&'static [u8]> {
    Some(match name {
        "replica-quorum" => embedded!("replica-quorum"),
        "spread" => embedded!("spread"),
        "storage" => embedded!("storage"),
        "images" => embedded!("images"),
        "resources" => embedded!("resources"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_name_has_an_embedded_component() {
        for name in super::NAMES {
            let bytes = super::component(name).unwrap_or_else(|| panic!("{name} is embedded"));
            // A component's preamble: magic, then version 0x0d and layer 1 (a core module has layer 0).
            assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0", "{name} is a component");
        }
    }
}
