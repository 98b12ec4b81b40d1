//! A policy that misbehaves on purpose, for the host's containment tests. Its settings pick the
//! misbehaviour and when: `{"validate": "<what>"}` misbehaves in `validate`, `{"settings":
//! "<what>"}` in `validate-settings`. What: `allow`, `deny`, `loop` (never returns), `hog`
//! (allocates until stopped), `trap` (panics), `big-message` (an 8 MiB deny message),
//! `refuse` (refuses the settings), `sleep` (asks the host for a timer), `warn` (allows with a
//! warning), `many-warnings` (a million empty warnings), `wasi-probe` (tries every capability
//! WASI could grant and denies with what each attempt got). Written against the raw bindings,
//! without the SDK, as a component from any toolchain would be.
//!
//! Built for `mysql-webhook:policy@0.1.0` by default, as a component built before 0.2.0 was;
//! with the feature `world-0-2` for 0.2.0. `forms` denies with what `validate` was given (and in
//! 0.2.0 what the `request` import returns); `request` (0.2.0) calls the import, which in
//! `validate-settings` the host can't answer.

#[cfg(not(feature = "world-0-2"))]
wit_bindgen::generate!({ path: "../../../policies/wit/0.1.0/policy.wit", world: "policy" });
#[cfg(feature = "world-0-2")]
wit_bindgen::generate!({ path: "../../../policies/wit/policy.wit", world: "policy" });
#[cfg(feature = "world-0-2")]
use exports::mysql_webhook::policy::validator::{Guest, Verdict};
#[cfg(feature = "world-0-2")]
use mysql_webhook::policy::review::request;

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
        "many-warnings" => Verdict { allowed: true, message: None, warnings: vec![String::new(); 1_000_000] },
        "wasi-probe" => Verdict { allowed: false, message: Some(probe_wasi()), warnings: vec![] },
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Verdict { allowed: true, message: None, warnings: vec![] }
        }
        #[cfg(feature = "world-0-2")]
        "request" => Verdict { allowed: request().is_empty(), message: None, warnings: vec![] },
        _ => Verdict { allowed: true, message: None, warnings: vec![] },
    }
}

/// What a request (JSON) holds: its size, and whether it carries the containers' scripts.
fn describe(request: &str) -> String {
    format!(
        "{} bytes, commands {}",
        request.len(),
        if request.contains("\"command\"") { "present" } else { "absent" }
    )
}

/// `what=outcome;…` for each capability a policy must not have.
fn probe_wasi() -> String {
    use std::net::ToSocketAddrs;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};
    let outcome = |ok: bool| if ok { "granted" } else { "refused" };
    let file = outcome(std::fs::read("/etc/hostname").is_ok() || std::fs::read_dir(".").is_ok());
    let env = outcome(std::env::vars_os().next().is_some() || std::env::args_os().next().is_some());
    let cwd = outcome(std::env::current_dir().is_ok_and(|dir| dir.as_os_str().len() > 1));
    let tcp = outcome(std::net::TcpStream::connect("127.0.0.1:8443").is_ok());
    let listen = outcome(std::net::TcpListener::bind("127.0.0.1:0").is_ok());
    let udp = outcome(std::net::UdpSocket::bind("127.0.0.1:0").is_ok());
    let dns = outcome(("localhost", 80).to_socket_addrs().is_ok());
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(u128::MAX, |d| d.as_nanos());
    let start = Instant::now();
    let mut spin: u64 = 0;
    for i in 0..100_000u64 {
        spin = std::hint::black_box(spin.wrapping_add(i));
    }
    let elapsed = start.elapsed().as_nanos();
    format!(
        "file={file};env={env};cwd={cwd};tcp={tcp};listen={listen};udp={udp};dns={dns};wall-clock={wall};monotonic-elapsed={elapsed}"
    )
}

impl Guest for Hostile {
    fn validate_settings(settings: String) -> Result<(), String> {
        match behaviour(&settings, "settings") {
            "refuse" => Err("hostile refuses every setting".into()),
            "allow" => Ok(()),
            what => misbehave(what).allowed.then_some(()).ok_or_else(|| "refused".into()),
        }
    }

    fn validate(given: String, settings: String) -> Verdict {
        if behaviour(&settings, "validate") == "forms" {
            #[cfg(feature = "world-0-2")]
            let message = format!("view: {}; whole: {}", describe(&given), describe(&request()));
            #[cfg(not(feature = "world-0-2"))]
            let message = format!("request: {}", describe(&given));
            return Verdict { allowed: false, message: Some(message), warnings: vec![] };
        }
        misbehave(behaviour(&settings, "validate"))
    }
}

export!(Hostile);
