//! Golden expansions: `mutate` of each flavor's example is compared with a reviewed copy under
//! `tests/golden/`. `UPDATE_GOLDEN=1 cargo nextest run --test golden` rewrites them; review the
//! diff line by line before committing.

mod common;

use mysql_webhook_core::flavor::Flavor;

#[test]
fn each_flavor_expands_to_its_reviewed_golden_file() {
    for flavor in Flavor::ALL {
        let example = common::repo_path(&format!("deploy/examples/{flavor}.yaml"));
        let input = std::fs::read_to_string(&example).expect("the example exists");
        let output = common::mutate_cli(&input, &[]);
        let golden = common::repo_path(&format!("tests/golden/{flavor}.yaml"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &output).expect("golden file is writable");
            continue;
        }
        let expected =
            std::fs::read_to_string(&golden).expect("golden file exists (UPDATE_GOLDEN=1 writes it)");
        assert!(
            output == expected,
            "{flavor}: expansion differs from {}; run with UPDATE_GOLDEN=1 and review the diff",
            golden.display()
        );
    }
}
