//! Fault plans: which memory faults a run meets, and when.
//!
//! A plan has explicit events (a fault of a kind, on an address or a frame, at an exact icount) and random specs
//! (faults drawn from the seed: at a rate per retired instruction, or a fixed count spread over a window of
//! icounts). It comes from the command line (`--faults 'mem.ue:rate=1e-6,mem.flip:count=2,within=100000'`) or from
//! a TOML file (`[[event]]` and `[[random]]` tables). Every type here is serde-serialisable so that a record/replay
//! layer can log the plan and the resolved injections (`Injection`) as events.
//!
//! Bad input is a `PlanError` naming the input (the flag or the file) and the place (the item, or the TOML line),
//! never a panic.
//!
//! It must not: draw randomness (the hypervisor draws from the named stream "faults.mem"), or read the clock.

use crate::memory::FrameClass;
use serde::{Deserialize, Serialize};

/// The kinds of memory fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// An uncorrectable error: the frame is poisoned and contained (mm/memory-failure.c).
    Ue,
    /// One bit flips once (a corrected-nothing soft error: nobody notices).
    Flip,
    /// One bit is stuck at a value: guest memory forces it after every write to the frame (see the module doc
    /// of hypervisor/mod.rs).
    Stuck,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Ue => "ue",
            FaultKind::Flip => "flip",
            FaultKind::Stuck => "stuck",
        }
    }
}

/// A frame's state, as named in reports and plans (the serialisable mirror of `memory::FrameClass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PageState {
    Free,
    FileClean,
    AnonZero,
    AnonDirty,
}

impl PageState {
    pub const ALL: [PageState; 4] = [
        PageState::Free,
        PageState::FileClean,
        PageState::AnonZero,
        PageState::AnonDirty,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PageState::Free => "free",
            PageState::FileClean => "file-clean",
            PageState::AnonZero => "anon-zero",
            PageState::AnonDirty => "anon-dirty",
        }
    }

    pub fn parse(s: &str) -> Option<PageState> {
        PageState::ALL.into_iter().find(|c| c.name() == s)
    }
}

impl From<FrameClass> for PageState {
    fn from(c: FrameClass) -> Self {
        match c {
            FrameClass::Free => PageState::Free,
            FrameClass::FileClean => PageState::FileClean,
            FrameClass::AnonZero => PageState::AnonZero,
            FrameClass::AnonDirty => PageState::AnonDirty,
        }
    }
}

impl From<PageState> for FrameClass {
    fn from(c: PageState) -> Self {
        match c {
            PageState::Free => FrameClass::Free,
            PageState::FileClean => FrameClass::FileClean,
            PageState::AnonZero => FrameClass::AnonZero,
            PageState::AnonDirty => FrameClass::AnonDirty,
        }
    }
}

/// Where an explicit fault lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The frame mapped at this guest virtual address when the fault fires (the byte is `addr & 0xfff`).
    Addr(u64),
    /// A guest-physical frame and a byte in it.
    Frame { frame: u32, byte: u16 },
}

/// A fault at an exact icount: it fires when exactly `icount` instructions have retired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEvent {
    pub icount: u64,
    pub kind: FaultKind,
    pub target: Target,
    /// The bit (0-7) of the byte, for flips and stuck bits.
    pub bit: u8,
    /// The value a stuck bit is stuck at.
    pub value: bool,
}

/// Faults drawn from the seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomFaults {
    pub kind: FaultKind,
    /// Expected faults per retired instruction. Gaps are drawn uniformly from [0, 2/rate): the mean of a Poisson
    /// process, in integer arithmetic only, so the plan is the same on every machine (libm's ln is not).
    pub rate: Option<f64>,
    /// Exactly this many faults, at icounts drawn uniformly from [0, within).
    pub count: Option<u64>,
    pub within: Option<u64>,
    /// Only frames in this state are drawn (default: any frame that is not poisoned).
    pub class: Option<PageState>,
}

/// A run's fault plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultPlan {
    pub events: Vec<FaultEvent>,
    pub random: Vec<RandomFaults>,
}

/// A fault as it was injected: what a recording logs and a replay re-applies (targets resolved to a frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injection {
    pub icount: u64,
    pub kind: FaultKind,
    pub frame: u32,
    pub byte: u16,
    pub bit: u8,
    pub value: bool,
}

