//! The one declaration of every object kind.
//!
//! Upstream Threeport generates most of its Go code (models, routes, handlers, client calls) from a
//! YAML list of kinds. Here the same leverage comes from data: each kind is one [`Kind`] value in
//! [`KINDS`], and the server (routes, validation, filters, encryption, notification subjects), the
//! REST client and `tptctl` all read this table. Adding a kind means adding one entry here.

/// How a field's JSON value is checked and whether it can be used as a list filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A short string: indexed, so `?field=value` filters are fast.
    String,
    /// A document (a YAML manifest, Helm values, Terraform files): never indexed.
    Text,
    Bool,
    /// A signed 64-bit integer.
    Int,
    /// A 64-bit object ID (unsigned; IDs exceed 2^53, so never treat them as f64).
    Id,
    /// Free-form JSON (an inventory, a Kubernetes object): never indexed.
    Json,
    /// RFC 3339 timestamp.
    Timestamp,
}

impl FieldType {
    /// Fields of these types get rows in the filter index.
    pub fn filterable(self) -> bool {
        matches!(
            self,
            FieldType::String | FieldType::Bool | FieldType::Int | FieldType::Id
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            FieldType::String | FieldType::Text => "a string",
            FieldType::Bool => "true or false",
            FieldType::Int => "an integer",
            FieldType::Id => "a non-negative 64-bit integer ID",
            FieldType::Json => "any JSON value",
            FieldType::Timestamp => "an RFC 3339 timestamp string",
        }
    }
}

/// What happens to an object that references another one when the referenced object goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDelete {
    /// The referenced object cannot be deleted while this reference exists (409).
    Restrict,
    /// This object is removed together with the referenced one (events, resource rows).
    Cascade,
    /// The two live and die together, each through its controller: this object made (or was
    /// made for) the referenced one, as an EKS runtime instance registers the
    /// KubernetesRuntimeInstance it provisions. Deleting the referenced object is not refused
    /// because of this reference: its controller deletes this object first (which tears down
    /// what it made) and waits for it. Deleting this object is refused while the referenced
    /// one could not be deleted (a workload still runs on the runtime). The row itself is
    /// removed only once this reference is gone.
    Bound,
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The upstream PascalCase JSON name (`YAMLDocument`, `APIEndpoint`, …).
    pub name: &'static str,
    pub ty: FieldType,
    pub required: bool,
    /// Encrypted at rest and redacted in every output unless explicitly revealed.
    pub secret: bool,
    /// Written by controllers to report state. Changing it does not make the object
    /// need reconciling again; changing any other field does.
    pub status: bool,
    /// Cannot change after creation.
    pub immutable: bool,
    /// For `Id` fields: the kind (PascalCase) this ID points at.
    pub references: Option<&'static str>,
    pub on_delete: OnDelete,
    /// Shown as a column in `tptctl get` tables (references and STATUS/AGE always are).
    pub column: bool,
    /// For strings: the only values accepted (empty: any). Checked on every write and by
    /// `tptctl validate`, so a typo is a 400 naming the field, not a failure minutes later.
    pub one_of: &'static [&'static str],
    /// For integers: the inclusive range accepted.
    pub range: Option<(i64, i64)>,
    /// For references: the object is a dependency of the one this points at (a workload's
    /// database or secret). Upstream's YAML nests it there, and `why` and the drill-downs show
    /// it as that object's child.
    pub attaches: bool,
    /// For strings: the kind whose object this field names (`InfraProviderAccountName` names an
    /// `AwsAccount`). Not an ID reference, so the API does not check it, but what the named
    /// object's controller makes from it refers to that object: `tptctl apply` writes the named
    /// object first and `delete -f` deletes it last.
    pub names: Option<&'static str>,
    /// For references: this object is part of the referenced object's spec (a gateway's port
    /// of its definition). Writing or deleting it asks the referenced object's controller to
    /// reconcile again, and `tptctl apply` writes it before whatever refers to that object.
    pub part: bool,
}

impl Field {
    pub const fn new(name: &'static str, ty: FieldType) -> Field {
        Field {
            name,
            ty,
            required: false,
            secret: false,
            status: false,
            immutable: false,
            references: None,
            on_delete: OnDelete::Restrict,
            column: false,
            one_of: &[],
            range: None,
            attaches: false,
            names: None,
            part: false,
        }
    }
    pub const fn part(mut self) -> Field {
        self.part = true;
        self
    }
    pub const fn names(mut self, kind: &'static str) -> Field {
        self.names = Some(kind);
        self
    }
    pub const fn attaches(mut self) -> Field {
        self.attaches = true;
        self
    }
    pub const fn range(mut self, bounds: (i64, i64)) -> Field {
        self.range = Some(bounds);
        self
    }
    pub const fn one_of(mut self, values: &'static [&'static str]) -> Field {
        self.one_of = values;
        self
    }
    pub const fn column(mut self) -> Field {
        self.column = true;
        self
    }
    pub const fn required(mut self) -> Field {
        self.required = true;
        self
    }
    pub const fn secret(mut self) -> Field {
        self.secret = true;
        self
    }
    pub const fn status(mut self) -> Field {
        self.status = true;
        self
    }
    pub const fn immutable(mut self) -> Field {
        self.immutable = true;
        self
    }
    pub const fn cascade(mut self) -> Field {
        self.on_delete = OnDelete::Cascade;
        self
    }
    /// See [`OnDelete::Bound`].
    pub const fn bound(mut self) -> Field {
        self.on_delete = OnDelete::Bound;
        self
    }
    /// Lower-cased name, as used in query-string filters (`?workloaddefinitionid=…`).
    pub fn filter_key(&self) -> String {
        self.name.to_ascii_lowercase()
    }
}

