#!/usr/bin/env bash
# Runs a command on a newer Mesa lavapipe than the distribution's, one that offers
# VK_KHR_cooperative_matrix (Mesa 25.1 and later), without installing anything system-wide:
# Mesa's Vulkan driver and the libraries it needs are fetched from Debian unstable into
# DIR and the command is started by that release's dynamic loader, so its libc comes along.
#
#     sudo scripts/lavapipe_next.sh /tmp/lavapipe-next target/debug/deps/cooperative_matrix-*
#
# wgrad's own binaries are built against the system's older libc, which the newer one
# runs. The fetched tree is reused on later calls. Needs apt-get (Debian or Ubuntu) and
# root for apt-get's download lists; exits 3, before running anything, if the fetch fails.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 DIR COMMAND [ARGS...]" >&2
    exit 2
fi
dir=$(mkdir -p "$1" && cd "$1" && pwd)
shift

root="$dir/root"
icd="$root/usr/share/vulkan/icd.d/lvp_icd.json"
if [ ! -f "$dir/.complete" ]; then
    rm -rf "$root" "$dir/debs" "$dir/lists"
    mkdir -p "$dir/lists/partial" "$dir/debs" "$root"
    echo 'deb http://deb.debian.org/debian sid main' >"$dir/sources.list"
    apt_opts=(-o "Dir::State::Lists=$dir/lists" -o "Dir::Etc::SourceList=$dir/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null" -o "APT::Architecture=amd64")
    fetch() {
        apt-get "${apt_opts[@]}" -qq update &&
            packages=$(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests \
                --no-conflicts --no-breaks --no-replaces --no-enhances mesa-vulkan-drivers libvulkan1 |
                grep -v '^ ' | grep -v '<' | sort -u) &&
            (cd "$dir/debs" && apt-get "${apt_opts[@]}" -qq download $packages)
    }
    if ! fetch; then
        echo "$0: could not fetch Mesa from Debian unstable" >&2
        exit 3
    fi
    for deb in "$dir"/debs/*.deb; do
        dpkg-deb -x "$deb" "$root"
    done
    # The manifest names the driver by file name; point it into the tree.
    sed -i "s#\"library_path\": \"[^\"]*\"#\"library_path\": \"$root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so\"#" "$icd"
    touch "$dir/.complete"
fi

export VK_DRIVER_FILES="$icd"
exec "$root/usr/lib64/ld-linux-x86-64.so.2" --library-path "$root/usr/lib/x86_64-linux-gnu" "$@"
