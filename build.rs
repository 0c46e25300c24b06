//! Compiles `grammar/nnir.lalrpop` into `$OUT_DIR/grammar/nnir.rs`, which
//! `src/syntax/parser.rs` includes.
fn main() {
    let out_dir =
        std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    lalrpop::Configuration::new()
        .set_out_dir(out_dir.join("grammar"))
        .process_file("grammar/nnir.lalrpop")
        .expect("lalrpop grammar failed to compile");
    println!("cargo:rerun-if-changed=grammar/nnir.lalrpop");
}
