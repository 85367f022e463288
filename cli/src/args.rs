//! Every flag and argument of `tptctl`: one `#[derive(Args)]` struct per command, passed whole to
//! its `cmd::<verb>` module. Choices are enums (`Provider`, `Format`, `Shell`) so `--help` and the
//! completions list what is really accepted.

use crate::output::Format;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

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
pub struct Cli {
    /// Config file [env: THREEPORT_CONFIG] [default: ~/.threeport/config.yaml]
    #[arg(long, global = true)]
    pub threeport_config: Option<PathBuf>,
    /// Control plane to use instead of the config's CurrentControlPlane.
    #[arg(long, global = true)]
    pub control_plane: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a control plane and make it the current one.
    Up(UpArgs),
    /// Check what `up --provider kind` needs: docker, kind, a free port.
    Doctor(DoctorArgs),
    /// Kubernetes runtimes.
    Runtime(RuntimeArgs),
    /// Stop a control plane and remove it from the config.
    Down(DownArgs),
    /// Create or update the objects in YAML files (upstream's format), in dependency order.
    Apply(ApplyArgs),
    /// Check YAML files offline: syntax, kinds, fields, references within the files, cycles.
    Validate(ValidateArgs),
    /// List objects of a kind, or show one.
    Get(GetArgs),
    /// Show an object in detail: fields, related objects, status reason and recent events.
    Describe(DescribeArgs),
    /// Why an object is not healthy: its status and reason, the deepest cause found by walking
    /// its children and events, and the latest warnings (the dashboard's why pane).
    Why(WhyArgs),
    /// Delete an object by name, or everything a file declares.
    Delete(DeleteArgs),
    /// Upstream's `create <kind> -c FILE`: like apply, but existing objects are errors.
    Create(CreateArgs),
    /// Live terminal dashboard (k9s-style): workloads, runtimes, events, any kind.
    ///
    /// `?` lists the keys. They can be rebound in dashboard.yaml next to the config file
    /// (~/.threeport/dashboard.yaml), e.g. `keys: {describe: v, down: [j, down]}`.
    Dashboard(DashboardArgs),
    /// Inspect and switch control planes in the config.
    Config(ConfigArgs),
    /// Print the client and server versions.
    Version,
    /// Print a shell completion script: `source <(tptctl completion bash)`.
    Completion(CompletionArgs),
    /// The control plane's container image, built from this tptctl (no Docker needed).
    Image(ImageArgs),
    /// Run the local control plane in the foreground (started by `up --provider local`).
    #[command(hide = true)]
    ServeLocal(ServeLocalArgs),
}

/// Where `up` puts the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    /// Embedded in a background tptctl process: SQLite, in-process bus, nothing else to install.
    Local,
    /// A new kind cluster on this machine (needs Docker and kind; see `tptctl doctor`).
    Kind,
    /// A new EKS cluster in an AWS account (see --aws-region, --aws-config-profile).
    Eks,
    /// A cluster you already have (--kubeconfig, --context); `down` removes only what was installed.
    Kubernetes,
}

// `tptctl up`. Some flags apply to one provider only; their help says which.
#[derive(Args)]
pub struct UpArgs {
    #[arg(short = 'n', long, default_value = "threeport")]
    pub name: String,
    /// Where to run the control plane.
    #[arg(short = 'p', long, value_enum, default_value_t = Provider::Local)]
    pub provider: Provider,
    /// API port on this machine (local and kind; default 1323, for local a free port when taken).
    #[arg(long)]
    pub port: Option<u16>,
    /// Host ports mapped to the HTTP and HTTPS node ports of the gateways the gateway controller
    /// makes on the cluster (kind), so `curl -H 'Host: blog.example.com' localhost` reaches an
    /// app: `HTTP,HTTPS`, or `none` when those ports are taken on this machine.
    #[arg(long, default_value = "80,443", value_parser = parse_gateway_ports)]
    pub gateway_ports: GatewayPorts,
    /// Register the cluster of this kubeconfig (current context) as the default runtime.
    #[arg(long)]
    pub runtime_from_kubeconfig: Option<PathBuf>,
    /// Use the published image REPO/threeport instead of building one from this tptctl (kind
    /// and EKS; with only --image-tag: ghcr.io/threeport). kubernetes: without --image-tag,
    /// build the image and push it to REPO/threeport.
    #[arg(long)]
    pub image_repo: Option<String>,
    /// Tag of the published image (default: this version); implies a published image.
    #[arg(long)]
    pub image_tag: Option<String>,
    /// Keep what a failed `up` created, for debugging (kind and EKS).
    #[arg(long)]
    pub retain: bool,
    /// Show the output of the tools tptctl runs (kind).
    #[arg(long)]
    pub verbose: bool,
    /// How long to wait for each control-plane rollout and then for the API (kind and EKS),
    /// e.g. 90s, 10m. A rollout that is not done by then fails `up`, naming the workload.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Print the install as multi-document YAML, in the order `up` applies it, for
    /// `kubectl apply -f -`, and do nothing else. The Service is a NodePort (a LoadBalancer
    /// with --provider eks). Secrets are left out unless --include-secrets.
    #[arg(long)]
    pub print_manifests: bool,
    /// With --print-manifests: include the Secrets (new certificates and keys, shown once and
    /// kept nowhere else).
    #[arg(long, requires = "print_manifests")]
    pub include_secrets: bool,
    /// Kubeconfig of the cluster to install into (kubernetes; default: $KUBECONFIG, else
    /// ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig (kubernetes; default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// host:port this machine reaches the API at, e.g. a port-forward (kubernetes; default: a
    /// kind node's NodePort, else the Service's load balancer).
    #[arg(long)]
    pub api_address: Option<String>,
    /// Push to the --image-repo registry over plain HTTP (kubernetes; a local registry).
    #[arg(long)]
    pub plain_http: bool,
    /// AWS region (EKS).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub aws_region: String,
    /// AWS config profile (EKS); default: the usual credential chain.
    #[arg(long)]
    pub aws_config_profile: Option<String>,
}