/// A malformed plan: the input (flag or file), the place in it, and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{input}: {place}: {message}")]
pub struct PlanError {
    pub input: String,
    pub place: String,
    pub message: String,
}

/// Most faults one plan may hold (explicit events plus drawn counts): a limit, not a target.
pub const FAULTS_MAX: u64 = 1 << 20;

const PARAMS: &str = "icount, addr, frame, byte, bit, value, rate, count, within, class";

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// The parameters of one fault, before validation (shared by the command-line and TOML forms).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: Option<FaultKind>,
    icount: Option<u64>,
    addr: Option<u64>,
    frame: Option<u32>,
    byte: Option<u16>,
    bit: Option<u8>,
    value: Option<u8>,
    rate: Option<f64>,
    count: Option<u64>,
    within: Option<u64>,
    class: Option<PageState>,
}

enum Parsed {
    Event(FaultEvent),
    Random(RandomFaults),
}

impl RawFault {
    fn validate(&self, kind: FaultKind) -> Result<Parsed, String> {
        if let Some(b) = self.bit {
            if b > 7 {
                return Err(format!("bit={b}: a bit of a byte is 0 to 7"));
            }
        }
        if let Some(v) = self.value {
            if v > 1 {
                return Err(format!("value={v}: a stuck bit is 0 or 1"));
            }
            if kind != FaultKind::Stuck {
                return Err("value= applies to mem.stuck only".into());
            }
        }
        if let Some(b) = self.byte {
            if b as usize >= crate::memory::PAGE_SIZE {
                return Err(format!("byte={b}: a frame has bytes 0 to 4095"));
            }
        }
        if let Some(icount) = self.icount {
            if self.rate.is_some() || self.count.is_some() || self.within.is_some() {
                return Err("icount= makes an explicit fault; rate=, count= and within= draw faults from the seed: use one or the other".into());
            }
            if self.class.is_some() {
                return Err(
                    "class= filters drawn faults; an explicit fault names addr= or frame=".into(),
                );
            }
            let target = match (self.addr, self.frame) {
                (Some(a), None) => {
                    if self.byte.is_some() {
                        return Err("byte= goes with frame=; with addr= the byte is the address's offset in its page".into());
                    }
                    Target::Addr(a)
                }
                (None, Some(f)) => Target::Frame {
                    frame: f,
                    byte: self.byte.unwrap_or(0),
                },
                _ => return Err("an explicit fault needs exactly one of addr= or frame=".into()),
            };
            return Ok(Parsed::Event(FaultEvent {
                icount,
                kind,
                target,
                bit: self.bit.unwrap_or(0),
                value: self.value.unwrap_or(1) == 1,
            }));
        }
        if self.addr.is_some()
            || self.frame.is_some()
            || self.byte.is_some()
            || self.bit.is_some()
            || self.value.is_some()
        {
            return Err("addr=, frame=, byte=, bit= and value= need icount= (an explicit fault); drawn faults draw them".into());
        }
        match (self.rate, self.count) {
            (Some(r), None) => {
                if !(r > 0.0 && r <= 1.0) {
                    return Err(format!("rate={r:e}: a rate is faults per instruction, above 0 and at most 1, such as rate=1e-6"));
                }
                if self.within.is_some() {
                    return Err("within= goes with count=".into());
                }
            }
            (None, Some(c)) => {
                if c > FAULTS_MAX {
                    return Err(format!("count={c}: at most {FAULTS_MAX} faults"));
                }
                if self.within == Some(0) {
                    return Err("within=0: the window of icounts must not be empty".into());
                }
            }
            _ => return Err("a drawn fault needs exactly one of rate= or count= (or icount= for an explicit one)".into()),
        }
        Ok(Parsed::Random(RandomFaults {
            kind,
            rate: self.rate,
            count: self.count,
            within: self.within,
            class: self.class,
        }))
    }
}

