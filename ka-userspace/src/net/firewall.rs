//! keepalived's `no_accept` mode (RFC 5798 §6.1 Accept_Mode false): while a non-owner is
//! Master, packets addressed to its virtual addresses are dropped, as keepalived does with
//! nftables. ka keeps one table of its own (`ka_<instance>`) in the namespace, with one set per
//! family holding the VIPs of the no_accept instances that are Master; the table is created on
//! first use and deleted when the [`NoAccept`] is dropped. Neighbour discovery to the VIPs is
//! let through so the address stays resolvable (the VIP answers ARP anyway).
//!
//! The rules are applied with the `nft` binary (nftables(8)), by a thread of its own
//! ([`NoAcceptWorker`]): the VRRP engine asks and never waits for a subprocess.

use std::{net::IpAddr, process::Command};

use tracing::{info, warn};

/// Errors of the no_accept firewall.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// `nft` could not run.
    #[error("running nft ({what}): {source}")]
    Spawn {
        /// What was being done.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the commands.
    #[error("nft ({what}) failed: {stderr}")]
    Nft {
        /// What was being done.
        what: String,
        /// Its error output.
        stderr: String,
    },
}

/// The no_accept table of one ka instance.
#[derive(Debug)]
pub struct NoAccept {
    table: String,
    created: bool,
}

/// A table name nft accepts: `ka_` and the instance name with anything but letters, digits and
/// `_` replaced by `_`.
pub fn table_name(instance: &str) -> String {
    let clean: String = instance.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("ka_{clean}")
}

