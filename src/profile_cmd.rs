//! `tandem profile`: the system calls a program can make (static analysis of its binary), the ones recorded runs
//! made (their traces), how the two compare, and a profile exported as an OCI/Docker seccomp file.

use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use tandem_analyzers::dynamic::DynamicProfile;
use tandem_analyzers::profile_file::{Phase, ProfileFile, Rules};
use tandem_analyzers::static_paths::StaticPaths;
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

    /// Also list, in the profile file (-o), the constant paths the program passes to the calls that name files
    /// (open, stat, execve and their *at forms): `tandem run --profile` then denies a call that names another
    /// path (EACCES, or the kill action), reported with the path. Paths the program computes (from its
    /// arguments, a directory walk) cannot be known from the binary: add them to the file by hand (`path P`, or
    /// `path DIR/*` for a prefix). Example: --paths -o service.profile
    #[arg(long)]
    paths: bool,

    /// Split the static profile into two phases at the first time the program reaches this function: start-up
    /// (the code that can run before it) and serving (the code that can run from it on). The profile file
    /// holds both; `tandem run --profile` switches from the first to the second at that point. Example:
    /// --phase-at serve_requests
    #[arg(long, value_name = "SYMBOL", requires = "program")]
    phase_at: Option<String>,

    /// Explain why the static profile holds these syscalls (names or numbers, comma-separated; `all`, or
    /// `extra` for those the traces of --from did not make): for each, a shortest chain of functions from a
    /// root (the entry point, an init/fini function) to the syscall instruction or wrapper call that supplies the
    /// number, with how each function was found reachable (called at, address taken in, pointer held in data).
    /// Example: --why lseek,futex
    #[arg(
        long,
        value_name = "SYSCALLS",
        value_delimiter = ',',
        requires = "program"
    )]
    why: Vec<String>,

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
    let asked = parse_why(&args.why, !args.from.is_empty())?;
    if !args.why.is_empty() && args.phase_at.is_some() {
        anyhow::bail!("--why explains one profile; it does not take --phase-at");
    }
    let mut out = std::io::stdout().lock();
    if let Some(symbol) = &args.phase_at {
        return phases(&args, symbol, &mut out);
    }
    let predicted = match args.program.first() {
        Some(program) => Some(static_side(program, &args.root, &mut out)?),
        None => None,
    };
    let observed = if args.from.is_empty() {
        None
    } else {
        Some(dynamic_side(&args.from, predicted.is_none(), &mut out)?)
    };
    if let (Some((p, _, _)), Some(o)) = (&predicted, &observed) {
        compare(p, o, &mut out)?;
    }
    if let Some((p, _, why)) = &predicted {
        explain(&asked, p, observed.as_ref(), why, &mut out)?;
    }
    let (set, origin) = match (&predicted, &observed, args.program.first()) {
        (Some((p, _, _)), _, Some(program)) => {
            (p, format!("static profile of {}", program.display()))
        }
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
        let mut file = ProfileFile::of_syscalls(set.clone());
        if args.paths {
            let Some((_, paths, _)) = &predicted else {
                anyhow::bail!("--paths needs a program: paths come from its static analysis");
            };
            file.rules.paths = Some(path_rules(paths));
        }
        std::fs::write(path, file.to_text(&origin))
            .with_context(|| format!("cannot write the profile {}", path.display()))?;
    }
    Ok(())
}

