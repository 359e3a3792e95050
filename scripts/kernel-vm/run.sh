#!/usr/bin/env bash
# The kernel tier's runner: builds the VM when it is not cached (build.sh),
# boots it once under qemu (TCG: these machines have no KVM) with the project
# shared at its own path, runs one command file in it, and exits with that
# command's exit code. The guest's console is this script's output.
#
#   bash scripts/kernel-vm/run.sh 'node node_modules/mocha/bin/mocha.js …'
#
# A VM that cannot be built or booted, or that stops without leaving an exit
# code, fails the run: the tier never skips.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 'command run in the guest, in the project'" >&2; exit 2; }
limit=${BERTH_VM_TIMEOUT:-2400}

start=$(date +%s)
vm=$(bash "$here/build.sh" | tail -1)
run=$(mktemp -d "${TMPDIR:-/tmp}/berth-vm-XXXXXX")
cleanup() { rm -rf "$run"; }
trap cleanup EXIT
echo "$project" >"$run/project"
printf '%s\n' "$1" >"$run/cmd"
# The guest's /tmp: a sparse disk of its own, gone with the run.
truncate -s 16G "$run/scratch.img"

echo "kernel-vm: booting Debian's kernel $(cat "$vm/kernel-version") under qemu (TCG, 2 vCPUs)"
share() { echo "local,path=$1,mount_tag=$2,security_model=none${3:+,$3}"; }
status=0
timeout -k 10 "$limit" qemu-system-x86_64 \
  -machine pc -accel tcg,tb-size=128 -cpu max -smp 2 -m 2048 \
  -nodefaults -display none -serial stdio -no-reboot -nic none \
  -kernel "$vm/vmlinuz" -initrd "$vm/initrd.img" \
  -append "root=/dev/vda rw init=/sbin/berth-init console=ttyS0 panic=-1 quiet loglevel=3" \
  -drive "file=$vm/root.img,if=virtio,format=raw,snapshot=on" \
  -drive "file=$run/scratch.img,if=virtio,format=raw,cache=unsafe" \
  -virtfs "$(share "$run" run)" \
  -virtfs "$(share "$project" project)" \
  -virtfs "$(share "$(dirname "$(readlink -f "$(command -v node)")")" host-bin readonly=on)" \
  </dev/null || status=$?
[ "$status" -ne 124 ] || echo "kernel-vm: no result after $limit s: the VM was stopped" >&2
echo "kernel-vm: the tier took $(($(date +%s) - start)) s of wall time (build or cache, boot, tests)"
[ -s "$run/rc" ] || { echo "kernel-vm: the guest stopped without an exit code: the tier failed" >&2; exit 1; }
exit "$(cat "$run/rc")"