fn nft(script: &str, what: &str) -> Result<(), FirewallError> {
    let out = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                std::io::Write::write_all(&mut stdin, script.as_bytes())?;
            }
            child.wait_with_output()
        })
        .map_err(|source| FirewallError::Spawn { what: what.to_owned(), source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::Nft { what: what.to_owned(), stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

impl NoAccept {
    /// A handle on table `table` (see [`table_name`]); nothing is created until a VIP is added.
    pub fn new(table: String) -> NoAccept {
        NoAccept { table, created: false }
    }

    fn ensure(&mut self) -> Result<(), FirewallError> {
        if self.created {
            return Ok(());
        }
        let t = &self.table;
        // Recreated from scratch: a table left by a crashed run goes first.
        let script = format!(
            "table inet {t}\ndelete table inet {t}\n\
             table inet {t} {{\n\
               set vips4 {{ type ipv4_addr; }}\n\
               set vips6 {{ type ipv6_addr; }}\n\
               chain input {{\n\
                 type filter hook input priority -1; policy accept;\n\
                 ip daddr @vips4 drop\n\
                 ip6 daddr @vips6 icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept\n\
                 ip6 daddr @vips6 drop\n\
               }}\n\
             }}\n"
        );
        nft(&script, "creating the no_accept table")?;
        info!(table = %t, "no_accept: nftables table created");
        self.created = true;
        Ok(())
    }

    fn elements(vips: &[IpAddr]) -> (String, String) {
        let v4: Vec<String> = vips.iter().filter(|a| a.is_ipv4()).map(ToString::to_string).collect();
        let v6: Vec<String> = vips.iter().filter(|a| a.is_ipv6()).map(ToString::to_string).collect();
        (v4.join(", "), v6.join(", "))
    }

    /// Starts dropping packets to `vips` (a no_accept instance became Master).
    ///
    /// # Errors
    /// `nft` is missing or refuses the rules.
    pub fn add(&mut self, vips: &[IpAddr]) -> Result<(), FirewallError> {
        self.ensure()?;
        let (v4, v6) = Self::elements(vips);
        let t = &self.table;
        let mut script = String::new();
        if !v4.is_empty() {
            script += &format!("add element inet {t} vips4 {{ {v4} }}\n");
        }
        if !v6.is_empty() {
            script += &format!("add element inet {t} vips6 {{ {v6} }}\n");
        }
        if script.is_empty() {
            return Ok(());
        }
        nft(&script, "adding no_accept VIPs")
    }

    /// Stops dropping packets to `vips` (the instance left Master).
    ///
    /// # Errors
    /// `nft` refuses the change.
    pub fn remove(&mut self, vips: &[IpAddr]) -> Result<(), FirewallError> {
        if !self.created {
            return Ok(());
        }
        let t = &self.table;
        // One element per command: deleting an element that is absent fails the whole batch.
        for a in vips {
            let set = if a.is_ipv4() { "vips4" } else { "vips6" };
            nft(&format!("delete element inet {t} {set} {{ {a} }}\n"), "removing no_accept VIPs")?;
        }
        Ok(())
    }
}

impl Drop for NoAccept {
    fn drop(&mut self) {
        if self.created {
            let t = &self.table;
            match nft(&format!("delete table inet {t}\n"), "deleting the no_accept table") {
                Ok(()) => info!(table = %t, "no_accept: nftables table deleted"),
                Err(e) => warn!(error = %e, "no_accept: cannot delete the nftables table"),
            }
        }
    }
}

/// One change for the [`NoAcceptWorker`].
#[derive(Debug)]
enum Op {
    /// Create the table (recreated from scratch).
    Create,
    /// Drop packets to these VIPs (instance name for the logs).
    Add(String, Vec<IpAddr>),
    /// Accept them again.
    Remove(String, Vec<IpAddr>),
}

/// The no_accept table run by a thread of its own, so that `nft` never runs on the VRRP
/// engine's task: changes are queued and applied in order, failures are logged there. The
/// table is deleted when the worker is closed ([`NoAcceptWorker::close`]) or dropped.
#[derive(Debug)]
pub struct NoAcceptWorker {
    tx: Option<std::sync::mpsc::Sender<Op>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl NoAcceptWorker {
    /// Starts the thread for table `table` (see [`table_name`]) and has it create the table
    /// (a table left by a crashed run goes first).
    pub fn spawn(table: String) -> NoAcceptWorker {
        let (tx, rx) = std::sync::mpsc::channel::<Op>();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new().name("ka-nft".to_owned()).spawn(move || {
            let mut fw = NoAccept::new(table);
            while let Ok(op) = rx.recv() {
                let (res, what) = match &op {
                    Op::Create => (fw.add(&[]), "creating the table"),
                    Op::Add(_, vips) => (fw.add(vips), "dropping packets to the VIPs"),
                    Op::Remove(_, vips) => (fw.remove(vips), "accepting packets to the VIPs again"),
                };
                match (res, &op) {
                    (Ok(()), Op::Create) => {}
                    (Ok(()), Op::Add(instance, _) | Op::Remove(instance, _)) => info!(instance = %instance, "no_accept: {what}"),
                    (Err(e), Op::Create) => warn!(error = %e, "no_accept: cannot set up the nftables table; packets to the VIPs will be accepted"),
                    (Err(e), Op::Add(instance, _) | Op::Remove(instance, _)) => warn!(instance = %instance, error = %e, "no_accept: nftables update failed ({what})"),
                }
            }
            drop(fw);
            let _ = done_tx.send(());
        });
        if let Err(e) = &spawned {
            warn!(error = %e, "no_accept: cannot start the nftables thread; packets to the VIPs will be accepted");
        }
        let w = NoAcceptWorker { tx: Some(tx), done: Some(done) };
        w.send(Op::Create);
        w
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx {
            if tx.send(op).is_err() {
                warn!("no_accept: the nftables thread has stopped");
            }
        }
    }

    /// Queues: drop packets to `vips` (instance `instance` became a non-owner Master).
    pub fn add(&self, instance: &str, vips: Vec<IpAddr>) {
        if vips.is_empty() {
            return;
        }
        self.send(Op::Add(instance.to_owned(), vips));
    }

    /// Queues: accept packets to `vips` again.
    pub fn remove(&self, instance: &str, vips: Vec<IpAddr>) {
        if vips.is_empty() {
            return;
        }
        self.send(Op::Remove(instance.to_owned(), vips));
    }

    /// Applies what is queued, deletes the table and waits for the thread (bounded: 10 s).
    pub async fn close(mut self) {
        self.tx = None;
        if let Some(done) = self.done.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(10), done).await.is_err() {
                warn!("no_accept: nftables cleanup timed out");
            }
        }
    }
}