const fn s(name: &'static str) -> Field {
    Field::new(name, FieldType::String)
}
const fn text(name: &'static str) -> Field {
    Field::new(name, FieldType::Text)
}
const fn b(name: &'static str) -> Field {
    Field::new(name, FieldType::Bool)
}
const fn int(name: &'static str) -> Field {
    Field::new(name, FieldType::Int)
}
const fn json(name: &'static str) -> Field {
    Field::new(name, FieldType::Json)
}
const fn ts(name: &'static str) -> Field {
    Field::new(name, FieldType::Timestamp)
}
/// A reference by ID to an object of kind `to`.
const fn r(name: &'static str, to: &'static str) -> Field {
    let mut f = Field::new(name, FieldType::Id);
    f.references = Some(to);
    f
}

/// Fields every object has. `ResourceVersion` is ours (optimistic concurrency), the rest are upstream's.
pub static COMMON_FIELDS: &[Field] = &[
    Field::new("ID", FieldType::Id),
    ts("CreatedAt"),
    ts("UpdatedAt"),
    int("ResourceVersion"),
];

/// Fields the server sets; a request body that carries them is refused (400).
pub const SERVER_MANAGED: &[&str] = &["ID", "CreatedAt", "UpdatedAt", "DeletedAt"];

/// Bookkeeping fields of reconciled kinds (upstream's `Reconciliation` embed).
pub static RECONCILIATION_FIELDS: &[Field] = &[
    b("Reconciled").status(),
    ts("CreationAcknowledged").status(),
    ts("CreationConfirmed").status(),
    ts("CreationFailed").status(),
    ts("DeletionScheduled").status(),
    ts("DeletionAcknowledged").status(),
    ts("DeletionConfirmed").status(),
    b("InterruptReconciliation").status(),
];

/// Instances report their runtime state. `StatusReason` is ours: a status always says why.
pub static INSTANCE_FIELDS: &[Field] = &[s("Status").status(), text("StatusReason").status()];

/// The controller group a kind belongs to: it names the JetStream stream (upstream's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Workload,
    KubernetesRuntime,
    Aws,
    Gateway,
    HelmWorkload,
    Secret,
    Terraform,
    Observability,
    ControlPlane,
    Event,
}

impl Group {
    /// The controller of this release that serves the group's reconciled kinds, by the name
    /// `threeport controllers --only` takes. `None`: this release has no controller for it, so its
    /// objects stay `Pending` with that reason.
    pub fn controller(self) -> Option<&'static str> {
        match self {
            Group::Workload => Some("workload"),
            Group::KubernetesRuntime => Some("kubernetes-runtime"),
            Group::Secret => Some("secret"),
            Group::Aws => Some("aws"),
            Group::Gateway => Some("gateway"),
            _ => None,
        }
    }

    pub fn stream(self) -> &'static str {
        match self {
            Group::Workload => "workloadStream",
            Group::KubernetesRuntime => "kubernetes-runtimeStream",
            Group::Aws => "awsStream",
            Group::Gateway => "gatewayStream",
            Group::HelmWorkload => "helm-workloadStream",
            Group::Secret => "secretStream",
            Group::Terraform => "terraformStream",
            Group::Observability => "observabilityStream",
            Group::ControlPlane => "control-planeStream",
            Group::Event => "eventStream",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Definition,
    Instance,
    /// Neither: accounts, ports, resource rows, controller registrations.
    Plain,
    /// Event-like rows (what happened to an object): no name, no status, cascade with their object.
    Event,
}

#[derive(Debug)]
pub struct Kind {
    /// PascalCase, as in the envelope's `Type` and upstream YAML's top-level keys.
    pub name: &'static str,
    /// REST collection under `/v0/`, also `tptctl`'s kind argument.
    pub plural: &'static str,
    pub group: Group,
    pub role: Role,
    /// Reconciled by a controller: notifications, two-phase delete, bookkeeping fields.
    pub reconciled: bool,
    /// `Name` is required and unique within the kind. Event-like rows have no name.
    pub named: bool,
    /// Extra short names accepted by `tptctl` (kubectl-style).
    pub aliases: &'static [&'static str],
    /// The kind's own fields, after the common ones.
    pub own_fields: &'static [Field],
}

