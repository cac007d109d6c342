#!/usr/bin/env bash
# Checks a built ringbridge .deb with dpkg-deb: control fields, every file the
# package must carry, the conffile, and the maintainer scripts.
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

# The shipped config is the embedded default, and the binary accepts it.
dpkg-deb -x "$deb" "$work/root"
"$work/root/usr/bin/ringbridge" config check "$work/root/etc/ringbridge/config.toml" >/dev/null \
    || fail "the shipped config.toml does not pass 'ringbridge config check'"
cmp -s "$work/root/usr/share/ringbridge/sysctl/ringbridge.conf" tuning/profiles/ringbridge.conf \
    || fail "sysctl profile differs from tuning/profiles/ringbridge.conf"

echo "check-deb: $deb ok ($(wc -l <<<"$contents") entries)"
