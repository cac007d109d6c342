#!/usr/bin/env bash
# Checks a built ringbridge .deb with dpkg-deb: control fields, every file the
# package must carry, a stripped binary, the conffile, and what the maintainer
# scripts do (run against the unpacked tree with stubbed system commands).
# Usage: packaging/check-deb.sh path/to/ringbridge_*.deb
set -euo pipefail

deb="${1:?usage: check-deb.sh FILE.deb}"
fail() { echo "check-deb: $*" >&2; exit 1; }

info="$(dpkg-deb -I "$deb")"
contents="$(dpkg-deb -c "$deb")"

grep -q '^ Package: ringbridge$' <<<"$info" || fail "Package is not ringbridge"
grep -q '^ Architecture: ' <<<"$info" || fail "no Architecture"
grep -q '^ Depends: .*adduser' <<<"$info" || fail "Depends lacks adduser"

for path in \
    ./usr/bin/ringbridge \
    ./lib/systemd/system/ringbridge.service \
    ./lib/systemd/system/ringbridge-tune.service \
    ./etc/ringbridge/config.toml \
    ./usr/share/ringbridge/sysctl/ringbridge.conf \
    ./usr/share/doc/ringbridge/README.md \
    ./usr/share/doc/ringbridge/systemd-README.md; do
    grep -qE " ${path//./\\.}$" <<<"$contents" || fail "missing $path"
done
grep -qE '^-rwxr-xr-x .* \./usr/bin/ringbridge$' <<<"$contents" || fail "binary not 0755"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dpkg-deb -e "$deb" "$work/DEBIAN"
grep -qx '/etc/ringbridge/config.toml' "$work/DEBIAN/conffiles" || fail "config.toml is not a conffile"
for script in postinst prerm postrm; do
    test -x "$work/DEBIAN/$script" || fail "no executable $script"
    sh -n "$work/DEBIAN/$script" || fail "$script: shell syntax"
done
grep -q 'adduser --system' "$work/DEBIAN/postinst" || fail "postinst does not create the user"

dpkg-deb -x "$deb" "$work/root"
root="$work/root"
bin="$root/usr/bin/ringbridge"
config="$root/etc/ringbridge/config.toml"

# The binary is stripped: no debug sections, no symbol table (cargo-deb strips
# unless told not to; the release profile keeps line tables for backtraces).
# (.debug_gdb_scripts stays: it is loaded with the program, not debug info.)
sections="$(readelf -S -W "$bin")"
if grep -qE ' \.(debug_(info|line|str|abbrev|ranges|rnglists|loc|loclists)|symtab) ' <<<"$sections"; then
    fail "usr/bin/ringbridge is not stripped: $(grep -oE ' \.(debug_[a-z]+|symtab) ' <<<"$sections" | tr -d '\n')"
fi
size=$(stat -c %s "$bin")
[ "$size" -lt $((40 * 1024 * 1024)) ] || fail "usr/bin/ringbridge is $size bytes"

cmp -s "$root/usr/share/ringbridge/sysctl/ringbridge.conf" tuning/profiles/ringbridge.conf \
    || fail "sysctl profile differs from tuning/profiles/ringbridge.conf"

# The shipped config is the embedded default. It has no key, so a bridge
# started with it refuses to run (naming auth.app_secret) until postinst wrote
# one.
"$bin" config default | cmp -s - "$config" || fail "config.toml is not 'ringbridge config default'"
if out="$("$bin" config check "$config" 2>&1)"; then
    fail "the shipped config.toml (no key) passes 'config check'"
fi
grep -q 'auth.app_secret' <<<"$out" || fail "config check of the keyless config does not name auth.app_secret: $out"

# Run the maintainer scripts against the unpacked tree ($DPKG_ROOT), with
# stubs for everything that would touch this machine (users, ownership,
# systemd); the stubs log their arguments.
stubs="$work/stubs"
calls="$work/calls.log"
mkdir -p "$stubs" "$root/run/systemd/system"
for cmd in getent addgroup adduser deluser chown systemctl deb-systemd-helper deb-systemd-invoke; do
    printf '#!/bin/sh\necho "%s $*" >>"%s"\nexit 0\n' "$cmd" "$calls" >"$stubs/$cmd"
    chmod +x "$stubs/$cmd"
done
maint() { # maint SCRIPT ARGS...: run a maintainer script of the package
    local script="$1"
    shift
    : >"$calls"
    DPKG_ROOT="$root" PATH="$stubs:$PATH" sh "$work/DEBIAN/$script" "$@" \
        || fail "$script $* failed"
}

# First install: a random secret is written, then the mode and group are set.
chmod 0644 "$config"
maint postinst configure
"$bin" config check "$config" >/dev/null || fail "postinst wrote no working auth.app_secret"
grep -qE '^app_secret = "[A-Za-z0-9_-]{40,}"$' "$config" || fail "no random app_secret line in config.toml"
[ "$(stat -c %a "$config")" = 640 ] || fail "config.toml is mode $(stat -c %a "$config") after postinst, not 640"
grep -q "chown root:ringbridge .*/etc/ringbridge/config.toml" "$calls" || fail "postinst does not give config.toml to group ringbridge"
grep -q 'deb-systemd-helper enable ringbridge.service' "$calls" || fail "postinst does not enable ringbridge.service"
grep -q 'deb-systemd-invoke start ringbridge.service' "$calls" || fail "postinst does not start the bridge on first install"
if grep -q 'try-restart' "$calls"; then fail "postinst restarts on a first install"; fi
first="$(sha256sum <"$config")"

# Upgrade: the secret stays; a running bridge is restarted on the new binary,
# without dpkg waiting for its graceful shutdown.
maint postinst configure 0.0.9
[ "$(sha256sum <"$config")" = "$first" ] || fail "postinst changed config.toml on upgrade"
grep -q 'systemctl --no-block try-restart ringbridge.service' "$calls" || fail "postinst does not restart the bridge on upgrade"
if grep -q 'deb-systemd-invoke start' "$calls"; then fail "postinst starts (not restarts) on upgrade"; fi

# prerm stops the bridge on removal only, not on upgrade.
maint prerm upgrade 0.1.1
if grep -q 'stop' "$calls"; then fail "prerm stops the bridge on upgrade"; fi
maint prerm remove
grep -q 'deb-systemd-invoke stop ringbridge.service' "$calls" || fail "prerm does not stop the bridge on removal"

echo "check-deb: $deb ok ($(wc -l <<<"$contents") entries)"
