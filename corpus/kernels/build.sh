#!/usr/bin/env bash
# Rebuilds kernels.bin, the flat binary of the integer benchmark kernels (loaded at 0x400000).
set -euo pipefail
cd "$(dirname "$0")"
gcc -O2 -ffreestanding -nostdlib -static -fno-pic -no-pie -fno-builtin -fno-stack-protector \
    -fcf-protection=none -mgeneral-regs-only -fno-tree-loop-distribute-patterns -fno-asynchronous-unwind-tables \
    -T kernels.ld -Wl,--build-id=none -o kernels.elf kernels.c
objcopy -O binary kernels.elf kernels.bin
rm -f kernels.elf
echo "kernels.bin: $(stat -c %s kernels.bin) bytes"
