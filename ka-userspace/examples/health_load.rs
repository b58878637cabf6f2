//! Load driver for `ka::health` until the daemon runs it: starts the checkers of a
//! keepalived.conf and prints checks/s and this process's CPU over a window.
//!
//! `cargo run --release --example health_load -- CONF SECONDS` (run it inside the namespace
//! that reaches the real servers).

use std::{path::PathBuf, time::Duration};

fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    f.iter().sum()
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let conf = PathBuf::from(args.next().unwrap_or_else(|| "ka.conf".into()));
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let loaded = ka::config::load(&conf, &ka::config::LoadOptions::default())?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let h = ka::health::start(&loaded.config, ka::health::HealthOptions::default())?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r0 = h.status().await;
        let (c0, t0, i0) = (r0.checks.get("total").copied().unwrap_or(0), cpu_ticks(), std::time::Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let r1 = h.status().await;
        let (c1, t1, dt) = (r1.checks.get("total").copied().unwrap_or(0), cpu_ticks(), i0.elapsed().as_secs_f64());
        let up = r1.real_servers.iter().filter(|r| r.state == "up").count();
        println!(
            "{} real servers ({up} up): {:.0} checks/s, CPU {:.1}% of a core, failures {:?}",
            r1.real_servers.len(),
            (c1 - c0) as f64 / dt,
            (t1 - t0) as f64 / 100.0 / dt * 100.0,
            r1.failures.get("total")
        );
        h.shutdown().await;
        anyhow::Ok(())
    })
}