impl FaultPlan {
    /// Parses the command-line form: comma-separated items; `mem.KIND:KEY=VALUE` starts a fault (KIND is ue, flip
    /// or stuck), each following `KEY=VALUE` adds a parameter to it. `input` names the source in errors.
    ///
    /// Examples: `mem.ue:rate=1e-6`, `mem.ue:icount=50000,addr=0x4c6000`, `mem.flip:count=3,within=1000000`,
    /// `mem.stuck:icount=0,frame=12,byte=100,bit=3,value=1`, `mem.ue:count=1,within=200000,class=anon-dirty`.
    pub fn parse_spec(spec: &str, input: &str) -> Result<FaultPlan, PlanError> {
        let mut plan = FaultPlan::default();
        let mut current: Option<(FaultKind, RawFault, String)> = None;
        let err = |place: String, message: String| PlanError {
            input: input.to_string(),
            place,
            message,
        };
        let finish = |plan: &mut FaultPlan,
                      cur: Option<(FaultKind, RawFault, String)>|
         -> Result<(), PlanError> {
            if let Some((kind, raw, place)) = cur {
                match raw.validate(kind).map_err(|m| err(place, m))? {
                    Parsed::Event(e) => plan.events.push(e),
                    Parsed::Random(r) => plan.random.push(r),
                }
            }
            Ok(())
        };
        for (index, item) in spec.split(',').enumerate() {
            let item = item.trim();
            let place = format!("item {} `{item}`", index + 1);
            if item.is_empty() {
                return Err(err(place, "empty item (two commas in a row?)".into()));
            }
            let param = if let Some(rest) = item.strip_prefix("mem.") {
                finish(&mut plan, current.take())?;
                let (kind, param) = match rest.split_once(':') {
                    Some((k, p)) => (k, Some(p)),
                    None => (rest, None),
                };
                let kind = match kind {
                    "ue" => FaultKind::Ue,
                    "flip" => FaultKind::Flip,
                    "stuck" => FaultKind::Stuck,
                    other => {
                        return Err(err(place, format!("unknown fault kind `mem.{other}`; expected mem.ue, mem.flip or mem.stuck")))
                    }
                };
                current = Some((kind, RawFault::default(), place.clone()));
                match param {
                    Some(p) => p,
                    None => continue,
                }
            } else {
                item
            };
            let Some((_, raw, _)) = current.as_mut() else {
                return Err(err(
                    place,
                    "a parameter before any fault; start with mem.ue:, mem.flip: or mem.stuck:"
                        .into(),
                ));
            };
            let Some((key, value)) = param.split_once('=') else {
                return Err(err(place, format!("expected KEY=VALUE, one of {PARAMS}")));
            };
            let bad = |what: &str| err(place.clone(), format!("{key}={value}: expected {what}"));
            let number = || parse_u64(value).ok_or_else(|| bad("a number (decimal or 0x hex)"));
            let small = |max: u64| {
                parse_u64(value)
                    .filter(|&v| v <= max)
                    .ok_or_else(|| bad(&format!("a number from 0 to {max}")))
            };
            let dup = || err(place.clone(), format!("{key}= given twice"));
            macro_rules! set {
                ($field:ident, $v:expr) => {{
                    if raw.$field.is_some() {
                        return Err(dup());
                    }
                    raw.$field = Some($v);
                }};
            }
            match key {
                "icount" => set!(icount, number()?),
                "addr" => set!(addr, number()?),
                "frame" => set!(frame, small(u32::MAX as u64)? as u32),
                "byte" => set!(byte, small(u16::MAX as u64)? as u16),
                "bit" => set!(bit, small(255)? as u8),
                "value" => set!(value, small(255)? as u8),
                "rate" => set!(
                    rate,
                    value
                        .parse::<f64>()
                        .map_err(|_| bad("a number such as 1e-6"))?
                ),
                "count" => set!(count, number()?),
                "within" => set!(within, number()?),
                "class" => set!(
                    class,
                    PageState::parse(value)
                        .ok_or_else(|| bad("free, file-clean, anon-zero or anon-dirty"))?
                ),
                _ => {
                    return Err(err(
                        place,
                        format!("unknown parameter `{key}`; expected one of {PARAMS}"),
                    ))
                }
            }
        }
        finish(&mut plan, current)?;
        if plan.events.is_empty() && plan.random.is_empty() {
            return Err(err(
                "the whole spec".into(),
                "no fault given; example: mem.ue:rate=1e-6".into(),
            ));
        }
        plan.check_size()
            .map_err(|m| err("the whole spec".into(), m))?;
        Ok(plan)
    }