impl Kind {
    /// Every field of the kind in output order: common, `Name`, own, status, reconciliation.
    pub fn fields(&self) -> impl Iterator<Item = &'static Field> + '_ {
        static NAME_REQUIRED: Field = s("Name").required();
        static NAME_OPTIONAL: Field = s("Name");
        let name = if self.named {
            &NAME_REQUIRED
        } else {
            &NAME_OPTIONAL
        };
        // Definitions that a controller reconciles say where they stand too (`Pending` while no
        // controller serves them), so every reconciled kind carries the status fields.
        let instance: &'static [Field] = if self.role == Role::Instance || self.reconciled {
            INSTANCE_FIELDS
        } else {
            &[]
        };
        let reconciliation: &'static [Field] = if self.reconciled {
            RECONCILIATION_FIELDS
        } else {
            &[]
        };
        COMMON_FIELDS
            .iter()
            .chain(std::iter::once(name))
            .chain(self.own_fields.iter())
            .chain(instance.iter())
            .chain(reconciliation.iter())
    }

    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields().find(|f| f.name == name)
    }

    /// Fields a client may write (everything but the server-managed ones).
    pub fn writable_fields(&self) -> impl Iterator<Item = &'static Field> + '_ {
        self.fields()
            .filter(|f| !SERVER_MANAGED.contains(&f.name) && f.name != "ResourceVersion")
    }

    /// `workloadInstance`: the prefix of upstream's notification subjects.
    pub fn lower_camel(&self) -> String {
        let mut c = self.name.chars();
        match c.next() {
            Some(first) => first.to_ascii_lowercase().to_string() + c.as_str(),
            None => String::new(),
        }
    }

    /// `workloadInstance.create`, `.update` or `.delete`.
    pub fn subject(&self, op: Operation) -> String {
        format!("{}.{}", self.lower_camel(), op.verb())
    }

    /// Singular kubectl-style name (`workload-instance`), used in `tptctl` output lines.
    pub fn singular(&self) -> &'static str {
        self.plural.strip_suffix('s').unwrap_or(self.plural)
    }

    /// Event-like rows (`Event`, `WorkloadEvent`): shown as event lines, never drilled into.
    pub fn is_event(&self) -> bool {
        self.role == Role::Event
    }

    /// Whether objects of this kind have a `Status` a person reads.
    pub fn has_status(&self) -> bool {
        self.field("Status").is_some()
    }

    /// The controller (by `--only` name) that serves this kind, if this release has one.
    pub fn controller(&self) -> Option<&'static str> {
        if self.reconciled && !NOT_YET_SERVED.contains(&self.name) {
            self.group.controller()
        } else {
            None
        }
    }

    /// For a Definition: the Instance kind that requires it (`WorkloadDefinition` → `WorkloadInstance`).
    pub fn instance_kind(&'static self) -> Option<&'static Kind> {
        if self.role != Role::Definition {
            return None;
        }
        references_to(self.name)
            .find(|(k, f)| k.role == Role::Instance && f.required)
            .map(|(k, _)| k)
    }

    /// For an Instance: its Definition kind.
    pub fn definition_kind(&self) -> Option<&'static Kind> {
        if self.role != Role::Instance {
            return None;
        }
        self.own_fields
            .iter()
            .filter(|f| f.required)
            .filter_map(|f| f.references.and_then(by_name))
            .find(|k| k.role == Role::Definition)
    }

    /// The objects "under" this one, for drill-downs and the "why": a definition's instances,
    /// an instance's resource rows (kinds that require a reference to this one). Events and
    /// attachments are not children; they are shown as events.
    pub fn children(&'static self) -> Vec<&'static Kind> {
        let mut v: Vec<&'static Kind> = Vec::new();
        for (k, f) in references_to(self.name) {
            let owned = (f.required || f.attaches)
                && !k.is_event()
                && !std::ptr::eq(k, ATTACHED_OBJECT_REFERENCE)
                && !std::ptr::eq(k, self)
                && (self.role != Role::Definition || k.role == Role::Instance);
            if owned && !v.iter().any(|x| std::ptr::eq(*x, k)) {
                v.push(k);
            }
        }
        v
    }

    /// For a child kind (see [`Kind::children`]): the field by which it belongs to `parent`.
    pub fn parent_field(&self, parent: &Kind) -> Option<&'static Field> {
        self.own_fields
            .iter()
            .find(|f| (f.required || f.attaches) && f.references == Some(parent.name))
    }

    /// The kinds attached to this one as its dependencies (a workload instance's databases,
    /// buckets, secrets, domain names and gateways).
    pub fn dependencies(&'static self) -> Vec<&'static Kind> {
        let mut v: Vec<&'static Kind> = Vec::new();
        for (k, f) in references_to(self.name) {
            if f.attaches && !v.iter().any(|x| std::ptr::eq(*x, k)) {
                v.push(k);
            }
        }
        v
    }

    /// Every kind that can point at this one (the workloads on a runtime, …), for a drill-down
    /// of objects without children.
    pub fn dependents(&'static self) -> Vec<&'static Kind> {
        let mut v: Vec<&'static Kind> = Vec::new();
        for (k, _) in references_to(self.name) {
            let shown = !k.is_event()
                && !std::ptr::eq(k, ATTACHED_OBJECT_REFERENCE)
                && !std::ptr::eq(k, self);
            if shown && !v.iter().any(|x| std::ptr::eq(*x, k)) {
                v.push(k);
            }
        }
        // A definition's instances first.
        v.sort_by_key(|k| k.role != Role::Instance);
        v
    }

    pub fn secret_fields(&self) -> impl Iterator<Item = &'static Field> + '_ {
        self.fields().filter(|f| f.secret)
    }

    pub fn has_secrets(&self) -> bool {
        self.secret_fields().next().is_some()
    }
}

/// The change a notification describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Created,
    Updated,
    Deleted,
}

impl Operation {
    pub fn verb(self) -> &'static str {
        match self {
            Operation::Created => "create",
            Operation::Updated => "update",
            Operation::Deleted => "delete",
        }
    }
    /// Upstream's `Operation` value in the notification message.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Created => "Created",
            Operation::Updated => "Updated",
            Operation::Deleted => "Deleted",
        }
    }
    /// The watch-stream event name.
    pub fn event_name(self) -> &'static str {
        match self {
            Operation::Created => "created",
            Operation::Updated => "updated",
            Operation::Deleted => "deleted",
        }
    }
    pub fn parse(s: &str) -> Option<Operation> {
        match s {
            "Created" | "created" | "create" => Some(Operation::Created),
            "Updated" | "updated" | "update" => Some(Operation::Updated),
            "Deleted" | "deleted" | "delete" => Some(Operation::Deleted),
            _ => None,
        }
    }
}

macro_rules! kind {
    ($name:literal, $plural:literal, $group:ident, $role:ident, reconciled: $rec:literal, named: $named:literal,
     aliases: [$($alias:literal),*], fields: [$($field:expr),* $(,)?]) => {
        Kind {
            name: $name,
            plural: $plural,
            group: Group::$group,
            role: Role::$role,
            reconciled: $rec,
            named: $named,
            aliases: &[$($alias),*],
            own_fields: &[$($field),*],
        }
    };
}

