//! Compile-time behaviour of `#[cached]`: misuse fails with an error on the offending token, and
//! generated code passes strict lints. `TRYBUILD=overwrite` regenerates the `.stderr` files.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/fail/*.rs");
    cases.pass("ui/pass/*.rs");
}
