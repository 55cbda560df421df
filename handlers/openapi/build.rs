//! Writes the OpenAPI document at build time, from the same route contracts
//! and schemas the other components run with (`kit::openapi`), so the
//! component serves bytes and carries none of the code that describes the
//! routes (their validators, the JWT verifier): 2.35 MB before, 1.65 MB now
//! (bench/README.md, "Component sizes").

fn main() {
    println!("cargo:rerun-if-changed=../kit/src");
    println!("cargo:rerun-if-changed=../../schemas");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("openapi.json"), kit::openapi::document_json()).expect("OUT_DIR is writable");
}
