//! A phone's photo uploader as its own process, so tests can SIGKILL it mid-upload:
//! `gridsync-test-phone STORE SERVER_URL CHUNK_BYTES` uploads the store's queued photo files
//! and prints the report as JSON.

use anyhow::{Context, Result};
use gridsync_core::Store;
use gridsync_core::client::{RetryPolicy, SyncClient};
use gridsync_core::upload::UploadOptions;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let store = args.next().context("STORE")?;
    let url = args.next().context("SERVER_URL")?;
    let chunk: usize = args.next().context("CHUNK_BYTES")?.parse()?;
    let store = Store::open(std::path::Path::new(&store)).await?;
    let client = SyncClient::new(&url, RetryPolicy::default())?;
    let report = client
        .upload_photos(
            &store,
            UploadOptions {
                chunk_bytes: chunk,
                ..UploadOptions::default()
            },
        )
        .await?;
    println!("{}", serde_json::to_string(&report)?);
    store.close().await;
    Ok(())
}
