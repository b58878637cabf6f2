//! keepalived's `no_accept` mode (RFC 5798 §6.1 Accept_Mode false): while a non-owner is
//! Master, packets addressed to its virtual addresses are dropped, as keepalived does with
//! nftables. ka keeps one table of its own (`ka_<instance>`) in the namespace, with one set per
//! family holding the VIPs of the no_accept instances that are Master; the table is created on
//! first use and deleted when the [`NoAccept`] is dropped. Neighbour discovery to the VIPs is
//! let through so the address stays resolvable (the VIP answers ARP anyway).
//!
//! The rules are applied with the `nft` binary (nftables(8)).

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
