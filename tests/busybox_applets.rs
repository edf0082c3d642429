//! Programs nobody here wrote: Debian's busybox-static (/bin/busybox, glibc-based), applet by applet, under
//! `tandem run` and natively on the same input; stdout and exit status must match byte for byte.

mod common;
use common::*;

const BUSYBOX: &str = "/bin/busybox";

/// Deterministic text input: 2000 lines of words with repeats, digits and mixed case.
fn input_text() -> Vec<u8> {
    let words = [
        "alpha", "Beta", "gamma", "delta", "alpha", "EPSILON", "zeta", "eta", "theta", "iota",
    ];
    let mut out = String::new();
    let mut s: u32 = 7;
    for i in 0..2000 {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let w = words[(s >> 16) as usize % words.len()];
        let v = words[(s >> 8) as usize % words.len()];
        out.push_str(&format!("{w} {} {v} {}\n", (s >> 20) % 97, i % 13));
    }
    out.into_bytes()
}

/// Writes the input file into a scratch directory mounted at the same guest path; returns the file's path.
fn input_file(test: &str) -> (String, String) {
    let dir = scratch(&format!("busybox-{test}"));
    let file = dir.join("input.txt");
    std::fs::write(&file, input_text()).unwrap();
    (
        dir.to_str().unwrap().to_string(),
        file.to_str().unwrap().to_string(),
    )
}

fn applet(test: &str, args: &[&str], stdin: &[u8], mount: Option<&str>) {
    let mut flags = Vec::new();
    if let Some(m) = mount {
        flags.push("--mount");
        flags.push(m);
    }
    let e = emulate(&flags, BUSYBOX, args, stdin);
    let n = native(BUSYBOX, args, &[], stdin);
    assert!(
        !n.stdout.is_empty() || n.status.code() != Some(0),
        "{test}: native run printed nothing"
    );
    assert_same(test, &n, &e);
}

#[test]
fn sha256sum_of_a_mounted_file() {
    let (dir, file) = input_file("sha256sum");
    applet("sha256sum", &["sha256sum", &file], b"", Some(&dir));
}

#[test]
fn md5sum_of_stdin() {
    applet("md5sum", &["md5sum"], &input_text(), None);
}

#[test]
fn sort_numeric_and_reverse() {
    applet("sort", &["sort", "-k2,2n", "-k1,1r"], &input_text(), None);
}

#[test]
fn uniq_counts_sorted_words() {
    // One word per line, sorted here (a pipeline in sh would need fork).
    let text = String::from_utf8(input_text()).unwrap();
    let mut words: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    words.sort();
    let input = words.join("\n") + "\n";
    applet("uniq", &["uniq", "-c"], input.as_bytes(), None);
}

#[test]
fn wc_counts() {
    applet("wc", &["wc"], &input_text(), None);
}

#[test]
fn tr_upper_case_and_delete() {
    applet("tr", &["tr", "a-z", "A-Z"], &input_text(), None);
    applet("tr -d", &["tr", "-d", "0-9 "], &input_text(), None);
}

#[test]
fn sed_substitutions_and_addresses() {
    applet(
        "sed",
        &[
            "sed",
            "-n",
            "s/\\(alpha\\) \\([0-9]*\\)/\\2<\\1>/p; 100,105p; $=",
        ],
        &input_text(),
        None,
    );
}

#[test]
fn awk_aggregates_with_arrays_and_printf() {
    let script = r#"
        { count[$1]++; sum[$1] += $2; if ($4 > max) max = $4 }
        NR % 500 == 0 { printf "line %d: %s\n", NR, toupper($3) }
        END {
            n = 0
            for (w in count) keys[++n] = w
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (keys[j] < keys[i]) { t = keys[i]; keys[i] = keys[j]; keys[j] = t }
            for (i = 1; i <= n; i++) printf "%-8s %5d %8.3f\n", keys[i], count[keys[i]], sum[keys[i]] / count[keys[i]]
            print "max", max, length(keys), substr("determinism", 3, 5), index("tandem", "dem")
        }"#;
    applet("awk", &["awk", script], &input_text(), None);
}

#[test]
fn gzip_and_gunzip_round_trip() {
    // From stdin, so the gzip header carries no file name or modification time.
    applet("gzip", &["gzip", "-c", "-9"], &input_text(), None);
    let native_gz = native(BUSYBOX, &["gzip", "-c"], &[], &input_text()).stdout;
    applet("gunzip", &["gunzip", "-c"], &native_gz, None);
}

#[test]
fn od_hex_dump() {
    applet(
        "od",
        &["od", "-A", "x", "-t", "x1z", "-v"],
        &input_text()[..4096],
        None,
    );
}

#[test]
fn seq_factor_expr() {
    applet("seq", &["seq", "-s", ",", "1", "7", "1000"], b"", None);
    applet(
        "factor",
        &["factor", "1234567890", "999999937", "600851475143", "97"],
        b"",
        None,
    );
    applet(
        "expr",
        &[
            "expr", "(", "17", "*", "23", ")", "%", "7", "+", "length", "tandem",
        ],
        b"",
        None,
    );
}

#[test]
fn sh_with_builtins_only() {
    let script = r#"
        x=0; i=1
        while [ $i -le 100 ]; do x=$((x + i * i)); i=$((i + 1)); done
        echo "sum of squares $x"
        s="deterministic simulation"; echo "${#s} ${s%% *} ${s#* }"
        set -- a b c; echo "$# $2"; for w in "$@"; do printf '%s-' "$w"; done; echo
        case "$s" in det*) echo matched;; *) echo no;; esac
        f() { echo "in f: $1"; return 3; }; f arg; echo "status $?"
        test -n "$s" && echo nonempty
        exit 7
    "#;
    applet("sh", &["sh", "-c", script], b"", None);
}

#[test]
fn cat_cannot_escape_the_mount() {
    let (dir, _) = input_file("escape");
    let root = std::path::Path::new(&dir);
    // Links planted inside the mount that point outside it, absolutely and relatively.
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/passwd", root.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("dir-link")).unwrap();
    std::os::unix::fs::symlink("input.txt", root.join("inside-link")).unwrap();
    let outside = format!("{dir}/../../../../etc/passwd");
    let abs = format!("{dir}/abs-link");
    let rel = format!("{dir}/rel-link");
    let through_dir = format!("{dir}/dir-link/passwd");
    for path in [
        outside.as_str(),
        "/etc/passwd",
        "/proc/self/environ",
        &abs,
        &rel,
        &through_dir,
    ] {
        let e = emulate(&["--mount", &dir], BUSYBOX, &["cat", path], b"");
        assert_ne!(
            e.status.code(),
            Some(0),
            "{path} was readable: {}",
            text(&e.stdout)
        );
        assert!(e.stdout.is_empty(), "{path}");
    }
    // A link that stays inside the mount works.
    let e = emulate(
        &["--mount", &dir],
        BUSYBOX,
        &["cat", &format!("{dir}/inside-link")],
        b"",
    );
    assert_eq!(e.stdout, input_text());
}