/// Every kind, in dependency order: a kind only references kinds listed before it
/// (except self-references), which is also the order `tptctl apply` creates them in.
pub static KINDS: &[Kind] = &[
    // --- AWS accounts come first: runtimes and managed services point at them.
    kind!("AwsAccount", "aws-accounts", Aws, Plain, reconciled: false, named: true, aliases: ["awsaccount"], fields: [
        s("AccountID").required(), b("DefaultAccount"), s("DefaultRegion"),
        s("AccessKeyID").secret(), s("SecretAccessKey").secret(), s("RoleArn"), s("ExternalId"),
    ]),
    // --- Kubernetes runtimes.
    kind!("KubernetesRuntimeDefinition", "kubernetes-runtime-definitions", KubernetesRuntime, Definition, reconciled: true, named: true,
        aliases: ["krd"], fields: [
        s("InfraProvider").required(), s("InfraProviderAccountName").names("AwsAccount"), b("HighAvailability"),
        s("NodeSize"), s("NodeProfile"), int("NodeMaximum"),
    ]),
    kind!("KubernetesRuntimeInstance", "kubernetes-runtime-instances", KubernetesRuntime, Instance, reconciled: true, named: true,
        aliases: ["kri", "runtimes", "runtime"], fields: [
        r("KubernetesRuntimeDefinitionID", "KubernetesRuntimeDefinition").required(),
        s("Location").immutable(), s("APIEndpoint"),
        text("CACertificate").secret(), text("Certificate").secret(), text("CertificateKey").secret(),
        text("ConnectionToken").secret(), ts("ConnectionTokenExpiration"),
        b("DefaultRuntime"), s("ThreeportControlPlaneHost"), s("ThreeportAgentImage"), b("ForceDelete"),
        // Ours: the GatewayClass this runtime's gateways use (default: the only accepted one,
        // else one the gateway controller installs).
        s("GatewayClassName"),
        // What the gateway controller found or installed (Gateway API, cert-manager).
        json("SupportServices").status(),
    ]),
    kind!("AwsEksKubernetesRuntimeDefinition", "aws-eks-kubernetes-runtime-definitions", Aws, Definition, reconciled: true, named: true,
        aliases: ["eksrd"], fields: [
        r("AwsAccountID", "AwsAccount").required(), int("ZoneCount"), s("DefaultNodeGroupInstanceType"),
        int("DefaultNodeGroupInitialSize"), int("DefaultNodeGroupMinimumSize"), int("DefaultNodeGroupMaximumSize"),
        // Made by the kubernetes-runtime controller for an `eks` runtime definition.
        r("KubernetesRuntimeDefinitionID", "KubernetesRuntimeDefinition").bound(),
    ]),
    kind!("AwsEksKubernetesRuntimeInstance", "aws-eks-kubernetes-runtime-instances", Aws, Instance, reconciled: true, named: true,
        aliases: ["eksri"], fields: [
        s("Region").immutable(), r("AwsEksKubernetesRuntimeDefinitionID", "AwsEksKubernetesRuntimeDefinition").required(),
        // The runtime it provisions and registers: deleting either tears the cluster down.
        r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance").bound(), json("ResourceInventory").status(),
    ]),
    // --- Control planes form a tree.
    kind!("ControlPlaneDefinition", "control-plane-definitions", ControlPlane, Definition, reconciled: true, named: true,
        aliases: ["cpd"], fields: [b("AuthEnabled"), b("OnboardParent")]),
    kind!("ControlPlaneInstance", "control-plane-instances", ControlPlane, Instance, reconciled: true, named: true,
        aliases: ["cpi", "control-planes"], fields: [
        r("ControlPlaneDefinitionID", "ControlPlaneDefinition").required(),
        r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance"), s("Namespace"), b("Genesis"), b("IsSelf"),
        s("ApiServerEndpoint"), text("CACert").secret(), text("ClientCert").secret(), text("ClientKey").secret(),
        r("ParentControlPlaneInstanceID", "ControlPlaneInstance"),
        // Upstream's list of extra control-plane components (`Name`, `ImageRepo`, …), kept as written.
        json("CustomComponentInfo"),
    ]),
    // --- Workloads.
    kind!("WorkloadDefinition", "workload-definitions", Workload, Definition, reconciled: true, named: true,
        aliases: ["wd"], fields: [text("YAMLDocument").required()]),
    kind!("WorkloadResourceDefinition", "workload-resource-definitions", Workload, Plain, reconciled: false, named: false,
        aliases: ["wrd"], fields: [
        json("JSONDefinition").required(), r("WorkloadDefinitionID", "WorkloadDefinition").required().cascade(),
    ]),
    kind!("WorkloadInstance", "workload-instances", Workload, Instance, reconciled: true, named: true,
        aliases: ["wi", "workloads"], fields: [
        r("WorkloadDefinitionID", "WorkloadDefinition").required(),
        r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance"),
    ]),
    kind!("WorkloadResourceInstance", "workload-resource-instances", Workload, Plain, reconciled: false, named: false,
        aliases: ["wri"], fields: [
        json("JSONDefinition").required(), r("WorkloadInstanceID", "WorkloadInstance").required().cascade(),
        json("RuntimeDefinition").status(), s("LastOperation").status(), b("Reconciled").status(),
        b("ScheduledForDeletion").status(),
        // Set on objects a dependency's controller adds to the workload (`SecretInstance/db`):
        // the workload controller never prunes them, and deletes them with the workload.
        s("Dependency"),
    ]),
    kind!("WorkloadEvent", "workload-events", Workload, Event, reconciled: false, named: false,
        aliases: ["we"], fields: [
        r("WorkloadInstanceID", "WorkloadInstance").cascade(),
        r("WorkloadResourceInstanceID", "WorkloadResourceInstance").cascade(),
        s("RuntimeEventUID"), s("Type"), s("Reason"), text("Message"), ts("Timestamp"),
    ]),
    // --- Helm workloads.
    kind!("HelmWorkloadDefinition", "helm-workload-definitions", HelmWorkload, Definition, reconciled: true, named: true,
        aliases: ["hwd"], fields: [s("Repo").required(), s("Chart").required(), s("ChartVersion"), text("ValuesDocument")]),
    kind!("HelmWorkloadInstance", "helm-workload-instances", HelmWorkload, Instance, reconciled: true, named: true,
        aliases: ["hwi", "helm-workloads"], fields: [
        r("HelmWorkloadDefinitionID", "HelmWorkloadDefinition").required(),
        r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance"), text("ValuesDocument"), s("ReleaseNamespace"),
    ]),
    // --- Gateways and domain names.
    kind!("DomainNameDefinition", "domain-name-definitions", Gateway, Definition, reconciled: true, named: true,
        aliases: ["dnd"], fields: [s("Domain").required(), s("Zone").one_of(&["Public", "Private"]), s("AdminEmail")]),
    kind!("DomainNameInstance", "domain-name-instances", Gateway, Instance, reconciled: true, named: true,
        aliases: ["dni"], fields: [
        r("DomainNameDefinitionID", "DomainNameDefinition").required(),
        r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance"), r("WorkloadInstanceID", "WorkloadInstance").attaches(),
        r("HelmWorkloadInstanceID", "HelmWorkloadInstance").attaches(),
        // The records written to Route53, so they are removed exactly.
        json("Records").status(),
    ]),
    kind!("GatewayDefinition", "gateway-definitions", Gateway, Definition, reconciled: true, named: true,
        aliases: ["gd"], fields: [
        s("ServiceName"), s("SubDomain"), r("DomainNameDefinitionID", "DomainNameDefinition"),
    ]),
    kind!("GatewayHttpPort", "gateway-http-ports", Gateway, Plain, reconciled: false, named: false,
        aliases: [], fields: [
        int("Port").required(), s("Path"), b("TLSEnabled"), b("HTTPSRedirect"),
        r("GatewayDefinitionID", "GatewayDefinition").required().cascade().part(),
    ]),
    kind!("GatewayTcpPort", "gateway-tcp-ports", Gateway, Plain, reconciled: false, named: false,
        aliases: [], fields: [
        int("Port").required(), b("TLSEnabled"), r("GatewayDefinitionID", "GatewayDefinition").required().cascade().part(),
    ]),
    kind!("GatewayInstance", "gateway-instances", Gateway, Instance, reconciled: true, named: true,
        aliases: ["gi", "gateways"], fields: [
        r("GatewayDefinitionID", "GatewayDefinition").required(),
        r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance"), r("WorkloadInstanceID", "WorkloadInstance").attaches(),
        r("HelmWorkloadInstanceID", "HelmWorkloadInstance").attaches(),
        // The address the Gateway is published at (its DNS record points there).
        s("Address").status().column(),
    ]),
    // --- AWS managed services.
    kind!("AwsRelationalDatabaseDefinition", "aws-relational-database-definitions", Aws, Definition, reconciled: true, named: true,
        aliases: ["rdsd"], fields: [
        // A database cannot change engine in place: a new engine is a new database.
        s("Engine").required().immutable().one_of(crate::services::RDS_ENGINES), s("EngineVersion"), s("DatabaseName"),
        int("DatabasePort").range(crate::services::RDS_PORTS), int("BackupDays").range(crate::services::RDS_BACKUP_DAYS),
        s("MachineSize").one_of(crate::services::MACHINE_SIZES), int("StorageGb").range(crate::services::RDS_STORAGE_GB), s("WorkloadSecretName"), r("AwsAccountID", "AwsAccount").required(),
        // Ours: deleting takes a final snapshot unless this is set.
        b("SkipFinalSnapshot"),
    ]),
    kind!("AwsRelationalDatabaseInstance", "aws-relational-database-instances", Aws, Instance, reconciled: true, named: true,
        aliases: ["rdsi"], fields: [
        r("AwsRelationalDatabaseDefinitionID", "AwsRelationalDatabaseDefinition").required(),
        r("WorkloadInstanceID", "WorkloadInstance").attaches(), r("HelmWorkloadInstanceID", "HelmWorkloadInstance").attaches(),
        json("ResourceInventory").status(),
        // Generated by the controller before the database is created, so a crash never loses it.
        s("MasterPassword").secret().status(), s("Endpoint").status(),
    ]),
    kind!("AwsObjectStorageBucketDefinition", "aws-object-storage-bucket-definitions", Aws, Definition, reconciled: true, named: true,
        aliases: ["s3d"], fields: [
        b("PublicReadAccess"), s("WorkloadServiceAccountName"), s("WorkloadBucketEnvVar"),
        r("AwsAccountID", "AwsAccount").required(),
    ]),
    kind!("AwsObjectStorageBucketInstance", "aws-object-storage-bucket-instances", Aws, Instance, reconciled: true, named: true,
        aliases: ["s3i"], fields: [
        r("AwsObjectStorageBucketDefinitionID", "AwsObjectStorageBucketDefinition").required(),
        r("WorkloadInstanceID", "WorkloadInstance").attaches(), r("HelmWorkloadInstanceID", "HelmWorkloadInstance").attaches(),
        // Ours, modelled on upstream's runtime field: empty the bucket before deleting it.
        b("ForceDelete"),
        json("ResourceInventory").status(), s("BucketName").status(), s("RoleArn").status(),
    ]),
    // --- Secrets.
    kind!("SecretDefinition", "secret-definitions", Secret, Definition, reconciled: true, named: true,
        aliases: ["sd"], fields: [json("Data").secret(), s("Provider"), r("AwsAccountID", "AwsAccount"),
        // With an account, `Data` goes to AWS Secrets Manager (this ARN) and out of our database.
        s("AwsSecretArn").status()]),
    kind!("SecretInstance", "secret-instances", Secret, Instance, reconciled: true, named: true,
        aliases: ["si", "secrets"], fields: [
        r("SecretDefinitionID", "SecretDefinition").required(),
        r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance"), r("WorkloadInstanceID", "WorkloadInstance").attaches(),
        r("HelmWorkloadInstanceID", "HelmWorkloadInstance").attaches(),
    ]),
    // --- Terraform.
    kind!("TerraformDefinition", "terraform-definitions", Terraform, Definition, reconciled: true, named: true,
        aliases: ["tfd"], fields: [text("ConfigDir").required()]),
    kind!("TerraformInstance", "terraform-instances", Terraform, Instance, reconciled: true, named: true,
        aliases: ["tfi", "terraforms"], fields: [
        r("TerraformDefinitionID", "TerraformDefinition").required(), r("AwsAccountID", "AwsAccount"),
        text("VarsDocument"), text("TerraformStateDocument").secret().status(), json("TerraformOutputs").status(),
    ]),
    // --- Observability.
    kind!("ObservabilityStackDefinition", "observability-stack-definitions", Observability, Definition, reconciled: true, named: true,
        aliases: ["osd"], fields: [
        text("GrafanaHelmValuesDocument"), text("LokiHelmValuesDocument"), text("PromtailHelmValuesDocument"),
        text("KubePrometheusStackHelmValuesDocument"),
    ]),
    kind!("ObservabilityStackInstance", "observability-stack-instances", Observability, Instance, reconciled: true, named: true,
        aliases: ["osi", "observability-stacks"], fields: [
        r("ObservabilityStackDefinitionID", "ObservabilityStackDefinition").required(),
        r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance"), b("MetricsEnabled"), b("LoggingEnabled"),
    ]),
    kind!("ObservabilityDashboardDefinition", "observability-dashboard-definitions", Observability, Definition, reconciled: true, named: true,
        aliases: [], fields: [text("GrafanaHelmValuesDocument")]),
    kind!("ObservabilityDashboardInstance", "observability-dashboard-instances", Observability, Instance, reconciled: true, named: true,
        aliases: [], fields: [
        r("ObservabilityDashboardDefinitionID", "ObservabilityDashboardDefinition").required(),
        r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance"),
    ]),
    kind!("MetricsDefinition", "metrics-definitions", Observability, Definition, reconciled: true, named: true,
        aliases: [], fields: [text("KubePrometheusStackHelmValuesDocument")]),
    kind!("MetricsInstance", "metrics-instances", Observability, Instance, reconciled: true, named: true,
        aliases: [], fields: [
        r("MetricsDefinitionID", "MetricsDefinition").required(), r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance"),
    ]),
    kind!("LoggingDefinition", "logging-definitions", Observability, Definition, reconciled: true, named: true,
        aliases: [], fields: [text("LokiHelmValuesDocument"), text("PromtailHelmValuesDocument")]),
    kind!("LoggingInstance", "logging-instances", Observability, Instance, reconciled: true, named: true,
        aliases: [], fields: [
        r("LoggingDefinitionID", "LoggingDefinition").required(), r("KubernetesRuntimeInstanceID", "KubernetesRuntimeInstance"),
    ]),
    // --- Generic events and attachments point at any kind by (kind, ID), so they carry no typed reference.
    kind!("Event", "events", Event, Event, reconciled: false, named: false,
        aliases: ["ev"], fields: [
        s("ObjectKind"), Field::new("ObjectID", FieldType::Id), s("Type"), s("Reason"), text("Note"),
        s("Action"), s("ReportingController"), ts("EventTime"),
    ]),
    kind!("AttachedObjectReference", "attached-object-references", Event, Plain, reconciled: false, named: false,
        aliases: [], fields: [
        s("ObjectType").required(), Field::new("ObjectID", FieldType::Id).required(),
        s("AttachedObjectType").required(), Field::new("AttachedObjectID", FieldType::Id).required(),
    ]),
    // --- Controller processes register the kinds they serve and heartbeat, so the control plane
    // knows when nothing serves a kind and can say so (`Pending`) instead of `Reconciling` forever.
    kind!("Controller", "controllers", ControlPlane, Plain, reconciled: false, named: true,
        aliases: ["controller", "ctl"], fields: [
        json("Controllers").required().column(), json("Kinds").required(),
        ts("HeartbeatAt").required().status().column(),
        s("Version"), s("Host"), s("Status").status(), text("StatusReason").status(),
    ]),
];

