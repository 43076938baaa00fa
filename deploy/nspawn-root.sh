#!/bin/sh
# Build a minimal Debian bookworm root with systemd as PID 1, for the unit's end-to-end test.
# Usage: deploy/nspawn-root.sh ROOT MIRROR   (run as root; needs debootstrap)
# The project's virtual environment (and its Python, when that is not the system one) is
# bind-mounted in at test time, so the root only carries systemd, udev (it creates the render and
# input groups), procps (/bin/kill for ExecReload=), Debian's python3 (for a venv made from it)
# and the shared libraries the interpreter and torch load from the system.
set -eu
root=$1
mirror=$2
rm -rf "$root.partial"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,libffi8,libssl3,libbz2-1.0,libexpat1,libsqlite3-0,procps,udev,python3 \
    bookworm "$root.partial" "$mirror"
echo lavalamp-test >"$root.partial/etc/hostname"
# No consoles to log in on, no network to wait for: only what the test needs starts at boot.
for unit in getty.target console-getty.service systemd-networkd-wait-online.service \
            apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer; do
    ln -sf /dev/null "$root.partial/etc/systemd/system/$unit"
done
rm -rf "$root.partial/var/cache/apt/archives/"*.deb
mv "$root.partial" "$root"
