#!/usr/bin/python3
"""Loads an OCI/Docker seccomp profile (the JSON `tandem profile --seccomp` writes) into the kernel with
libseccomp, as a container runtime does before it executes the container's program, then executes PROGRAM
natively under it. The JSON's fields are read as runc and crun read them: defaultAction (SCMP_ACT_ERRNO with
defaultErrnoRet, SCMP_ACT_KILL_PROCESS, SCMP_ACT_ALLOW), architectures, and syscalls[] rules of names and an
action. A name libseccomp does not know for x86-64 is an error, as it is for runc.

Usage: seccomp_exec.py PROFILE.json PROGRAM [ARGS...]  (exit status: PROGRAM's; 125 for a bad profile)
"""
import json
import os
import sys

import seccomp


def action(name, errno_ret):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(errno_ret)
    if name in ("SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL"):
        return seccomp.KILL_PROCESS
    raise ValueError(f"unsupported action {name}")


def build(doc):
    errno_ret = doc.get("defaultErrnoRet", 1)
    f = seccomp.SyscallFilter(defaction=action(doc["defaultAction"], errno_ret))
    if doc.get("architectures") != ["SCMP_ARCH_X86_64"]:
        raise ValueError(f"architectures {doc.get('architectures')}: expected x86-64 only")
    for rule in doc["syscalls"]:
        act = action(rule["action"], rule.get("errnoRet", errno_ret))
        for name in rule["names"]:
            f.add_rule(act, name)
    return f


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 125
    try:
        with open(sys.argv[1]) as fp:
            f = build(json.load(fp))
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        print(f"seccomp_exec.py: {sys.argv[1]}: {e}", file=sys.stderr)
        return 125
    sys.stdout.flush()
    f.load()
    os.execv(sys.argv[2], sys.argv[2:])


sys.exit(main())
