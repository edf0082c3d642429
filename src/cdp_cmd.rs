//! `tandem cdp`: the CDP journal a run wrote with --cdp-journal. `list` shows its entries; `restore` writes a
//! volume as it was at a point (an icount, a guest time, a mark, an entry) into a new host directory; `mark`
//! adds a named mark to an existing journal.
//! Rendering only: the journal and recovery are tandem_replay::cdp's.

use anyhow::{bail, Context};
use std::io::Write;
use std::path::PathBuf;
use tandem_replay::cdp::{self, At};

/// Exit status when the journal is damaged and what was asked lies beyond its valid part.
pub const EXIT_DAMAGED: i32 = 4;

#[derive(clap::Args, Debug)]
#[command(
    about = "List and restore a CDP journal (tandem run --volume H:G --cdp-journal FILE)",
    after_help = "Exit status:\n  \
        0    done (a damaged journal is reported on stderr; what lies before the damage is used)\n  \
        4    the journal is damaged and the point asked for (or the listing) reaches past its valid part: \
        restore wrote the last valid state\n  \
        125  bad input: not a journal, unknown point, an output directory that is not empty\n\n\
        Examples:\n  \
        tandem run --volume ./data:/data --cdp-journal run.cdp -- prog\n  \
        tandem cdp list run.cdp\n  \
        tandem cdp restore run.cdp --at 1200000 -o /tmp/at-1.2M\n  \
        tandem cdp restore run.cdp --at mark:before-upgrade -o /tmp/before\n  \
        tandem cdp mark run.cdp checkpoint-1 --at 1200000"
)]
pub struct CdpArgs {
    #[command(subcommand)]
    command: CdpCommand,
}

#[derive(clap::Subcommand, Debug)]
enum CdpCommand {
    /// Print every entry: the base images, then each operation with its entry number, icount, guest time,
    /// task and volume.
    List {
        /// The journal file.
        journal: PathBuf,
    },
    /// Write a volume as it was at a point into a new directory.
    Restore {
        /// The journal file.
        journal: PathBuf,
        /// The point: ICOUNT (every operation whose syscall was at or before it), icount:N, time:NS (guest
        /// nanoseconds since 1970), mark:NAME (up to the first mark of that name), seq:N (up to entry N), end.
        #[arg(long, value_name = "POINT")]
        at: String,
        /// The directory to write (new, or empty).
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: PathBuf,
        /// Which volume, by the order of --volume in the run.
        #[arg(long, value_name = "N", default_value_t = 0)]
        volume: u32,
    },
    /// Add a mark named NAME to a journal at a point of the run, after the operations completed by then, so
    /// that `restore --at mark:NAME` finds it. The journal is rewritten whole (beside itself, then renamed
    /// over it) and stays valid and checksummed; a damaged journal is refused.
    Mark {
        /// The journal file.
        journal: PathBuf,
        /// The mark's name (1 to 255 bytes, no newline).
        name: String,
        /// The point: ICOUNT or icount:N (after every operation whose syscall was at or before it), or
        /// time:NS (guest nanoseconds since 1970).
        #[arg(long, value_name = "ICOUNT|TIME")]
        at: String,
    },
}

pub fn run(args: CdpArgs) -> anyhow::Result<()> {
    let status = match args.command {
        CdpCommand::List { journal } => list(&journal)?,
        CdpCommand::Restore {
            journal,
            at,
            output,
            volume,
        } => restore(&journal, &at, &output, volume)?,
        CdpCommand::Mark { journal, name, at } => mark(&journal, &name, &at)?,
    };
    if status != 0 {
        crate::output::flush_stdout()?;
        std::process::exit(status);
    }
    Ok(())
}

fn read(journal: &std::path::Path) -> anyhow::Result<cdp::Journal> {
    let j = cdp::read_journal(journal)?;
    if let Some(d) = &j.damage {
        eprintln!(
            "tandem: warning: {} is damaged at {d}; what comes before it ({} entries) is used",
            journal.display(),
            d.entry
        );
    }
    Ok(j)
}

fn list(journal: &std::path::Path) -> anyhow::Result<i32> {
    let j = read(journal)?;
    let mut out = std::io::stdout().lock();
    for r in &j.records {
        writeln!(out, "{}", cdp::describe(r))?;
    }
    Ok(if j.damage.is_some() { EXIT_DAMAGED } else { 0 })
}

fn mark(journal: &std::path::Path, name: &str, at: &str) -> anyhow::Result<i32> {
    let at = match At::parse(at).map_err(anyhow::Error::msg)? {
        At::Icount(n) => cdp::MarkAt::Icount(n),
        At::TimeNs(t) => cdp::MarkAt::TimeNs(t),
        _ => bail!("--at {at}: a mark goes at ICOUNT, icount:N or time:NS"),
    };
    let placed = cdp::add_mark(journal, name.as_bytes(), at)?;
    match placed {
        Some(p) => eprintln!(
            "tandem: marked {name:?} in {} at icount {} (guest time {} ns)",
            journal.display(),
            p.icount,
            p.time_ns
        ),
        None => eprintln!(
            "tandem: marked {name:?} in {}: the point lies before the journal's base images, so the mark names \
             them (compaction folded the operations up to there)",
            journal.display()
        ),
    }
    Ok(0)
}

fn restore(
    journal: &std::path::Path,
    at: &str,
    output: &std::path::Path,
    volume: u32,
) -> anyhow::Result<i32> {
    let at = At::parse(at).map_err(anyhow::Error::msg)?;
    if output.exists() && std::fs::read_dir(output).map_or(true, |mut d| d.next().is_some()) {
        bail!(
            "-o {}: exists and is not an empty directory; name a new one",
            output.display()
        );
    }
    let j = read(journal)?;
    let restored =
        cdp::restore(&j, volume, &at).with_context(|| format!("{}", journal.display()))?;
    cdp::materialize(&restored.image, output)
        .with_context(|| format!("-o {}: cannot write the volume", output.display()))?;
    eprintln!(
        "tandem: restored volume {volume} to {}: {} operations applied, last at icount {}, {} names, {} bytes",
        output.display(),
        restored.applied,
        restored.last.icount,
        restored.image.names.len(),
        restored.image.file_bytes()
    );
    if restored.beyond_damage {
        eprintln!(
            "tandem: the point lies past the journal's damage: this is the last valid state, not the one asked for"
        );
        return Ok(EXIT_DAMAGED);
    }
    Ok(0)
}
