//! Rebuilds the server when a migration is added: `sqlx::migrate!` embeds the migration
//! folders at compile time, and a new file alone would not make cargo recompile the crate.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
