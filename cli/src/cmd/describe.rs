//! `tptctl describe KIND NAME` (or `-f FILE`): fields, related objects, status and recent events.

use super::{Ctx, EXIT_ERROR, find, kind_arg, load_inputs, report_problems};
use crate::args::DescribeArgs;
use crate::{hint, output};
use anyhow::Result;
use serde_json::Value;
use threeport_api::{Client, Kind, kinds, object_id};

/// How many of the latest events are shown.
const EVENTS: usize = 10;

pub async fn run(ctx: &Ctx, args: DescribeArgs) -> Result<u8> {
    if !args.inputs.is_empty() {
        let client = ctx.client()?;
        let loaded = load_inputs(&args.inputs)?;
        let problems = report_problems(&loaded);
        for d in &loaded.objects {
            match client.find_by_name(d.kind, &d.name).await? {
                Some(o) => describe_one(&client, d.kind, &o).await?,
                None => eprintln!("{} not found", d.label()),
            }
            outln!()?;
        }
        return Ok(if problems { EXIT_ERROR } else { 0 });
    }
    let kind = kind_arg(&args.kind)?;
    let Some(name) = &args.name else {
        return Err(hint::error(
            format!("which {}? describe needs its name", kind.singular()),
            format!(
                "tptctl describe {} NAME (`tptctl get {}` lists them)",
                kind.singular(),
                kind.plural
            ),
        ));
    };
    let client = ctx.client()?;
    let o = find(&client, kind, name).await?;
    describe_one(&client, kind, &o).await?;
    Ok(0)
}

/// Kinds whose `<X>ID` field points at `kind`: definitions list their instances, instances their resources.
async fn related(
    client: &Client,
    kind: &'static Kind,
    id: u64,
) -> Vec<(&'static Kind, Vec<Value>)> {
    let mut out = Vec::new();
    for (k, f) in kinds::references_to(kind.name) {
        // Events are listed on their own, newest last, below.
        if matches!(k.group, kinds::Group::Event) || k.name.ends_with("Event") {
            continue;
        }
        if let Ok(items) = client.list(k, &[(&f.filter_key(), id.to_string())]).await
            && !items.is_empty()
        {
            out.push((k, items));
        }
    }
    out
}

async fn describe_one(client: &Client, kind: &'static Kind, o: &Value) -> Result<()> {
    let refs = output::reference_names(client, kind, std::slice::from_ref(o)).await;
    out!("{}", output::describe_fields(kind, o, &refs))?;
    let id = object_id(o).unwrap_or_default();
    for (k, items) in related(client, kind, id).await {
        outln!("{}:", k.name)?;
        let names: Vec<String> = items.iter().map(output::name_of).collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for (name, it) in names.iter().zip(&items) {
            outln!("  {name:<width$}  {}", output::status(k, it))?;
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
    outln!("Events:")?;
    if events.is_empty() {
        outln!("  <none>")?;
    }
    for (t, ty, reason, msg) in events.iter().rev().take(EVENTS).rev() {
        outln!("  {:<8} {:<20} {:<6} {}", ty, reason, output::age(t), msg)?;
    }
    Ok(())
}
