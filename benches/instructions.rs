//! Instruction counts of the admission work, for `benches/instructions.sh`: run under
//! `valgrind --tool=callgrind --toggle-collect=*instructions::measure*`, this program repeats
//! one scenario `ITERATIONS` times inside `measure`, so that callgrind counts that work and no
//! setup. Instruction counts repeat exactly from run to run, where times on these shared
//! machines drift by tens of percent.
//!
//! Scenarios (`SCENARIO`): `floor` (instantiate and call the smallest component, which allows
//! without reading the request), `policy:<name>` (one built-in), `policies` (the five),
//! `mutate` and `validate` (the whole in-process admission path of the API server's own CREATE,
//! UPDATE and scale reviews in `tests/data/apiserver/`: parse, decide, policies, answer).

use std::path::Path;

use k8s_openapi::api::apps::v1::StatefulSet;
use mysql_webhook::policy::config::{self, PolicyConfig};
use mysql_webhook::policy::{Host, PolicySet};
use mysql_webhook_core::admission::{self, Validation};

#[path = "../tests/common/hostile.rs"]
mod hostile;

/// The server's allocator (src/main.rs): the host's counts include every allocation it makes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let scenario = std::env::var("SCENARIO").unwrap_or_else(|_| "policies".into());
    let iterations: usize = std::env::var("ITERATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-policy-cache");
    // Fewer slots than the server's pool, whose address space valgrind can't reserve; enough
    // for each of the five to keep its own, as in the server.
    let slots = std::env::var("SLOTS").ok().and_then(|n| n.parse().ok()).unwrap_or(6);
    let host = Host::with_slots(Some(cache), slots).expect("the engine starts");
    let reviews = |prefix: &str| -> Vec<Vec<u8>> {
        ["create-statefulset", "update-statefulset", "update-scale"]
            .iter()
            .map(|name| {
                let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("tests/data/apiserver/{prefix}-{name}.json"));
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            })
            .collect()
    };
    let set = |configs: Vec<PolicyConfig>| PolicySet::load(&host, &configs).expect("the policies load");
    let create = reviews("validate").swap_remove(0);
    let create = admission::parse(&create).expect("a review");
    let Ok(Validation::Evaluate(judged)) = admission::validation(&create) else {
        panic!("the CREATE is judged")
    };
    let request = judged.input;

    let work: Box<dyn Fn()> = match scenario.as_str() {
        "floor" => {
            let floor = PolicyConfig {
                name: "floor".into(),
                module: config::Module::File(hostile::hostile_policy()),
                ..config::defaults().remove(0)
            };
            let floor = set(vec![floor]);
            Box::new(move || assert!(floor.evaluate(&host, &request, None).allowed()))
        }
        "policies" => {
            let all = set(config::defaults());
            Box::new(move || assert!(all.evaluate(&host, &request, None).allowed()))
        }
        "mutate" => {
            let bodies = reviews("mutate");
            Box::new(move || {
                for body in &bodies {
                    let review = admission::parse(body).expect("a review");
                    std::hint::black_box(
                        admission::mutate_review(&review).expect("an answer").to_review_json(),
                    );
                }
            })
        }
        "validate" => {
            let all = set(config::defaults());
            let bodies = reviews("validate");
            // A scale's parent comes from the server's watch cache: here, the stored StatefulSet
            // of the UPDATE review.
            let update = admission::parse(&bodies[1]).expect("a review");
            let stored = update.old_object.as_ref().expect("an UPDATE has oldObject");
            let parent: StatefulSet = serde_json::from_str(stored.get()).expect("a StatefulSet");
            Box::new(move || {
                for body in &bodies {
                    let review = admission::parse(body).expect("a review");
                    let judged = match admission::validation(&review).expect("a decision") {
                        Validation::Answer(response) => Err(response),
                        Validation::Evaluate(judged) => Ok(judged),
                        Validation::Scale { replicas, .. } => {
                            admission::scale_request(&review, &parent, replicas).map_err(|answer| *answer)
                        }
                    };
                    let response = judged.map_or_else(
                        |answer| answer,
                        |judged| {
                            let evaluation = all.evaluate(&host, &judged.input, None);
                            admission::evaluation_response(
                                &review,
                                &evaluation.denials(),
                                evaluation.warnings(),
                            )
                        },
                    );
                    std::hint::black_box(response.to_review_json());
                }
            })
        }
        other => {
            let name = other.strip_prefix("policy:").unwrap_or_else(|| panic!("unknown SCENARIO {other}"));
            let one = config::defaults().into_iter().filter(|p| p.name == name).collect();
            let one = set(one);
            Box::new(move || assert!(one.evaluate(&host, &request, None).allowed()))
        }
    };
    work(); // warm: first-call costs are not the steady state
    measure(&*work, iterations);
}

#[inline(never)]
fn measure(work: &dyn Fn(), iterations: usize) {
    for _ in 0..iterations {
        work();
    }
}