/// How long a controller may go without a heartbeat before it counts as gone.
pub const CONTROLLER_HEARTBEAT_TIMEOUT_SECS: i64 = 20;
/// How often controllers heartbeat.
pub const CONTROLLER_HEARTBEAT_INTERVAL_SECS: u64 = 5;

// ---------------------------------------------------------------------------------------------
// Checked handles. Code names kinds through these statics, never through string literals: each
// is resolved at compile time, so a misspelt name fails the build (`named` panics in const
// evaluation) instead of panicking at run time.

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn named(name: &str) -> &'static Kind {
    let mut i = 0;
    while i < KINDS.len() {
        if str_eq(KINDS[i].name, name) {
            return &KINDS[i];
        }
        i += 1;
    }
    panic!("no such kind in KINDS")
}

macro_rules! handles {
    ($($handle:ident = $name:literal),* $(,)?) => {
        $(pub static $handle: &Kind = named($name);)*
        /// Every handle, so the registry test can check that each kind has one.
        pub static HANDLES: &[&&Kind] = &[$(&$handle),*];
    };
}

handles! {
    AWS_ACCOUNT = "AwsAccount",
    KUBERNETES_RUNTIME_DEFINITION = "KubernetesRuntimeDefinition",
    KUBERNETES_RUNTIME_INSTANCE = "KubernetesRuntimeInstance",
    AWS_EKS_KUBERNETES_RUNTIME_DEFINITION = "AwsEksKubernetesRuntimeDefinition",
    AWS_EKS_KUBERNETES_RUNTIME_INSTANCE = "AwsEksKubernetesRuntimeInstance",
    CONTROL_PLANE_DEFINITION = "ControlPlaneDefinition",
    CONTROL_PLANE_INSTANCE = "ControlPlaneInstance",
    WORKLOAD_DEFINITION = "WorkloadDefinition",
    WORKLOAD_RESOURCE_DEFINITION = "WorkloadResourceDefinition",
    WORKLOAD_INSTANCE = "WorkloadInstance",
    WORKLOAD_RESOURCE_INSTANCE = "WorkloadResourceInstance",
    WORKLOAD_EVENT = "WorkloadEvent",
    HELM_WORKLOAD_DEFINITION = "HelmWorkloadDefinition",
    HELM_WORKLOAD_INSTANCE = "HelmWorkloadInstance",
    DOMAIN_NAME_DEFINITION = "DomainNameDefinition",
    DOMAIN_NAME_INSTANCE = "DomainNameInstance",
    GATEWAY_DEFINITION = "GatewayDefinition",
    GATEWAY_HTTP_PORT = "GatewayHttpPort",
    GATEWAY_TCP_PORT = "GatewayTcpPort",
    GATEWAY_INSTANCE = "GatewayInstance",
    AWS_RELATIONAL_DATABASE_DEFINITION = "AwsRelationalDatabaseDefinition",
    AWS_RELATIONAL_DATABASE_INSTANCE = "AwsRelationalDatabaseInstance",
    AWS_OBJECT_STORAGE_BUCKET_DEFINITION = "AwsObjectStorageBucketDefinition",
    AWS_OBJECT_STORAGE_BUCKET_INSTANCE = "AwsObjectStorageBucketInstance",
    SECRET_DEFINITION = "SecretDefinition",
    SECRET_INSTANCE = "SecretInstance",
    TERRAFORM_DEFINITION = "TerraformDefinition",
    TERRAFORM_INSTANCE = "TerraformInstance",
    OBSERVABILITY_STACK_DEFINITION = "ObservabilityStackDefinition",
    OBSERVABILITY_STACK_INSTANCE = "ObservabilityStackInstance",
    OBSERVABILITY_DASHBOARD_DEFINITION = "ObservabilityDashboardDefinition",
    OBSERVABILITY_DASHBOARD_INSTANCE = "ObservabilityDashboardInstance",
    METRICS_DEFINITION = "MetricsDefinition",
    METRICS_INSTANCE = "MetricsInstance",
    LOGGING_DEFINITION = "LoggingDefinition",
    LOGGING_INSTANCE = "LoggingInstance",
    EVENT = "Event",
    ATTACHED_OBJECT_REFERENCE = "AttachedObjectReference",
    CONTROLLER = "Controller",
}

