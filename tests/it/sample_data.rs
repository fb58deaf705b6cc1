//! The bundled sample history is exactly what the generator writes for its parameters.

use egi_test_harness::synthetic::{self, Params};

use crate::helpers::{sample_path, sample_text};

#[test]
fn committed_sample_equals_generator_output() {
    let expected = synthetic::generate(&Params::sample()).unwrap();
    let committed = sample_text();
    if committed != expected {
        let line = committed
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the end".to_owned(), |n| format!("line {}", n + 1));
        panic!(
            "{} differs from the generator output at {line}: do not edit it by hand, \
             regenerate it with `cargo run -p egi-test-harness --bin synth-history -- \
             --sample --out examples/data/notebooks.om`",
            sample_path().display()
        );
    }
}

#[test]
fn sample_readme_says_how_it_was_made() {
    let readme = sample_path().with_file_name("README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    assert!(text.contains("--bin synth-history -- --sample --out examples/data/notebooks.om"));
}
