//! `tptctl describe KIND NAME` (or `-f FILE`): fields, related objects, status and recent events.

use super::{Ctx, EXIT_ERROR, find, kind_arg, load_inputs, report_problems};
use crate::args::DescribeArgs;
use crate::{hint, output};
use anyhow::Result;
use serde_json::Value;
use threeport_api::status::{self, Objects};
use threeport_api::{Client, Kind, ObjectExt};

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

/// Fields, then the children (as the registry defines them) with their status, then why it is
/// not healthy (the same words as `tptctl why` and the dashboard), then the latest events.
async fn describe_one(client: &Client, kind: &'static Kind, o: &Value) -> Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let refs = output::reference_names(client, kind, std::slice::from_ref(o)).await;
    out!("{}", output::describe_fields(kind, o, &refs))?;
    let id = o.id().unwrap_or_default();
    let snap = crate::view::gather(client, kind, o.clone()).await;
    for ck in kind.children() {
        let items = snap.referrers(id, ck);
        if items.is_empty() {
            continue;
        }
        outln!("{}:", ck.name)?;
        let names: Vec<String> = items.iter().map(|(_, c)| output::name_of(c)).collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for (name, (_, c)) in names.iter().zip(&items) {
            outln!("  {name:<width$}  {}", output::status(ck, c))?;
        }
    }
    if let Some(cause) = status::deepest_cause(&snap, kind, id) {
        outln!("Why:")?;
        outln!("  {}", cause.one_line())?;
    }
    let mut events = status::events_for(&snap, kind, id);
    events.reverse();
    outln!("Events:")?;
    if events.is_empty() {
        outln!("  <none>")?;
    }
    let skip = events.len().saturating_sub(EVENTS);
    for e in events.iter().skip(skip) {
        outln!(
            "  {:<8} {:<20} {:<6} {}",
            e.ty,
            e.reason,
            status::age(e.time, now),
            e.message
        )?;
    }
    Ok(())
}
