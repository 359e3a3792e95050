#!/bin/sh
# The kernel tier's guest side, run by the VM's PID 1 with the project mounted
# at the path it has on the host. Prepares what the tests need from the
# kernel, runs the runner's command file in the project, leaves its exit code
# for the runner, and powers off.
project=$1
run=/berth/run
finish() {
  echo "$1" >"$run/rc"
  sync
  # No init system in the guest: power off through the kernel.
  echo o >/proc/sysrq-trigger
  sleep 10
}
say() { echo "kernel-vm guest: $*"; }

# The host's Node 20 (the test machine's own), shared read-only.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro host-bin /berth/host-bin || finish 90
ln -sf /berth/host-bin/node /usr/local/bin/node

# The kernel features the tests use; each is a module in Debian's kernel.
modprobe -a loop nfs nfsv3 nfsv4 dm_mod dm_crypt xfs btrfs quota_v2 dummy || finish 91
hostname berth-kernel-vm
# What a booted Debian has and debootstrap leaves out: ganesha's VFS backend
# reads /etc/mtab to find an export's filesystem, and resolves its host name.
ln -sf /proc/self/mounts /etc/mtab
printf '127.0.0.1 localhost berth-kernel-vm\n::1 localhost\n' >/etc/hosts

# Scratch space for temporary directories: the runner's second disk, a real
# block device, so images, loop devices and direct I/O behave as on a node.
mkfs.ext4 -q -F /dev/vdb && mount /dev/vdb /tmp || finish 92
chmod 1777 /tmp

# nfs-ganesha listens on 127.0.0.1 but refuses to start where the only
# interface is lo ("No IP address found"): a dummy interface, which never
# carries a packet, has an address from the documentation range.
ip link set lo up
ip link add berth0 type dummy && ip addr add 192.0.2.1/24 dev berth0 || finish 93
mkdir -p /run/rpcbind /var/lib/nfs/rpc_pipefs /run/ganesha

export HOME=/root TMPDIR=/tmp BERTH_KERNEL_VM=1
cd "$project" || finish 94
say "ready after $(cut -d' ' -f1 /proc/uptime) s of uptime, running the command file"
sh "$run/cmd"
finish $?
