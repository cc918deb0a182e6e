//! `uniffi-bindgen`: generates the Kotlin, Swift and Python bindings of `gridsync-ffi`, e.g.
//! `cargo run -p gridsync-uniffi-bindgen -- generate --library target/release/libgridsync_ffi.so
//! --language kotlin --out-dir out`. Built from the workspace's one uniffi version.

fn main() {
    uniffi::uniffi_bindgen_main()
}
