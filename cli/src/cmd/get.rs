//! `tptctl get KIND [NAME]`: a table (every page, no stop at 50) or machine output.

use super::{Ctx, find, kind_arg};
use crate::args::GetArgs;
use crate::output::{self, Format};
use anyhow::Result;
use threeport_api::kinds;

pub async fn run(ctx: &Ctx, args: GetArgs) -> Result<u8> {
    if args.kind == "kinds" {
        for k in kinds::KINDS.iter() {
            outln!("{:<40} {}", k.plural, k.aliases.join(", "))?;
        }
        return Ok(0);
    }
    let kind = kind_arg(&args.kind)?;
    let client = ctx.client()?;
    // One object per line or document: print each page as it arrives, so the first lines of a
    // 100 000-object list show at once and memory stays one page.
    if let (None, Some(f @ (Format::Name | Format::Yaml))) = (&args.name, args.output) {
        let (mut after, mut any) = (None, false);
        loop {
            let (page, next) = client.list_after(kind, &[], after).await?;
            // YAML documents are separated across pages as within one.
            if f == Format::Yaml && any && !page.is_empty() {
                outln!("---")?;
            }
            any |= !page.is_empty();
            output::print_objects(f, kind, &page)?;
            match next {
                Some(n) => after = Some(n),
                None => return Ok(0),
            }
        }
    }
    // A table of a whole kind is printed page by page too, the header with the first page and
    // every page aligned to the columns so far (events are sorted as a whole, so they wait).
    if let (None, None | Some(Format::Wide), false) = (&args.name, args.output, kind.is_event()) {
        let mut printer = output::TablePrinter::new(kind, args.output == Some(Format::Wide));
        let mut refs = output::RefNames::default();
        let (mut after, mut any) = (None, false);
        loop {
            let (page, next) = client.list_after(kind, &[], after).await?;
            if page.is_empty() && !any {
                eprintln!("No {} found.", kind.plural);
                return Ok(0);
            }
            any = true;
            refs.resolve(&client, kind, &page).await;
            let now = time::OffsetDateTime::now_utc();
            out!("{}", printer.page(&page, &refs.names, now))?;
            match next {
                Some(n) => after = Some(n),
                None => return Ok(0),
            }
        }
    }
    let objects = match &args.name {
        Some(n) => vec![find(&client, kind, n).await?],
        None => client.list(kind, &[]).await?,
    };
    match args.output {
        None | Some(Format::Wide) => {
            if objects.is_empty() {
                eprintln!("No {} found.", kind.plural);
                return Ok(0);
            }
            let refs = output::reference_names(&client, kind, &objects).await;
            let names = output::event_names(&client, kind, &objects).await;
            let wide = args.output == Some(Format::Wide);
            let now = time::OffsetDateTime::now_utc();
            out!(
                "{}",
                output::table(kind, &objects, &refs, &names, wide, now)
            )?;
        }
        Some(f) => output::print_objects(f, kind, &objects)?,
    }
    Ok(0)
}
