//! `tptctl`: argument parsing and output. The work happens in the library crates.

mod apply;
mod config;
mod eks;
mod install;
mod kind;
mod local;
mod output;
mod runtime;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand};
use output::Format;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use threeport_api::manifest::{self, Loaded};
use threeport_api::{Kind, kinds, object_id};

/// Exit codes, documented in `--help`.
const EXIT_ERROR: u8 = 1;
const EXIT_TIMEOUT: u8 = 3;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  error (a summary of what failed is printed on stderr)
  2  usage error (bad flags or arguments)
  3  --wait timed out before everything was reconciled

Environment:
  THREEPORT_CONFIG  config file (default ~/.threeport/config.yaml)
  NO_COLOR          never colour output (tptctl prints no colour when stdout is not a terminal either)";

#[derive(Parser)]
#[command(name = "tptctl", version, about = "Manage Threeport control planes and the applications they run", after_help = AFTER_HELP)]
struct Cli {
    /// Config file [env: THREEPORT_CONFIG] [default: ~/.threeport/config.yaml]
    #[arg(long, global = true)]
    threeport_config: Option<PathBuf>,
    /// Control plane to use instead of the config's CurrentControlPlane.
    #[arg(long, global = true)]
    control_plane: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Inputs {
    /// File, directory or `-` for stdin; repeat for several.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Upstream's spelling of -f.
    #[arg(short = 'c', long = "config", hide = true)]
    config_files: Vec<PathBuf>,
    /// Recurse into directories given with -f.
    #[arg(short = 'R', long)]
    recursive: bool,
}

impl Inputs {
    fn all(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .chain(self.config_files.iter())
            .cloned()
            .collect()
    }
    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.config_files.is_empty()
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create a control plane and make it the current one.
    Up {
        #[arg(short = 'n', long, default_value = "threeport")]
        name: String,
        /// Where to run it. Only `local` (embedded, nothing else to install) is available in this version.
        #[arg(short = 'p', long, default_value = "local")]
        provider: String,
        /// API port for the local provider (default 1323, or a free port when taken).
        #[arg(long)]
        port: Option<u16>,
        /// Register the cluster of this kubeconfig (current context) as the default runtime.
        #[arg(long)]
        runtime_from_kubeconfig: Option<PathBuf>,
        /// Image repository for the threeport image (kind and EKS).
        #[arg(long, default_value = "ghcr.io/threeport")]
        image_repo: String,
        /// Image tag for the threeport image (default: this version).
        #[arg(long)]
        image_tag: Option<String>,
        /// Keep what a failed `up` created, for debugging (kind and EKS).
        #[arg(long)]
        retain: bool,
        /// Show the output of the tools tptctl runs (kind).
        #[arg(long)]
        verbose: bool,
        /// AWS region (EKS).
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
        aws_region: String,
        /// AWS config profile (EKS); default: the usual credential chain.
        #[arg(long)]
        aws_config_profile: Option<String>,
    },
    /// Check what `up --provider kind` needs: docker, kind, a free port.
    Doctor {
        #[arg(long, default_value_t = 1323)]
        port: u16,
    },
    /// Kubernetes runtimes.
    Runtime {
        #[command(subcommand)]
        command: RuntimeCommand,
    },
    /// Stop a control plane and remove it from the config.
    Down {
        #[arg(short = 'n', long, default_value = "threeport")]
        name: String,
        /// Also delete its data (database, certificates, logs).
        #[arg(long)]
        purge: bool,
    },
    /// Create or update the objects in YAML files (upstream's format), in dependency order.
    Apply {
        #[command(flatten)]
        inputs: Inputs,
        /// Validate and show what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(short = 'o', long, value_enum)]
        output: Option<Format>,
        /// Wait until every applied object is reconciled or failed.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. 30s, 5m.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Check YAML files offline: syntax, kinds, fields, references within the files, cycles.
    Validate {
        #[command(flatten)]
        inputs: Inputs,
    },
    /// List objects of a kind, or show one.
    Get {
        /// Kind: workloads, workload-instances, kubernetes-runtime-instances, aws-accounts, … (see `tptctl get kinds`).
        kind: String,
        name: Option<String>,
        #[arg(short = 'o', long, value_enum)]
        output: Option<Format>,
    },
    /// Show an object in detail: fields, related objects, status reason and recent events.
    Describe {
        kind: String,
        name: Option<String>,
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Delete an object by name, or everything a file declares.
    Delete {
        kind: Option<String>,
        name: Option<String>,
        #[command(flatten)]
        inputs: Inputs,
        /// Wait until the deletion is confirmed by the controllers.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Upstream's `create <kind> -c FILE`: like apply, but existing objects are errors.
    Create {
        kind: Option<String>,
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Live terminal dashboard (k9s-style): workloads, runtimes, events, any kind.
    ///
    /// `?` lists the keys. They can be rebound in dashboard.yaml next to the config file
    /// (~/.threeport/dashboard.yaml), e.g. `keys: {describe: v, down: [j, down]}`.
    Dashboard {
        /// Refuse every change: deleting is disabled.
        #[arg(long)]
        readonly: bool,
    },
    /// Inspect and switch control planes in the config.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the client and server versions.
    Version,
    /// Print a shell completion script: `source <(tptctl completion bash)`.
    Completion { shell: clap_complete::Shell },
    /// Run the local control plane in the foreground (started by `up --provider local`).
    #[command(hide = true)]
    ServeLocal {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum RuntimeCommand {
    /// Make an existing cluster a runtime, from its kubeconfig.
    Register {
        name: String,
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Context to use (default: the kubeconfig's current context).
        #[arg(long)]
        context: Option<String>,
        /// Make it the default runtime for workloads that name none.
        #[arg(long)]
        default: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// List the control planes in the config.
    GetControlPlanes,
    /// Show the current control plane, or switch to NAME.
    CurrentControlPlane { name: Option<String> },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}; use e.g. 30s, 5m, 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => return Err(format!("invalid duration unit in {s:?}; use s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

fn kind_arg(name: &str) -> Result<&'static Kind> {
    kinds::lookup(name).with_context(|| {
        format!(
            "unknown kind {name:?}; known kinds: {}",
            kinds::KINDS
                .iter()
                .map(|k| k.plural)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn load_inputs(inputs: &Inputs) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    for p in inputs.all() {
        let part = if p == Path::new("-") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read stdin")?;
            manifest::load_str(&text, "<stdin>", &std::env::current_dir()?)
        } else {
            if !p.exists() {
                bail!("{}: no such file or directory", p.display());
            }
            manifest::load_path(&p, inputs.recursive)
        };
        loaded.objects.extend(part.objects);
        loaded.problems.extend(part.problems);
        loaded.broken.extend(part.broken);
    }
    Ok(manifest::order(loaded))
}

struct Ctx {
    config_path: PathBuf,
    control_plane: Option<String>,
}

impl Ctx {
    fn client(&self) -> Result<threeport_api::Client> {
        let cfg = config::ThreeportConfig::load(&self.config_path)?;
        cfg.select(self.control_plane.as_deref())?.client()
    }
}

async fn find(client: &threeport_api::Client, kind: &'static Kind, name: &str) -> Result<Value> {
    // Unnamed kinds (events, resource rows) are addressed by ID.
    if !kind.named {
        if let Ok(id) = name.parse::<u64>() {
            return Ok(client.get(kind, id).await?);
        }
    }
    client
        .find_by_name(kind, name)
        .await?
        .with_context(|| format!("{} {name:?} not found", kind.singular()))
}

async fn run(cli: Cli) -> Result<u8> {
    let ctx = Ctx {
        config_path: config::path(cli.threeport_config.as_deref())?,
        control_plane: cli.control_plane.clone(),
    };
    match cli.command {
        Command::Up {
            name,
            provider,
            port,
            runtime_from_kubeconfig,
            image_repo,
            image_tag,
            retain,
            verbose,
            aws_region,
            aws_config_profile,
        } => {
            // Read it first: a bad kubeconfig fails before anything is started.
            let conn = match &runtime_from_kubeconfig {
                Some(p) => Some(runtime::read_kubeconfig(p, None)?),
                None => None,
            };
            match provider.as_str() {
                local::PROVIDER => local::up(&ctx.config_path, &name, port).await?,
                kind::PROVIDER => {
                    let mut images = threeport_installers::manifests::Images {
                        repo: image_repo,
                        ..Default::default()
                    };
                    if let Some(t) = image_tag {
                        images.tag = t;
                    }
                    kind::up(
                        &ctx.config_path,
                        &name,
                        port.unwrap_or(threeport_server::DEFAULT_PORT),
                        images,
                        retain,
                        verbose,
                    )
                    .await?;
                }
                eks::PROVIDER => {
                    let mut images = threeport_installers::manifests::Images {
                        repo: image_repo,
                        ..Default::default()
                    };
                    if let Some(t) = image_tag {
                        images.tag = t;
                    }
                    eks::up(
                        &ctx.config_path,
                        &name,
                        &aws_region,
                        aws_config_profile.as_deref(),
                        images,
                        retain,
                    )
                    .await?;
                }
                other => bail!("unknown provider {other:?}; use local, kind or eks"),
            }
            if let (Some(conn), Some(path)) = (conn, &runtime_from_kubeconfig) {
                let ctx = Ctx {
                    config_path: ctx.config_path.clone(),
                    control_plane: Some(name.clone()),
                };
                let failed = register_runtime(&ctx, &conn.context, &conn, true, path).await?;
                if failed {
                    bail!(
                        "the control plane is up, but registering the runtime failed; retry with `tptctl runtime register`"
                    );
                }
            }
            Ok(0)
        }
        Command::Runtime {
            command:
                RuntimeCommand::Register {
                    name,
                    kubeconfig,
                    context,
                    default,
                },
        } => {
            let conn = runtime::read_kubeconfig(&kubeconfig, context.as_deref())?;
            let failed = register_runtime(&ctx, &name, &conn, default, &kubeconfig).await?;
            Ok(if failed { EXIT_ERROR } else { 0 })
        }
        Command::Down { name, purge } => {
            let cfg = config::ThreeportConfig::load(&ctx.config_path)?;
            match cfg.get(&name).map(|c| c.provider.as_str()) {
                Some(kind::PROVIDER) => kind::down(&ctx.config_path, &name)?,
                Some(eks::PROVIDER) => eks::down(&ctx.config_path, &name).await?,
                // A failed `up --provider eks --retain` leaves an inventory and no entry.
                None if eks::inventory_path(&ctx.config_path, &name).exists() => {
                    eks::down(&ctx.config_path, &name).await?
                }
                _ => local::down(&ctx.config_path, &name, purge)?,
            }
            Ok(0)
        }
        Command::Doctor { port } => {
            let mut ok = true;
            for c in threeport_installers::kind::doctor(Some(port)) {
                println!(
                    "{} {:<10} {}",
                    if c.ok { "✓" } else { "✗" },
                    c.name,
                    c.detail
                );
                ok &= c.ok;
            }
            Ok(if ok { 0 } else { EXIT_ERROR })
        }
        Command::Validate { inputs } => {
            if inputs.is_empty() {
                bail!("give the files to check with -f FILE|DIR|-");
            }
            let loaded = load_inputs(&inputs)?;
            for p in &loaded.problems {
                eprintln!("error: {p}");
            }
            if loaded.problems.is_empty() {
                println!("{} objects valid", loaded.objects.len());
                Ok(0)
            } else {
                eprintln!("{} problems found", loaded.problems.len());
                Ok(EXIT_ERROR)
            }
        }
        Command::Apply {
            inputs,
            dry_run,
            output,
            wait,
            timeout,
        } => {
            if inputs.is_empty() {
                bail!("give the files to apply with -f FILE|DIR|-");
            }
            apply_cmd(
                &ctx,
                &inputs,
                apply::ApplyOpts {
                    dry_run,
                    output,
                    create_only: false,
                },
                wait.then_some(timeout),
            )
            .await
        }
        Command::Create { kind: _, inputs } => {
            if inputs.is_empty() {
                bail!("give the files with -c FILE (or -f FILE)");
            }
            apply_cmd(
                &ctx,
                &inputs,
                apply::ApplyOpts {
                    dry_run: false,
                    output: None,
                    create_only: true,
                },
                None,
            )
            .await
        }
        Command::Get { kind, name, output } => get(&ctx, &kind, name.as_deref(), output).await,
        Command::Describe { kind, name, inputs } => {
            describe(&ctx, &kind, name.as_deref(), &inputs).await
        }
        Command::Delete {
            kind,
            name,
            inputs,
            wait,
            timeout,
        } => {
            delete(
                &ctx,
                kind.as_deref(),
                name.as_deref(),
                &inputs,
                wait.then_some(timeout),
            )
            .await
        }
        Command::Dashboard { readonly } => {
            let cfg = config::ThreeportConfig::load(&ctx.config_path)?;
            let cp = cfg.select(ctx.control_plane.as_deref())?;
            threeport_tui::run(threeport_tui::DashboardOptions {
                client: ctx.client()?,
                control_plane: cp.name.clone(),
                api_url: cp.url(),
                readonly,
                keymap: Some(ctx.config_path.with_file_name("dashboard.yaml")),
            })
            .await?;
            Ok(0)
        }
        Command::Config { command } => {
            let mut cfg = config::ThreeportConfig::load(&ctx.config_path)?;
            match command {
                ConfigCommand::GetControlPlanes => {
                    let mut t = comfy_table::Table::new();
                    t.load_preset(comfy_table::presets::NOTHING);
                    t.set_header(vec!["CURRENT", "NAME", "PROVIDER", "API SERVER"]);
                    for cp in &cfg.control_planes {
                        let cur = if cp.name == cfg.current_control_plane {
                            "*"
                        } else {
                            ""
                        };
                        t.add_row(vec![cur, &cp.name, &cp.provider, &cp.url()]);
                    }
                    for l in t.to_string().lines() {
                        println!("{}", l.trim_end().trim_start_matches(' '));
                    }
                }
                ConfigCommand::CurrentControlPlane { name: None } => {
                    if cfg.current_control_plane.is_empty() {
                        bail!("no current control plane is set");
                    }
                    println!("{}", cfg.current_control_plane);
                }
                ConfigCommand::CurrentControlPlane { name: Some(name) } => {
                    if cfg.get(&name).is_none() {
                        bail!(
                            "no control plane named {name:?} in {}",
                            ctx.config_path.display()
                        );
                    }
                    cfg.current_control_plane = name.clone();
                    cfg.save(&ctx.config_path)?;
                    eprintln!("current control plane is now {name:?}");
                }
            }
            Ok(0)
        }
        Command::Version => {
            println!("Client: {}", env!("CARGO_PKG_VERSION"));
            let cfg = config::ThreeportConfig::load(&ctx.config_path)?;
            match cfg.select(ctx.control_plane.as_deref()) {
                Ok(cp) => match cp.client()?.version().await {
                    Ok(v) => println!("Server: {v} ({})", cp.url()),
                    Err(e) => {
                        println!("Server: unreachable ({e})");
                        return Ok(EXIT_ERROR);
                    }
                },
                Err(_) => println!("Server: no control plane configured"),
            }
            Ok(0)
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "tptctl", &mut std::io::stdout());
            Ok(0)
        }
        Command::ServeLocal { dir, listen } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("THREEPORT_LOG")
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_ansi(false)
                .init();
            local::serve(&dir, listen).await?;
            Ok(0)
        }
    }
}

/// Create or update a runtime for a kubeconfig context, through the apply path. Returns whether it failed.
async fn register_runtime(
    ctx: &Ctx,
    name: &str,
    conn: &runtime::Connection,
    default: bool,
    source: &Path,
) -> Result<bool> {
    let loaded = runtime::desired(name, conn, default, &source.display().to_string());
    let opts = apply::ApplyOpts {
        dry_run: false,
        output: None,
        create_only: false,
    };
    Ok(apply::apply(&ctx.client()?, loaded, &opts).await?.failed > 0)
}

async fn apply_cmd(
    ctx: &Ctx,
    inputs: &Inputs,
    opts: apply::ApplyOpts,
    wait: Option<Duration>,
) -> Result<u8> {
    let loaded = load_inputs(inputs)?;
    let client = ctx.client()?;
    let report = apply::apply(&client, loaded, &opts).await?;
    if report.failed > 0 {
        eprintln!(
            "{} of {} objects failed; the others were applied",
            report.failed, report.total
        );
        return Ok(EXIT_ERROR);
    }
    if let (Some(timeout), false) = (wait, opts.dry_run) {
        match apply::wait(&client, &report.applied, timeout).await? {
            apply::WaitOutcome::Done => {}
            apply::WaitOutcome::Failed(f) => {
                for x in &f {
                    eprintln!("error: {x}");
                }
                return Ok(EXIT_ERROR);
            }
            apply::WaitOutcome::TimedOut(pending) => {
                eprintln!(
                    "timed out after {}s waiting for: {}",
                    timeout.as_secs(),
                    pending.join(", ")
                );
                return Ok(EXIT_TIMEOUT);
            }
        }
    }
    Ok(0)
}

async fn get(ctx: &Ctx, kind: &str, name: Option<&str>, format: Option<Format>) -> Result<u8> {
    if kind == "kinds" {
        for k in kinds::KINDS.iter() {
            println!("{:<40} {}", k.plural, k.aliases.join(", "));
        }
        return Ok(0);
    }
    let kind = kind_arg(kind)?;
    let client = ctx.client()?;
    let objects = match name {
        Some(n) => vec![find(&client, kind, n).await?],
        None => client.list(kind, &[]).await?,
    };
    match format {
        None | Some(Format::Wide) => {
            if objects.is_empty() {
                eprintln!("No {} found.", kind.plural);
                return Ok(0);
            }
            let refs = output::reference_names(&client, kind, &objects).await;
            print!(
                "{}",
                output::table(kind, &objects, &refs, format == Some(Format::Wide))
            );
        }
        Some(f) => output::print_objects(f, kind, &objects)?,
    }
    Ok(0)
}

/// Kinds whose `<X>ID` field points at `kind`: definitions list their instances, instances their resources.
async fn related(
    client: &threeport_api::Client,
    kind: &'static Kind,
    id: u64,
) -> Vec<(&'static Kind, Vec<Value>)> {
    let mut out = Vec::new();
    for (k, f) in kinds::references_to(kind.name) {
        if matches!(k.group, kinds::Group::Event) || k.name.ends_with("Event") {
            continue;
        }
        if let Ok(items) = client.list(k, &[(&f.filter_key(), id.to_string())]).await {
            if !items.is_empty() {
                out.push((k, items));
            }
        }
    }
    out
}

async fn describe_one(
    client: &threeport_api::Client,
    kind: &'static Kind,
    o: &Value,
) -> Result<()> {
    let refs = output::reference_names(client, kind, std::slice::from_ref(o)).await;
    print!("{}", output::describe_fields(kind, o, &refs));
    let id = object_id(o).unwrap_or_default();
    for (k, items) in related(client, kind, id).await {
        println!("{}:", k.name);
        for it in items {
            println!("  {:<30} {}", output::name_of(&it), output::status(k, &it));
        }
    }
    // Events: the generic Event kind, plus WorkloadEvents for workload instances.
    let mut events: Vec<(String, String, String, String)> = Vec::new();
    let ev = kinds::by_name("Event").expect("registered");
    if let Ok(items) = client
        .list(
            ev,
            &[
                ("objectkind", kind.name.to_string()),
                ("objectid", id.to_string()),
            ],
        )
        .await
    {
        for e in items {
            let s = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_string();
            events.push((s("EventTime"), s("Type"), s("Reason"), s("Note")));
        }
    }
    if kind.name == "WorkloadInstance" {
        let we = kinds::by_name("WorkloadEvent").expect("registered");
        if let Ok(items) = client
            .list(we, &[("workloadinstanceid", id.to_string())])
            .await
        {
            for e in items {
                let s = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_string();
                events.push((s("Timestamp"), s("Type"), s("Reason"), s("Message")));
            }
        }
    }
    events.sort();
    println!("Events:");
    if events.is_empty() {
        println!("  <none>");
    }
    for (t, ty, reason, msg) in events.iter().rev().take(10).rev() {
        println!("  {:<8} {:<20} {:<6} {}", ty, reason, output::age(t), msg);
    }
    Ok(())
}

async fn describe(ctx: &Ctx, kind: &str, name: Option<&str>, inputs: &Inputs) -> Result<u8> {
    let client = ctx.client()?;
    if !inputs.is_empty() {
        let loaded = load_inputs(inputs)?;
        for p in &loaded.problems {
            eprintln!("error: {p}");
        }
        for d in &loaded.objects {
            match client.find_by_name(d.kind, &d.name).await? {
                Some(o) => describe_one(&client, d.kind, &o).await?,
                None => eprintln!("{} not found", d.label()),
            }
            println!();
        }
        return Ok(if loaded.problems.is_empty() {
            0
        } else {
            EXIT_ERROR
        });
    }
    let kind = kind_arg(kind)?;
    let name = name.context("give the object's name: tptctl describe KIND NAME")?;
    let o = find(&client, kind, name).await?;
    describe_one(&client, kind, &o).await?;
    Ok(0)
}

async fn delete(
    ctx: &Ctx,
    kind: Option<&str>,
    name: Option<&str>,
    inputs: &Inputs,
    wait: Option<Duration>,
) -> Result<u8> {
    let client = ctx.client()?;
    let (failed, scheduled) = if !inputs.is_empty() {
        apply::delete_from(&client, load_inputs(inputs)?).await?
    } else {
        let (Some(kind), Some(name)) = (kind, name) else {
            bail!("give KIND NAME, or -f FILE");
        };
        let kind = kind_arg(kind)?;
        let o = find(&client, kind, name).await?;
        let id = object_id(&o).unwrap_or_default();
        client.delete(kind, id).await?;
        if kind.reconciled {
            println!("{}/{name} deletion scheduled", kind.singular());
            (0, vec![(kind, id)])
        } else {
            println!("{}/{name} deleted", kind.singular());
            (0, vec![])
        }
    };
    if failed > 0 {
        return Ok(EXIT_ERROR);
    }
    if let Some(timeout) = wait {
        if !apply::wait_gone(&client, &scheduled, timeout).await? {
            eprintln!(
                "timed out after {}s waiting for the deletion to be confirmed",
                timeout.as_secs()
            );
            return Ok(EXIT_TIMEOUT);
        }
        eprintln!(" ✓ deleted");
    }
    Ok(0)
}

fn main() -> ExitCode {
    threeport_server::install_crypto_provider();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