/// A "defined instance": one YAML object (`Workload:`) that expands into a Definition and an
/// Instance of the same name. Derived from the registry: every `XDefinition` with an
/// `XInstance` that requires it.
#[derive(Clone, Copy, Debug)]
pub struct Composite {
    /// `Workload`, `KubernetesRuntime`, …: the YAML key.
    pub name: &'static str,
    pub definition: &'static Kind,
    pub instance: &'static Kind,
}

/// Every Definition/Instance pair, in registry order.
pub fn composites() -> impl Iterator<Item = Composite> {
    KINDS.iter().filter_map(|d| {
        let stem = d.name.strip_suffix("Definition")?;
        let instance = d.instance_kind()?;
        (d.role == Role::Definition).then_some(Composite {
            name: stem,
            definition: d,
            instance,
        })
    })
}

/// Every controller of this release, by the names `threeport controllers --only` takes.
/// Kinds of a served group whose reconciler this release does not have yet: they stay
/// `Pending` with that reason instead of being claimed by the group's controller and left
/// `Reconciling`.
const NOT_YET_SERVED: &[&str] = &[];

pub fn controllers() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in KINDS {
        if let Some(c) = k.controller()
            && !out.contains(&c)
        {
            out.push(c);
        }
    }
    out
}

/// The kinds a controller serves.
pub fn served_by(controller: &str) -> impl Iterator<Item = &'static Kind> + '_ {
    KINDS
        .iter()
        .filter(move |k| k.controller() == Some(controller))
}