    /// Parses the TOML form. `input` names the file in errors; toml's messages carry the line and column.
    ///
    /// ```toml
    /// [[event]]
    /// kind = "ue"
    /// icount = 50000
    /// addr = 0x4c6000
    ///
    /// [[random]]
    /// kind = "flip"
    /// rate = 1e-6
    /// ```
    pub fn parse_toml(text: &str, input: &str) -> Result<FaultPlan, PlanError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            event: Vec<RawFault>,
            #[serde(default)]
            random: Vec<RawFault>,
        }
        let file: File = toml::from_str(text).map_err(|e| PlanError {
            input: input.to_string(),
            place: "TOML".into(),
            // toml's diagnostic is several lines (the line, a caret under the column, the message): kept as it
            // is, since squashed onto one line the caret points nowhere.
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut plan = FaultPlan::default();
        for (table, list, explicit) in [
            ("event", &file.event, true),
            ("random", &file.random, false),
        ] {
            for (i, raw) in list.iter().enumerate() {
                let place = format!("[[{table}]] number {}", i + 1);
                let e = |message: String| PlanError {
                    input: input.to_string(),
                    place: place.clone(),
                    message,
                };
                let kind = raw
                    .kind
                    .ok_or_else(|| e("missing kind = \"ue\", \"flip\" or \"stuck\"".into()))?;
                if explicit && raw.icount.is_none() {
                    return Err(e(
                        "an [[event]] needs icount =; drawn faults go in [[random]]".into(),
                    ));
                }
                if !explicit && raw.icount.is_some() {
                    return Err(e("a [[random]] fault is drawn from the seed; explicit ones (icount =) go in [[event]]".into()));
                }
                match raw.validate(kind).map_err(e)? {
                    Parsed::Event(ev) => plan.events.push(ev),
                    Parsed::Random(r) => plan.random.push(r),
                }
            }
        }
        plan.check_size().map_err(|message| PlanError {
            input: input.to_string(),
            place: "the whole file".into(),
            message,
        })?;
        Ok(plan)
    }

    fn check_size(&self) -> Result<(), String> {
        let total = self.events.len() as u64
            + self
                .random
                .iter()
                .map(|r| r.count.unwrap_or(0))
                .sum::<u64>();
        if total > FAULTS_MAX {
            return Err(format!("{total} faults; at most {FAULTS_MAX}"));
        }
        Ok(())
    }

    /// Fills `within` of count specs that have none (campaigns use the fault-free run's instruction count).
    pub fn with_horizon(mut self, icount: u64) -> FaultPlan {
        for r in &mut self.random {
            if r.count.is_some() && r.within.is_none() {
                r.within = Some(icount.max(1));
            }
        }
        self
    }

    /// The count specs that still lack `within` (a run cannot place them).
    pub fn missing_horizon(&self) -> bool {
        self.random
            .iter()
            .any(|r| r.count.is_some() && r.within.is_none())
    }

    /// The plan in the command-line form (what a one-line reproduction prints); `parse_spec` reads it back.
    pub fn to_spec(&self) -> String {
        let mut items: Vec<String> = Vec::new();
        for e in &self.events {
            let mut s = format!("mem.{}:icount={}", e.kind.name(), e.icount);
            match e.target {
                Target::Addr(a) => s.push_str(&format!(",addr={a:#x}")),
                Target::Frame { frame, byte } => s.push_str(&format!(",frame={frame},byte={byte}")),
            }
            if e.kind != FaultKind::Ue {
                s.push_str(&format!(",bit={}", e.bit));
            }
            if e.kind == FaultKind::Stuck {
                s.push_str(&format!(",value={}", e.value as u8));
            }
            items.push(s);
        }
        for r in &self.random {
            let mut s = format!("mem.{}:", r.kind.name());
            if let Some(rate) = r.rate {
                s.push_str(&format!("rate={rate:e}"));
            }
            if let Some(c) = r.count {
                s.push_str(&format!("count={c}"));
            }
            if let Some(w) = r.within {
                s.push_str(&format!(",within={w}"));
            }
            if let Some(c) = r.class {
                s.push_str(&format!(",class={}", c.name()));
            }
            items.push(s);
        }
        items.join(",")
    }

    /// One line per fault, for --stats.
    pub fn describe(&self) -> Vec<String> {
        let spec = self.to_spec();
        if spec.is_empty() {
            return Vec::new();
        }
        spec.split(",mem.")
            .enumerate()
            .map(|(i, s)| {
                if i == 0 {
                    s.to_string()
                } else {
                    format!("mem.{s}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_to_spec() {
        let spec = "mem.ue:rate=1e-6,mem.flip:count=3,within=1000,class=anon-dirty,mem.ue:icount=5,addr=0x401000,mem.stuck:icount=0,frame=12,byte=100,bit=3,value=0";
        let plan = FaultPlan::parse_spec(spec, "--faults").unwrap();
        assert_eq!(plan.events.len(), 2);
        assert_eq!(plan.random.len(), 2);
        assert_eq!(
            plan.events[1],
            FaultEvent {
                icount: 0,
                kind: FaultKind::Stuck,
                target: Target::Frame {
                    frame: 12,
                    byte: 100
                },
                bit: 3,
                value: false
            }
        );
        let again = FaultPlan::parse_spec(&plan.to_spec(), "--faults").unwrap();
        assert_eq!(again, plan);
    }

    #[test]
    fn bad_specs_name_the_item() {
        let cases = [
            (
                "mem.ue:rat=1",
                "item 1 `mem.ue:rat=1`: unknown parameter `rat`",
            ),
            (
                "mem.ue:rate=1e-6,mem.boom:rate=1",
                "item 2 `mem.boom:rate=1`: unknown fault kind",
            ),
            ("rate=1", "a parameter before any fault"),
            ("mem.flip:icount=3,addr=0x10,bit=9", "bit=9"),
            ("mem.ue:icount=3", "exactly one of addr= or frame="),
            ("mem.ue:rate=2", "rate=2"),
            // A huge rate is named as written, not as 309 digits.
            ("mem.ue:rate=1e308", "rate=1e308: a rate"),
            ("mem.ue:count=1,rate=1e-3", "exactly one of rate= or count="),
            ("mem.ue:rate=1e-6,,", "empty item"),
            ("mem.ue:count=x", "count=x: expected a number"),
            ("mem.ue:count=1,class=dirty", "class=dirty"),
            ("mem.ue:count=1,count=2", "count= given twice"),
        ];
        for (spec, want) in cases {
            let e = FaultPlan::parse_spec(spec, "--faults")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("--faults: "), "{e}");
            assert!(
                e.contains(want),
                "spec {spec:?}: error {e:?} lacks {want:?}"
            );
        }
    }

    #[test]
    fn toml_plans_parse_and_errors_carry_the_line() {
        let text = "[[event]]\nkind = \"ue\"\nicount = 50000\naddr = 0x4c6000\n\n[[random]]\nkind = \"flip\"\nrate = 1e-6\n";
        let plan = FaultPlan::parse_toml(text, "plan.toml").unwrap();
        assert_eq!(plan.events[0].target, Target::Addr(0x4c6000));
        assert_eq!(plan.random[0].rate, Some(1e-6));
        let e = FaultPlan::parse_toml(
            "[[event]]\nkind = \"ue\"\nicount = 5\nadress = 1\n",
            "plan.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("plan.toml: TOML: "), "{e}");
        assert!(e.contains("line 4"), "{e}");
        // The caret diagram keeps its lines: the caret sits under the key, one line below it.
        let lines: Vec<&str> = e.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains("4 | adress = 1"))
            .expect(&e);
        let caret = lines[at + 1];
        assert_eq!(caret.find('^'), lines[at].find("adress"), "{e}");
        assert!(e.contains("adress"), "{e}");
        let e = FaultPlan::parse_toml("[[random]]\nkind = \"ue\"\n", "plan.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[[random]] number 1"), "{e}");
    }

    #[test]
    fn plans_serialise_for_a_recording() {
        let plan =
            FaultPlan::parse_spec("mem.ue:icount=5,frame=3,mem.flip:rate=1e-3", "x").unwrap();
        let text = toml::to_string(&plan).unwrap();
        let back: FaultPlan = toml::from_str(&text).unwrap();
        assert_eq!(back, plan);
    }
}
