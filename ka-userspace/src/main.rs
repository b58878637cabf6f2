//! The `ka` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use ka::{
    cli::{Cli, Command, DecapCommand, ReloadArgs, RsCommand, StatusArgs},
    control::{self, Request, Response},
    instance::InstanceName,
};

fn main() -> ExitCode {
    // Started as `keepalived` (a symlink) or `ka keepalived ...`: keepalived's command line.
    if let Some(code) = ka::keepalived::dispatch() {
        return code;
    }
    let cli = Cli::parse();
    ka::logging::init(&cli.log);
    match cli.command {
        Command::Check(args) => ka::config::run_check(&args),
        Command::Run(args) => {
            // `net_namespace` (keepalived.conf): entered before the runtime starts its threads,
            // so every thread of the daemon runs in it.
            if let Some(ns) = args.file.as_deref().and_then(|f| ka::config::net_namespace_of(f, args.config_id.clone())) {
                if let Err(e) = ka::keepalived::enter_namespace(&ns) {
                    eprintln!("ka: cannot enter network namespace {ns} (net_namespace): {e}");
                    return ExitCode::FAILURE;
                }
                tracing::info!(netns = %ns, "net_namespace: running in the network namespace");
            }
            report(daemon_runtime().and_then(|rt| rt.block_on(ka::daemon::run(cli.instance, args)).map_err(anyhow::Error::from)))
        }
        Command::Status(args) => report(runtime().and_then(|rt| rt.block_on(status(&cli.instance, &args)))),
        Command::Reload(args) => report(runtime().and_then(|rt| rt.block_on(reload(&cli.instance, &args)))),
        Command::Rs(cmd) => report(runtime().and_then(|rt| rt.block_on(real_server(&cli.instance, &cmd)))),
        Command::PrepareRestart { timeout } => report(runtime().and_then(|rt| rt.block_on(prepare_restart(&cli.instance, timeout)))),
        Command::Completions { shell } => {
            ka::cli::print_completions(shell);
            ExitCode::SUCCESS
        }
        Command::Manpages { dir } => report(ka::cli::write_manpages(&dir).map(|files| {
            for f in files {
                println!("{}", f.display());
            }
        }).map_err(anyhow::Error::from)),
        Command::Decap(DecapCommand::Attach { iface, vips }) => {
            decap_preflight(&iface);
            report(ka::decap::attach(&cli.instance, &iface, &vips).map_err(anyhow::Error::from))
        }
        Command::Decap(DecapCommand::Detach { iface }) => {
            report(ka::decap::detach(&cli.instance, &iface).map_err(anyhow::Error::from))
        }
        Command::Keepalived { args } => ka::keepalived::main("keepalived", &args),
    }
}

/// The real server's side of the host preflight: reverse-path filtering and ARP settings.
fn decap_preflight(iface: &str) {
    use ka::preflight::{check, default_route_v4, Family, HostFacts, Needs};
    let needs = Needs { decap_ifaces: vec![iface.to_owned()], ..Default::default() };
    let routes = default_route_v4().map(|i| (Family::V4, i)).into_iter().collect();
    ka::preflight::log(&check(&needs, &HostFacts::read(&needs, routes)));
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// The daemon's runtime: its main loop runs on this thread (Maglev table builds and map
/// writes happen there), the checkers and the control server on two worker threads, config
/// parsing on reload on a blocking thread. The VRRP engine is not on it: it runs on a thread
/// and runtime of its own ([`ka::engine::start`]), so none of that work delays an advert.
fn daemon_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(ka::threads::WORKER_NAME).enable_all().build()?)
}

fn report(res: anyhow::Result<()>) -> ExitCode {
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ka: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn status(instance: &InstanceName, args: &StatusArgs) -> anyhow::Result<()> {
    let Some(every) = args.watch else {
        let report = status_once(instance, args).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.to_text());
        }
        return Ok(());
    };
    // Like watch(1): clear the terminal and redraw; JSON: one document per line (NDJSON).
    // Bounded by --count, else until interrupted.
    use std::io::{IsTerminal as _, Write as _};
    let tty = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = 0u64;
    while args.count.is_none_or(|n| shown < n) {
        tick.tick().await;
        let res = status_once(instance, args).await;
        let mut out = std::io::stdout().lock();
        match (&res, args.json) {
            (Ok(r), true) => writeln!(out, "{}", serde_json::to_string(r)?)?,
            (Ok(r), false) => {
                if tty {
                    write!(out, "\x1b[H\x1b[2J")?;
                }
                let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
                writeln!(out, "Every {}: ka status --instance {instance}    {now}\n", humantime::format_duration(every))?;
                write!(out, "{}", r.to_text())?;
            }
            (Err(e), _) => eprintln!("ka: error: {e:#}"),
        }
        out.flush()?;
        shown += 1;
    }
    Ok(())
}

async fn status_once(instance: &InstanceName, args: &StatusArgs) -> anyhow::Result<Box<ka::status::StatusReport>> {
    match control::request(&instance.socket_path(), &Request::Status, args.timeout).await? {
        Response::Status(report) => Ok(report),
        Response::Error { message } => anyhow::bail!("daemon: {message}"),
        other => anyhow::bail!("daemon: unexpected answer {other:?}"),
    }
}

async fn prepare_restart(instance: &InstanceName, timeout: std::time::Duration) -> anyhow::Result<()> {
    match control::request(&instance.socket_path(), &Request::PrepareRestart, timeout).await? {
        Response::RestartPrepared => {
            println!("the next stop of ka --instance {instance} keeps its VIPs and datapath for the next ka");
            Ok(())
        }
        Response::Error { message } => anyhow::bail!("daemon: {message}"),
        other => anyhow::bail!("daemon: unexpected answer {other:?}"),
    }
}

async fn real_server(instance: &InstanceName, cmd: &RsCommand) -> anyhow::Result<()> {
    let (t, action) = cmd.parts();
    let req = Request::RealServer(ka::rs_control::RsRequest {
        service: t.service.clone(),
        protocol: t.protocol.clone(),
        server: t.server.clone(),
        action,
    });
    match control::request(&instance.socket_path(), &req, t.timeout).await? {
        Response::RealServer(changed) => {
            if t.json {
                println!("{}", serde_json::to_string_pretty(&changed)?);
            } else {
                println!("{changed}");
            }
            Ok(())
        }
        Response::Error { message } => anyhow::bail!("daemon: {message}"),
        other => anyhow::bail!("daemon: unexpected answer {other:?}"),
    }
}

async fn reload(instance: &InstanceName, args: &ReloadArgs) -> anyhow::Result<()> {
    match control::request(&instance.socket_path(), &Request::Reload, args.timeout).await? {
        Response::Reloaded(summary) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!("{summary}");
            }
            Ok(())
        }
        Response::ReloadRefused { diagnostics } => {
            eprint!("{diagnostics}");
            anyhow::bail!("the new configuration was refused; the running configuration is unchanged")
        }
        Response::Error { message } => anyhow::bail!("daemon: {message}"),
        other => anyhow::bail!("daemon: unexpected answer {other:?}"),
    }
}