/// The profile file's path entries of a static profile's constant paths.
fn path_rules(paths: &StaticPaths) -> std::collections::BTreeSet<Vec<u8>> {
    paths.paths.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// `--phase-at SYMBOL`: the start-up and serving profiles, printed, and written as one two-phase profile file.
fn phases(args: &ProfileArgs, symbol: &str, out: &mut impl Write) -> anyhow::Result<()> {
    if !args.from.is_empty() || args.seccomp.is_some() {
        anyhow::bail!(
            "--phase-at makes a two-phase profile file (-o); it takes neither --from nor --seccomp"
        );
    }
    let program = args
        .program
        .first()
        .context("--phase-at needs a program: -- PROGRAM")?;
    let bytes = read_input(program, InputKind::Program)?;
    let at = tandem_replay::pools::warm::symbol_address(&bytes, symbol).with_context(|| {
        format!(
            "--phase-at {symbol}: no such symbol in {} (a stripped binary has none)",
            program.display()
        )
    })?;
    let split = static_profile::analyze_phases(&bytes, &args.root, at)
        .with_context(|| format!("{}", program.display()))?;
    let rules = |profile: &static_profile::StaticProfile| Rules {
        syscalls: profile.syscalls.clone(),
        paths: args.paths.then(|| path_rules(&profile.paths)),
    };
    for (name, profile) in [("start-up", &split.startup), ("serving", &split.serving)] {
        writeln!(
            out,
            "# phase {name} of {} (boundary {symbol} at {at:#x}): {} syscalls ({} functions reachable, {} \
             unresolved)",
            program.display(),
            profile.syscalls.len(),
            profile.functions,
            profile.unresolved.len()
        )?;
        for &nr in &profile.syscalls {
            writeln!(out, "{nr:>4} {}", syscall_name(nr))?;
        }
    }
    let file = ProfileFile {
        rules: rules(&split.startup),
        serving: Some(Phase {
            at: symbol.to_string(),
            rules: rules(&split.serving),
        }),
    };
    if let Some(path) = &args.output {
        let origin = format!(
            "static profile of {} in two phases at {symbol}",
            program.display()
        );
        std::fs::write(path, file.to_text(&origin))
            .with_context(|| format!("cannot write the profile {}", path.display()))?;
    }
    Ok(())
}

fn static_side(
    program: &std::path::Path,
    root: &std::path::Path,
    out: &mut impl Write,
) -> anyhow::Result<(SyscallSet, StaticPaths, Why)> {
    let bytes = read_input(program, InputKind::Program)?;
    let (profile, loaded) = static_profile::analyze_program(&bytes, root)
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
    let listed = |paths: &[PathBuf]| -> Vec<String> {
        paths.iter().map(|p| p.display().to_string()).collect()
    };
    if !loaded.libraries.is_empty() {
        writeln!(
            out,
            "# with its interpreter and libraries: {}",
            listed(&loaded.libraries).join(" ")
        )?;
    }
    if !loaded.debug_files.is_empty() {
        writeln!(
            out,
            "# with the symbols of their debug files: {}",
            listed(&loaded.debug_files).join(" ")
        )?;
    }
    for &nr in &profile.syscalls {
        writeln!(out, "{nr:>4} {}", syscall_name(nr))?;
    }
    writeln!(
        out,
        "# constant paths: {} ({} path arguments computed at run time)",
        profile.paths.paths.len(),
        profile.paths.computed_count
    )?;
    for p in &profile.paths.paths {
        writeln!(out, "# path {p}")?;
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
    Ok((profile.syscalls, profile.paths, profile.why))
}

/// Why each number is in a static profile, a line per step (static_profile.rs `why`).
type Why = std::collections::BTreeMap<u64, Vec<String>>;

/// What `--why` asks about.
enum Asked {
    All,
    /// The calls the traces of --from did not make.
    Extra,
    Syscall(u64),
}

/// The values of `--why`, checked before any work: names or numbers, `all`, `extra` (which needs traces).
fn parse_why(words: &[String], traces: bool) -> anyhow::Result<Vec<Asked>> {
    words
        .iter()
        .map(|word| match word.as_str() {
            "all" => Ok(Asked::All),
            "extra" if !traces => anyhow::bail!(
                "--why extra: the calls the runs did not make need traces (--from TRACE)"
            ),
            "extra" => Ok(Asked::Extra),
            name => parse_syscall(name).map(Asked::Syscall),
        })
        .collect()
}

/// `--why`: the chain that puts each asked-for syscall in the static profile `predicted`.
fn explain(
    asked: &[Asked],
    predicted: &SyscallSet,
    observed: Option<&SyscallSet>,
    why: &Why,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut numbers = SyscallSet::new();
    for a in asked {
        match (a, observed) {
            (Asked::All, _) => numbers.extend(predicted.iter().copied()),
            (Asked::Extra, Some(observed)) => {
                numbers.extend(predicted.difference(observed).copied())
            }
            // parse_why refuses `extra` without traces.
            (Asked::Extra, None) => {}
            (Asked::Syscall(nr), _) => {
                numbers.insert(*nr);
            }
        }
    }
    for nr in numbers {
        if !predicted.contains(&nr) {
            writeln!(
                out,
                "# why {nr} {}: not in the static profile",
                syscall_name(nr)
            )?;
            continue;
        }
        match why.get(&nr) {
            Some(lines) => {
                writeln!(out, "# why {nr} {}:", syscall_name(nr))?;
                for line in lines {
                    writeln!(out, "#   {line}")?;
                }
            }
            None => writeln!(out, "# why {nr} {}: no chain recorded", syscall_name(nr))?,
        }
    }
    Ok(())
}

/// A syscall given by name (`lseek`) or number (`8`).
fn parse_syscall(word: &str) -> anyhow::Result<u64> {
    if let Ok(nr) = word.parse::<u64>() {
        return Ok(nr);
    }
    tandem_analyzers::syscall_number(word).with_context(|| {
        format!("--why {word}: not an x86-64 syscall name or number (nor `all`, `extra`)")
    })
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