/// `--gateway-ports`: (HTTP, HTTPS) host ports, or none.
#[derive(Clone, Copy, Debug)]
pub struct GatewayPorts(pub Option<(u16, u16)>);

fn parse_gateway_ports(s: &str) -> Result<GatewayPorts, String> {
    if s == "none" {
        return Ok(GatewayPorts(None));
    }
    let parsed = s
        .split_once(',')
        .and_then(|(h, t)| Some((h.trim().parse().ok()?, t.trim().parse().ok()?)));
    match parsed {
        Some(p) => Ok(GatewayPorts(Some(p))),
        None => Err(format!(
            "{s:?}: give the HTTP and HTTPS host ports as HTTP,HTTPS (e.g. 8080,8443), or none"
        )),
    }
}

#[derive(Args)]
pub struct DoctorArgs {
    #[arg(long, default_value_t = 1323)]
    pub port: u16,
}

#[derive(Args)]
pub struct RuntimeArgs {
    #[command(subcommand)]
    pub command: RuntimeCommand,
}

#[derive(Subcommand)]
pub enum RuntimeCommand {
    /// Make an existing cluster a runtime, from its kubeconfig.
    Register(RegisterArgs),
}

#[derive(Args)]
pub struct RegisterArgs {
    pub name: String,
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Context to use (default: the kubeconfig's current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Make it the default runtime for workloads that name none.
    #[arg(long)]
    pub default: bool,
}

#[derive(Args)]
pub struct DownArgs {
    #[arg(short = 'n', long, default_value = "threeport")]
    pub name: String,
    /// Also delete its data (database, certificates, logs).
    #[arg(long)]
    pub purge: bool,
}

// The YAML inputs of apply, validate, create, describe and delete. (Plain comments on the
// Args structs: a doc comment would become the command's about text.)
#[derive(Args, Clone)]
pub struct Inputs {
    /// File, directory or `-` for stdin; repeat for several.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Upstream's spelling of -f.
    #[arg(short = 'c', long = "config", hide = true)]
    pub config_files: Vec<PathBuf>,
    /// Recurse into directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

impl Inputs {
    pub fn all(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .chain(self.config_files.iter())
            .cloned()
            .collect()
    }
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.config_files.is_empty()
    }
}

#[derive(Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    /// Validate and show what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
    /// Wait until every applied object is reconciled or failed.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 30s, 5m.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How many objects are written at once; an object still waits for what it refers to.
    #[arg(long, default_value_t = crate::apply::DEFAULT_CONCURRENCY, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub concurrency: usize,
}

#[derive(Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub inputs: Inputs,
}

#[derive(Args)]
pub struct GetArgs {
    /// Kind: workloads, workload-instances, kubernetes-runtime-instances, aws-accounts, … (see `tptctl get kinds`).
    pub kind: String,
    pub name: Option<String>,
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

#[derive(Args)]
pub struct DescribeArgs {
    pub kind: String,
    pub name: Option<String>,
    #[command(flatten)]
    pub inputs: Inputs,
}

#[derive(Args)]
pub struct WhyArgs {
    /// Kind: workloads, workload-instances, helm-workload-instances, … (see `tptctl get kinds`).
    pub kind: String,
    pub name: String,
}

#[derive(Args)]
pub struct DeleteArgs {
    pub kind: Option<String>,
    pub name: Option<String>,
    #[command(flatten)]
    pub inputs: Inputs,
    /// Wait until the deletion is confirmed by the controllers.
    #[arg(long)]
    pub wait: bool,
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Upstream's kind argument; the kinds come from the file.
    pub kind: Option<String>,
    #[command(flatten)]
    pub inputs: Inputs,
}

#[derive(Args)]
pub struct DashboardArgs {
    /// Refuse every change: deleting is disabled.
    #[arg(long)]
    pub readonly: bool,
}

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// List the control planes in the config.
    GetControlPlanes,
    /// Show the current control plane, or switch to NAME.
    CurrentControlPlane { name: Option<String> },
}

#[derive(Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Write the control plane image as an OCI archive (`oci-archive:FILE` to skopeo,
    /// `kind load image-archive FILE`). Same tptctl, same image digest.
    Build {
        /// Where to write it; default: the cache (~/.threeport/images/), reused by `up`.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Build (or reuse) the image and push it to REPOSITORY (`registry/name`), tagged
    /// `<version>-<digest prefix>`. Credentials, if the registry needs them, come from
    /// THREEPORT_REGISTRY_USERNAME and THREEPORT_REGISTRY_PASSWORD.
    Push {
        repository: String,
        /// Talk plain HTTP to the registry (a local one, e.g. 127.0.0.1:5000).
        #[arg(long)]
        plain_http: bool,
    },
}

#[derive(Args)]
pub struct CompletionArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ServeLocalArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub listen: std::net::SocketAddr,
}

/// `30s`, `5m`, `1h`, `500ms`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (expected e.g. 30s, 5m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Ok(Duration::from_millis(n)),
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (expected s, m, h or ms)"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn provider_help_lists_every_provider() {
        let help = Cli::command()
            .find_subcommand_mut("up")
            .unwrap()
            .render_long_help()
            .to_string();
        for p in ["local", "kind", "eks", "kubernetes"] {
            assert!(help.contains(&format!("{p}:")), "{p} in:\n{help}");
        }
        assert!(!help.contains("Only `local`"), "{help}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }
}
