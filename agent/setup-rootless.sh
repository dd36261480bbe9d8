#!/bin/sh
# Prepares a Linux host to run manifold-agent without root: a system user (default manifold-agent) whose home is
# the agent's state directory, subordinate uid/gid ranges for rootless buildah/podman, and a check that its user
# namespace works. Safe to run again: existing users, directories and ranges are kept as they are.
#
#   sudo agent/setup-rootless.sh [--user NAME] [--home DIR] [--count N]
#
# Needs: useradd/usermod (passwd), newuidmap/newgidmap (uidmap on Debian/Ubuntu, shadow-utils on Fedora/RHEL).
set -eu

user=manifold-agent
home=/var/lib/manifold-agent
count=65536

while [ $# -gt 0 ]; do
    case "$1" in
    --user) user=$2; shift 2 ;;
    --home) home=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup-rootless.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

fail() { echo "setup-rootless.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (it creates a user and edits /etc/subuid and /etc/subgid)"
case "$count" in '' | *[!0-9]*) fail "--count must be a number, not \"$count\"" ;; esac
[ "$count" -ge 65536 ] || fail "--count $count is too small: image layers use uids up to 65535"
for tool in useradd usermod newuidmap newgidmap; do
    command -v "$tool" >/dev/null 2>&1 ||
        fail "$tool is missing: install uidmap (Debian/Ubuntu: apt-get install uidmap) or shadow-utils (Fedora/RHEL)"
done

# 1. The user, with a group of its own and no login shell.
if id -u "$user" >/dev/null 2>&1; then
    echo "user $user exists (uid $(id -u "$user"))"
else
    useradd --system --user-group --home-dir "$home" --no-create-home --shell /usr/sbin/nologin \
        --comment "Manifold build agent" "$user"
    echo "created user $user (uid $(id -u "$user"))"
fi
group=$(id -gn "$user")

# 2. The state directory, owned by the user and closed to everyone else (the credential lives there). Files left by
#    an agent that ran as root are handed over.
install -d -m 0700 -o "$user" -g "$group" "$home"
chown -R "$user:$group" "$home"
chmod 0700 "$home"
echo "state directory $home owned by $user, mode 0700"

# 3. Subordinate ids: a free range of $count after every range already given out, in both files.
next_free() {
    awk -F: -v min=100000 '
        NF >= 3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ { end = $2 + $3; if (end > min) min = end }
        END { printf "%d\n", min }' /etc/subuid /etc/subgid 2>/dev/null
}
touch /etc/subuid /etc/subgid
# The same range for uids and gids, chosen once, on a multiple of 65536 as useradd does.
start=$(next_free)
start=$(( (start + 65535) / 65536 * 65536 ))
for kind in uid gid; do
    if grep -q "^$user:" "/etc/sub$kind"; then
        echo "sub${kind}s of $user kept: $(grep -m 1 "^$user:" "/etc/sub$kind")"
    else
        usermod "--add-sub${kind}s" "$start-$((start + count - 1))" "$user"
        echo "sub${kind}s of $user: $start-$((start + count - 1))"
    fi
done

# 4. Unprivileged user namespaces must be enabled.
if [ -r /proc/sys/user/max_user_namespaces ] && [ "$(cat /proc/sys/user/max_user_namespaces)" -eq 0 ]; then
    fail "user namespaces are disabled (user.max_user_namespaces = 0); enable them: sysctl -w user.max_user_namespaces=15000"
fi
if [ -r /proc/sys/kernel/unprivileged_userns_clone ] && [ "$(cat /proc/sys/kernel/unprivileged_userns_clone)" -eq 0 ]; then
    fail "unprivileged user namespaces are disabled; enable them: sysctl -w kernel.unprivileged_userns_clone=1"
fi

# 5. Proof: the builder enters a user namespace with the whole range mapped.
for builder in buildah podman; do
    command -v "$builder" >/dev/null 2>&1 || continue
    runtime=$(mktemp -d)
    chown "$user:$group" "$runtime"
    mapped=$(cd / && runuser -u "$user" -- env HOME="$home" XDG_RUNTIME_DIR="$runtime" \
        "$builder" unshare cat /proc/self/uid_map 2>&1) || {
        rm -rf "$runtime"
        fail "rootless $builder does not work for $user: $mapped"
    }
    rm -rf "$runtime"
    echo "rootless $builder works for $user; uid map:"
    echo "$mapped" | sed 's/^/    /'
    break
done

cat <<NEXT
Next:
  runuser -u $user -- manifold-agent join https://COORDINATOR:7443 --token-file - --ca-fingerprint sha256:HEX \\
      --state-dir $home < JOIN_TOKEN_FILE
  install -m 0644 agent/manifold-agent.service /etc/systemd/system/ && systemctl enable --now manifold-agent
NEXT
