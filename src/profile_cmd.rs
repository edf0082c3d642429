//! `tandem profile`: the system calls a program can make (static analysis of its binary), the ones recorded runs
//! made (their traces), how the two compare, and a profile exported as an OCI/Docker seccomp file.

use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use tandem_analyzers::dynamic::DynamicProfile;
use tandem_analyzers::profile_file::ProfileFile;
use tandem_analyzers::{score, seccomp, static_profile, syscall_name, SyscallSet};
use tandem_scenarios::input::{read_input, InputKind};

/// Unresolved places printed on stderr at most (the count is always printed).
const UNRESOLVED_SHOWN: usize = 10;

#[derive(clap::Args, Debug)]
#[command(
    about = "The system calls a program can make (from its binary) or did make (from traces)",
    long_about = "Static profile: `tandem profile -- PROGRAM` decodes the code reachable from the program's entry \
        point, its init/fini arrays and IFUNC resolvers (direct calls and jumps, indirect ones whose target is \
        known; functions whose address reachable code takes, or that data objects reachable code refers to \
        point to) and recovers the number of each syscall instruction, through the wrappers that take it as an \
        argument. A dynamically linked program is analysed with its interpreter and libraries, found beneath \
        --root as its loader finds them. Dynamic \
        profile: `tandem profile --from TRACE...` lists the syscalls recorded runs entered. Both together compare \
        them: precision, recall and F1 of the static profile, and the calls it missed.",
    after_help = "Exit status:\n  0    the profile was printed (and written)\n  125  tandem's own failure: an \
        unreadable or malformed program, library or trace, a library not found, usage error\n\n\
        Examples:\n  tandem profile -- corpus/bin/hello-musl\n  tandem profile --from run.trace\n  \
        tandem profile --from run.trace -- corpus/bin/hello-musl\n  \
        tandem profile --seccomp hello.json -- corpus/bin/hello-musl\n  \
        tandem profile -o hello.profile -- corpus/bin/hello-musl && \
        tandem run --profile hello.profile --profile-action kill -- corpus/bin/hello-musl"
)]
pub struct ProfileArgs {
    /// Traces written by `tandem record`: their syscalls make the dynamic profile. Example: --from run.trace
    #[arg(long = "from", value_name = "TRACE", num_args = 1..)]
    from: Vec<PathBuf>,

    /// Write the profile (the static one when a program is given) as an OCI/Docker seccomp JSON file: the
    /// profile's syscalls allowed by name, every other one failing with EPERM. Example: --seccomp profile.json
    #[arg(long, value_name = "FILE")]
    seccomp: Option<PathBuf>,

    /// Write the profile (the static one when a program is given) as a profile file that `tandem run --profile
    /// FILE` enforces (a versioned text format: `tandem-profile 1`, then one `syscall NUMBER NAME` a line).
    /// Example: -o hello.profile
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Where a dynamically linked program's interpreter and libraries are found (as `tandem run --root`).
    /// Example: --root /srv/debian-chroot
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,

    /// The static ELF program to analyse. Example: -- corpus/bin/hello-musl
    #[arg(last = true, value_name = "PROGRAM")]
    program: Vec<PathBuf>,
}

