//! `gridsync-server user ...`: console accounts for dispatchers, department clerks, leaders
//! and operators. A password is generated and printed once (or read from stdin with
//! `--password-stdin`); only its argon2id hash is kept.

use std::io::Read;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::Storage;
use crate::auth::{Role, parse_scopes};
use crate::console::admin::{NewUser, add_user};
use crate::console::session::{check_password, hash_password};
use crate::storage::console::ConsoleRole;
use gridsync_core::workflow::Reference;

/// Console account commands.
#[derive(Subcommand)]
pub enum UserCmd {
    /// Add an account.
    Add {
        /// The sign-in name (letters, digits, `.`, `_`, `-`).
        #[arg(long)]
        login: String,
        /// The person's name (recorded on every case event they write).
        #[arg(long)]
        name: String,
        /// dispatcher, clerk (with --department), leader or operator.
        #[arg(long)]
        role: String,
        /// A clerk's department (`D01`, ...).
        #[arg(long)]
        department: Option<String>,
        /// Comma-separated town codes (9 digits) the person works in.
        #[arg(long)]
        towns: String,
        /// Read the password from stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account: it cannot sign in and its sessions end at once.
    Disable {
        /// The sign-in name.
        #[arg(long)]
        login: String,
    },
    /// Enable a disabled account again.
    Enable {
        /// The sign-in name.
        #[arg(long)]
        login: String,
    },
    /// Set a new password (generated, or from stdin): the lock is cleared, sessions end.
    ResetPassword {
        /// The sign-in name.
        #[arg(long)]
        login: String,
        /// Read the password from stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List,
}

/// A password to give a person: 16 letters and digits without look-alikes.
fn generated_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    (0..16)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn password(from_stdin: bool) -> Result<(String, bool)> {
    if !from_stdin {
        return Ok((generated_password(), true));
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from stdin")?;
    let s = s.trim_end_matches(['\r', '\n']).to_owned();
    check_password(&s).map_err(|e| anyhow::anyhow!("password: {e}"))?;
    Ok((s, false))
}

/// Records an account command in the console's audit log (as `cli`, the operator at the
/// server's shell).
async fn audited<S: Storage>(storage: &S, action: &str, login: &str, detail: &str) -> Result<()> {
    storage
        .audit(&crate::storage::console::AuditEntry {
            at: gridsync_core::clock::now_ms(),
            login: "cli".into(),
            action: action.into(),
            target: login.into(),
            outcome: "ok".into(),
            detail: detail.into(),
            addr: "local".into(),
        })
        .await?;
    Ok(())
}

/// Runs one account command.
pub async fn run<S: Storage>(storage: &S, reference: &Reference, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add {
            login,
            name,
            role,
            department,
            towns,
            password_stdin,
        } => {
            let role: ConsoleRole = role
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--role: {e}"))?;
            let towns = parse_scopes(Role::Dispatcher, &towns).map_err(|_| {
                anyhow::anyhow!("--towns: give 9-digit town codes, comma-separated")
            })?;
            let (pw, generated) = password(password_stdin)?;
            let user = add_user(
                storage,
                reference,
                NewUser {
                    login: &login,
                    name: &name,
                    role,
                    dept: department.as_deref(),
                    towns: &towns,
                    password: &pw,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            audited(storage, "user.add", &user.login, user.role.as_str()).await?;
            if generated {
                println!("{pw}");
            }
            eprintln!(
                "account {} ({}, {}) added; sign in at /console/",
                user.login,
                user.name,
                user.role.as_str()
            );
            Ok(())
        }
        UserCmd::Disable { login } => {
            anyhow::ensure!(
                storage.set_console_disabled(&login, true).await?,
                "no account {login}"
            );
            audited(storage, "user.disable", &login, "").await?;
            eprintln!("account {login} disabled; its sessions have ended");
            Ok(())
        }
        UserCmd::Enable { login } => {
            anyhow::ensure!(
                storage.set_console_disabled(&login, false).await?,
                "no account {login}"
            );
            audited(storage, "user.enable", &login, "").await?;
            eprintln!("account {login} enabled");
            Ok(())
        }
        UserCmd::ResetPassword {
            login,
            password_stdin,
        } => {
            let (pw, generated) = password(password_stdin)?;
            let hash = hash_password(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                storage.set_console_password(&login, &hash).await?,
                "no account {login}"
            );
            audited(storage, "user.reset_password", &login, "").await?;
            if generated {
                println!("{pw}");
            }
            eprintln!("password of {login} reset; its sessions have ended and any lock is cleared");
            Ok(())
        }
        UserCmd::List => {
            for u in storage.console_users().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    u.login,
                    u.name,
                    u.role.as_str(),
                    u.dept.as_deref().unwrap_or("-"),
                    crate::auth::join_scopes(&u.towns),
                    if u.disabled { "disabled" } else { "active" }
                );
            }
            Ok(())
        }
    }
}