/// Find a kind by its PascalCase name, its plural, its singular or an alias (case-insensitive).
pub fn lookup(name: &str) -> Option<&'static Kind> {
    let n = name.to_ascii_lowercase();
    KINDS.iter().find(|k| {
        k.plural == n
            || k.singular() == n
            || k.name.eq_ignore_ascii_case(&n)
            || k.aliases.iter().any(|a| *a == n)
    })
}

pub fn by_name(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

pub fn by_plural(plural: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.plural == plural)
}

/// Every (kind, field) whose value references `target`: what must be checked before `target`
/// objects are deleted.
/// The objects bound to `target` (see [`OnDelete::Bound`]): its controller deletes them
/// before it lets `target` go.
pub fn bound_to(target: &str) -> impl Iterator<Item = (&'static Kind, &'static Field)> + '_ {
    references_to(target).filter(|(_, f)| f.on_delete == OnDelete::Bound)
}

pub fn references_to(target: &str) -> impl Iterator<Item = (&'static Kind, &'static Field)> + '_ {
    KINDS.iter().flat_map(move |k| {
        k.own_fields
            .iter()
            .filter(move |f| f.references == Some(target))
            .map(move |f| (k, f))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_consistent() {
        let mut plurals = std::collections::HashSet::new();
        for (i, k) in KINDS.iter().enumerate() {
            assert!(plurals.insert(k.plural), "duplicate plural {}", k.plural);
            let mut names = std::collections::HashSet::new();
            for f in k.fields() {
                assert!(
                    names.insert(f.name),
                    "{}: duplicate field {}",
                    k.name,
                    f.name
                );
                if let Some(to) = f.references {
                    let pos = KINDS.iter().position(|t| t.name == to);
                    let pos = pos.unwrap_or_else(|| {
                        panic!("{}.{} references unknown kind {to}", k.name, f.name)
                    });
                    assert!(
                        pos <= i,
                        "{}.{}: {to} must be declared first (apply order)",
                        k.name,
                        f.name
                    );
                }
                if let Some(to) = f.names {
                    let pos = KINDS.iter().position(|t| t.name == to);
                    assert!(
                        pos.is_some_and(|p| p <= i) && f.ty == FieldType::String,
                        "{}.{} names {to}: a string field naming a kind declared first",
                        k.name,
                        f.name
                    );
                }
            }
            assert_eq!(lookup(k.plural).map(|x| x.name), Some(k.name));
            assert_eq!(lookup(k.name).map(|x| x.name), Some(k.name));
        }
    }

    #[test]
    fn every_kind_has_a_handle_and_handles_are_right() {
        for k in KINDS {
            assert!(
                HANDLES.iter().any(|h| std::ptr::eq(**h, k)),
                "{} has no handle in handles!",
                k.name
            );
        }
        assert_eq!(HANDLES.len(), KINDS.len());
        assert_eq!(WORKLOAD_INSTANCE.name, "WorkloadInstance");
    }

    #[test]
    fn registry_answers_pairs_children_events_and_controllers() {
        let pairs: Vec<(&str, &str, &str)> = composites()
            .map(|c| (c.name, c.definition.name, c.instance.name))
            .collect();
        assert_eq!(pairs.len(), 15, "{pairs:?}");
        for (stem, d, i) in &pairs {
            assert_eq!(*d, format!("{stem}Definition"));
            assert_eq!(*i, format!("{stem}Instance"));
        }
        assert!(pairs.contains(&("Workload", "WorkloadDefinition", "WorkloadInstance")));
        assert_eq!(
            WORKLOAD_INSTANCE.definition_kind().map(|k| k.name),
            Some("WorkloadDefinition")
        );
        let names = |v: Vec<&'static Kind>| v.iter().map(|k| k.name).collect::<Vec<_>>();
        assert_eq!(names(WORKLOAD_DEFINITION.children()), ["WorkloadInstance"]);
        assert_eq!(
            names(WORKLOAD_INSTANCE.dependencies()),
            [
                "DomainNameInstance",
                "GatewayInstance",
                "AwsRelationalDatabaseInstance",
                "AwsObjectStorageBucketInstance",
                "SecretInstance"
            ]
        );
        assert_eq!(
            names(WORKLOAD_INSTANCE.children()),
            [
                "WorkloadResourceInstance",
                "DomainNameInstance",
                "GatewayInstance",
                "AwsRelationalDatabaseInstance",
                "AwsObjectStorageBucketInstance",
                "SecretInstance"
            ]
        );
        assert!(WORKLOAD_RESOURCE_INSTANCE.children().is_empty());
        assert!(names(KUBERNETES_RUNTIME_INSTANCE.dependents()).contains(&"WorkloadInstance"));
        let events: Vec<&str> = KINDS
            .iter()
            .filter(|k| k.is_event())
            .map(|k| k.name)
            .collect();
        assert_eq!(events, ["WorkloadEvent", "Event"]);
        for k in KINDS.iter().filter(|k| k.is_event()) {
            assert!(!k.named && !k.reconciled, "{}", k.name);
        }
        assert_eq!(
            controllers(),
            ["kubernetes-runtime", "aws", "workload", "gateway", "secret"]
        );
        // Parts of a spec are plain rows of a reconciled kind, written by users.
        let parts: Vec<(&str, &str)> = KINDS
            .iter()
            .flat_map(|k| k.own_fields.iter().map(move |f| (k, f)))
            .filter(|(_, f)| f.part)
            .map(|(k, f)| (k.name, f.references.unwrap_or("")))
            .collect();
        assert_eq!(
            parts,
            [
                ("GatewayHttpPort", "GatewayDefinition"),
                ("GatewayTcpPort", "GatewayDefinition")
            ]
        );
        for (part, whole) in parts {
            assert!(!by_name(part).unwrap().reconciled && by_name(whole).unwrap().reconciled);
        }
        // An EKS runtime and the runtime it registers go together.
        let bound = |k: &Kind| -> Vec<&str> { bound_to(k.name).map(|(k, _)| k.name).collect() };
        assert_eq!(
            bound(KUBERNETES_RUNTIME_INSTANCE),
            ["AwsEksKubernetesRuntimeInstance"]
        );
        assert_eq!(
            bound(KUBERNETES_RUNTIME_DEFINITION),
            ["AwsEksKubernetesRuntimeDefinition"]
        );
        assert!(bound(WORKLOAD_INSTANCE).is_empty());
        // Claimed only where a reconciler exists: the rest of the group stays Pending.
        assert_eq!(AWS_RELATIONAL_DATABASE_INSTANCE.controller(), Some("aws"));
        assert_eq!(AWS_OBJECT_STORAGE_BUCKET_INSTANCE.controller(), Some("aws"));
        assert_eq!(
            AWS_EKS_KUBERNETES_RUNTIME_INSTANCE.controller(),
            Some("aws")
        );
        assert_eq!(SECRET_INSTANCE.controller(), Some("secret"));
        assert_eq!(WORKLOAD_INSTANCE.controller(), Some("workload"));
        assert_eq!(HELM_WORKLOAD_INSTANCE.controller(), None);
        assert_eq!(WORKLOAD_RESOURCE_INSTANCE.controller(), None);
        // Every reconciled kind says where it stands.
        for k in KINDS.iter().filter(|k| k.reconciled) {
            assert!(k.has_status(), "{}", k.name);
        }
    }

    #[test]
    fn upstream_names() {
        let wi = by_plural("workload-instances").unwrap();
        assert_eq!(wi.subject(Operation::Created), "workloadInstance.create");
        assert_eq!(wi.group.stream(), "workloadStream");
        assert_eq!(lookup("kri").unwrap().name, "KubernetesRuntimeInstance");
        assert_eq!(
            lookup("workload-instance").unwrap().name,
            "WorkloadInstance"
        );
        assert!(references_to("WorkloadDefinition").any(|(k, _)| k.name == "WorkloadInstance"));
    }
}