pub fn run(args: ProfileArgs) -> anyhow::Result<()> {
    if args.program.len() > 1 {
        anyhow::bail!("profile takes one program (its arguments do not change its code)");
    }
    if args.program.is_empty() && args.from.is_empty() {
        anyhow::bail!(
            "nothing to profile: give a program (`-- PROGRAM`), traces (`--from TRACE`) or both"
        );
    }
    let mut out = std::io::stdout().lock();
    let predicted = match args.program.first() {
        Some(program) => Some(static_side(program, &args.root, &mut out)?),
        None => None,
    };
    let observed = if args.from.is_empty() {
        None
    } else {
        Some(dynamic_side(&args.from, predicted.is_none(), &mut out)?)
    };
    if let (Some(p), Some(o)) = (&predicted, &observed) {
        compare(p, o, &mut out)?;
    }
    let (set, origin) = match (&predicted, &observed, args.program.first()) {
        (Some(p), _, Some(program)) => (p, format!("static profile of {}", program.display())),
        (_, Some(o), _) => (
            o,
            format!("dynamic profile of {} trace(s)", args.from.len()),
        ),
        _ => anyhow::bail!("nothing was profiled"),
    };
    if let Some(path) = &args.seccomp {
        std::fs::write(path, seccomp::to_string(set))
            .with_context(|| format!("cannot write the seccomp profile {}", path.display()))?;
    }
    if let Some(path) = &args.output {
        let file = ProfileFile {
            syscalls: set.clone(),
        };
        std::fs::write(path, file.to_text(&origin))
            .with_context(|| format!("cannot write the profile {}", path.display()))?;
    }
    Ok(())
}

fn static_side(
    program: &std::path::Path,
    root: &std::path::Path,
    out: &mut impl Write,
) -> anyhow::Result<SyscallSet> {
    let bytes = read_input(program, InputKind::Program)?;
    let (profile, libraries) = static_profile::analyze_program(&bytes, root)
        .with_context(|| format!("{}", program.display()))?;
    writeln!(
        out,
        "# static profile of {}: {} syscalls ({} functions reachable, {} syscall instructions, {} wrappers, {} \
         unresolved)",
        program.display(),
        profile.syscalls.len(),
        profile.functions,
        profile.syscall_sites,
        profile.wrappers.len(),
        profile.unresolved.len()
    )?;
    if !libraries.is_empty() {
        let listed: Vec<String> = libraries.iter().map(|p| p.display().to_string()).collect();
        writeln!(
            out,
            "# with its interpreter and libraries: {}",
            listed.join(" ")
        )?;
    }
    for &nr in &profile.syscalls {
        writeln!(out, "{nr:>4} {}", syscall_name(nr))?;
    }
    for u in profile.unresolved.iter().take(UNRESOLVED_SHOWN) {
        crate::output::note!("tandem: unresolved at {:#x}: {}", u.at, u.why);
    }
    if profile.unresolved.len() > UNRESOLVED_SHOWN {
        crate::output::note!(
            "tandem: ... and {} more unresolved",
            profile.unresolved.len() - UNRESOLVED_SHOWN
        );
    }
    Ok(profile.syscalls)
}

fn dynamic_side(
    traces: &[PathBuf],
    print: bool,
    out: &mut impl Write,
) -> anyhow::Result<SyscallSet> {
    let mut profile = DynamicProfile::default();
    for path in traces {
        let trace = crate::replay_cmd::load(path)?;
        profile.add_trace(&trace);
    }
    if profile.partial {
        crate::output::note!(
            "tandem: warning: a damaged trace was read up to its last complete chunk"
        );
    }
    if print {
        writeln!(
            out,
            "# dynamic profile of {} trace(s): {} syscalls (count)",
            traces.len(),
            profile.counts.len()
        )?;
        for (nr, count) in &profile.counts {
            writeln!(out, "{nr:>4} {} {count}", syscall_name(*nr))?;
        }
    }
    Ok(profile.syscalls())
}

fn compare(
    predicted: &SyscallSet,
    observed: &SyscallSet,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let s = score::score(predicted, observed);
    writeln!(
        out,
        "# compared with the traces: {} observed, {} of them predicted; precision {:.3} recall {:.3} F1 {:.3}",
        s.observed, s.hits, s.precision, s.recall, s.f1
    )?;
    let missed: Vec<String> = s
        .missed
        .iter()
        .map(|&nr| format!("{nr} {}", syscall_name(nr)))
        .collect();
    writeln!(
        out,
        "# missed: {}",
        if missed.is_empty() {
            "none".into()
        } else {
            missed.join(", ")
        }
    )?;
    Ok(())
}
