//! `tptctl delete KIND NAME` (or `-f FILE`): reconciled kinds are two-phase, so their delete is
//! reported as `deletion scheduled`; `--wait` waits for the controllers to confirm it. With `-f`,
//! each object is deleted once what refers to it is gone (`teardown`), within `--timeout`.

use super::{Ctx, EXIT_ERROR, EXIT_TIMEOUT, find, kind_arg, load_inputs};
use crate::args::DeleteArgs;
use crate::{apply, hint, teardown};
use anyhow::Result;
use threeport_api::object_id;

pub async fn run(ctx: &Ctx, args: DeleteArgs) -> Result<u8> {
    let client = ctx.client()?;
    let (failed, scheduled) = if !args.inputs.is_empty() {
        teardown::delete_from(
            &client,
            load_inputs(&args.inputs)?,
            args.timeout,
            apply::DEFAULT_CONCURRENCY,
        )
        .await?
    } else {
        let (Some(kind), Some(name)) = (&args.kind, &args.name) else {
            return Err(hint::error(
                "nothing to delete",
                "tptctl delete KIND NAME, or tptctl delete -f FILE",
            ));
        };
        let kind = kind_arg(kind)?;
        let o = find(&client, kind, name).await?;
        let id = object_id(&o).unwrap_or_default();
        client.delete(kind, id).await?;
        // Done: from here on a reader that went away must not turn it into an error.
        if kind.reconciled {
            apply::report_line(format_args!(
                "{}/{name} deletion scheduled",
                kind.singular()
            ));
            (0, vec![(kind, id)])
        } else {
            apply::report_line(format_args!("{}/{name} deleted", kind.singular()));
            (0, vec![])
        }
    };
    if failed > 0 {
        return Ok(EXIT_ERROR);
    }
    if args.wait {
        if !teardown::wait_gone(&client, &scheduled, args.timeout).await? {
            eprintln!(
                "timed out after {}s waiting for the deletion to be confirmed",
                args.timeout.as_secs()
            );
            let describe = match (&args.kind, &args.name) {
                (Some(k), Some(n)) if args.inputs.is_empty() => format!("tptctl describe {k} {n}"),
                _ => "tptctl describe KIND NAME".into(),
            };
            eprintln!(
                "hint: wait longer with --timeout, or see why it is still there with `{describe}`"
            );
            return Ok(EXIT_TIMEOUT);
        }
        eprintln!(" ✓ deleted");
    }
    Ok(0)
}
