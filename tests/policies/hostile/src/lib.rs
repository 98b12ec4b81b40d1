//! A policy that misbehaves on purpose, for the host's containment tests. Its settings pick the
//! misbehaviour and when: `{"validate": "<what>"}` misbehaves in `validate`, `{"settings":
//! "<what>"}` in `validate-settings`. What: `allow`, `deny`, `loop` (never returns), `hog`
//! (allocates until stopped), `trap` (panics), `big-message` (an 8 MiB deny message),
//! `refuse` (refuses the settings), `sleep` (asks the host for a timer), `warn` (allows with a
//! warning). Written against the raw bindings, without the SDK, as a component from any
//! toolchain would be.

wit_bindgen::generate!({ path: "../../../policies/wit", world: "policy" });

struct Hostile;

fn behaviour<'a>(settings: &'a str, phase: &str) -> &'a str {
    // A tiny scanner instead of serde: the fixture stays small and quick to build.
    let key = format!("\"{phase}\":\"");
    settings.find(&key).map_or("allow", |at| {
        let rest = &settings[at + key.len()..];
        &rest[..rest.find('"').unwrap_or(rest.len())]
    })
}

fn misbehave(what: &str) -> Verdict {
    match what {
        "deny" => Verdict { allowed: false, message: Some("hostile says no".into()), warnings: vec![] },
        "warn" => Verdict { allowed: true, message: None, warnings: vec!["hostile warns".into()] },
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "hog" => {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                kept.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&kept);
            }
        }
        "trap" => panic!("hostile panics"),
        "big-message" => Verdict { allowed: false, message: Some("x".repeat(8 << 20)), warnings: vec![] },
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Verdict { allowed: true, message: None, warnings: vec![] }
        }
        _ => Verdict { allowed: true, message: None, warnings: vec![] },
    }
}

impl Guest for Hostile {
    fn validate_settings(settings: String) -> Result<(), String> {
        match behaviour(&settings, "settings") {
            "refuse" => Err("hostile refuses every setting".into()),
            "allow" => Ok(()),
            what => misbehave(what).allowed.then_some(()).ok_or_else(|| "refused".into()),
        }
    }

    fn validate(_request: String, settings: String) -> Verdict {
        misbehave(behaviour(&settings, "validate"))
    }
}

export!(Hostile);
